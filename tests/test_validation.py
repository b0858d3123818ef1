"""Issue 12, no confident wrong answer from a bad file: every case the tester found.

Each damaged copy of 3C 273 (spectrum, ARF, RMF, background) is refused with one line naming
the file that is wrong, through the API (:func:`sherpa_latent.load_spectrum`), through
``sherpa-latent report`` (non-zero exit status) and through the session commands; the cases
an astronomer still wants answered (no ARF, odd but legal grouping, no TELESCOP) give a
report with a warning. The helpers that write damaged files are shared with
``tests/test_fuzz.py``.
"""

from __future__ import annotations

import gzip
import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import SHERPA_DATA, run_cli, write_modified_pha
from sherpa.astro import io as sherpa_io
from sherpa.astro.data import DataRMF
from sherpa.utils.err import SherpaErr

from sherpa_latent import load_spectrum, spectrum_from_pha
from sherpa_latent.errors import SpectrumError, SpectrumFileError
from sherpa_latent.reader import read_background, read_rmf, read_spectrum
from sherpa_latent.validation import check_spectrum

SRC = SHERPA_DATA / "3c273.pi"
ARF = SHERPA_DATA / "3c273.arf"
RMF = SHERPA_DATA / "3c273.rmf"
BKG = SHERPA_DATA / "3c273_bg.pi"
NCHAN = 1024


# --- damaged copies ------------------------------------------------------------------------
def write_arf(
    path: Path,
    *,
    specresp: Callable[[np.ndarray], np.ndarray] | None = None,
    energ_lo: Callable[[np.ndarray], np.ndarray] | None = None,
    energ_hi: Callable[[np.ndarray], np.ndarray] | None = None,
    header: dict | None = None,
) -> Path:
    """A copy of 3c273.arf with columns passed through functions and keywords changed."""
    with fits.open(ARF) as hdus:
        block = hdus["SPECRESP"]
        for name, change in (
            ("SPECRESP", specresp),
            ("ENERG_LO", energ_lo),
            ("ENERG_HI", energ_hi),
        ):
            if change is not None:
                block.data[name] = change(np.array(block.data[name], dtype=np.float64))
        for key, value in (header or {}).items():
            if value is None:
                block.header.remove(key, ignore_missing=True)
            else:
                block.header[key] = value
        hdus.writeto(path)
    return path


@cache
def _rmf_arrays() -> dict:
    rmf = read_rmf(RMF)
    names = ("energ_lo", "energ_hi", "n_grp", "f_chan", "n_chan", "matrix", "e_min", "e_max")
    return {
        "arrays": {n: np.array(getattr(rmf, n)) for n in names},
        "detchans": int(rmf.detchans),
        "offset": int(rmf.offset),
        "header": dict(rmf.header),
    }


def write_rmf(path: Path, header: dict | None = None, **changes: Callable) -> Path:
    """A copy of 3c273.rmf, written by Sherpa, with arrays passed through functions.

    ``changes`` maps an array of the RMF (``matrix``, ``energ_lo``, ``e_min``, ...) to a
    function of its values.
    """
    base = _rmf_arrays()
    arrays = {k: v.copy() for k, v in base["arrays"].items()}
    for name, change in changes.items():
        arrays[name] = np.asarray(change(arrays[name]))
    keywords = {**base["header"], **(header or {})}
    keywords = {k: v for k, v in keywords.items() if v is not None}  # None: left out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Sherpa warns of the damage it is asked to write
        rmf = DataRMF(
            "rmf", base["detchans"], arrays["energ_lo"], arrays["energ_hi"], arrays["n_grp"],
            arrays["f_chan"], arrays["n_chan"], arrays["matrix"], offset=base["offset"],
            e_min=arrays["e_min"], e_max=arrays["e_max"], header=keywords,
        )  # fmt: skip
    sherpa_io.write_rmf(str(path), rmf, clobber=True)
    return path


def write_background(path: Path, **kwargs) -> Path:
    """A copy of 3c273_bg.pi changed as :func:`conftest.write_modified_pha` changes spectra."""
    return write_modified_pha(path, BKG, **kwargs)


def set_columns(path: Path, columns: dict[str, tuple[str, np.ndarray]], drop=()) -> Path:
    """Rewrite the SPECTRUM block of ``path`` with columns replaced or added, keywords dropped.

    ``columns`` maps a name to (FITS format, values).
    """
    with fits.open(path) as hdus:
        spec = hdus["SPECTRUM"]
        cols = [
            fits.Column(name=c.name, format=c.format, unit=c.unit, array=spec.data[c.name])
            for c in spec.columns
            if c.name not in columns
        ]
        cols += [fits.Column(name=n, format=f, array=a) for n, (f, a) in columns.items()]
        new = fits.BinTableHDU.from_columns(cols, header=spec.header.copy())
        for key in drop:
            new.header.remove(key, ignore_missing=True)
        others = [h.copy() for h in hdus[2:]]
    fits.HDUList([fits.PrimaryHDU(), new, *others]).writeto(path, overwrite=True)
    return path


def gzip_corrupt(path: Path, source: Path) -> Path:
    """A gzip copy of ``source`` with bytes of its compressed stream flipped."""
    data = bytearray(gzip.compress(source.read_bytes()))
    for i in range(200, 400):
        data[i] ^= 0x55
    path.write_bytes(bytes(data))
    return path


def source(folder: Path, name: str = "src.pi", **kwargs) -> Path:
    """A copy of 3c273.pi in ``folder`` (responses and background by absolute path)."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_modified_pha(folder / name, SRC, **kwargs)


# --- the cases -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One damaged input: how to make it, the file a refusal must name, what it must say.

    ``make(folder)`` returns (the spectrum to load, the file to be named). ``session`` is
    False where Sherpa's own ``load_pha`` refuses the files, so the session commands are
    never reached; ``session_says`` replaces ``says`` where Sherpa reads the value
    differently.
    """

    id: str
    make: Callable[[Path], tuple[Path, Path | str]]
    says: str
    session: bool = True
    session_says: str | None = None


def _src(**kwargs) -> Callable[[Path], tuple[Path, Path]]:
    def make(folder: Path) -> tuple[Path, Path]:
        path = source(folder, **kwargs)
        return path, path

    return make


def _with_column(name: str, fmt: str, values: np.ndarray, drop=()) -> Callable:
    def make(folder: Path) -> tuple[Path, Path]:
        path = set_columns(source(folder), {name: (fmt, values)}, drop=drop)
        return path, path

    return make


def _with_background(**kwargs) -> Callable:
    def make(folder: Path) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        bkg = write_background(folder / "bkg.pi", **kwargs)
        return source(folder, header={"BACKFILE": str(bkg)}), bkg

    return make


def _with_background_named_by_source(**kwargs) -> Callable:
    """A background that only fails beside its spectrum: the spectrum is named."""

    def make(folder: Path) -> tuple[Path, Path]:
        path, _ = _with_background(**kwargs)(folder)
        return path, path

    return make


def _with_arf(**kwargs) -> Callable:
    def make(folder: Path) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        arf = write_arf(folder / "bad.arf", **kwargs)
        return source(folder, header={"ANCRFILE": str(arf)}), arf

    return make


def _with_rmf(**kwargs) -> Callable:
    def make(folder: Path) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        rmf = write_rmf(folder / "bad.rmf", **kwargs)
        return source(folder, header={"RESPFILE": str(rmf)}), rmf

    return make


def _without_telescop(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rmf = write_rmf(folder / "plain.rmf", header={"TELESCOP": None})
    arf = write_arf(folder / "plain.arf", header={"TELESCOP": None})
    header = {"RESPFILE": str(rmf), "ANCRFILE": str(arf), "BACKFILE": "none", "TELESCOP": None}
    path = source(folder, header=header)
    return path, path


def _corrupt_gzip(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    path = gzip_corrupt(folder / "src.pi.gz", source(folder / "plain"))
    return path, path


def _corrupt_gzip_rmf(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rmf = gzip_corrupt(folder / "bad.rmf.gz", RMF)
    return source(folder, header={"RESPFILE": str(rmf)}), rmf


def _directory(folder: Path) -> tuple[Path, Path]:
    path = folder / "a_folder.pi"
    path.mkdir(parents=True)
    return path, path


def _background_channels(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    bkg = write_background(folder / "bkg.pi", nrows=512)
    path = source(folder, header={"BACKFILE": str(bkg)})
    return path, path


def _nan_at(index: int) -> Callable[[np.ndarray], np.ndarray]:
    def change(values: np.ndarray) -> np.ndarray:
        out = np.array(values, dtype=np.float64)
        out[index] = np.nan
        return out

    return change


_ZEROS_SOMEWHERE = np.where(np.arange(NCHAN) % 100 == 7, 0.0, 2.5e-6)
_ODD_GROUPING = np.where(np.arange(NCHAN) % 50 == 3, 2, 1).astype(np.int16)
_ODD_QUALITY = np.where(np.arange(NCHAN) % 64 == 9, 7, 0).astype(np.int16)

REFUSED = [
    Case("backscal-zero", _src(header={"BACKSCAL": 0.0}), "BACKSCAL is 0; it must be more than 0"),
    Case("backscal-negative", _src(header={"BACKSCAL": -1.0}), "BACKSCAL is -1; it must be more"),
    Case(
        "backscal-column-with-zeros",
        _with_column("BACKSCAL", "D", _ZEROS_SOMEWHERE, drop=("BACKSCAL",)),
        "BACKSCAL column is 0 or less in 11 channels",
    ),
    Case("areascal-zero", _src(header={"AREASCAL": 0.0}), "AREASCAL is 0; it must be more than 0"),
    Case("areascal-minus-one", _src(header={"AREASCAL": -1.0}), "AREASCAL is -1; it must be"),
    Case(
        "areascal-1e6",
        _src(header={"AREASCAL": 1e6}),
        "AREASCAL is 1e+06; an ACIS spectrum has it in (0, 10]",
    ),
    Case(
        "background-backscal-zero",
        _with_background(header={"BACKSCAL": 0.0}),
        "background BACKSCAL is 0; it must be more than 0",
    ),
    Case(
        "background-exposure-zero",
        _with_background(header={"EXPOSURE": 0.0}),
        "background EXPOSURE is 0 s; it must be more than 0",
    ),
    Case(
        "background-counts-nan",
        _with_background(counts=np.where(np.arange(NCHAN) == 40, np.nan, 1.0)),
        "background 1 NaN or infinite values in the COUNTS column",
    ),
    Case(
        "background-channels",
        _background_channels,
        "background bkg.pi has 512 channels but the spectrum has 1024",
        session=False,  # Sherpa's load_pha refuses the pair itself
    ),
    Case(
        "arf-all-zero",
        _with_arf(specresp=np.zeros_like),
        "ARF SPECRESP is zero everywhere: no effective area",
    ),
    Case("arf-nan", _with_arf(specresp=_nan_at(300)), "ARF SPECRESP has 1 NaN or infinite values"),
    Case("arf-negative", _with_arf(specresp=lambda a: -a), "ARF SPECRESP is negative in"),
    Case(
        "arf-energies-decreasing",
        _with_arf(energ_lo=lambda e: e[::-1], energ_hi=lambda e: e[::-1]),
        "ARF energy grid is not increasing",
    ),
    Case(
        "rmf-all-zero",
        _with_rmf(matrix=np.zeros_like),
        "RMF MATRIX is zero everywhere: no photon reaches a channel",
    ),
    Case(
        "rmf-nan",
        _with_rmf(matrix=lambda m: np.full_like(m, np.nan)),
        "RMF MATRIX has 61834 NaN or infinite values",
    ),
    Case("rmf-one-nan", _with_rmf(matrix=_nan_at(1000)), "RMF MATRIX has 1 NaN or infinite"),
    Case("rmf-negative", _with_rmf(matrix=lambda m: -m), "RMF MATRIX has negative values"),
    Case(
        "rmf-energies-decreasing",
        _with_rmf(energ_lo=lambda e: e[::-1], energ_hi=lambda e: e[::-1]),
        "RMF energy grid is not increasing",
    ),
    Case(
        "rmf-ebounds-nan",
        _with_rmf(e_min=_nan_at(5)),
        "RMF EBOUNDS channel grid holds NaN or infinite values",
    ),
    Case(
        "rmf-scaled-by-1000",
        _with_rmf(matrix=lambda m: m * 1000.0),
        "RMF MATRIX rows sum to 1e+03 on average, but beside an ARF they must sum to about 1",
    ),
    Case(
        "rmf-ebounds-in-ev",
        _with_rmf(e_min=lambda e: e * 1e3, e_max=lambda e: e * 1e3),
        "RMF EBOUNDS channels reach 1.5e+04 but its energy grid 11: they are not in the same",
    ),
    Case(
        "background-scale-absurd",
        _with_background_named_by_source(header={"BACKSCAL": 1e-12}),
        "background bkg.pi is scaled by 2.53e+06 to the source region",
    ),
    Case(
        "rmf-for-xmm",
        _with_rmf(header={"TELESCOP": "XMM"}),
        "RMF made for XMM, not Chandra",
    ),
    Case(
        "rmf-corrupt-gzip",
        _corrupt_gzip_rmf,
        "damaged gzip file",
        session=False,  # Sherpa's load_pha fails on the RMF itself
    ),
    Case(
        "telescop-xmm",
        _src(header={"TELESCOP": "XMM", "INSTRUME": "EPN"}),
        "not a Chandra spectrum (TELESCOP = 'XMM', INSTRUME = 'EPN')",
    ),
    Case(
        "telescop-swift",
        _src(header={"TELESCOP": "SWIFT", "INSTRUME": "XRT"}),
        "not a Chandra spectrum (TELESCOP = 'SWIFT', INSTRUME = 'XRT')",
    ),
    Case(
        "instrume-not-acis",
        _src(header={"INSTRUME": "EPIC"}),
        "not an ACIS spectrum (INSTRUME = 'EPIC')",
    ),
    Case(
        "grouping-outside-ogip",
        _with_column("GROUPING", "I", _ODD_GROUPING),
        "GROUPING has values other than 1, -1 and 0 in 21 channels (e.g. 2)",
    ),
    Case(
        "quality-unknown",
        _with_column("QUALITY", "I", _ODD_QUALITY),
        "QUALITY has flags Sherpa does not know in 16 channels (e.g. 7)",
    ),
    Case("exposure-text", _src(header={"EXPOSURE": "abc"}), "EXPOSURE is not a number ('abc')"),
    Case(
        "exposure-nan",
        _src(header={"EXPOSURE": "NaN"}),
        "EXPOSURE is nan (not a finite number)",
        session_says="EXPOSURE is not a number ('NaN')",
    ),
    Case("exposure-zero", _src(header={"EXPOSURE": 0.0}), "EXPOSURE is 0 s; it must be more"),
    Case(
        "counts-1e12",
        _src(counts=np.full(NCHAN, 1e9)),
        "1.02e+12 counts, more than the 1e+08 an ACIS spectrum can hold",
    ),
    Case(
        "counts-negative",
        _src(counts=np.where(np.arange(NCHAN) == 99, -5, 3).astype(np.int32)),
        "negative counts in 1 channels",
    ),
    Case("corrupt-gzip", _corrupt_gzip, "damaged gzip file", session=False),
    Case("directory", _directory, "is a directory, not a file", session=False),
]

WARNED = [
    Case(
        "ancrfile-none",
        _src(header={"ANCRFILE": "none"}),
        "no ARF (ANCRFILE = none) and the RMF 3c273.rmf holds no effective area",
    ),
    Case(
        "grouping-starts-with-minus-one",
        _with_column("GROUPING", "I", np.where(np.arange(NCHAN) % 10 == 5, 1, -1).astype(np.int16)),
        "GROUPING starts with -1",
    ),
    Case(
        "grouping-mixes-zero",
        _with_column("GROUPING", "I", np.where(np.arange(NCHAN) < 100, 0, 1).astype(np.int16)),
        "GROUPING mixes 0 (no grouping) in 100 channels",
    ),
    Case(
        "no-telescop",  # Sherpa takes TELESCOP from the responses or background
        _without_telescop,
        "no TELESCOP keyword: taken to be Chandra",
    ),
]


def _check_message(message: str, named: Path | str, says: str) -> None:
    assert "\n" not in message, message
    assert message.startswith(f"{named}: "), (named, message)
    assert says in message, (says, message)
    assert "Error:" not in message and "Traceback" not in message, message


# --- through the API -----------------------------------------------------------------------
@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
def test_refused_through_the_api(case: Case, tmp_path: Path) -> None:
    path, named = case.make(tmp_path / case.id)
    with pytest.raises((SpectrumError, SpectrumFileError)) as info:
        load_spectrum(path)
    assert isinstance(info.value, SherpaErr)
    _check_message(str(info.value), named, case.says)


@pytest.mark.parametrize("case", WARNED, ids=[c.id for c in WARNED])
def test_answered_with_a_warning_through_the_api(case: Case, tmp_path: Path) -> None:
    path, _ = case.make(tmp_path / case.id)
    spec = load_spectrum(path)
    assert any(case.says in w for w in spec.warnings), spec.warnings
    assert np.isfinite(spec.net_counts()) and spec.net_counts() > 0


def test_empty_file_name_says_so() -> None:
    for name in ("", "  "):
        with pytest.raises(SpectrumFileError) as info:
            load_spectrum(name)
        assert str(info.value).startswith("empty file name")


def test_good_spectra_give_no_warning() -> None:
    for name in ("3c273.pi", "acisf04938_000N002_r0043_pha3.fits"):
        assert load_spectrum(SHERPA_DATA / name).warnings == []


def test_old_responses_that_say_cxc_are_chandra(tmp_path: Path) -> None:
    rmf = write_rmf(tmp_path / "cxc.rmf", header={"TELESCOP": "CXC"})
    path = source(tmp_path, header={"RESPFILE": str(rmf), "TELESCOP": "AXAF"})
    assert load_spectrum(path).net_counts() > 0


def test_the_same_checks_for_a_spectrum_made_in_memory() -> None:
    """spectrum_from_pha (the session's way in) refuses what load_spectrum refuses."""
    pha = read_spectrum(SRC).pha
    assert check_spectrum(str(SRC), pha) == []
    pha.exposure = -3.0
    with pytest.raises(SpectrumError, match="EXPOSURE is -3 s"):
        spectrum_from_pha(pha, str(SRC))
    pha.exposure = 1e4
    pha.get_background().backscal = np.zeros(NCHAN)
    with pytest.raises(SpectrumError, match=r"3c273_bg.pi: background BACKSCAL column is 0"):
        spectrum_from_pha(pha, str(SRC))


# --- through sherpa-latent report -----------------------------------------------------------
def test_refused_through_the_command_line(tmp_path: Path) -> None:
    made = {case.id: case.make(tmp_path / case.id) for case in REFUSED}
    files = [str(SRC)] + [str(path) for path, _ in made.values()]
    proc = run_cli("report", "--json", "--no-fit", "--no-latent", "verbose=0", *files)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["FILE"] for r in rows] == files
    assert rows[0]["ERROR"] == "" and rows[0]["NET_COUNTS"] > 500
    stderr = proc.stderr.strip().splitlines()
    assert len(stderr) == len(REFUSED)
    for case, row, line in zip(REFUSED, rows[1:], stderr, strict=True):
        _, named = made[case.id]
        _check_message(row["ERROR"], named, case.says)
        assert line == f"sherpa-latent: {row['ERROR']}"


def test_empty_name_through_the_command_line() -> None:
    proc = run_cli("report", "--no-fit", "--no-latent", "")
    assert proc.returncode != 0
    assert "empty file name" in proc.stderr and "Traceback" not in proc.stderr


def test_warned_through_the_command_line(tmp_path: Path) -> None:
    made = {case.id: case.make(tmp_path / case.id) for case in WARNED}
    proc = run_cli(
        "report", "--json", "--no-fit", "--no-latent", *(str(p) for p, _ in made.values())
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    for case, row in zip(WARNED, rows, strict=True):
        assert case.says in row["WARNINGS"], (case.id, row["WARNINGS"])
    text = run_cli("report", "--no-fit", "--no-latent", str(made["ancrfile-none"][0]))
    assert text.returncode == 0 and "warning     no ARF (ANCRFILE = none)" in text.stdout


# --- through the session commands -----------------------------------------------------------
SESSION_CASES = [c for c in REFUSED if c.session]


def _session_commands():
    import sherpa_latent.ui as slui

    return {
        "encode": slui.encode,
        "get_latent": slui.get_latent,
        "get_spectrum": slui.get_spectrum,
        "hardness_ratios": slui.hardness_ratios,
        "fit_classical": slui.fit_classical,
        "estimate_nh": slui.estimate_nh,
        "latent_report": lambda: slui.latent_report(classical=False),
    }


@pytest.mark.parametrize("case", SESSION_CASES, ids=[c.id for c in SESSION_CASES])
def test_refused_through_the_session(case: Case, tmp_path: Path, session) -> None:
    from sherpa.astro import ui

    path, named = case.make(tmp_path / case.id)
    ui.load_pha(str(path))
    for name, command in _session_commands().items():
        with pytest.raises(SpectrumError) as info:
            command()
        assert name and str(info.value)
        _check_message(str(info.value), named, case.session_says or case.says)


def test_background_channels_through_the_session(tmp_path: Path, session) -> None:
    """Sherpa will not attach such a background, but a data set assembled by hand can have it."""
    from sherpa.astro import ui

    import sherpa_latent.ui as slui

    ui.load_pha(str(SRC))
    short = read_background(write_background(tmp_path / "bkg.pi", nrows=130))
    ui.get_data()._backgrounds[1] = short
    for command in (slui.encode, slui.get_spectrum, lambda: slui.latent_report(classical=False)):
        with pytest.raises(SpectrumError) as info:
            command()
        _check_message(str(info.value), SRC, "background bkg.pi has 130 channels")


def test_session_commands_raise_no_bare_numpy_error(session, monkeypatch) -> None:
    """What validation does not foresee still reaches the user as a SpectrumError."""
    from sherpa.astro import ui

    import sherpa_latent.ui as slui

    ui.load_pha(str(SRC))

    def broken(*args, **kwargs):
        raise ValueError("could not broadcast input array from shape (130,) into shape (213,)")

    monkeypatch.setattr(slui, "_hardness_ratios", broken)
    with pytest.raises(SpectrumError) as info:
        slui.hardness_ratios()
    _check_message(str(info.value), SRC, "hardness ratios failed: could not broadcast")
    assert isinstance(info.value.__cause__, ValueError)  # kept for whoever debugs it


def test_warned_through_the_session(tmp_path: Path, session, caplog) -> None:
    from sherpa.astro import ui

    import sherpa_latent.ui as slui

    path, _ = WARNED[0].make(tmp_path / "ancr")
    ui.load_pha("noarf", str(path))
    ui.load_pha("good", str(SRC))
    with caplog.at_level(logging.WARNING, logger="sherpa_latent.ui"):
        slui.encode("noarf")
    assert f"{path}: no ARF (ANCRFILE = none)" in caplog.text
    table = slui.latent_report(["noarf", "good"], classical=False)
    assert "no ARF (ANCRFILE = none)" in table["WARNINGS"][0]
    assert table["WARNINGS"][1] == ""
