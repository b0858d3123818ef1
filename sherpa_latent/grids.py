"""Fixed energy grids and the Chandra Source Catalog bands.

Two grids carry all of the project's data:

* the *model grid*, on which the decoder predicts the intrinsic photon spectrum
  (log-spaced, 0.2-10 keV, 1024 bins: about 8 eV at 2 keV, fine enough that narrow
  emission lines fold through R to better than 1% of Sherpa's own folding; with 256 bins
  the error near strong lines reached 4-5%);
* the *input grid*, on which the encoder sees counts, background and effective area
  (log-spaced, 0.3-8 keV, 48 bins).

Counts move from PHA channels to the input grid by the mid-energy of each channel,
taken from the RMF's EBOUNDS.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = [
    "EnergyGrid",
    "MODEL_GRID",
    "INPUT_GRID",
    "CSC_BANDS",
    "FIT_BAND",
    "channel_bin_index",
]


@dataclass(frozen=True)
class EnergyGrid:
    """A logarithmically spaced energy grid.

    Parameters
    ----------
    emin, emax : float
        Lower edge of the first bin and upper edge of the last bin, keV.
    nbins : int
        Number of bins.
    """

    emin: float
    emax: float
    nbins: int

    def __post_init__(self) -> None:
        if not (0 < self.emin < self.emax < np.inf):
            raise ValueError(f"energy grid needs 0 < emin < emax, got {self.emin}, {self.emax}")
        if int(self.nbins) != self.nbins or self.nbins < 1:
            raise ValueError(f"energy grid needs a positive whole number of bins, got {self.nbins}")

    @cached_property
    def edges(self) -> np.ndarray:
        """Bin edges, keV (``nbins + 1`` values)."""
        return np.geomspace(self.emin, self.emax, self.nbins + 1)

    @property
    def lo(self) -> np.ndarray:
        """Lower bin edges, keV."""
        return self.edges[:-1]

    @property
    def hi(self) -> np.ndarray:
        """Upper bin edges, keV."""
        return self.edges[1:]

    @property
    def mid(self) -> np.ndarray:
        """Geometric bin centres, keV."""
        return np.sqrt(self.lo * self.hi)

    @property
    def width(self) -> np.ndarray:
        """Bin widths, keV."""
        return np.diff(self.edges)

    def to_dict(self) -> dict:
        """The grid as plain numbers, for metadata and FITS keywords."""
        return {"emin": float(self.emin), "emax": float(self.emax), "nbins": int(self.nbins)}

    @classmethod
    def from_dict(cls, values: dict | EnergyGrid) -> EnergyGrid:
        """A grid from ``{"emin", "emax", "nbins"}`` as written by :meth:`to_dict`.

        Raises
        ------
        ValueError
            A key is missing or a value makes no grid.
        """
        if isinstance(values, EnergyGrid):
            return values
        try:
            nbins = values["nbins"]
            if float(nbins) != int(nbins):
                raise ValueError(f"nbins {nbins!r} is not a whole number")
            return cls(float(values["emin"]), float(values["emax"]), int(nbins))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an energy grid: {values!r} ({exc})") from None

    def band_weights(self, band: tuple[float, float]) -> np.ndarray:
        """Fraction of each bin inside ``band`` (keV), the flux taken uniform in a bin."""
        overlap = np.clip(np.minimum(self.hi, band[1]) - np.maximum(self.lo, band[0]), 0.0, None)
        return overlap / self.width

    def band_mask(self, band: tuple[float, float]) -> np.ndarray:
        """Bins whose centre lies in ``band`` (keV): ``lo <= mid < hi``."""
        return (self.mid >= band[0]) & (self.mid < band[1])

    def band_sum(self, values: np.ndarray, band: tuple[float, float]) -> np.ndarray:
        """``values`` (last axis on this grid, e.g. counts) summed over :meth:`band_mask` bins."""
        return np.asarray(values)[..., self.band_mask(band)].sum(-1)


MODEL_GRID = EnergyGrid(0.2, 10.0, 1024)
"""Grid of the decoder's intrinsic photon spectrum (photons/cm^2/s per bin)."""

INPUT_GRID = EnergyGrid(0.3, 8.0, 48)
"""Grid of the encoder's tokens (counts per bin)."""

CSC_BANDS: dict[str, tuple[float, float]] = {
    "soft": (0.5, 1.2),
    "medium": (1.2, 2.0),
    "hard": (2.0, 7.0),
    "broad": (0.5, 7.0),
}
"""Chandra Source Catalog ACIS energy bands, keV."""

FIT_BAND: tuple[float, float] = (0.5, 7.0)
"""Energy range of the classical fits and of net counts, keV."""


def channel_bin_index(e_min: np.ndarray, e_max: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Which bin of ``edges`` each channel falls in, by its mid-energy.

    Parameters
    ----------
    e_min, e_max : ndarray
        Channel energy bounds from the RMF's EBOUNDS, keV.
    edges : ndarray
        Increasing bin edges, keV.

    Returns
    -------
    ndarray of int
        Bin index per channel, or -1 for channels whose mid-energy lies outside the grid.
    """
    mid = 0.5 * (np.asarray(e_min, dtype=float) + np.asarray(e_max, dtype=float))
    idx = np.searchsorted(edges, mid, side="right") - 1
    idx[(mid < edges[0]) | (mid >= edges[-1])] = -1
    return idx
