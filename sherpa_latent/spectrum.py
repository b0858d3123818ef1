"""Load and validate a Chandra ACIS imaging spectrum with its response, as Sherpa objects.

:func:`load_spectrum` reads a PHA file with :mod:`sherpa_latent.reader` into Sherpa's own
``DataPHA``, attaches the ARF, RMF and background named in its header (also when the
files on disk carry a ``.gz`` that the header does not mention), checks that the result
is something the project can use, and returns a :class:`Spectrum`.

:meth:`Spectrum.representation` gives the response-aware representation the network
eats (DESIGN.md, decision 2): counts and scaled background on the input grid, the
effective area per input bin, and the projected response R (input grid x model grid).
An ARF on another energy grid than its RMF is averaged over the RMF's energy bins first,
which is what Sherpa's folding does with an ARF on a finer grid (the model folded through
the ARF on the ARF's grid is rebinned onto the RMF's).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from sherpa.astro.data import DataPHA
from sherpa.astro.instrument import rmf_to_matrix

from .errors import SpectrumError
from .grids import FIT_BAND, INPUT_GRID, MODEL_GRID, EnergyGrid, channel_bin_index
from .projection import bin_mean, project_response
from .reader import ResponseFileCache, find_named_file, header_file_names, read_spectrum
from .validation import check_pha, check_spectrum

__all__ = [
    "Spectrum",
    "ResponseRepresentation",
    "load_spectrum",
    "spectrum_from_pha",
    "header_file_names",
    "find_named_file",
    "arf_on_rmf_grid",
]


_ACIS_CHIPS = ("I0", "I1", "I2", "I3", "S0", "S1", "S2", "S3", "S4", "S5")
"""ACIS chip names by CCD_ID (Proposers' Observatory Guide)."""


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
        # Every check of sherpa_latent.validation, whichever way the spectrum was made;
        # what does not stop it (no ARF, odd grouping) joins the warnings.
        for warning in check_spectrum(self.path, self.pha):
            if warning not in self.warnings:
                self.warnings.append(warning)

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
    def detector(self) -> str:
        """The detector in an astronomer's words, from INSTRUME, DETNAM and GRATING.

        ACIS chips are named as in the Proposers' Observatory Guide (0-3: I0-I3, 4-9:
        S0-S5): ``DETNAM = 'ACIS-7'`` is "ACIS-S3", ``'ACIS-56789'`` is "ACIS-S (chips
        S1-S5)", and a grating other than NONE is appended ("ACIS-S (chips S1-S5), HETG").
        """
        inst = str(self._keyword("INSTRUME", "")).strip()
        det = str(self._keyword("DETNAM", "")).strip()
        grating = str(self._keyword("GRATING", "")).strip()
        name = det or inst
        match = re.fullmatch(r"ACIS-(\d+)", det.upper())
        if inst.upper() == "ACIS" and match:
            chips = [_ACIS_CHIPS[int(c)] for c in match.group(1)]
            if len(chips) == 1:
                name = f"ACIS-{chips[0]}"
            else:
                arrays = "+".join(sorted({chip[0] for chip in chips}))
                numbers = [int(chip[1]) for chip in chips]
                same_array = len({chip[0] for chip in chips}) == 1
                if same_array and numbers == list(range(numbers[0], numbers[-1] + 1)):
                    listed = f"{chips[0]}-{chips[-1]}"
                else:
                    listed = " ".join(chips)
                name = f"ACIS-{arrays} (chips {listed})"
        if grating and grating.upper() != "NONE":
            name = f"{name}, {grating}"
        return name

    @property
    def exposure(self) -> float:
        """Exposure time, s."""
        return float(self.pha.exposure)

    @property
    def position(self) -> tuple[float, float] | None:
        """Source right ascension and declination (ICRS), degrees, or None.

        The RA and DEC keywords come first: Chandra Source Catalog spectra and
        ``specextract`` output carry the source position there. Otherwise RA_TARG and
        DEC_TARG, the observation's target. A pair that is missing, not a number, or
        outside 0 <= RA < 360 and -90 <= DEC <= 90 is passed over.
        """
        for ra_key, dec_key in (("RA", "DEC"), ("RA_TARG", "DEC_TARG")):
            try:
                ra, dec = float(self._keyword(ra_key)), float(self._keyword(dec_key))
            except (TypeError, ValueError):
                continue
            if np.isfinite(ra) and np.isfinite(dec) and 0 <= ra < 360 and abs(dec) <= 90:
                return ra, dec
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

    @property
    def effective_area_on_rmf_grid(self) -> np.ndarray:
        """The ARF's effective area on the RMF's energy grid, cm^2 (ones without an ARF).

        An ARF with as many bins as the RMF is used bin for bin, as Sherpa does; one on
        another grid is averaged (energy-weighted) over each RMF bin, see
        :func:`arf_on_rmf_grid`.
        """
        rmf, arf = self.pha.get_rmf(), self.pha.get_arf()
        if arf is None:
            return np.ones(len(rmf.energ_lo))
        return arf_on_rmf_grid(arf, rmf)

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
        specresp = self.effective_area_on_rmf_grid
        try:
            response = project_response(
                energ_lo, energ_hi, specresp, mat.matrix, e_min, e_max, input_grid, model_grid
            )
        except ValueError as exc:
            raise SpectrumError(self.path, f"response does not match: {exc}") from None
        return ResponseRepresentation(
            counts=counts,
            background=background,
            effective_area=bin_mean(energ_lo, energ_hi, specresp, input_grid.edges),
            response=response,
            exposure=self.exposure,
            input_grid=input_grid,
            model_grid=model_grid,
        )


def arf_on_rmf_grid(arf, rmf) -> np.ndarray:
    """An ARF's effective area on its RMF's energy grid, as Sherpa's folding uses it, cm^2.

    With as many ARF bins as RMF bins Sherpa multiplies bin by bin, and so does this.
    Otherwise Sherpa evaluates the model on the ARF's grid, multiplies by the ARF and
    rebins the product onto the RMF's grid (``sherpa.utils.rebin``, by overlap in
    energy); for a model flat within an RMF bin that is the RMF-bin model times the
    energy-weighted mean of the ARF over the bin, which is what this returns (0 where
    the ARF does not reach). Sherpa itself folds only an ARF on a finer grid (more bins);
    with a coarser one its fold raises ``TypeError``, while this average still holds.

    Parameters
    ----------
    arf : sherpa.astro.data.DataARF
    rmf : sherpa.astro.data.DataRMF

    Returns
    -------
    ndarray, shape (len(rmf.energ_lo),)
        Effective area per RMF energy bin, cm^2.
    """
    area = np.asarray(arf.specresp, dtype=float)
    lo, hi = np.asarray(rmf.energ_lo, dtype=float), np.asarray(rmf.energ_hi, dtype=float)
    if len(area) == len(lo):
        return area
    a_lo, a_hi = np.asarray(arf.energ_lo, dtype=float), np.asarray(arf.energ_hi, dtype=float)
    # The integral of the (piecewise constant) ARF from its first edge, at every ARF edge.
    step = area * (a_hi - a_lo)
    upper = np.cumsum(step)
    edges = np.column_stack([a_lo, a_hi]).ravel()
    integral = np.column_stack([upper - step, upper]).ravel()
    inside = np.interp(hi, edges, integral) - np.interp(lo, edges, integral)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(hi > lo, inside / (hi - lo), 0.0)


# --- loading -----------------------------------------------------------------------------
def load_spectrum(
    path: str | os.PathLike,
    *,
    arf: str | os.PathLike | None = None,
    rmf: str | os.PathLike | None = None,
    background: str | os.PathLike | None = None,
    cache: ResponseFileCache | None = None,
) -> Spectrum:
    """Load a Chandra ACIS imaging spectrum with its response and background.

    The files are read by :func:`sherpa_latent.reader.read_spectrum` into Sherpa's own
    ``DataPHA``, ``DataARF`` and ``DataRMF``, attached as Sherpa's ``load_pha`` attaches
    them.

    Parameters
    ----------
    path : str or path-like
        The PHA (type I) file.
    arf, rmf, background : str or path-like, optional
        Files to use instead of those named by the ANCRFILE, RESPFILE and BACKFILE
        header keywords. Header names are looked up beside the PHA file too, and with or
        without a ``.gz`` suffix, as Chandra Source Catalog products are gzipped.
    cache : ResponseFileCache, optional
        ARF and RMF objects already read, shared with other spectra (default: the cache
        made active by :func:`sherpa_latent.reader.using_cache`, else none, so every
        spectrum gets response objects of its own, as with Sherpa's ``load_pha``).

    Returns
    -------
    Spectrum

    Raises
    ------
    SpectrumFileError
        The file (or a response file) is missing, a directory, or not readable FITS.
    SpectrumError
        The spectrum, its background or a response cannot be used (see
        :mod:`sherpa_latent.validation`): not Chandra ACIS imaging, bad EXPOSURE,
        BACKSCAL or AREASCAL, damaged counts, grouping or quality, a broken ARF or RMF,
        mismatched channels, no counts in 0.5-7 keV. The message names the file at fault.

    Examples
    --------
    >>> spec = load_spectrum("3c273.pi")
    >>> spec.net_counts()            # doctest: +SKIP
    """
    path = os.fspath(path)
    read = read_spectrum(
        path,
        arf=arf,
        rmf=rmf,
        background=background,
        cache=cache,
        check=lambda pha: check_pha(path, pha),
    )
    return Spectrum(path=path, pha=read.pha, warnings=list(read.warnings))


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
    return Spectrum(path=name, pha=pha)
