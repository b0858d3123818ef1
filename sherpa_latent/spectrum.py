"""Load and validate a Chandra ACIS imaging spectrum with its response, through Sherpa.

:func:`load_spectrum` reads a PHA file with Sherpa's own I/O (the astropy backend, or
crates inside CIAO), attaches the ARF, RMF and background named in its header (also when
the files on disk carry a ``.gz`` that the header does not mention), checks that the
result is something the project can use, and returns a :class:`Spectrum`.

:meth:`Spectrum.representation` gives the response-aware representation the network
eats (DESIGN.md, decision 2): counts and scaled background on the input grid, the
effective area per input bin, and the projected response R (input grid x model grid).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from sherpa.astro.data import DataPHA
from sherpa.astro.instrument import rmf_to_matrix
from sherpa.utils.err import SherpaErr
from sherpa.utils.logging import SherpaVerbosity

from .errors import SpectrumError, SpectrumFileError
from .grids import FIT_BAND, INPUT_GRID, MODEL_GRID, EnergyGrid, channel_bin_index
from .projection import overlap_matrix, project_response

__all__ = [
    "Spectrum",
    "ResponseRepresentation",
    "load_spectrum",
    "spectrum_from_pha",
    "header_file_names",
    "find_named_file",
]

MAX_IMAGING_CHANNELS = 2048
"""ACIS imaging spectra have 1024 PI channels; grating spectra have thousands."""

_GRATING_KEYWORDS = ("TG_M", "TG_PART", "TG_SRCID")


@dataclass(frozen=True)
class ResponseRepresentation:
    """What the encoder sees of one spectrum, on the fixed grids.

    Parameters
    ----------
    counts : ndarray, shape (n_input,)
        Observed counts per input-grid bin.
    background : ndarray, shape (n_input,)
        Background counts per input-grid bin, scaled to the source region (0 without one).
    effective_area : ndarray, shape (n_input,)
        Mean effective area over each input-grid bin, cm^2.
    response : ndarray, shape (n_input, n_model)
        Projected response R, cm^2: expected source counts = exposure * R @ flux, with
        flux in photons/cm^2/s per model-grid bin.
    exposure : float
        Exposure time, s.
    input_grid, model_grid : EnergyGrid
        The grids the arrays are on.
    """

    counts: np.ndarray
    background: np.ndarray
    effective_area: np.ndarray
    response: np.ndarray
    exposure: float
    input_grid: EnergyGrid = INPUT_GRID
    model_grid: EnergyGrid = MODEL_GRID

    def __post_init__(self) -> None:
        n_in, n_model = self.input_grid.nbins, self.model_grid.nbins
        for name in ("counts", "background", "effective_area"):
            arr = getattr(self, name)
            if arr.shape != (n_in,):
                raise ValueError(f"{name} has shape {arr.shape}, expected ({n_in},)")
            if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise ValueError(f"{name} must be finite and non-negative")
        if self.response.shape != (n_in, n_model):
            raise ValueError(
                f"response has shape {self.response.shape}, expected ({n_in}, {n_model})"
            )
        if not (np.isfinite(self.exposure) and self.exposure > 0):
            raise ValueError(f"exposure must be positive, got {self.exposure}")

    def expected_counts(self, flux: np.ndarray) -> np.ndarray:
        """Expected source counts per input bin for a model-grid photon flux.

        Parameters
        ----------
        flux : ndarray, shape (..., n_model)
            Photon flux integrated over each model-grid bin, photons/cm^2/s.

        Returns
        -------
        ndarray, shape (..., n_input)
            Expected source counts (background not included).
        """
        return self.exposure * np.asarray(flux) @ self.response.T


@dataclass
class Spectrum:
    """A validated ACIS imaging spectrum: a Sherpa ``DataPHA`` with its response.

    Use :func:`load_spectrum` to make one from a file, or :func:`spectrum_from_pha` from a
    ``DataPHA`` already in a Sherpa session.

    Parameters
    ----------
    path : str
        The file the spectrum came from (used in every message).
    pha : sherpa.astro.data.DataPHA
        Sherpa's data object, with ARF, RMF and background attached.
    warnings : list of str
        Problems that did not stop the loading (for example a missing background file).
    """

    path: str
    pha: DataPHA
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _validate(self.path, self.pha)

    # --- header facts -------------------------------------------------------------
    def _keyword(self, name: str, default=None):
        value = self.pha.header.get(name, default)
        return default if value is None else value

    @property
    def object(self) -> str:
        """Target name from the OBJECT keyword."""
        return str(self._keyword("OBJECT", "")).strip()

    @property
    def obsid(self) -> str:
        """Chandra observation identifier from the OBS_ID keyword."""
        return str(self._keyword("OBS_ID", "")).strip()

    @property
    def instrument(self) -> str:
        """Instrument (INSTRUME keyword) and, where known, the detector (DETNAM)."""
        inst = str(self._keyword("INSTRUME", "")).strip()
        det = str(self._keyword("DETNAM", "")).strip()
        return f"{inst} {det}".strip() if det and det != inst else inst

    @property
    def exposure(self) -> float:
        """Exposure time, s."""
        return float(self.pha.exposure)

    @property
    def position(self) -> tuple[float, float] | None:
        """Target right ascension and declination (RA_TARG, DEC_TARG), degrees, or None."""
        ra, dec = self._keyword("RA_TARG"), self._keyword("DEC_TARG")
        try:
            return float(ra), float(dec)
        except (TypeError, ValueError):
            return None

    # --- counts -----------------------------------------------------------------------
    @property
    def channel_energies(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper energy of each PHA channel from the RMF's EBOUNDS, keV."""
        rmf = self.pha.get_rmf()
        return np.asarray(rmf.e_min, dtype=float), np.asarray(rmf.e_max, dtype=float)

    @property
    def counts(self) -> np.ndarray:
        """Counts per channel (ungrouped)."""
        return np.asarray(self.pha.counts, dtype=float)

    @property
    def background_counts(self) -> np.ndarray | None:
        """Background-region counts per channel, or None without a background."""
        if not self.pha.background_ids:
            return None
        return np.asarray(self.pha.get_background().counts, dtype=float)

    @property
    def background_scale(self) -> float:
        """Factor that turns background-region counts into expected source-region counts.

        The ratio of source to background BACKSCAL x exposure (x AREASCAL), as Sherpa's
        ``get_background_scale`` computes it; 0.0 without a background.
        """
        if not self.pha.background_ids:
            return 0.0
        scale = self.pha.get_background_scale()
        return float(np.mean(scale)) if np.ndim(scale) else float(scale)

    def _channels_in(self, elo: float, ehi: float) -> np.ndarray:
        e_min, e_max = self.channel_energies
        mid = 0.5 * (e_min + e_max)
        return (mid >= elo) & (mid < ehi)

    def band_counts(self, elo: float, ehi: float) -> tuple[int, int]:
        """Source and background-region counts in an energy band.

        Channels are in the band when their mid-energy lies in [elo, ehi).

        Parameters
        ----------
        elo, ehi : float
            Band limits, keV.

        Returns
        -------
        tuple of int
            (source-region counts, background-region counts; 0 without a background).
        """
        sel = self._channels_in(elo, ehi)
        src = int(round(self.counts[sel].sum()))
        bkg = self.background_counts
        return src, (0 if bkg is None else int(round(bkg[sel].sum())))

    def net_counts(self, elo: float = FIT_BAND[0], ehi: float = FIT_BAND[1]) -> float:
        """Background-subtracted counts in an energy band (default 0.5-7 keV)."""
        src, bkg = self.band_counts(elo, ehi)
        return src - self.background_scale * bkg

    # --- representation ---------------------------------------------------------------
    @cached_property
    def _rmf_matrix(self):
        return rmf_to_matrix(self.pha.get_rmf())

    def binned_counts(self, input_grid: EnergyGrid = INPUT_GRID) -> tuple[np.ndarray, np.ndarray]:
        """Counts and scaled background counts per bin of an input grid.

        Channels go to the bin holding their mid-energy (EBOUNDS); the background is
        multiplied by :attr:`background_scale` (zeros without a background).

        Returns
        -------
        tuple of ndarray
            (source-region counts, background counts expected in the source region).
        """
        e_min, e_max = self.channel_energies
        chan_bin = channel_bin_index(e_min, e_max, input_grid.edges)
        inside = chan_bin >= 0
        counts = np.bincount(chan_bin[inside], self.counts[inside], input_grid.nbins)
        bkg = self.background_counts
        if bkg is None:
            return counts, np.zeros(input_grid.nbins)
        scaled = self.background_scale * np.bincount(
            chan_bin[inside], bkg[inside], input_grid.nbins
        )
        return counts, scaled

    def representation(
        self, input_grid: EnergyGrid = INPUT_GRID, model_grid: EnergyGrid = MODEL_GRID
    ) -> ResponseRepresentation:
        """The response-aware representation on the given grids.

        Parameters
        ----------
        input_grid, model_grid : EnergyGrid
            Grids of the encoder input and of the decoder output (defaults: the
            project's fixed grids).

        Returns
        -------
        ResponseRepresentation
        """
        e_min, e_max = self.channel_energies
        counts, background = self.binned_counts(input_grid)
        mat = self._rmf_matrix
        rmf = self.pha.get_rmf()
        energ_lo, energ_hi = np.asarray(rmf.energ_lo, float), np.asarray(rmf.energ_hi, float)
        arf = self.pha.get_arf()
        specresp = np.ones(len(energ_lo)) if arf is None else np.asarray(arf.specresp, float)
        try:
            response = project_response(
                energ_lo, energ_hi, specresp, mat.matrix, e_min, e_max, input_grid, model_grid
            )
        except ValueError as exc:
            raise SpectrumError(self.path, f"response does not match: {exc}") from None
        return ResponseRepresentation(
            counts=counts,
            background=background,
            effective_area=_mean_in_bins(energ_lo, energ_hi, specresp, input_grid.edges),
            response=response,
            exposure=self.exposure,
            input_grid=input_grid,
            model_grid=model_grid,
        )


def _mean_in_bins(lo: np.ndarray, hi: np.ndarray, values: np.ndarray, edges: np.ndarray):
    """Energy-weighted mean of a binned function over each bin of ``edges``."""
    weights = overlap_matrix(lo, hi, edges)
    covered = weights.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (values @ weights) / covered
    return np.where(covered > 0, mean, 0.0)


# --- loading -----------------------------------------------------------------------------
def find_named_file(name: str | None, base_dir: str) -> tuple[str | None, list[str]]:
    """Find the file a header keyword names: as written, beside the PHA, with/without .gz.

    Returns the path found (or None) and the candidates tried.
    """
    if name is None:
        return None, []
    name = str(name).strip()
    if name.lower() in ("", "none", "null"):
        return None, []
    stem = name[:-3] if name.endswith(".gz") else name
    variants = [name, stem + ".gz" if stem == name else stem]
    candidates: list[str] = []
    for variant in variants:
        candidates.append(variant if os.path.isabs(variant) else os.path.join(base_dir, variant))
        candidates.append(os.path.join(base_dir, os.path.basename(variant)))
    seen: list[str] = []
    for cand in candidates:
        if cand not in seen:
            seen.append(cand)
            if os.path.isfile(cand):
                return cand, seen
    return None, seen


def _read(kind: str, path: str):
    """Read an ARF, RMF or PHA with Sherpa's I/O, turning failures into one-line errors."""
    from sherpa.astro import io

    reader = {"arf": io.read_arf, "rmf": io.read_rmf, "pha": io.read_pha}[kind]
    if not os.path.isfile(path):
        raise SpectrumFileError(path, "file not found")
    try:
        with SherpaVerbosity("ERROR"):
            out = reader(path) if kind != "pha" else reader(path, use_errors=False)
    except SherpaErr as exc:
        mismatch = _channel_mismatch(path) if kind == "pha" else None
        if mismatch:
            raise SpectrumError(path, mismatch) from None
        raise SpectrumFileError(path, _fits_problem(path, exc, kind)) from None
    except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise SpectrumFileError(path, _fits_problem(path, exc, kind)) from None
    return out


def _hdu_channels(path: str, kind: str) -> int | None:
    """Number of channels in a PHA (rows of SPECTRUM) or RMF (rows of EBOUNDS), from headers."""
    from astropy.io import fits

    wanted = "SPECTRUM" if kind == "pha" else "EBOUNDS"
    try:
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdus:
            for hdu in hdus[1:]:
                header = hdu.header
                names = {str(header.get("EXTNAME", "")).upper(), str(header.get("HDUCLAS1", ""))}
                if wanted in {n.strip().upper() for n in names}:
                    return int(header.get("NAXIS2", 0))
    except (OSError, ValueError):
        return None
    return None


def _channel_mismatch(path: str) -> str | None:
    """Explain a failed read by a response or background with another channel count."""
    nchan = _hdu_channels(path, "pha")
    if nchan is None:
        return None
    base_dir = os.path.dirname(os.path.abspath(path))
    names = header_file_names(path)
    for key, kind, what in (("RESPFILE", "rmf", "RMF"), ("BACKFILE", "pha", "background")):
        found, _ = find_named_file(names.get(key), base_dir)
        other = _hdu_channels(found, kind) if found else None
        if other is not None and other != nchan:
            return (
                f"{what} {os.path.basename(found)} has {other} channels but the spectrum has "
                f"{nchan}"
            )
    return None


def _fits_problem(path: str, exc: Exception, kind: str) -> str:
    """Say, in a few words, why a file could not be read."""
    from astropy.io import fits

    what = {"arf": "an ARF", "rmf": "an RMF", "pha": "a PHA spectrum"}[kind]
    try:
        with fits.open(path, memmap=False) as hdus:
            hdus.verify("exception")
            for hdu in hdus:
                _ = hdu.data  # forces reading every data block
    except Exception as fits_exc:  # noqa: BLE001 - any failure here means a damaged file
        text = str(fits_exc).splitlines()[0] if str(fits_exc) else type(fits_exc).__name__
        return f"not a readable FITS file (truncated or corrupt: {text})"
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"could not be read as {what}: {msg.replace(path, '').strip(' :')}"


def load_spectrum(
    path: str | os.PathLike,
    *,
    arf: str | os.PathLike | None = None,
    rmf: str | os.PathLike | None = None,
    background: str | os.PathLike | None = None,
) -> Spectrum:
    """Load a Chandra ACIS imaging spectrum with its response and background.

    Parameters
    ----------
    path : str or path-like
        The PHA (type I) file.
    arf, rmf, background : str or path-like, optional
        Files to use instead of those named by the ANCRFILE, RESPFILE and BACKFILE
        header keywords. Header names are looked up beside the PHA file too, and with or
        without a ``.gz`` suffix, as Chandra Source Catalog products are gzipped.

    Returns
    -------
    Spectrum

    Raises
    ------
    SpectrumFileError
        The file (or a response file) is missing or is not readable FITS.
    SpectrumError
        The spectrum cannot be used: no response, mismatched channels, a grating or HRC
        spectrum, no counts in 0.5-7 keV, or NaN values.

    Examples
    --------
    >>> spec = load_spectrum("3c273.pi")
    >>> spec.net_counts()            # doctest: +SKIP
    """
    path = os.fspath(path)
    pha = _read("pha", path)
    if isinstance(pha, list):
        raise SpectrumError(
            path, f"type II PHA file holding {len(pha)} spectra; sherpa_latent needs one (type I)"
        )
    _check_instrument(path, pha)
    base_dir = os.path.dirname(os.path.abspath(path))
    names = header_file_names(path)
    warnings: list[str] = []

    if rmf is not None:
        pha.set_rmf(_read("rmf", os.fspath(rmf)))
    elif pha.get_rmf() is None:
        pha.set_rmf(_read("rmf", _required(path, names, "RESPFILE", "response (RMF)", base_dir)))
    if arf is not None:
        pha.set_arf(_read("arf", os.fspath(arf)))
    elif pha.get_arf() is None:
        found, tried = find_named_file(names.get("ANCRFILE"), base_dir)
        if found is not None:
            pha.set_arf(_read("arf", found))
        elif tried:
            raise SpectrumError(
                path, f"ARF named in ANCRFILE not found (looked for {', '.join(tried)})"
            )

    if background is not None:
        _set_background(pha, _read("pha", os.fspath(background)), os.fspath(background))
    elif not pha.background_ids:
        found, tried = find_named_file(names.get("BACKFILE"), base_dir)
        if found is not None:
            _set_background(pha, _read("pha", found), found)
        elif tried:
            warnings.append(
                f"background file named in BACKFILE not found ({tried[0]}); "
                "going on without a background"
            )
    pha.set_analysis("energy")
    return Spectrum(path=path, pha=pha, warnings=warnings)


def spectrum_from_pha(pha: DataPHA, path: str | None = None) -> Spectrum:
    """Wrap a ``DataPHA`` already in a Sherpa session, after the same checks.

    Parameters
    ----------
    pha : sherpa.astro.data.DataPHA
        The data set, with its response attached.
    path : str, optional
        Name used in messages (default: the data set's name).
    """
    name = path or getattr(pha, "name", "") or "<data set>"
    if getattr(pha, "units", "energy") == "wavelength":
        raise SpectrumError(
            name,
            "analysis is set to wavelength; sherpa_latent works in energy "
            "(use set_analysis('energy'))",
        )
    _check_instrument(name, pha)
    return Spectrum(path=name, pha=pha)


def header_file_names(path: str) -> dict[str, str | None]:
    """RESPFILE, ANCRFILE and BACKFILE as written in the spectrum's header.

    Sherpa drops these keywords from ``DataPHA.header`` once it has tried them, so they
    are read again (the header only) with astropy.
    """
    from astropy.io import fits

    keys = ("RESPFILE", "ANCRFILE", "BACKFILE")
    with fits.open(path, memmap=False, lazy_load_hdus=True) as hdus:
        for hdu in hdus[1:]:
            header = hdu.header
            if (
                header.get("HDUCLAS1", "").strip().upper() == "SPECTRUM"
                or header.get("EXTNAME", "").strip().upper() == "SPECTRUM"
            ):
                return {k: header.get(k) for k in keys}
    return dict.fromkeys(keys)


def _required(path: str, names: dict, keyword: str, what: str, base_dir: str) -> str:
    found, tried = find_named_file(names.get(keyword), base_dir)
    if found is not None:
        return found
    if not tried:
        raise SpectrumError(path, f"no {what}: {keyword} is not set; pass it explicitly")
    raise SpectrumError(path, f"{what} named in {keyword} not found (looked for {tried[0]})")


def _set_background(pha: DataPHA, bkg, bkg_path: str) -> None:
    if isinstance(bkg, list):
        raise SpectrumError(bkg_path, "background is a type II PHA file; give one spectrum")
    if len(bkg.channel) != len(pha.channel):
        raise SpectrumError(
            bkg_path,
            f"background has {len(bkg.channel)} channels but the spectrum has {len(pha.channel)}",
        )
    pha.set_background(bkg)


def _check_instrument(path: str, pha: DataPHA) -> None:
    """Refuse grating and HRC spectra before any response is read."""
    header = pha.header
    nchan = len(pha.channel)
    # The GRATING keyword alone is no test: the zeroth order of an HETG or LETG
    # observation is an imaging spectrum with an imaging response.
    if any(k in header for k in _GRATING_KEYWORDS) or nchan > MAX_IMAGING_CHANNELS:
        grating = str(header.get("GRATING", "") or "").strip().upper()
        detail = f"{grating}, " if grating not in ("NONE", "") else ""
        raise SpectrumError(
            path,
            f"grating spectrum ({detail}{nchan} channels); sherpa_latent handles ACIS imaging "
            "spectra only",
        )
    instrument = str(header.get("INSTRUME", "") or "").strip().upper()
    if instrument.startswith("HRC"):
        raise SpectrumError(
            path, "HRC spectrum: HRC has almost no energy resolution; use an ACIS spectrum"
        )


def _validate(path: str, pha: DataPHA) -> None:
    """Checks that every Spectrum passes, whichever way it was made."""
    counts = np.asarray(pha.counts, dtype=float)
    if not np.all(np.isfinite(counts)):
        bad = int(np.sum(~np.isfinite(counts)))
        raise SpectrumError(path, f"{bad} NaN or infinite values in the COUNTS column")
    if np.any(counts < 0):
        raise SpectrumError(path, "negative counts")
    rmf = pha.get_rmf()
    if rmf is None:
        raise SpectrumError(path, "no response (RMF) attached")
    if int(rmf.detchans) != len(pha.channel):
        raise SpectrumError(
            path,
            f"RMF {os.path.basename(str(rmf.name))} has {int(rmf.detchans)} channels but the "
            f"spectrum has {len(pha.channel)}",
        )
    arf = pha.get_arf()
    if arf is not None and len(arf.specresp) != len(rmf.energ_lo):
        raise SpectrumError(
            path,
            f"ARF {os.path.basename(str(arf.name))} has {len(arf.specresp)} energy bins but the "
            f"RMF has {len(rmf.energ_lo)}",
        )
    if arf is not None and not np.all(np.isfinite(arf.specresp)):
        raise SpectrumError(path, "NaN in the ARF's SPECRESP")
    if not (np.isfinite(pha.exposure or np.nan) and pha.exposure > 0):
        raise SpectrumError(path, "EXPOSURE is missing or not positive")
    if pha.background_ids:
        bkg = np.asarray(pha.get_background().counts, dtype=float)
        if bkg.shape != counts.shape:
            raise SpectrumError(
                path, f"background has {bkg.size} channels but the spectrum has {counts.size}"
            )
        if not np.all(np.isfinite(bkg)):
            raise SpectrumError(path, "NaN in the background counts")
    mid = 0.5 * (np.asarray(rmf.e_min) + np.asarray(rmf.e_max))
    in_band = (mid >= FIT_BAND[0]) & (mid < FIT_BAND[1])
    if counts[in_band].sum() <= 0:
        raise SpectrumError(path, f"no counts in {FIT_BAND[0]}-{FIT_BAND[1]} keV")
