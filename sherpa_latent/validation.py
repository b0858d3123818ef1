"""What a Chandra ACIS imaging spectrum and its responses must look like, in one place.

Every way into the project (:func:`sherpa_latent.load_spectrum`, the session commands of
:mod:`sherpa_latent.ui` and the ``sherpa-latent`` command) passes through these checks, so
that a damaged or foreign file is refused with one line naming the file that is wrong (the
RMF when the RMF is broken, the background file when the background is) instead of giving
a confident wrong answer. What an astronomer would still want answered (no ARF, odd but
legal grouping, a missing TELESCOP) is answered with a warning that travels into the
report.

The checks work on Sherpa's own objects (``DataPHA``, ``DataARF``, ``DataRMF``), whoever
read them, and take file names from the objects' ``name``. :func:`keyword_number`,
:func:`column_numbers` and :func:`check_file_name` are for the reader, before a Sherpa
object exists.

What is refused:

- the file: an empty name, a directory;
- the spectrum: a grating, HRC or non-Chandra/non-ACIS spectrum; EXPOSURE missing, not a
  number, not finite, not positive or longer than :data:`MAX_EXPOSURE`; BACKSCAL or
  AREASCAL (keyword or column) not a number, not finite or not positive; AREASCAL above
  :data:`AREASCAL_MAX`; counts NaN, infinite, negative or more than
  :data:`MAX_TOTAL_COUNTS`; CHANNEL not increasing; GROUPING outside -1/0/1; QUALITY
  outside :data:`QUALITY_FLAGS`; no counts in 0.5-7 keV;
- the background (naming the background file): the same keyword and count checks; a
  number of channels other than the spectrum's and a scaling to the source region above
  :data:`MAX_BACKGROUND_SCALE` (naming the spectrum and the background);
- the ARF: SPECRESP NaN, infinite, negative, zero everywhere or above
  :data:`MAX_ARF_AREA`; an energy grid that is not increasing, misses 0.5-7 keV or
  misses the RMF's grid;
- the RMF: MATRIX NaN, infinite, negative or zero everywhere, or rows that do not sum to
  about 1 beside an ARF; energy grid or EBOUNDS not increasing, missing 0.5-7 keV or in
  other units than each other; channel groups outside its channels; a number of channels
  other than the spectrum's; a response made for another telescope.

Damage below this level (a corrupt gzip stream, variable-length array descriptors that
point outside the file) is refused by :mod:`sherpa_latent.reader` as it reads.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from typing import Any

import numpy as np

from .errors import SpectrumError, SpectrumFileError
from .grids import FIT_BAND

__all__ = [
    "MAX_IMAGING_CHANNELS",
    "MAX_TOTAL_COUNTS",
    "MAX_EXPOSURE",
    "AREASCAL_MAX",
    "MAX_ARF_AREA",
    "MAX_BACKGROUND_SCALE",
    "QUALITY_FLAGS",
    "CHANDRA_NAMES",
    "check_file_name",
    "keyword_number",
    "column_numbers",
    "check_instrument",
    "check_pha",
    "check_arf",
    "check_rmf",
    "check_spectrum",
]

MAX_IMAGING_CHANNELS = 2048
"""ACIS imaging spectra have 1024 PI channels; grating spectra have thousands."""

MAX_TOTAL_COUNTS = 1e8
"""Most counts a spectrum may hold. Pile-up keeps an ACIS source far below this (a few
million counts for the brightest); more means damaged counts, and the hardness ratios'
posterior would need memory in proportion."""

MAX_EXPOSURE = 1e9
"""Longest EXPOSURE accepted, s (about 30 years)."""

AREASCAL_MAX = 10.0
"""Largest AREASCAL accepted: ACIS spectra have 1 (or a per-channel factor near 1)."""

MAX_ARF_AREA = 1e4
"""Largest effective area accepted in an ARF, cm^2 (Chandra's HRMA + ACIS peak near 700)."""

QUALITY_FLAGS = (0, 1, 2, 5)
"""OGIP quality flags Sherpa knows: good, bad (software), dubious (software), bad (user)."""

RSP_ROW_SUM = 1.5
"""Mean RMF row sum above which the matrix carries the effective area (an RSP file)."""

RMF_ROW_SUM_MIN = 0.2
"""Least mean RMF row sum accepted beside an ARF (a normalised RMF sums to about 1)."""

MAX_BACKGROUND_SCALE = 1e3
"""Largest factor from background-region counts to the source region: BACKSCAL x EXPOSURE
x AREASCAL of the spectrum over the background's (a background region is normally larger
and the factor below 1)."""

CHANDRA_NAMES = ("CHANDRA", "CXC", "AXAF")
"""TELESCOP values that mean Chandra (old responses say CXC or AXAF)."""

_GRATING_KEYWORDS = ("TG_M", "TG_PART", "TG_SRCID")


def _name(path: Any) -> str:
    return os.path.basename(str(path)) if path else "(no name)"


def _fmt(value: Any) -> str:
    """A value as a user reads it: numbers with %g, anything else quoted."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return f"{float(value):g}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- before a Sherpa object exists (the reader) --------------------------------------------
def check_file_name(path: str) -> None:
    """Refuse an empty file name and a directory given as a file.

    Raises
    ------
    SpectrumFileError
        With "empty file name" or "is a directory, not a file".
    """
    if not str(path).strip():
        raise SpectrumFileError("", f"empty file name {str(path)!r}: no file was given")
    if os.path.isdir(path):
        raise SpectrumFileError(path, "is a directory, not a file")


def keyword_number(path: str, key: str, value: Any) -> Any:
    """A numeric header keyword as Sherpa takes it: numbers as they are, numeric text as float.

    Parameters
    ----------
    path : str
        The file (for the message).
    key : str
        The keyword.
    value : Any
        Its value as read from the header (None when absent).

    Returns
    -------
    int, float or None

    Raises
    ------
    SpectrumError
        The value is text that is not a number, a logical or a complex number.
    """
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        raise SpectrumError(path, f"{key} is a logical value ({_fmt(value)}), not a number")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return value
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise SpectrumError(path, f"{key} is not a number ({_fmt(value)})")


def column_numbers(path: str, name: str, column: Any) -> np.ndarray:
    """A column as float64, or a one-line refusal when it does not hold numbers."""
    try:
        return np.asarray(column, dtype=np.float64)
    except (TypeError, ValueError):
        raise SpectrumError(path, f"the {name} column does not hold numbers") from None


# --- values ----------------------------------------------------------------------------------
def _as_numbers(value: Any) -> np.ndarray | None:
    """``value`` as a numeric array (integers kept), or None when it is not numbers."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        try:
            return np.asarray(float(value))
        except OverflowError:  # an integer beyond any float
            return np.asarray(math.inf if value > 0 else -math.inf)
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001 - anything that is not an array is not numbers
        return None
    if arr.dtype.kind not in "iuf":
        return None
    return arr  # integers stay integers: every comparison below works on them


def _positive(
    path: str,
    key: str,
    value: Any,
    *,
    nchan: int,
    upper: float | None = None,
    what: str = "",
    unit: str = "",
) -> None:
    """Refuse a keyword (or per-channel column) that is not a finite number in (0, upper]."""
    label = f"{what}{key}"
    arr = _as_numbers(value)
    if arr is None:
        raise SpectrumError(path, f"{label} is not a number ({_fmt(value)})")
    if arr.ndim == 0:
        v = float(arr)
        if not math.isfinite(v):
            raise SpectrumError(path, f"{label} is {v} (not a finite number)")
        if v <= 0:
            raise SpectrumError(path, f"{label} is {v:g}{unit}; it must be more than 0")
        if upper is not None and v > upper:
            raise SpectrumError(
                path, f"{label} is {v:g}{unit}; an ACIS spectrum has it in (0, {upper:g}]"
            )
        return
    if arr.shape != (nchan,):
        raise SpectrumError(
            path, f"{label} column has {arr.size} values but the spectrum has {nchan} channels"
        )
    finite = np.isfinite(arr)
    if not finite.all():
        raise SpectrumError(
            path, f"{label} column has {int((~finite).sum())} NaN or infinite values"
        )
    low = arr <= 0
    if low.any():
        raise SpectrumError(
            path,
            f"{label} column is 0 or less in {int(low.sum())} channels (smallest "
            f"{arr.min():g}); it must be more than 0 in every channel",
        )
    if upper is not None and arr.max() > upper:
        raise SpectrumError(
            path,
            f"{label} column reaches {arr.max():g}; an ACIS spectrum has it in (0, {upper:g}]",
        )


def _header_text(header: Any, key: str) -> str:
    """A keyword as upper-case text; "" when absent or the OGIP placeholder "none"."""
    value = header.get(key) if hasattr(header, "get") else None
    text = "" if value is None else str(value).strip().upper()
    return "" if text == "NONE" else text


# --- the spectrum ------------------------------------------------------------------------------
def check_instrument(path: str, pha: Any, warnings: list[str] | None = None) -> None:
    """Refuse grating, HRC and non-Chandra or non-ACIS spectra, naming what they are.

    A missing TELESCOP or INSTRUME is answered with a warning (taken as Chandra ACIS).

    Parameters
    ----------
    path : str
        The spectrum's file (for the message).
    pha : sherpa.astro.data.DataPHA
        The spectrum (its header and channels are used).
    warnings : list of str, optional
        Receives the warnings.
    """
    header = getattr(pha, "header", None) or {}
    nchan = len(pha.channel) if getattr(pha, "channel", None) is not None else 0
    # The GRATING keyword alone is no test: the zeroth order of an HETG or LETG
    # observation is an imaging spectrum with an imaging response.
    if any(k in header for k in _GRATING_KEYWORDS) or nchan > MAX_IMAGING_CHANNELS:
        grating = _header_text(header, "GRATING")
        detail = f"{grating}, " if grating else ""
        raise SpectrumError(
            path,
            f"grating spectrum ({detail}{nchan} channels); sherpa_latent handles ACIS imaging "
            "spectra only",
        )
    telescope = _header_text(header, "TELESCOP")
    instrument = _header_text(header, "INSTRUME")
    if instrument.startswith("HRC") and telescope in (*CHANDRA_NAMES, ""):
        raise SpectrumError(
            path, "HRC spectrum: HRC has almost no energy resolution; use an ACIS spectrum"
        )
    if telescope and telescope not in CHANDRA_NAMES:
        what = f"{telescope} {instrument}".strip()
        raise SpectrumError(
            path,
            f"not a Chandra spectrum (TELESCOP = '{telescope}', INSTRUME = '{instrument}'): "
            f"sherpa_latent handles Chandra ACIS imaging spectra only, not {what}",
        )
    if instrument and not instrument.startswith("ACIS"):
        raise SpectrumError(
            path,
            f"not an ACIS spectrum (INSTRUME = '{instrument}'): sherpa_latent handles Chandra "
            "ACIS imaging spectra only",
        )
    if warnings is not None:
        for key, value, assumed in (
            ("TELESCOP", telescope, "Chandra"),
            ("INSTRUME", instrument, "ACIS"),
        ):
            if not value:
                warnings.append(f"no {key} keyword: taken to be {assumed}")


def _check_counts(path: str, counts: Any, nchan: int, what: str) -> np.ndarray:
    arr = _as_numbers(counts)
    if arr is None or arr.ndim != 1:
        raise SpectrumError(path, f"{what}COUNTS are not numbers ({_fmt(counts)})")
    if arr.shape != (nchan,):
        raise SpectrumError(
            path, f"{what}COUNTS have {arr.size} values but there are {nchan} channels"
        )
    total = float(arr.sum(dtype=np.float64))  # NaN or infinite when any count is
    if not math.isfinite(total):
        finite = np.isfinite(arr)
        if not finite.all():
            bad = int((~finite).sum())
            raise SpectrumError(path, f"{what}{bad} NaN or infinite values in the COUNTS column")
    if arr.min() < 0:
        negative = int((arr < 0).sum())
        raise SpectrumError(
            path, f"{what}negative counts in {negative} channels (min {arr.min():g})"
        )
    if not total <= MAX_TOTAL_COUNTS:
        raise SpectrumError(
            path,
            f"{what}{total:.3g} counts, more than the {MAX_TOTAL_COUNTS:.3g} an ACIS spectrum "
            "can hold: the COUNTS column is damaged",
        )
    return arr


def _check_grouping(path: str, pha: Any, nchan: int, warnings: list[str] | None) -> None:
    grouping = getattr(pha, "grouping", None)
    if grouping is None:
        return
    arr = _as_numbers(grouping)
    if arr is None or arr.shape != (nchan,):
        raise SpectrumError(
            path, f"GROUPING does not hold one number per channel ({_fmt(grouping)})"
        )
    if arr.dtype.kind in "iu" and arr.size and -1 <= arr.min() and arr.max() <= 1:
        odd = None  # the common case, in two reductions
    else:
        odd = (arr != 1) & (arr != -1) & (arr != 0)
    if odd is not None and odd.any():
        values = np.unique(arr[odd])[:3]
        raise SpectrumError(
            path,
            f"GROUPING has values other than 1, -1 and 0 in {int(odd.sum())} channels "
            f"(e.g. {', '.join(f'{v:g}' for v in values)}); OGIP grouping uses only those",
        )
    if warnings is None:
        return
    n_set = int(np.count_nonzero(arr))
    first = arr[0] if n_set == nchan else (arr[np.flatnonzero(arr)[0]] if n_set else 0)
    if first == -1:
        warnings.append(
            "GROUPING starts with -1 (a group continued that never began); Sherpa's "
            "grouped fit takes it as the start of a group"
        )
    if 0 < n_set < nchan:
        warnings.append(
            f"GROUPING mixes 0 (no grouping) in {nchan - n_set} channels with "
            "groups elsewhere; only the classical fit uses the grouping"
        )


def _check_quality(path: str, pha: Any, nchan: int) -> None:
    quality = getattr(pha, "quality", None)
    if quality is None:
        return
    arr = _as_numbers(quality)
    if arr is None or arr.shape != (nchan,):
        raise SpectrumError(path, f"QUALITY does not hold one number per channel ({_fmt(quality)})")
    if not arr.any():
        return  # all good (0), the common case
    unknown = (arr != 0) & (arr != 1) & (arr != 2) & (arr != 5)
    if unknown.any():
        values = np.unique(arr[unknown])[:3]
        raise SpectrumError(
            path,
            f"QUALITY has flags Sherpa does not know in {int(unknown.sum())} channels "
            f"(e.g. {', '.join(f'{v:g}' for v in values)}); OGIP flags are 0, 1, 2 and 5",
        )


def check_pha(
    path: str, pha: Any, *, background: bool = False, warnings: list[str] | None = None
) -> None:
    """Check one spectrum (or background) on its own: instrument, keywords, counts, flags.

    Parameters
    ----------
    path : str
        Its file, named in every message.
    pha : sherpa.astro.data.DataPHA
        The spectrum, read by the reader or by Sherpa.
    background : bool, optional
        It is a background: no instrument check, messages say "background".
    warnings : list of str, optional
        Receives what does not stop the spectrum being used.

    Raises
    ------
    SpectrumError
        A problem, in one line naming ``path``.
    """
    what = "background " if background else ""
    channel = _as_numbers(getattr(pha, "channel", None))
    if channel is not None:
        channel = channel.astype(np.float64, copy=False)  # np.diff of unsigned ints wraps
    if channel is None or channel.ndim != 1 or channel.size == 0:
        raise SpectrumError(path, f"{what}CHANNEL column is missing or not numbers")
    nchan = channel.size
    if not background:
        check_instrument(path, pha, warnings)
    if not math.isfinite(float(channel.sum())) or bool((channel[1:] <= channel[:-1]).any()):
        raise SpectrumError(path, f"{what}CHANNEL numbers are not finite and increasing")
    exposure = getattr(pha, "exposure", None)
    if exposure is None:
        raise SpectrumError(path, f"{what}EXPOSURE is missing")
    _positive(path, "EXPOSURE", exposure, nchan=nchan, upper=MAX_EXPOSURE, what=what, unit=" s")
    if np.ndim(exposure) != 0:
        raise SpectrumError(path, f"{what}EXPOSURE is not a single number")
    for key, upper in (("BACKSCAL", None), ("AREASCAL", AREASCAL_MAX)):
        value = getattr(pha, key.lower(), None)
        if value is not None:
            _positive(path, key, value, nchan=nchan, upper=upper, what=what)
    _check_counts(path, pha.counts, nchan, what)
    _check_grouping(path, pha, nchan, None if background else warnings)
    _check_quality(path, pha, nchan)


# --- responses -----------------------------------------------------------------------------
class _Checked:
    """Responses already checked, by object identity and the arrays they hold."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[int, tuple[weakref.ref, tuple, Any]] = {}

    @staticmethod
    def _stamp(obj: Any, names: tuple[str, ...]) -> tuple:
        # The arrays' identities: replacing one (``rmf.matrix = ...``) means a new check;
        # changing values inside an array in place is not seen.
        return tuple(id(getattr(obj, name, None)) for name in names)

    def get(self, obj: Any, names: tuple[str, ...]) -> Any:
        with self._lock:
            found = self._items.get(id(obj))
        if found is None or found[0]() is not obj or found[1] != self._stamp(obj, names):
            return None
        return found[2]

    def put(self, obj: Any, names: tuple[str, ...], facts: Any) -> None:
        key = id(obj)

        def forget(_ref: weakref.ref, key: int = key) -> None:
            with self._lock:
                self._items.pop(key, None)

        try:
            ref = weakref.ref(obj, forget)
        except TypeError:  # not weak-referenceable: not remembered
            return
        with self._lock:
            self._items[key] = (ref, self._stamp(obj, names), facts)


_CHECKED = _Checked()
_ARF_ARRAYS = ("energ_lo", "energ_hi", "specresp")
_RMF_ARRAYS = ("energ_lo", "energ_hi", "matrix", "n_grp", "f_chan", "n_chan", "e_min", "e_max")


def _check_grid(path: str, kind: str, lo: Any, hi: Any, label: str) -> tuple[float, float]:
    """Refuse an energy grid that is not finite, positive-width and increasing."""
    a, b = _as_numbers(lo), _as_numbers(hi)
    if a is None or b is None or a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise SpectrumError(path, f"{kind} {label} grid is missing or not numbers")
    a, b = a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise SpectrumError(path, f"{kind} {label} grid holds NaN or infinite values")
    if (b <= a).any() or (a.size > 1 and (np.diff(a) <= 0).any()):
        raise SpectrumError(
            path, f"{kind} {label} grid is not increasing (each bin must end above its start)"
        )
    if a[0] < 0:
        raise SpectrumError(path, f"{kind} {label} grid starts below 0 keV ({a[0]:g})")
    return float(a[0]), float(b[-1])


def _check_band(path: str, kind: str, label: str, emin: float, emax: float) -> None:
    lo, hi = FIT_BAND
    if emax <= lo or emin >= hi:
        raise SpectrumError(
            path,
            f"{kind} {label} grid ({emin:.3g}-{emax:.3g}) misses {lo:g}-{hi:g} keV: it is not "
            "an ACIS response in keV",
        )


def _check_telescope(path: str, kind: str, obj: Any) -> None:
    header = getattr(obj, "header", None) or {}
    telescope = _header_text(header, "TELESCOP")
    if telescope and telescope not in CHANDRA_NAMES:
        raise SpectrumError(
            path, f"{kind} made for {telescope}, not Chandra (TELESCOP = '{telescope}')"
        )


def check_arf(arf: Any, path: str | None = None) -> None:
    """Refuse an ARF whose effective area cannot be right.

    Checked once per object (until its arrays are replaced).

    Parameters
    ----------
    arf : sherpa.astro.data.DataARF
    path : str, optional
        Name for messages (default: the ARF's ``name``).

    Raises
    ------
    SpectrumError
        Naming the ARF.
    """
    if _CHECKED.get(arf, _ARF_ARRAYS) is not None:
        return
    path = path or str(getattr(arf, "name", "") or "ARF")
    _check_telescope(path, "ARF", arf)
    emin, emax = _check_grid(path, "ARF", arf.energ_lo, arf.energ_hi, "energy")
    _check_band(path, "ARF", "energy", emin, emax)
    area = _as_numbers(arf.specresp)
    if area is None or area.shape != np.shape(arf.energ_lo):
        raise SpectrumError(path, "ARF SPECRESP does not hold one number per energy bin")
    finite = np.isfinite(area)
    if not finite.all():
        raise SpectrumError(path, f"ARF SPECRESP has {int((~finite).sum())} NaN or infinite values")
    negative = area < 0
    if negative.any():
        raise SpectrumError(
            path, f"ARF SPECRESP is negative in {int(negative.sum())} bins (min {area.min():g})"
        )
    peak = float(area.max())
    if peak <= 0:
        raise SpectrumError(path, "ARF SPECRESP is zero everywhere: no effective area")
    if peak > MAX_ARF_AREA:
        raise SpectrumError(
            path,
            f"ARF SPECRESP reaches {peak:.3g} cm^2, more than any Chandra response "
            f"(at most about 800 cm^2; limit {MAX_ARF_AREA:g})",
        )
    _CHECKED.put(arf, _ARF_ARRAYS, True)


def check_rmf(rmf: Any, path: str | None = None) -> float:
    """Refuse an RMF that cannot redistribute photons into channels.

    Checked once per object (until its arrays are replaced).

    Parameters
    ----------
    rmf : sherpa.astro.data.DataRMF
    path : str, optional
        Name for messages (default: the RMF's ``name``).

    Returns
    -------
    float
        Mean sum of the matrix over an energy row (about 1 for an RMF, the effective area
        in cm^2 for an RSP that holds it).

    Raises
    ------
    SpectrumError
        Naming the RMF.
    """
    found = _CHECKED.get(rmf, _RMF_ARRAYS)
    if found is not None:
        return found
    path = path or str(getattr(rmf, "name", "") or "RMF")
    _check_telescope(path, "RMF", rmf)
    emin, emax = _check_grid(path, "RMF", rmf.energ_lo, rmf.energ_hi, "energy")
    _check_band(path, "RMF", "energy", emin, emax)
    if getattr(rmf, "e_min", None) is None or getattr(rmf, "e_max", None) is None:
        raise SpectrumError(path, "RMF has no EBOUNDS (channel energies)")
    cmin, cmax = _check_grid(path, "RMF", rmf.e_min, rmf.e_max, "EBOUNDS channel")
    _check_band(path, "RMF", "EBOUNDS channel", cmin, cmax)
    if not (emax / 3 <= cmax <= 3 * emax):
        raise SpectrumError(
            path,
            f"RMF EBOUNDS channels reach {cmax:.3g} but its energy grid {emax:.3g}: they are "
            "not in the same units (keV) or not of the same response",
        )
    detchans = int(rmf.detchans)
    if np.size(rmf.e_min) != detchans:
        raise SpectrumError(
            path, f"RMF EBOUNDS has {np.size(rmf.e_min)} channels but DETCHANS is {detchans}"
        )
    matrix = _as_numbers(rmf.matrix)
    if matrix is None or matrix.ndim != 1:
        raise SpectrumError(path, "RMF MATRIX is missing or not numbers")
    n_chan = np.asarray(rmf.n_chan, dtype=np.int64)
    f_chan = np.asarray(rmf.f_chan, dtype=np.int64) - int(getattr(rmf, "offset", 1) or 0)
    if int(n_chan.sum()) != matrix.size or int(np.sum(rmf.n_grp)) != n_chan.size:
        raise SpectrumError(path, "RMF N_GRP, N_CHAN and MATRIX do not agree (damaged matrix)")
    if n_chan.size and ((f_chan < 0).any() or (f_chan + n_chan > detchans).any()):
        raise SpectrumError(
            path, f"RMF F_CHAN/N_CHAN reach outside its {detchans} channels (damaged matrix)"
        )
    finite = np.isfinite(matrix)
    if not finite.all():
        raise SpectrumError(
            path,
            f"RMF MATRIX has {int((~finite).sum())} NaN or infinite values (of {matrix.size})",
        )
    if matrix.size and matrix.min() < 0:
        raise SpectrumError(path, f"RMF MATRIX has negative values (smallest {matrix.min():g})")
    total = float(matrix.sum())
    if total <= 0:
        raise SpectrumError(path, "RMF MATRIX is zero everywhere: no photon reaches a channel")
    row_sum = total / len(rmf.energ_lo)
    if row_sum > MAX_ARF_AREA:
        raise SpectrumError(
            path,
            f"RMF MATRIX rows sum to {row_sum:.3g} on average: more than any Chandra "
            "effective area, in cm^2, could be",
        )
    _CHECKED.put(rmf, _RMF_ARRAYS, row_sum)
    return row_sum


def _arf_rmf_overlap(path: str, arf: Any, rmf: Any) -> None:
    """Refuse an ARF on another grid than its RMF that has no area where the RMF is."""
    if np.size(arf.energ_lo) == np.size(rmf.energ_lo):
        return
    lo, hi = np.asarray(arf.energ_lo, float), np.asarray(arf.energ_hi, float)
    a_lo, a_hi = float(np.min(lo)), float(np.max(hi))
    r_lo, r_hi = float(np.min(rmf.energ_lo)), float(np.max(rmf.energ_hi))
    with np.errstate(invalid="ignore"):
        reaching = (hi > r_lo) & (lo < r_hi) & (np.asarray(arf.specresp, float) > 0)
    if not reaching.any():
        raise SpectrumError(
            path,
            f"ARF {_name(arf.name)} ({a_lo:.3g}-{a_hi:.3g} keV) does not overlap the RMF's "
            f"energy grid ({r_lo:.3g}-{r_hi:.3g} keV)",
        )


def _check_responses(path: str, pha: Any, nchan: int, warnings: list[str], what: str) -> None:
    ids = list(getattr(pha, "response_ids", None) or [])
    if not ids:
        if what:
            return  # a background without responses of its own uses the source's
        raise SpectrumError(path, "no response (RMF) attached")
    for rid in ids:
        arf, rmf = pha.get_response(rid)
        if rmf is None:
            if what:
                continue
            raise SpectrumError(path, "no response (RMF) attached")
        row_sum = check_rmf(rmf)
        if int(rmf.detchans) != nchan:
            raise SpectrumError(
                path,
                f"{what}RMF {_name(rmf.name)} has {int(rmf.detchans)} channels but the "
                f"{what or 'spectrum '}has {nchan}",
            )
        if arf is not None:
            _arf_rmf_overlap(path, arf, rmf)
            check_arf(arf)
            if not RMF_ROW_SUM_MIN <= row_sum <= RSP_ROW_SUM:
                raise SpectrumError(
                    str(rmf.name or path),
                    f"RMF MATRIX rows sum to {row_sum:.3g} on average, but beside an ARF "
                    f"they must sum to about 1 ({RMF_ROW_SUM_MIN:g}-{RSP_ROW_SUM:g}): the "
                    "effective area would be wrong by that factor",
                )
            if not what and np.size(arf.energ_lo) < np.size(rmf.energ_lo):
                warnings.append(
                    f"ARF {_name(arf.name)} has {np.size(arf.energ_lo)} energy bins, fewer "
                    f"than the {np.size(rmf.energ_lo)} of the RMF: Sherpa folds an ARF only "
                    "on the RMF's grid or a finer one, so a Sherpa fit of this data set "
                    "fails; the representation averages the ARF over the RMF's bins"
                )
        elif not what:
            if row_sum > RSP_ROW_SUM:
                warnings.append(
                    f"no ARF (ANCRFILE = none): the RMF {_name(rmf.name)} holds the effective "
                    f"area (mean {row_sum:.3g} cm^2 a row), used as it is"
                )
            else:
                warnings.append(
                    f"no ARF (ANCRFILE = none) and the RMF {_name(rmf.name)} holds no "
                    "effective area: the area is unknown (taken as 1 cm^2), so N_H, fluxes "
                    "and the network's answers are not to be trusted"
                )


def _background_scale(pha: Any, bkg: Any) -> float:
    """Largest factor from background-region counts to the source region (missing: 1)."""

    def area_time(data: Any) -> Any:
        out: Any = 1.0
        for key in ("exposure", "backscal", "areascal"):
            value = getattr(data, key, None)
            if value is not None:
                out = out * (float(value) if np.ndim(value) == 0 else np.asarray(value, float))
        return out

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        source, background = area_time(pha), area_time(bkg)
        if isinstance(source, float) and isinstance(background, float):
            return source / background if background else math.inf
        return float(np.max(np.asarray(source) / np.asarray(background)))


def check_spectrum(path: str, pha: Any) -> list[str]:
    """Every check, on a spectrum with its responses and backgrounds attached.

    Parameters
    ----------
    path : str
        The spectrum's file (or the data set's name in a session).
    pha : sherpa.astro.data.DataPHA
        As Sherpa's ``load_pha`` (or :func:`sherpa_latent.reader.read_spectrum`) leaves it.

    Returns
    -------
    list of str
        Warnings: what does not stop the spectrum being used.

    Raises
    ------
    SpectrumError
        The first problem found, in one line naming the file that is wrong.
    """
    warnings: list[str] = []
    check_pha(path, pha, warnings=warnings)
    nchan = len(pha.channel)
    _check_responses(path, pha, nchan, warnings, "")
    rmf = pha.get_rmf()
    has_backscal = getattr(pha, "backscal", None) is not None
    for bid in list(getattr(pha, "background_ids", None) or []):
        bkg = pha.get_background(bid)
        name = str(getattr(bkg, "name", "") or path)
        bkg_chan = getattr(bkg, "channel", None)
        if bkg_chan is None or np.size(bkg_chan) != nchan:
            raise SpectrumError(
                path,
                f"background {_name(name)} has {np.size(bkg_chan)} channels but the spectrum "
                f"has {nchan}",
            )
        check_pha(name, bkg, background=True)
        _check_responses(name, bkg, nchan, warnings, "background ")
        scale = _background_scale(pha, bkg)
        if not scale <= MAX_BACKGROUND_SCALE:
            raise SpectrumError(
                path,
                f"background {_name(name)} is scaled by {scale:.3g} to the source region "
                "(BACKSCAL x EXPOSURE x AREASCAL of the spectrum over the background's), "
                f"more than {MAX_BACKGROUND_SCALE:g}: the spectrum and the background do "
                "not belong together",
            )
        if has_backscal != (getattr(bkg, "backscal", None) is not None):
            warnings.append(
                "BACKSCAL is set in only one of the spectrum and its background "
                f"{_name(name)}: the missing one is taken as 1"
            )
    mid = 0.5 * (np.asarray(rmf.e_min, dtype=float) + np.asarray(rmf.e_max, dtype=float))
    in_band = (mid >= FIT_BAND[0]) & (mid < FIT_BAND[1])
    if float(np.asarray(pha.counts, dtype=float)[in_band].sum()) <= 0:
        raise SpectrumError(path, f"no counts in {FIT_BAND[0]}-{FIT_BAND[1]} keV")
    return warnings
