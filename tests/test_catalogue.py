"""The catalogue run: response cache, progress file, and ``sherpa-latent encode`` over 2,001
files (one corrupt) that is killed part way and run again (issue 4, points 4 and 6).

A small untrained network made here stands in for the shipped one: what is tested is the
bookkeeping (one row per file, resumption, identical results), not the science.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from conftest import complete_batches, kill_after_batches, make_small_network

from sherpa_latent import load_spectrum
from sherpa_latent.catalogue import (
    ProgressFile,
    ProgressMismatch,
    ResponseCache,
    load_for_encoding,
    progress_path,
)
from sherpa_latent.regionfile import region_label

N_FILES = 2000
BATCH = 100


def write_simulated_spectra(folder: Path, sherpa_data: Path, n: int, seed: int = 1) -> list[Path]:
    """PHA type I files: Poisson counts of power laws folded through the 3C 273 response.

    Every file names the 3C 273 ARF and RMF by absolute path; OBJECT, OBS_ID (one per 50
    files), RA_TARG/DEC_TARG, exposure and the power law change from file to file.
    """
    from sherpa.astro import io

    folder.mkdir(parents=True, exist_ok=True)
    arf_path, rmf_path = sherpa_data / "3c273.arf", sherpa_data / "3c273.rmf"
    arf, rmf = io.read_arf(str(arf_path)), io.read_rmf(str(rmf_path))
    lo, hi = np.asarray(arf.energ_lo), np.asarray(arf.energ_hi)
    area = np.asarray(arf.specresp)
    templates = []
    for gamma in (0.8, 1.4, 1.9, 2.4, 3.0):
        photons = 1e-3 * (hi ** (1 - gamma) - lo ** (1 - gamma)) / (1 - gamma)
        templates.append(rmf.apply_rmf(photons * area))  # counts per second
    rng = np.random.default_rng(seed)
    columns = [
        fits.Column("CHANNEL", "J", array=np.arange(1, 1025, dtype=np.int32)),
        fits.Column("COUNTS", "J", unit="count", array=np.zeros(1024, np.int32)),
    ]
    hdu = fits.BinTableHDU.from_columns(columns)
    fixed = {
        "EXTNAME": "SPECTRUM", "HDUCLASS": "OGIP", "HDUCLAS1": "SPECTRUM",
        "HDUCLAS2": "TOTAL", "HDUCLAS3": "COUNT", "HDUVERS": "1.2.1", "TELESCOP": "CHANDRA",
        "INSTRUME": "ACIS", "CHANTYPE": "PI", "DETCHANS": 1024, "POISSERR": True,
        "BACKSCAL": 1.0, "AREASCAL": 1.0, "CORRSCAL": 0.0, "BACKFILE": "none",
        "CORRFILE": "none", "RESPFILE": str(rmf_path), "ANCRFILE": str(arf_path),
    }  # fmt: skip
    for key, value in fixed.items():
        hdu.header[key] = value
    paths = []
    for i in range(n):
        exposure = float(rng.uniform(2e3, 5e4))
        mu = templates[i % len(templates)] * exposure * 10 ** rng.uniform(-1.5, 0.5)
        hdu.data["COUNTS"][:] = rng.poisson(mu)
        hdu.header["EXPOSURE"] = exposure
        hdu.header["OBJECT"] = f"SIM J{i:04d}"
        hdu.header["OBS_ID"] = str(20000 + i // 50)
        hdu.header["RA_TARG"] = float(rng.uniform(0, 360))
        hdu.header["DEC_TARG"] = float(np.degrees(np.arcsin(rng.uniform(-1, 1))))
        path = folder / f"sim{i:04d}.pi"
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> Path:
    return make_small_network(tmp_path_factory.mktemp("network"))


def _cli(*args: str, **kwargs) -> subprocess.Popen | subprocess.CompletedProcess:
    command = [sys.executable, "-m", "sherpa_latent.cli", *args]
    if kwargs.pop("background", False):
        return subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: the kill reaches the workers
            **kwargs,
        )
    return subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)


# --- the response cache ------------------------------------------------------------------
def test_cached_representation_equals_the_spectrum_own(sherpa_data: Path, tmp_path: Path):
    """Cache hits give what Spectrum.representation gives (response as float32)."""
    sims = write_simulated_spectra(tmp_path, sherpa_data, 2)
    cache = ResponseCache()
    for path in [sherpa_data / "3c273.pi", *sims, sherpa_data / "3c273.pi"]:
        with cache.reading():
            spec = load_spectrum(path)
        got = cache.representation(spec)
        want = spec.representation()
        for name in ("counts", "background", "effective_area"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
        assert got.response.dtype == np.float32
        np.testing.assert_array_equal(got.response, want.response.astype(np.float32))
        assert got.exposure == want.exposure
    assert (cache.misses, cache.hits) == (1, 3)  # one ARF+RMF content, four spectra
    assert spec.background_counts is not None  # 3C 273 has a background: it is covered


def test_reading_reuses_response_objects_and_restores_sherpa(sherpa_data: Path) -> None:
    from sherpa.astro import io

    before = io.read_rmf, io.read_arf
    cache = ResponseCache()
    with cache.reading():
        first = load_spectrum(sherpa_data / "3c273.pi")
        second = load_spectrum(sherpa_data / "3c273cp.pi")
    assert first.pha.get_rmf() is second.pha.get_rmf()
    assert first.pha.get_arf() is second.pha.get_arf()
    assert (io.read_rmf, io.read_arf) == before
    third = load_spectrum(sherpa_data / "3c273.pi")
    assert third.pha.get_rmf() is not first.pha.get_rmf()


def test_load_for_encoding_gives_an_error_row_for_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pi"
    bad.write_bytes(b"SIMPLE  = T" + b" " * 100)
    loaded = load_for_encoding(str(bad))
    assert loaded.representation is None and str(bad) in loaded.error
    assert "\n" not in loaded.error


# --- the progress file ----------------------------------------------------------------
def test_progress_file_drops_a_cut_line_and_refuses_another_run(tmp_path: Path) -> None:
    path = progress_path(tmp_path / "out.fits")
    assert path.name == "out.fits.partial.jsonl"
    progress = ProgressFile(path, {"netsha": "abc", "batch_size": 2})
    assert progress.read() == {}
    rows = [{"FILE": "a.pi", "ERROR": "", "Z": [0.1, float("nan")]}, {"FILE": "b", "ERROR": "x"}]
    progress.append(0, rows)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"batch": 1, "rows": [{"FILE": "c.pi", "ER')  # killed mid-write
    again = ProgressFile(path, {"netsha": "abc", "batch_size": 2})
    done = again.read()
    assert set(done) == {"a.pi", "b"} and np.isnan(done["a.pi"]["Z"][1])
    assert path.read_text().endswith("\n")  # the cut line is gone before anything is added
    again.append(1, [{"FILE": "c.pi", "ERROR": ""}])
    assert set(ProgressFile(path, {"netsha": "abc", "batch_size": 2}).read()) == {
        "a.pi",
        "b",
        "c.pi",
    }
    other = ProgressFile(path, {"netsha": "def", "batch_size": 2})
    with pytest.raises(ProgressMismatch, match="another run"):
        other.read()
    assert other.read(restart=True) == {}
    assert json.loads(path.read_text().splitlines()[0])["netsha"] == "def"


# --- the catalogue run (issue 4, points 4 and 6) --------------------------------------
@pytest.fixture(scope="module")
def catalogue_files(tmp_path_factory, sherpa_data: Path) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("catalogue")
    paths = [str(p) for p in write_simulated_spectra(folder / "pha", sherpa_data, N_FILES)]
    corrupt = folder / "pha" / "corrupt.pi"
    data = Path(paths[0]).read_bytes()
    corrupt.write_bytes(data[: len(data) // 3])
    paths.insert(150, str(corrupt))  # in the second batch: recorded before the kill
    stack = folder / "spectra.lis"
    stack.write_text("# simulated spectra\n" + "\n".join(paths) + "\n")
    return stack, paths


def _values(column) -> np.ndarray:
    """A column's values, masked entries (empty strings read back from FITS) filled."""
    if hasattr(column, "filled"):
        column = column.filled("" if column.dtype.kind in "SU" else np.nan)
    values = np.asarray(column)
    return values.astype(str) if values.dtype.kind == "S" else values


def _assert_same_table(got: Table, want: Table) -> None:
    assert got.colnames == want.colnames
    for name in want.colnames:
        a, b = _values(got[name]), _values(want[name])
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert got[name].unit == want[name].unit, name
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(a, b, err_msg=name)  # NaN == NaN here
        else:
            assert np.array_equal(a, b), name


def test_encode_killed_part_way_resumes_to_the_same_table(
    catalogue_files, network: Path, tmp_path: Path
) -> None:
    from astropy.coordinates import SkyCoord
    from regions import Regions

    stack, paths = catalogue_files
    corrupt = paths[150]
    t0 = time.perf_counter()
    reference = tmp_path / "reference.fits"
    proc = _cli(
        "encode", f"@{stack}", "--output", str(reference), "--network", str(network),
        "--batch-size", str(BATCH),
    )  # fmt: skip
    t_reference = time.perf_counter() - t0
    assert proc.returncode == 1, proc.stderr  # 1: the corrupt file failed
    assert "Traceback" not in proc.stderr
    want = Table.read(reference)

    # The same run with two loading processes, killed (SIGKILL, workers too) part way.
    output, regions = tmp_path / "latents.fits", tmp_path / "latents.reg"
    progress = progress_path(output)
    args = [
        "encode", f"@{stack}", f"outfile={output}", f"network={network}",
        f"batch_size={BATCH}", "workers=2", f"regions={regions}",
    ]  # fmt: skip
    t0 = time.perf_counter()
    kill_after_batches(_cli(*args, background=True), progress, 4, timeout=300)
    assert not output.exists() and progress.exists()
    finished = complete_batches(progress)
    assert 4 <= finished < len(paths) // BATCH

    # A file finished before the kill is damaged now: a run that redid it would notice.
    Path(paths[10]).write_bytes(b"not a spectrum any more")
    proc = _cli(*args)
    t_interrupted = time.perf_counter() - t0
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    n_done = finished * BATCH - 1  # the corrupt file's error row is tried again
    assert f"{n_done} of {len(paths)} files done" in proc.stderr
    assert not progress.exists()
    got = Table.read(output)

    assert list(_values(got["FILE"])) == paths  # exactly one row per file, in the list's order
    errors = _values(got["ERROR"])
    assert [p for p, e in zip(paths, errors, strict=True) if e] == [corrupt]
    assert corrupt in errors[150] and "truncated" in errors[150]
    assert np.all(np.isfinite(np.asarray(got["Z"])[errors == ""]))
    _assert_same_table(got, want)
    assert got.meta["NETSHA"] == want.meta["NETSHA"]

    # Point 6: the region file reads back, one circle per spectrum with a position.
    parsed = Regions.read(str(regions), format="ds9")
    assert len(parsed) == N_FILES
    centres = SkyCoord([r.center for r in parsed])
    good = errors == ""
    np.testing.assert_allclose(centres.ra.deg, np.asarray(got["RA"])[good], atol=1e-7)
    np.testing.assert_allclose(centres.dec.deg, np.asarray(got["DEC"])[good], atol=1e-7)
    labels = [
        region_label(name, file, cluster)
        for name, file, cluster in zip(
            _values(got["OBJECT"])[good],
            _values(got["FILE"])[good],
            got["CLUSTER"][good],
            strict=True,
        )
    ]
    assert [r.meta["text"] for r in parsed] == labels  # "SIM J0001, sim0001.pi, cluster 2"
    assert labels[1] == f"SIM J0001, sim0001.pi, cluster {got['CLUSTER'][1]}"
    colours = {r.visual.get("edgecolor", r.visual.get("color")) for r in parsed}
    assert 1 <= len(colours) <= len(set(np.asarray(got["CLUSTER"])[good]))

    # The final output is never overwritten without clobber.
    again = _cli(*args)
    assert again.returncode == 1 and "clobber" in again.stderr
    assert not progress.exists()
    print(
        f"\n{len(paths)} files: uninterrupted run {t_reference:.1f} s (1 worker); killed and "
        f"resumed {t_interrupted:.1f} s (2 workers)"
    )


# --- issue 12: progress files that cannot be trusted, text FITS cannot hold ------------
def test_progress_mismatch_lives_in_errors() -> None:
    from sherpa.utils.err import IOErr

    from sherpa_latent import errors

    assert ProgressMismatch is errors.ProgressMismatch
    assert issubclass(ProgressMismatch, ValueError) and issubclass(ProgressMismatch, IOErr)


def test_progress_file_without_a_valid_header_is_moved_aside(tmp_path: Path) -> None:
    path = progress_path(tmp_path / "out.fits")
    lines = '{"batch":0,"rows":[{"FILE":"a.pi","ERROR":""}]}\n'  # a header lost in a race
    path.write_text(lines)
    notes: list[str] = []
    progress = ProgressFile(path, {"netsha": "abc", "batch_size": 2})
    assert progress.read(log=notes.append) == {}
    aside = path.with_name(path.name + ".invalid")
    assert aside.read_text() == lines
    assert len(notes) == 1 and "no valid header" in notes[0] and str(aside) in notes[0]
    assert json.loads(path.read_text())["netsha"] == "abc"  # a fresh header, nothing else
    for bad in ("not json at all\n", "[1, 2]\n", '{"format": "something else"}\n'):
        path.write_text(bad)
        assert ProgressFile(path, {"netsha": "abc", "batch_size": 2}).read() == {}
        assert aside.read_text() == bad


def test_progress_file_drops_lines_that_are_not_batches(tmp_path: Path) -> None:
    path = progress_path(tmp_path / "out.fits")
    progress = ProgressFile(path, {"netsha": "abc", "batch_size": 2})
    progress.read()
    progress.append(0, [{"FILE": "ü a.pi", "ERROR": ""}])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"rows": [{"no file": 1}]}\n')
        handle.write('{"batch": 2, "rows": [{"FILE": "c", "ERROR": ""}]}\n')
    done = ProgressFile(path, {"netsha": "abc", "batch_size": 2}).read()
    assert set(done) == {"ü a.pi"}  # the bad line and everything after it are done again
    assert len(path.read_text().splitlines()) == 2


def test_text_that_fits_cannot_hold_reads_back_exactly(tmp_path: Path) -> None:
    from astropy.table import Table

    from sherpa_latent.catalogue import read_table, write_table

    names = ["3c 273 ü.pi", "50% done.pi", "tab\there.pi", "bad\udcff.pi", "日本.pi", "plain.pi"]
    table = Table()
    table["FILE"] = names
    table["ERROR"] = ["", "50% of the counts", "", "", "", ""]  # ASCII: written as it is
    table["CSTAT"] = np.arange(6.0)
    out = tmp_path / "t.fits"
    write_table(table, out)
    assert list(table["FILE"]) == names and "PCTENC" not in table.meta  # not changed
    with fits.open(out) as hdus:
        raw = [str(v) for v in hdus[1].data["FILE"]]
        assert hdus[1].header["PCTENC"] == "FILE"
        assert str(hdus[1].data["ERROR"][1]) == "50% of the counts"
    assert all(v.isascii() and v.isprintable() for v in raw)
    assert raw[:3] == ["3c 273 %C3%BC.pi", "50%25 done.pi", "tab%09here.pi"]
    back = read_table(out)
    assert list(back["FILE"]) == names
    assert _values(back["ERROR"])[1] == "50% of the counts"
    assert "PCTENC" not in back.meta
    again = tmp_path / "again.fits"
    write_table(back, again)  # a table read back writes the same way
    assert list(read_table(again)["FILE"]) == names
