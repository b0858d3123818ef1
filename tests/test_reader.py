"""The spectrum reader (issue 9): Sherpa's own objects built from the FITS files, equal to
what Sherpa's reader gives, a response cache without patching Sherpa, gzip and odd file
names, and an ARF on another energy grid than its RMF."""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import SHERPA_SPECTRA, write_modified_pha
from sherpa.astro import io
from sherpa.astro.data import DataARF, DataPHA, DataRMF
from sherpa.astro.instrument import Response1D
from sherpa.fit import Fit
from sherpa.models.basic import PowLaw1D
from sherpa.optmethods import LevMar
from sherpa.stats import Cash
from sherpa.utils.logging import SherpaVerbosity

from sherpa_latent import load_spectrum
from sherpa_latent.errors import SpectrumError, SpectrumFileError
from sherpa_latent.grids import channel_bin_index
from sherpa_latent.reader import (
    ResponseFileCache,
    parse_header,
    read_arf,
    read_pha_block,
    read_rmf,
    read_spectrum,
    using_cache,
)
from sherpa_latent.spectrum import arf_on_rmf_grid

RESPONSES = {
    "3c273.pi": ("3c273.arf", "3c273.rmf"),
    "acisf04938_000N002_r0043_pha3.fits": (
        "acisf04938_000N002_r0043_arf3.fits",
        "acisf04938_000N002_r0043_rmf3.fits",
    ),
    "acisf07867_000N001_r0002_pha3.fits": (
        "acisf07867_000N001_r0002_arf3.fits",
        "acisf07867_000N001_r0002_rmf3.fits",
    ),
}


def _sherpa(reader, *args, **kwargs):
    with SherpaVerbosity("ERROR"):
        return reader(*args, **kwargs)


# --- equality with Sherpa's reader --------------------------------------------------------
def _same_array(ours, theirs, what: str) -> None:
    if theirs is None:
        assert ours is None, what
        return
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.dtype == theirs.dtype, f"{what}: {ours.dtype} != {theirs.dtype}"
    np.testing.assert_array_equal(ours, theirs, err_msg=what)


def assert_same_arf(ours: DataARF, theirs: DataARF) -> None:
    assert type(ours) is type(theirs)
    for name in ("energ_lo", "energ_hi", "specresp"):
        _same_array(getattr(ours, name), getattr(theirs, name), f"ARF {name}")
    assert ours.exposure == theirs.exposure and ours.ethresh == theirs.ethresh
    assert ours.header == theirs.header


def assert_same_rmf(ours: DataRMF, theirs: DataRMF) -> None:
    assert type(ours) is type(theirs)
    for name in ("energ_lo", "energ_hi", "n_grp", "f_chan", "n_chan", "matrix", "e_min", "e_max"):
        _same_array(getattr(ours, name), getattr(theirs, name), f"RMF {name}")
    assert (ours.detchans, ours.offset, ours.ethresh) == (
        theirs.detchans,
        theirs.offset,
        theirs.ethresh,
    )
    assert ours.header == theirs.header
    x = np.linspace(1.0, 2.0, len(ours.energ_lo))
    np.testing.assert_array_equal(ours.apply_rmf(x), theirs.apply_rmf(x))


def assert_same_pha(ours: DataPHA, theirs: DataPHA, *, responses: bool = True) -> None:
    for name in ("channel", "counts", "grouping", "quality", "staterror", "syserror"):
        _same_array(getattr(ours, name), getattr(theirs, name), f"PHA {name}")
    for name in ("backscal", "areascal"):
        a, b = getattr(ours, name), getattr(theirs, name)
        assert type(a) is type(b), name
        _same_array(a, b, name)
    assert ours.exposure == theirs.exposure
    assert (ours.grouped, ours.rate) == (theirs.grouped, theirs.rate)
    assert ours.header
    if not responses:
        # Sherpa's set_response copies TELESCOP, INSTRUME and FILTER from the responses
        # into a header that lacks them; a spectrum read alone has none attached yet.
        copied = {"TELESCOP", "INSTRUME", "FILTER"} - set(ours.header)
        theirs_header = {k: v for k, v in theirs.header.items() if k not in copied}
        assert ours.header == theirs_header
        return
    assert ours.header == theirs.header
    assert ours.units == theirs.units
    arf, rmf = ours.get_response()
    sarf, srmf = theirs.get_response()
    assert (arf is None) == (sarf is None) and (rmf is None) == (srmf is None)
    if arf is not None:
        assert_same_arf(arf, sarf)
    if rmf is not None:
        assert_same_rmf(rmf, srmf)
    assert ours.background_ids == theirs.background_ids
    for bkg_id in theirs.background_ids:
        assert_same_pha(ours.get_background(bkg_id), theirs.get_background(bkg_id))
    if theirs.background_ids:
        scale = theirs.get_background_scale()
        assert ours.get_background_scale() == pytest.approx(scale, rel=1e-15)


@pytest.mark.parametrize("name", SHERPA_SPECTRA)
def test_objects_equal_sherpa_reader(sherpa_data: Path, name: str) -> None:
    path = str(sherpa_data / name)
    ours = read_spectrum(path).pha
    theirs = _sherpa(io.read_pha, path)
    assert_same_pha(ours, theirs)
    assert len(ours.header) > 50  # the whole header, not a few keywords
    assert ours.get_background().name.endswith(("3c273_bg.pi", name))
    arf_name, rmf_name = RESPONSES[name]
    assert_same_arf(
        read_arf(sherpa_data / arf_name), _sherpa(io.read_arf, str(sherpa_data / arf_name))
    )
    assert_same_rmf(
        read_rmf(sherpa_data / rmf_name), _sherpa(io.read_rmf, str(sherpa_data / rmf_name))
    )
    # use_errors keeps STAT_ERR as Sherpa does (3C 273 has the column, pha3 files do not)
    with_errors = read_pha_block(path, use_errors=True).pha
    assert_same_pha(with_errors, _sherpa(io.read_pha, path, use_errors=True), responses=False)


def test_load_spectrum_gives_sherpa_objects_that_fit_and_survive_save_restore(
    sherpa_data: Path, tmp_path: Path
) -> None:
    from sherpa.astro import ui

    spec = load_spectrum(sherpa_data / "3c273.pi")
    assert isinstance(spec.pha, DataPHA) and spec.pha.get_arf() is not None
    ui.clean()
    try:
        ui.set_data("src", spec.pha)
        ui.set_source("src", ui.powlaw1d.pl)
        ui.notice_id("src", 0.5, 7.0)
        ui.set_stat("cstat")
        with SherpaVerbosity("ERROR"):
            ui.fit("src")
        gamma = ui.get_par("pl.gamma").val
        assert 1.0 < gamma < 3.0
        saved = tmp_path / "session.save"
        ui.save(str(saved), clobber=True)
        ui.clean()
        ui.restore(str(saved))
        restored = ui.get_data("src")
        np.testing.assert_array_equal(restored.counts, spec.pha.counts)
        assert restored.get_rmf().name == spec.pha.get_rmf().name
        assert ui.get_par("pl.gamma").val == gamma
    finally:
        ui.clean()


def test_nothing_in_sherpa_is_replaced(sherpa_data: Path) -> None:
    import sherpa.astro.data
    import sherpa.astro.io

    modules = (sherpa.astro.io, sherpa.astro.data)
    before = [dict(vars(m)) for m in modules]
    cache = ResponseFileCache()
    with using_cache(cache):
        for name in SHERPA_SPECTRA:
            load_spectrum(sherpa_data / name)
    for module, saved in zip(modules, before, strict=True):
        now = vars(module)
        assert now.keys() == saved.keys()
        assert all(now[k] is saved[k] for k in saved), module.__name__


# --- the cache ----------------------------------------------------------------------------
def test_cache_hands_back_the_object_until_the_file_changes(sherpa_data: Path, tmp_path: Path):
    arf = tmp_path / "x.arf"
    shutil.copy(sherpa_data / "3c273.arf", arf)
    cache = ResponseFileCache()
    first = read_arf(arf, cache)
    assert read_arf(str(arf), cache) is first
    assert (cache.misses, cache.hits) == (1, 1)
    assert read_arf(arf) is not first  # no cache: a fresh object
    st = arf.stat()
    os.utime(arf, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    changed = read_arf(arf, cache)
    assert changed is not first and cache.misses == 2
    np.testing.assert_array_equal(changed.specresp, first.specresp)
    # a link to the same file is the same entry
    link = tmp_path / "link.arf"
    link.symlink_to(arf)
    assert read_arf(link, cache) is changed


def test_cache_is_bounded_and_shared_between_threads(sherpa_data: Path, tmp_path: Path) -> None:
    cache = ResponseFileCache(max_entries=2)
    copies = []
    for i in range(3):
        copies.append(tmp_path / f"{i}.arf")
        shutil.copy(sherpa_data / "3c273.arf", copies[-1])
        read_arf(copies[-1], cache)
    assert len(cache) == 2
    first = read_arf(copies[2], cache)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: read_arf(copies[2], cache), range(32)))
    assert all(g is first for g in got)
    # spectra read in threads, sharing one cache, share their responses
    fresh = ResponseFileCache()
    path = sherpa_data / "3c273.pi"
    with ThreadPoolExecutor(4) as pool:
        phas = list(pool.map(lambda _: read_spectrum(path, cache=fresh).pha, range(8)))
    assert len({id(p.get_rmf()) for p in phas}) == 1 and fresh.misses == 2


def test_using_cache_belongs_to_its_thread(sherpa_data: Path) -> None:
    cache = ResponseFileCache()
    path = sherpa_data / "3c273.pi"
    seen = []
    with using_cache(cache):
        first = load_spectrum(path).pha.get_rmf()
        assert load_spectrum(path).pha.get_rmf() is first
        thread = threading.Thread(target=lambda: seen.append(load_spectrum(path).pha.get_rmf()))
        thread.start()
        thread.join()
    assert seen[0] is not first
    assert load_spectrum(path).pha.get_rmf() is not first


# --- files as Sherpa accepts them -----------------------------------------------------------
def _gzip(src: Path, dst: Path) -> Path:
    with open(src, "rb") as fin, gzip.open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return dst


def test_gzip_files_and_a_respfile_named_without_gz(sherpa_data: Path, tmp_path: Path) -> None:
    for name in ("3c273.pi", "3c273.arf", "3c273.rmf", "3c273_bg.pi"):
        _gzip(sherpa_data / name, tmp_path / (name + ".gz"))
    # The header names 3c273.rmf, 3c273.arf and 3c273_bg.pi; only the .gz files exist.
    assert not (tmp_path / "3c273.rmf").exists()
    path = tmp_path / "3c273.pi.gz"
    spec = load_spectrum(path)
    reference = load_spectrum(sherpa_data / "3c273.pi")
    assert spec.pha.get_rmf().name == str(tmp_path / "3c273.rmf.gz")
    assert spec.pha.get_background().name == str(tmp_path / "3c273_bg.pi.gz")
    assert not spec.warnings
    assert_same_pha(
        read_spectrum(path).pha, _sherpa(io.read_pha, str(path)), responses=False
    )  # Sherpa reads the .gz spectrum too
    np.testing.assert_array_equal(spec.counts, reference.counts)
    assert_same_rmf(spec.pha.get_rmf(), reference.pha.get_rmf())
    np.testing.assert_array_equal(
        spec.representation().response, reference.representation().response
    )
    # a plain PHA whose RESPFILE names x.rmf while only x.rmf.gz exists
    plain = write_modified_pha(
        tmp_path / "plain.pi", sherpa_data / "3c273.pi", absolute_files=False
    )
    assert load_spectrum(plain).pha.get_rmf().name == str(tmp_path / "3c273.rmf.gz")


def test_file_names_cfitsio_would_misread(sherpa_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "obs[1]+2"
    folder.mkdir()
    for name in ("3c273.pi", "3c273.arf", "3c273.rmf", "3c273_bg.pi"):
        shutil.copy(sherpa_data / name, folder / name)
    shutil.copy(folder / "3c273.pi", folder / "src+1")
    spec = load_spectrum(folder / "src+1")
    assert_same_pha(spec.pha, read_spectrum(sherpa_data / "3c273.pi").pha, responses=False)
    assert spec.pha.get_rmf().name == str(folder / "3c273.rmf")


def test_type_ii_is_refused(tmp_path: Path, pha_3c273: Path) -> None:
    with fits.open(pha_3c273) as hdus:
        counts = np.asarray(hdus["SPECTRUM"].data["COUNTS"])
        header = hdus["SPECTRUM"].header
    cols = [
        fits.Column("CHANNEL", "1024J", array=np.tile(np.arange(1, 1025), (2, 1))),
        fits.Column("COUNTS", "1024J", array=np.stack([counts, counts])),
    ]
    hdu = fits.BinTableHDU.from_columns(cols)
    for key in ("HDUCLASS", "HDUCLAS1", "EXPOSURE", "INSTRUME", "TELESCOP", "RESPFILE"):
        hdu.header[key] = header[key]
    hdu.header["EXTNAME"] = "SPECTRUM"
    hdu.header["HDUCLAS3"] = "TYPE:II"
    path = tmp_path / "pha2.pi"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    assert isinstance(_sherpa(io.read_pha, str(path)), list)  # Sherpa reads two spectra
    with pytest.raises(SpectrumError) as info:
        load_spectrum(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(path))
    assert "type II PHA file holding 2 spectra; sherpa_latent needs one (type I)" in text


@pytest.mark.parametrize("grating", [False, True], ids=["imaging", "grating"])
def test_type_ii_file_with_one_spectrum_reads_as_sherpa_reads_it(
    tmp_path: Path, sherpa_data: Path, grating: bool
) -> None:
    with fits.open(sherpa_data / "3c273.pi") as hdus:
        data, header = hdus["SPECTRUM"].data, hdus["SPECTRUM"].header
        cols = [
            fits.Column("CHANNEL", "1024J", array=data["CHANNEL"][None, :]),
            fits.Column("COUNTS", "1024J", array=data["COUNTS"][None, :]),
            fits.Column("GROUPING", "1024I", array=data["GROUPING"][None, :]),
            fits.Column("SPEC_NUM", "I", array=[1]),
        ]
        if grating:
            cols.append(fits.Column("TG_M", "I", array=[-1]))
        hdu = fits.BinTableHDU.from_columns(cols)
        for key in ("HDUCLASS", "HDUCLAS1", "EXPOSURE", "INSTRUME", "TELESCOP", "OBJECT"):
            hdu.header[key] = header[key]
        hdu.header["BACKSCAL"] = header["BACKSCAL"]
    hdu.header.update(
        EXTNAME="SPECTRUM", HDUCLAS3="TYPE:II", AREASCAL=1.0, BACKFILE="none",
        RESPFILE=str(sherpa_data / "3c273.rmf"), ANCRFILE=str(sherpa_data / "3c273.arf"),
    )  # fmt: skip
    path = tmp_path / "one.pha2"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    theirs = _sherpa(io.read_pha, str(path))
    assert isinstance(theirs, DataPHA)  # one spectrum: Sherpa gives it, not a list
    assert_same_pha(read_spectrum(path).pha, theirs)
    if grating:
        with pytest.raises(SpectrumError, match="grating spectrum"):
            load_spectrum(path)
    else:
        assert load_spectrum(path).net_counts() > 0


def _table_copy(source: Path, path: Path, *, drop=(), add=(), header=None) -> Path:
    """Copy a PHA's SPECTRUM block with columns dropped or added and keywords changed."""
    with fits.open(source) as hdus:
        spec = hdus["SPECTRUM"]
        cols = [
            fits.Column(name=c.name, format=c.format, unit=c.unit, array=spec.data[c.name])
            for c in spec.columns
            if c.name not in drop
        ]
        cols += list(add)
        new = fits.BinTableHDU.from_columns(cols, header=spec.header.copy())
        for key in ("RESPFILE", "ANCRFILE", "BACKFILE"):
            value = str(new.header.get(key, "none")).strip()
            if value.lower() != "none":
                new.header[key] = os.fspath(source.parent / value)
        for key, value in (header or {}).items():
            if value is None:
                new.header.remove(key, ignore_missing=True)
            else:
                new.header[key] = value
        fits.HDUList([fits.PrimaryHDU(), new]).writeto(path)
    return path


def test_rate_and_scaling_columns(tmp_path: Path, pha_3c273: Path) -> None:
    with fits.open(pha_3c273) as hdus:
        data = hdus["SPECTRUM"].data
        exposure = hdus["SPECTRUM"].header["EXPOSURE"]
        rate = data["COUNTS"] / exposure
        stat_err = data["STAT_ERR"] / exposure
    rng = np.random.default_rng(3)
    backscal = rng.uniform(1e-6, 3e-6, 1024)
    areascal = rng.uniform(0.9, 1.0, 1024)
    add = [
        fits.Column("RATE", "D", array=rate),
        fits.Column("STAT_ERR", "D", array=stat_err),
        fits.Column("SYS_ERR", "E", array=np.full(1024, 0.02, dtype=np.float32)),
        fits.Column("BACKSCAL", "D", array=backscal),
        fits.Column("AREASCAL", "E", array=areascal.astype(np.float32)),
    ]
    path = _table_copy(
        pha_3c273,
        tmp_path / "rate.pi",
        drop=("COUNTS", "STAT_ERR"),
        add=add,
        header={"BACKSCAL": None, "AREASCAL": None},
    )
    for use_errors in (False, True):
        ours = read_spectrum(path, use_errors=use_errors).pha
        theirs = _sherpa(io.read_pha, str(path), use_errors=use_errors)
        assert_same_pha(ours, theirs)
    np.testing.assert_allclose(ours.counts, rate * exposure)
    assert ours.staterror is not None and ours.syserror is not None
    spec = load_spectrum(path)
    assert spec.net_counts() > 0 and isinstance(spec.pha.backscal, np.ndarray)
    # the old one-line error when neither COUNTS nor RATE is there
    none = _table_copy(pha_3c273, tmp_path / "none.pi", drop=("COUNTS",))
    with pytest.raises(SpectrumFileError, match="no COUNTS or RATE column"):
        load_spectrum(none)


def _fixed_width_rmf(source: DataRMF, path: Path, *, offset: int) -> Path:
    """The RMF as fixed-width columns, channels numbered from ``offset``, two MATRIX blocks."""
    n_grp = np.asarray(source.n_grp, dtype=np.int16)
    n_rows, width = len(n_grp), int(max(1, n_grp.max()))
    f_chan = np.zeros((n_rows, width), np.int32)
    n_chan = np.zeros((n_rows, width), np.int32)
    per_row = np.zeros(n_rows, np.int64)
    g = 0
    for r, ng in enumerate(n_grp):
        f_chan[r, :ng] = source.f_chan[g : g + ng] - source.offset + offset
        n_chan[r, :ng] = source.n_chan[g : g + ng]
        per_row[r] = n_chan[r, :ng].sum()
        g += ng
    matrix = np.zeros((n_rows, int(per_row.max())), np.float32)
    starts = np.concatenate([[0], np.cumsum(per_row)[:-1]])
    for r in range(n_rows):
        matrix[r, : per_row[r]] = source.matrix[starts[r] : starts[r] + per_row[r]]
    cols = [
        fits.Column("ENERG_LO", "E", unit="keV", array=source.energ_lo),
        fits.Column("ENERG_HI", "E", unit="keV", array=source.energ_hi),
        fits.Column("N_GRP", "I", array=n_grp),
        fits.Column("F_CHAN", f"{width}J", array=f_chan),
        fits.Column("N_CHAN", f"{width}J", array=n_chan),
        fits.Column("MATRIX", f"{matrix.shape[1]}E", array=matrix),
    ]
    blocks = []
    for extver in (1, 2):
        hdu = fits.BinTableHDU.from_columns(cols)
        hdu.header.update(
            EXTNAME="SPECRESP MATRIX", EXTVER=extver, HDUCLASS="OGIP", HDUCLAS1="RESPONSE",
            HDUCLAS2="RSP_MATRIX", DETCHANS=source.detchans, TELESCOP="CHANDRA",
            INSTRUME="ACIS", CHANTYPE="PI", TLMIN4=offset,
        )  # fmt: skip
        blocks.append(hdu)
    ebounds = fits.BinTableHDU.from_columns(
        [
            fits.Column("CHANNEL", "J", array=np.arange(source.detchans) + offset),
            fits.Column("E_MIN", "E", array=source.e_min),
            fits.Column("E_MAX", "E", array=source.e_max),
        ]
    )
    ebounds.header.update(EXTNAME="EBOUNDS", HDUCLASS="OGIP", HDUCLAS2="EBOUNDS")
    fits.HDUList([fits.PrimaryHDU(), *blocks, ebounds]).writeto(path)
    return path


@pytest.mark.parametrize("offset", [0, 1])
def test_rmf_with_fixed_columns_several_blocks_and_an_offset(
    sherpa_data: Path, tmp_path: Path, offset: int, caplog
) -> None:
    source = _sherpa(io.read_rmf, str(sherpa_data / "3c273.rmf"))
    path = _fixed_width_rmf(source, tmp_path / "fixed.rmf", offset=offset)
    with caplog.at_level(logging.WARNING, logger="sherpa_latent.reader"):
        ours = read_rmf(path)
    assert "2 MATRIX blocks" in caplog.text
    assert_same_rmf(ours, _sherpa(io.read_rmf, str(path)))
    assert ours.offset == offset
    np.testing.assert_array_equal(ours.matrix, source.matrix.astype(np.float32))
    x = np.linspace(1.0, 2.0, len(ours.energ_lo))
    np.testing.assert_allclose(ours.apply_rmf(x), source.apply_rmf(x), rtol=1e-6)


def test_rmf_with_one_group_per_row_in_scalar_columns(tmp_path: Path) -> None:
    n = 64
    edges = np.linspace(0.3, 8.0, n + 1)
    cols = [
        fits.Column("ENERG_LO", "E", array=edges[:-1]),
        fits.Column("ENERG_HI", "E", array=edges[1:]),
        fits.Column("N_GRP", "J", array=np.ones(n, np.int32)),
        fits.Column("F_CHAN", "J", array=np.arange(1, n + 1)),
        fits.Column("N_CHAN", "J", array=np.ones(n, np.int32)),
        fits.Column("MATRIX", "E", array=np.full(n, 0.9, np.float32)),
    ]
    matrix = fits.BinTableHDU.from_columns(cols)
    matrix.header.update(EXTNAME="MATRIX", DETCHANS=n, TLMIN4=1)
    ebounds = fits.BinTableHDU.from_columns(
        [
            fits.Column("CHANNEL", "J", array=np.arange(1, n + 1)),
            fits.Column("E_MIN", "E", array=edges[:-1]),
            fits.Column("E_MAX", "E", array=edges[1:]),
        ]
    )
    ebounds.header["EXTNAME"] = "EBOUNDS"
    path = tmp_path / "delta.rmf"
    fits.HDUList([fits.PrimaryHDU(), matrix, ebounds]).writeto(path)
    assert_same_rmf(read_rmf(path), _sherpa(io.read_rmf, str(path)))


def test_files_that_are_not_what_they_should_be(sherpa_data: Path, tmp_path: Path) -> None:
    with pytest.raises(SpectrumFileError, match="could not be read as an RMF: no MATRIX block"):
        read_rmf(sherpa_data / "3c273.arf")
    with pytest.raises(SpectrumFileError, match="could not be read as an ARF"):
        read_arf(sherpa_data / "3c273.pi")
    with pytest.raises(SpectrumFileError, match="file not found"):
        read_arf(tmp_path / "nope.arf")
    truncated = tmp_path / "cut.rmf"
    data = (sherpa_data / "3c273.rmf").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(SpectrumFileError) as info:
        read_rmf(truncated)
    assert "truncated" in str(info.value) and "\n" not in str(info.value)


def test_header_cards_parse_as_astropy_reads_them() -> None:
    cards = [
        "SIMPLE  =                    T",
        "OBJECT  = 'O''Brien field'     / quotes inside",
        "BLANKS  = '   lead and trail   '",
        "EMPTY   = ''",
        "NUM     =              1.5D+02 / D exponent",
        "INT     =                  -42",
        "FLAG    =                    F",
        "UNDEF   =                      / no value",
        "CPLX    = (1.0, -2.5)",
        "HIERARCH ESO DET CHIP = 'ccd3'",
        "LONG    = 'a long string that goes on and on and on and on and on and on &'",
        "CONTINUE  'and ends here'",
        "COMMENT   this is no keyword",
        "OBJECT  = 'second'",
        "END",
    ]
    block = "".join(c.ljust(80) for c in cards).ljust(2880).encode("ascii")
    ours = parse_header(block)
    theirs = fits.Header.fromstring(block.decode("ascii"))
    for key in ("OBJECT", "BLANKS", "EMPTY", "NUM", "INT", "FLAG", "CPLX", "LONG"):
        assert ours[key] == theirs[key] and type(ours[key]) is type(theirs[key]), key
    assert ours["ESO DET CHIP"] == "ccd3"
    assert ours["UNDEF"] is None and "COMMENT" not in ours
    assert ours["OBJECT"] == "O'Brien field"  # the first of a repeated keyword


# --- an ARF on another energy grid than its RMF -------------------------------------------
def _write_arf(path: Path, lo: np.ndarray, hi: np.ndarray, area: np.ndarray, like: Path) -> Path:
    with fits.open(like) as hdus:
        header = hdus["SPECRESP"].header.copy()
    cols = [
        fits.Column("ENERG_LO", "E", unit="keV", array=lo),
        fits.Column("ENERG_HI", "E", unit="keV", array=hi),
        fits.Column("SPECRESP", "E", unit="cm**2", array=area),
    ]
    hdu = fits.BinTableHDU.from_columns(cols, header=header)
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return path


def _pair(sherpa_data: Path, tmp_path: Path, kind: str) -> Path:
    """3C 273 with its ARF rewritten on a finer (half-width) or coarser (double) grid."""
    arf = _sherpa(io.read_arf, str(sherpa_data / "3c273.arf"))
    lo, hi = np.asarray(arf.energ_lo), np.asarray(arf.energ_hi)
    area = np.asarray(arf.specresp)
    if kind == "finer":
        mid = 0.5 * (lo + hi)
        new_lo = np.column_stack([lo, mid]).ravel()
        new_hi = np.column_stack([mid, hi]).ravel()
        centre = 0.5 * (new_lo + new_hi)
        new_area = np.interp(centre, 0.5 * (lo + hi), area)  # varies inside an RMF bin
    else:
        n = len(lo) // 2 * 2
        new_lo, new_hi = lo[:n:2], hi[1:n:2]
        new_area = area[:n].reshape(-1, 2).mean(axis=1)
    _write_arf(tmp_path / f"{kind}.arf", new_lo, new_hi, new_area, sherpa_data / "3c273.arf")
    for name in ("3c273.rmf", "3c273_bg.pi"):
        shutil.copy(sherpa_data / name, tmp_path / name)
    return write_modified_pha(
        tmp_path / f"{kind}.pi",
        sherpa_data / "3c273.pi",
        header={"ANCRFILE": f"{kind}.arf", "RESPFILE": "3c273.rmf", "BACKFILE": "3c273_bg.pi"},
    )


def _sherpa_folded_on_input_grid(pha: DataPHA, model, rep) -> np.ndarray:
    pha.ungroup()
    pha.notice()
    counts = pha.eval_model_to_fit(Response1D(pha)(model))
    e_min, e_max = np.asarray(pha.get_rmf().e_min), np.asarray(pha.get_rmf().e_max)
    idx = channel_bin_index(e_min, e_max, rep.input_grid.edges)
    return np.bincount(idx[idx >= 0], counts[idx >= 0], rep.input_grid.nbins)


def _powerlaw(name: str = "pl") -> PowLaw1D:
    model = PowLaw1D(name)
    model.gamma, model.ampl = 1.7, 2e-3
    return model


def _fit(pha: DataPHA) -> tuple[float, float]:
    pha.ungroup()
    pha.notice()
    pha.notice(0.5, 7.0)
    model = _powerlaw("fit")
    fit = Fit(pha, Response1D(pha)(model), stat=Cash(), method=LevMar())
    with SherpaVerbosity("ERROR"):
        result = fit.fit()
    assert result.succeeded
    return model.gamma.val, model.ampl.val


def test_arf_on_a_finer_grid_loads_represents_and_fits_as_in_sherpa(
    sherpa_data: Path, tmp_path: Path
) -> None:
    path = _pair(sherpa_data, tmp_path, "finer")
    spec = load_spectrum(path)
    theirs = _sherpa(io.read_pha, str(path))  # Sherpa's own reading of the same pair
    assert len(spec.pha.get_arf().energ_lo) == 2 * len(spec.pha.get_rmf().energ_lo)
    assert_same_pha(spec.pha, theirs)
    assert not spec.warnings

    rep = spec.representation()
    model = _powerlaw()
    ours = rep.expected_counts(model(rep.model_grid.lo, rep.model_grid.hi))
    reference = _sherpa_folded_on_input_grid(theirs, model, rep)
    big = reference > 100
    assert big.sum() >= 10
    rel = np.abs(ours[big] / reference[big] - 1)
    assert rel.max() < 0.01, f"worst bin off by {rel.max():.2%}"

    # A Sherpa fit of the data set read by the reader is Sherpa's fit of its own reading.
    np.testing.assert_allclose(_fit(spec.pha), _fit(theirs), rtol=1e-6)


def test_arf_on_a_coarser_grid_loads_and_represents_as_sherpa_would_fold_it(
    sherpa_data: Path, tmp_path: Path
) -> None:
    path = _pair(sherpa_data, tmp_path, "coarser")
    spec = load_spectrum(path)
    theirs = _sherpa(io.read_pha, str(path))
    assert_same_pha(spec.pha, theirs)
    assert any("fewer than the 1090 of the RMF" in w for w in spec.warnings)

    # Sherpa's folding refuses an ARF coarser than the RMF, whoever read the files.
    for pha in (spec.pha, theirs):
        with pytest.raises(TypeError, match="Mismatched filter between ARF and RMF"):
            pha.eval_model_to_fit(Response1D(pha)(_powerlaw()))

    # The representation folds the coarse ARF as constant over each of its bins: the same
    # as Sherpa folding that ARF written out on the RMF's grid.
    coarse = spec.pha.get_arf()
    rmf = spec.pha.get_rmf()
    on_rmf = np.repeat(np.asarray(coarse.specresp), 2)
    on_rmf = np.concatenate([on_rmf, np.zeros(len(rmf.energ_lo) - len(on_rmf))])
    np.testing.assert_allclose(arf_on_rmf_grid(coarse, rmf), on_rmf, rtol=1e-5, atol=1e-9)
    rep = spec.representation()
    model = _powerlaw()
    ours = rep.expected_counts(model(rep.model_grid.lo, rep.model_grid.hi))
    theirs.set_arf(DataARF("on rmf grid", rmf.energ_lo, rmf.energ_hi, on_rmf))
    reference = _sherpa_folded_on_input_grid(theirs, model, rep)
    big = reference > 100
    rel = np.abs(ours[big] / reference[big] - 1)
    assert big.sum() >= 10 and rel.max() < 0.01, f"worst bin off by {rel.max():.2%}"
    # and the same data set, with that ARF, fits in Sherpa
    gamma, _ = _fit(theirs)
    assert 1.0 < gamma < 3.0


def test_arf_that_misses_the_rmf_grid_is_refused(sherpa_data: Path, tmp_path: Path) -> None:
    lo = np.linspace(20.0, 30.0, 11)
    _write_arf(tmp_path / "far.arf", lo[:-1], lo[1:], np.ones(10), sherpa_data / "3c273.arf")
    path = write_modified_pha(
        tmp_path / "far.pi", sherpa_data / "3c273.pi", header={"ANCRFILE": "far.arf"}
    )
    with pytest.raises(SpectrumError, match="does not overlap the RMF's energy grid"):
        load_spectrum(path)


# --- the folder of real spectra, when it is here ------------------------------------------
def test_every_shared_spectrum_reads_as_in_sherpa(shared_chandra: Path) -> None:
    files = sorted(shared_chandra.glob("*.pi"))
    assert files
    for path in files:
        theirs = _sherpa(io.read_pha, str(path))
        assert_same_pha(read_pha_block(path).pha, theirs, responses=False)
        if theirs.get_rmf() is not None:
            ours = read_spectrum(path)
            assert_same_pha(ours.pha, theirs)
            named = str(read_pha_block(path).files["BACKFILE"] or "none").lower() != "none"
            if named and not theirs.background_ids:
                assert ours.warnings, path  # a BACKFILE named but missing (12845.pi)
    responses = sorted(shared_chandra.glob("**/*rmf*")) + sorted(shared_chandra.glob("**/*.wrmf"))
    for path in {p for p in responses if p.is_file()} | {shared_chandra / "rmf.fits"}:
        assert_same_rmf(read_rmf(path), _sherpa(io.read_rmf, str(path)))
    arfs = sorted(shared_chandra.glob("**/*arf*")) + [shared_chandra / "arf.fits"]
    for path in {p for p in arfs if p.is_file()}:
        assert_same_arf(read_arf(path), _sherpa(io.read_arf, str(path)))


# --- issue 12: names that are not files, keywords that are not numbers, damaged gzip -------
def test_names_that_are_not_files_say_so(sherpa_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "a_folder"
    folder.mkdir()
    with pytest.raises(SpectrumFileError, match=r"a_folder: is a directory, not a file"):
        read_rmf(folder)
    with pytest.raises(SpectrumFileError, match=r"^empty file name"):
        read_arf("")
    with pytest.raises(SpectrumFileError, match=r"is a directory, not a file"):
        read_spectrum(tmp_path)


def test_keywords_that_are_not_numbers(tmp_path: Path, pha_3c273: Path) -> None:
    text = write_modified_pha(tmp_path / "text.pi", pha_3c273, header={"BACKSCAL": "wide"})
    with pytest.raises(SpectrumError) as info:
        read_pha_block(text)
    assert str(info.value) == f"{text}: BACKSCAL is not a number ('wide')"
    logical = write_modified_pha(tmp_path / "logical.pi", pha_3c273, header={"EXPOSURE": True})
    with pytest.raises(SpectrumError, match="EXPOSURE is a logical value"):
        read_pha_block(logical)
    # a number written as text is read as the number (Sherpa would keep the text)
    numeric = write_modified_pha(tmp_path / "num.pi", pha_3c273, header={"EXPOSURE": "38564.6"})
    assert read_pha_block(numeric).pha.exposure == pytest.approx(38564.6)
    assert load_spectrum(numeric).exposure == pytest.approx(38564.6)


def test_damaged_gzip_names_the_file(sherpa_data: Path, tmp_path: Path) -> None:
    data = gzip.compress((sherpa_data / "3c273.rmf").read_bytes())
    cut = tmp_path / "cut.rmf.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SpectrumFileError) as info:
        read_rmf(cut)
    assert str(info.value) == (
        f"{cut}: damaged gzip file: it ends before its compressed data does (truncated)"
    )
    flipped = bytearray(data)
    for i in range(300, 340):
        flipped[i] ^= 0xFF
    bad = tmp_path / "bad.rmf.gz"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(SpectrumFileError, match=r"bad.rmf.gz: damaged gzip file: .*corrupt"):
        read_rmf(bad)
