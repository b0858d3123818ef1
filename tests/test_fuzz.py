"""Generated malformed inputs (issue 12): no confident wrong answer from a bad file.

Hypothesis mutates keywords, columns and bytes of the 3C 273 spectrum, its ARF, RMF and
background (the damaged copies go to a temporary folder) and checks the contract of
:func:`sherpa_latent.report.report_file` (``classical=False``) and, on the same files, of
:func:`sherpa_latent.load_spectrum`:

- either a valid report (finite exposure and net counts, hardness ratios in [-1, 1], JSON
  that serialises), or an error row whose message is ONE line naming one of the files, in
  the user's words (no bare Python exception name), from Sherpa's own exception classes;
- never an uncaught exception;
- for the kinds of damage that must be refused (see ``sherpa_latent/validation.py``), never a
  report, and the message names the file at fault.

Profiles, chosen by the environment variable ``SHERPA_LATENT_FUZZ``:

- ``ci`` (the default, what ``bash scripts/test.sh`` runs): about 650 cases in all,
  derandomized (the same cases every run), well under two minutes on two cores;
- ``long``: 20 times as many cases, a new random draw each run::

      SHERPA_LATENT_FUZZ=long .venv/bin/python -m pytest -m fuzz tests/test_fuzz.py

Every test here carries the ``fuzz`` marker, so ``-m fuzz`` runs only these and
``-m "not fuzz"`` leaves them out. No case runs the classical fit; the network runs in a
handful only (the small untrained one of ``conftest.py``).
"""

from __future__ import annotations

import builtins
import gzip
import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import write_modified_pha
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sherpa.utils.err import SherpaErr
from test_validation import (
    ARF,
    BKG,
    RMF,
    SRC,
    _rmf_arrays,
    set_columns,
    write_arf,
    write_background,
    write_rmf,
)

from sherpa_latent import load_spectrum
from sherpa_latent.report import SpectrumReport, report_file
from sherpa_latent.validation import (
    AREASCAL_MAX,
    CHANDRA_NAMES,
    MAX_ARF_AREA,
    MAX_EXPOSURE,
    MAX_TOTAL_COUNTS,
    QUALITY_FLAGS,
    RMF_ROW_SUM_MIN,
    RSP_ROW_SUM,
)

pytestmark = pytest.mark.fuzz

PROFILE = os.environ.get("SHERPA_LATENT_FUZZ", "ci")
_COMMON = dict(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("ci", derandomize=True, **_COMMON)
settings.register_profile("long", derandomize=False, **_COMMON)
if PROFILE not in ("ci", "long"):
    raise ValueError(f"SHERPA_LATENT_FUZZ is {PROFILE!r}; use 'ci' or 'long'")
settings.load_profile(PROFILE)
SCALE = 20 if PROFILE == "long" else 1
CI_CASES = 500
"""Cases the ci profile must run in all (checked by the last test)."""

RAN: dict[str, int] = {}
NCHAN = 1024
COUNTS = fits.getdata(SRC, "SPECTRUM")["COUNTS"].astype(np.float64)
_E_MIN, _E_MAX = (fits.getdata(RMF, "EBOUNDS")[k].astype(np.float64) for k in ("E_MIN", "E_MAX"))
IN_BAND = (0.5 * (_E_MIN + _E_MAX) >= 0.5) & (0.5 * (_E_MIN + _E_MAX) < 7.0)
BUILTIN_ERRORS = sorted(
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
)


# --- the contract -----------------------------------------------------------------------------
@dataclass
class Expect:
    """What a case must give: ``refuse`` (naming one of ``blame``) or anything valid."""

    files: list[Path]
    refuse: bool = False
    blame: list[Path] = field(default_factory=list)


def _count(name: str) -> None:
    RAN[name] = RAN.get(name, 0) + 1


def _check_line(message: str, files: Iterable[Path]) -> None:
    assert message and "\n" not in message, repr(message)
    assert any(str(f) in message for f in files), message
    for name in (*BUILTIN_ERRORS, "error"):
        assert f"{name}: " not in message, message  # no bare Python exception
    assert "Traceback" not in message, message


def _check_report(report: SpectrumReport) -> None:
    assert isinstance(report, SpectrumReport)
    assert math.isfinite(report.exposure) and report.exposure > 0
    assert math.isfinite(report.net_counts)
    for key in ("hr_hm", "hr_hs", "hr_ms"):
        value = getattr(report.hardness, key)
        for v in (value.mode, value.lo, value.hi):
            assert math.isfinite(v) and -1.0 <= v <= 1.0, (key, value)
    json.dumps(report.to_dict())
    assert all("\n" not in w for w in report.warnings)


def check_contract(path: Path, expect: Expect, *, direct: bool = True, encoder=None) -> None:
    """Run ``load_spectrum`` and ``report_file`` on ``path`` and hold them to the contract."""
    files = [*expect.files, SRC, ARF, RMF, BKG]
    blame = expect.blame or expect.files
    if direct:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Sherpa warns of odd grids as it reads them
                load_spectrum(path)
        except SherpaErr as exc:
            _check_line(str(exc), files)
        else:
            assert not expect.refuse, f"{path} loaded; it must be refused (naming {blame})"
    out = report_file(path, classical=False, encoder=encoder)
    if isinstance(out, dict):
        assert set(out) == {"file", "error"} and out["file"] == str(path)
        _check_line(out["error"], files)
        if expect.refuse:
            assert any(out["error"].startswith(f"{f}: ") for f in blame), (blame, out["error"])
    else:
        assert not expect.refuse, f"{path} reported; it must be refused (naming {blame})"
        _check_report(out)
        if encoder is not None:
            assert out.latent is not None and np.all(np.isfinite(out.latent.z))


# --- values -----------------------------------------------------------------------------------
ODD_NUMBERS = st.sampled_from(
    [0.0, -0.0, -1.0, -1e-300, 1e-300, 1e-12, 1e-6, 0.5, 1.0, 2.0, 10.0, 10.5, 1e6, 1e9, 1e12]
)
NUMBERS = st.one_of(
    ODD_NUMBERS,
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(10**15), 10**15),
)
ODD_TEXT = st.sampled_from(["", " ", "abc", "NaN", "inf", "-inf", "1e400", "0", "-5", "1e5", "T"])
TEXT = st.one_of(
    ODD_TEXT,
    st.sampled_from(["CHANDRA", "chandra", "CXC", "AXAF", "XMM", "SWIFT", "ACIS", "HRC-I", "none"]),
    st.text(
        st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="'"), max_size=12
    ),
)
VALUES = st.one_of(NUMBERS, TEXT, st.booleans(), st.none())


def _as_number(value) -> float | None:
    """A header value as the reader takes a number (None: not a number)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value.strip())
    except ValueError:
        return None


def _header_text(value) -> str:
    text = "" if value is None else str(value).strip().upper()
    return "" if text == "NONE" else text


def keyword_refused(key: str, value, *, background: bool = False) -> bool:
    """Does this keyword value alone make the file refused?"""
    if key == "TG_M":
        return True
    if key in ("TELESCOP", "INSTRUME"):
        text = _header_text(value)
        if background or not text:
            return False
        if key == "TELESCOP":
            return text not in CHANDRA_NAMES
        return not text.startswith("ACIS")
    if key not in ("EXPOSURE", "BACKSCAL", "AREASCAL"):
        return False
    if value is None:
        return key == "EXPOSURE"
    number = _as_number(value)
    if number is None or not math.isfinite(number) or number <= 0:
        return True
    upper = {"EXPOSURE": MAX_EXPOSURE, "AREASCAL": AREASCAL_MAX}.get(key)
    return upper is not None and number > upper


def counts_refused(counts: np.ndarray) -> bool:
    """Must a spectrum (or background) with these counts be refused?"""
    return (
        not np.all(np.isfinite(counts))
        or bool(np.any(counts < 0))
        or float(counts.sum()) > MAX_TOTAL_COUNTS
    )


# --- mutations of the spectrum's keywords -----------------------------------------------------
SOURCE_KEYS = st.sampled_from(
    ["EXPOSURE", "BACKSCAL", "AREASCAL", "TELESCOP", "INSTRUME", "ANCRFILE", "RESPFILE",
     "BACKFILE", "TG_M", "CORRSCAL", "POISSERR", "HDUCLAS2"]
)  # fmt: skip


@settings(max_examples=140 * SCALE)
@given(st.dictionaries(SOURCE_KEYS, VALUES, min_size=1, max_size=3))
def test_source_keywords(base: Path, changes: dict) -> None:
    _count("source keywords")
    with tempfile.TemporaryDirectory(dir=base) as folder:
        header = dict(changes)
        if "TG_M" in header and header["TG_M"] is None:
            header["TG_M"] = 1
        path = write_modified_pha(Path(folder) / "src.pi", SRC, header=header)
        refuse = any(keyword_refused(k, v) for k, v in header.items())
        check_contract(path, Expect([path], refuse=refuse))


# --- mutations of the spectrum's columns ------------------------------------------------------
COUNT_OPS = st.one_of(
    st.tuples(st.just("scale"), st.sampled_from([0, 1e-3, 0.5, 2, 1e3, 2e5, 1e7, 1e12, -1])),
    st.tuples(
        st.just("set"),
        st.integers(0, NCHAN - 1),
        st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 0.0, 2.5, 1e15]),
    ),
    st.tuples(st.just("band"), st.sampled_from([0.0, 1.0])),
)


def apply_counts(op: tuple, counts: np.ndarray = COUNTS) -> np.ndarray:
    out = np.array(counts, dtype=np.float64)
    if op[0] == "scale":
        out *= op[1]
    elif op[0] == "set":
        out[op[1]] = op[2]
    else:  # every count in 0.5-7 keV set to a value
        out[IN_BAND] = op[1]
    return out


FLAGS = st.lists(st.tuples(st.integers(0, NCHAN - 1), st.integers(-3, 9)), min_size=1, max_size=6)
SCALINGS = st.sampled_from([0.0, -1.0, 1e-9, 1e-6, 0.5, 1.0, 9.0, 11.0, 1e6, np.nan, np.inf])


@settings(max_examples=140 * SCALE)
@given(
    st.one_of(
        st.tuples(st.just("counts"), COUNT_OPS),
        st.tuples(st.just("GROUPING"), FLAGS),
        st.tuples(st.just("QUALITY"), FLAGS),
        st.tuples(st.just("CHANNEL"), st.sampled_from(["reverse", "shift", "repeat"])),
        st.tuples(st.sampled_from(["BACKSCAL", "AREASCAL"]), st.lists(SCALINGS, min_size=1)),
    )
)
def test_source_columns(base: Path, change: tuple) -> None:
    _count("source columns")
    kind, how = change
    with tempfile.TemporaryDirectory(dir=base) as folder:
        path = Path(folder) / "src.pi"
        if kind == "counts":
            counts = apply_counts(how)
            write_modified_pha(path, SRC, counts=counts)
            in_band = float(counts[IN_BAND].sum()) if np.all(np.isfinite(counts)) else 1.0
            refuse = counts_refused(counts) or in_band <= 0
            return check_contract(path, Expect([path], refuse=refuse))
        write_modified_pha(path, SRC)
        if kind in ("GROUPING", "QUALITY"):
            flags = fits.getdata(SRC, "SPECTRUM")[kind].astype(np.int16)
            for index, value in how:
                flags[index] = value
            set_columns(path, {kind: ("I", flags)})
            known = (-1, 0, 1) if kind == "GROUPING" else QUALITY_FLAGS
            refuse = bool(np.any(~np.isin(flags, known)))
        elif kind == "CHANNEL":
            channel = np.arange(1, NCHAN + 1)
            channel = {"reverse": channel[::-1], "shift": channel + 7, "repeat": channel // 2}[how]
            set_columns(path, {"CHANNEL": ("J", channel)})
            refuse = True  # not increasing, or numbered unlike the background
        else:
            values = np.resize(np.asarray(how, dtype=np.float64), NCHAN)
            set_columns(path, {kind: ("D", values)}, drop=(kind,))
            upper = AREASCAL_MAX if kind == "AREASCAL" else np.inf
            refuse = not (
                np.all(np.isfinite(values)) and values.min() > 0 and values.max() <= upper
            )
        check_contract(path, Expect([path], refuse=refuse))


# --- mutations of the background --------------------------------------------------------------
@settings(max_examples=90 * SCALE)
@given(
    st.one_of(
        st.tuples(
            st.just("keywords"),
            st.dictionaries(
                st.sampled_from(["EXPOSURE", "BACKSCAL", "AREASCAL", "TELESCOP"]),
                VALUES,
                min_size=1,
            ),
        ),
        st.tuples(st.just("counts"), COUNT_OPS),
        st.tuples(st.just("rows"), st.integers(1, NCHAN - 1)),
    )
)
def test_background(base: Path, change: tuple) -> None:
    _count("background")
    kind, how = change
    with tempfile.TemporaryDirectory(dir=base) as folder:
        bkg = Path(folder) / "bkg.pi"
        if kind == "keywords":
            write_background(bkg, header=how)
            refuse = any(keyword_refused(k, v, background=True) for k, v in how.items())
            blame = [bkg]
        elif kind == "counts":
            bkg_counts = apply_counts(how, fits.getdata(BKG, "SPECTRUM")["COUNTS"])
            write_background(bkg, counts=bkg_counts)
            refuse, blame = counts_refused(bkg_counts), [bkg]
        else:
            write_background(bkg, nrows=how)
            refuse, blame = True, []  # the spectrum is named, with the background's name
        path = write_modified_pha(Path(folder) / "src.pi", SRC, header={"BACKFILE": str(bkg)})
        check_contract(path, Expect([path, bkg], refuse=refuse, blame=blame or [path]))


# --- mutations of the ARF and the RMF ---------------------------------------------------------
ARRAY_OPS = st.one_of(
    st.tuples(st.just("scale"), st.sampled_from([0.0, -1.0, 1e-3, 0.1, 0.5, 2.0, 10.0, 1e3, 1e6])),
    st.tuples(
        st.just("set"), st.integers(0, 1089), st.sampled_from([np.nan, np.inf, -1.0, 0.0, 1e9])
    ),
)
GRID_OPS = st.sampled_from(["reverse", "kev-to-ev", "shift-up", "swap", "none"])


def apply_array(op: tuple, values: np.ndarray) -> np.ndarray:
    out = np.array(values, dtype=np.float64)
    if op[0] == "scale":
        out *= op[1]
    else:
        out[op[1] % out.size] = op[2]
    return out


def apply_grid(op: str, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if op == "reverse":
        return lo[::-1].copy(), hi[::-1].copy()
    if op == "kev-to-ev":
        return lo * 1e3, hi * 1e3
    if op == "shift-up":
        return lo + 50.0, hi + 50.0
    if op == "swap":
        return hi.copy(), lo.copy()
    return lo, hi


@settings(max_examples=80 * SCALE)
@given(ARRAY_OPS, GRID_OPS)
def test_arf(base: Path, area_op: tuple, grid_op: str) -> None:
    _count("arf")
    with tempfile.TemporaryDirectory(dir=base) as folder:
        area = apply_array(area_op, fits.getdata(ARF, "SPECRESP")["SPECRESP"])
        lo, hi = (
            fits.getdata(ARF, "SPECRESP")[k].astype(np.float64) for k in ("ENERG_LO", "ENERG_HI")
        )
        lo, hi = apply_grid(grid_op, lo, hi)
        arf = write_arf(
            Path(folder) / "x.arf",
            specresp=lambda _: area,
            energ_lo=lambda _: lo,
            energ_hi=lambda _: hi,
        )
        path = write_modified_pha(Path(folder) / "src.pi", SRC, header={"ANCRFILE": str(arf)})
        refuse = (
            not np.all(np.isfinite(area))
            or area.min() < 0
            or area.max() <= 0
            or area.max() > MAX_ARF_AREA
            or grid_op != "none"
        )
        check_contract(path, Expect([path, arf], refuse=refuse, blame=[arf, path]))


@settings(max_examples=80 * SCALE)
@given(
    ARRAY_OPS,
    st.sampled_from(["energ", "e_"]),
    GRID_OPS,
    st.sampled_from([None, "CHANDRA", "XMM", "none"]),
)
def test_rmf(base: Path, matrix_op: tuple, which: str, grid_op: str, telescope) -> None:
    _count("rmf")
    with tempfile.TemporaryDirectory(dir=base) as folder:
        changes: dict[str, Callable] = {"matrix": lambda m: apply_array(matrix_op, m)}
        if grid_op != "none":
            lo_name, hi_name = ("energ_lo", "energ_hi") if which == "energ" else ("e_min", "e_max")
            grids: dict[str, np.ndarray] = {}

            def grid(values: np.ndarray, name: str) -> np.ndarray:
                if not grids:
                    base_lo, base_hi = _rmf_grid(lo_name), _rmf_grid(hi_name)
                    grids[lo_name], grids[hi_name] = apply_grid(grid_op, base_lo, base_hi)
                return grids[name]

            changes[lo_name] = lambda v: grid(v, lo_name)
            changes[hi_name] = lambda v: grid(v, hi_name)
        header = {} if telescope is None else {"TELESCOP": telescope}
        rmf = write_rmf(Path(folder) / "x.rmf", header=header, **changes)
        path = write_modified_pha(Path(folder) / "src.pi", SRC, header={"RESPFILE": str(rmf)})
        arrays = _rmf_arrays()["arrays"]
        matrix = apply_array(matrix_op, arrays["matrix"])
        sound = bool(np.all(np.isfinite(matrix)) and matrix.min() >= 0)
        row_sum = float(matrix.sum()) / arrays["energ_lo"].size if sound else np.nan
        refuse = (
            not sound
            or not RMF_ROW_SUM_MIN <= row_sum <= RSP_ROW_SUM
            or grid_op != "none"
            or telescope == "XMM"
        )
        check_contract(path, Expect([path, rmf], refuse=refuse, blame=[rmf, path]))


def _rmf_grid(name: str) -> np.ndarray:
    return _rmf_arrays()["arrays"][name].astype(np.float64)


# --- mutations of bytes -----------------------------------------------------------------------
@settings(max_examples=150 * SCALE)
@given(
    st.sampled_from(["src", "arf", "rmf", "bkg"]),
    st.booleans(),
    st.one_of(
        st.tuples(
            st.just("flip"),
            st.lists(
                st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                min_size=1,
                max_size=8,
            ),
        ),
        st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
        st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=64)),
    ),
)
def test_bytes(base: Path, target: str, gzipped: bool, op: tuple) -> None:
    _count("bytes")
    with tempfile.TemporaryDirectory(dir=base) as folder:
        original = {"src": SRC, "arf": ARF, "rmf": RMF, "bkg": BKG}[target]
        data = original.read_bytes()
        if target == "src":
            data = write_modified_pha(Path(folder) / "plain.pi", SRC).read_bytes()
        if gzipped:
            data = gzip.compress(data, mtime=0)
        data = bytearray(data)
        if op[0] == "flip":
            for where, mask in op[1]:
                data[int(where * len(data))] ^= mask
        elif op[0] == "truncate":
            del data[int(op[1] * len(data)) :]
        else:
            at = int(op[1] * len(data))
            data[at:at] = op[2]
        name = {"src": "src.pi", "arf": "x.arf", "rmf": "x.rmf", "bkg": "bkg.pi"}[target]
        damaged = Path(folder) / (name + (".gz" if gzipped else ""))
        damaged.write_bytes(bytes(data))
        if target == "src":
            path = damaged
        else:
            key = {"arf": "ANCRFILE", "rmf": "RESPFILE", "bkg": "BACKFILE"}[target]
            header = {key: str(damaged)}
            path = write_modified_pha(Path(folder) / "src.pi", SRC, header=header)
        check_contract(path, Expect([path, damaged]))


# --- a few with the network -------------------------------------------------------------------
@settings(max_examples=12 * SCALE)
@given(
    st.one_of(
        st.tuples(
            st.just("keywords"), st.dictionaries(SOURCE_KEYS, VALUES, min_size=1, max_size=2)
        ),
        st.tuples(st.just("counts"), COUNT_OPS),
    )
)
def test_with_the_network(base: Path, encoder, change: tuple) -> None:
    _count("with the network")
    kind, how = change
    with tempfile.TemporaryDirectory(dir=base) as folder:
        target = Path(folder) / "src.pi"
        if kind == "keywords":
            header = {k: (1 if k == "TG_M" else v) for k, v in how.items()}
            path = write_modified_pha(target, SRC, header=header)
            refuse = any(keyword_refused(k, v) for k, v in header.items())
        else:
            counts = apply_counts(how)
            path = write_modified_pha(target, SRC, counts=counts)
            in_band = float(counts[IN_BAND].sum()) if np.all(np.isfinite(counts)) else 1.0
            refuse = counts_refused(counts) or in_band <= 0
        check_contract(path, Expect([path], refuse=refuse), direct=False, encoder=encoder)


# --- fixtures and the count -------------------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A folder for the damaged copies (each case makes and removes its own subfolder)."""
    folder = tmp_path_factory.mktemp("fuzz")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def encoder(small_network: Path):
    from sherpa_latent.inference import load_encoder

    return load_encoder(small_network, device="cpu")


def test_enough_cases_ran(request) -> None:
    """The ci profile runs at least CI_CASES generated cases when the whole module runs."""
    here = [i for i in request.session.items if i.module is request.module]
    if PROFILE != "ci":
        pytest.skip(f"the count is checked for the ci profile (this is {PROFILE!r})")
    if len(here) < 8:
        pytest.skip("only part of the fuzz module was selected")
    total = sum(RAN.values())
    print(f"fuzz cases: {total} ({RAN})")
    assert total >= CI_CASES, RAN
