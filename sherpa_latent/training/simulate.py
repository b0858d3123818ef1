"""Simulated training spectra: source classes and priors, folding, noise, dataset shards.

The training data are simulated (the Chandra archive is out of reach), with real and
synthetic responses. A batch of spectra is made in a few vectorised steps:

1. :func:`draw_parameters` draws a source class and its physical parameters (the table
   :data:`PRIORS`);
2. :func:`intrinsic_flux` evaluates the photon spectrum at the telescope (absorption
   included, instrument not) on the model grid, with the kernels of
   :mod:`sherpa_latent.physics`;
3. an exposure, a response from a
   :class:`~sherpa_latent.training.response_library.ResponseLibrary` and a target number
   of net source counts (0.5-7 keV) are drawn, and the normalisation is set so that
   the expected counts ``exposure * R @ flux`` hit the target;
4. a background (a flat-ish particle spectrum plus a soft sky component) is added, the
   source-region counts are drawn from Poisson(source + background) and the background
   region from Poisson(background / r), with r the background scale.

:func:`simulate_shards` writes the result as ``.npz`` shards plus a ``manifest.json``,
resumably, in the layout of :mod:`sherpa_latent.training.shards`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import __version__, physics
from ..classes import CLASS_NAMES
from ..executors import check_workers, make_executor
from ..fileio import save_npz, sha256_file, write_json
from ..grids import FIT_BAND, INPUT_GRID, MODEL_GRID, EnergyGrid
from .response_library import ResponseLibrary
from .shards import (
    LIBRARY_FILE,
    SHARD_FORMAT,
    SHARD_KEYS,
    ShardError,
    manifest_path,
    read_manifest,
    shard_complete,
    shard_name,
)

__all__ = [
    "Range",
    "LinePrior",
    "SecondPlasmaPrior",
    "ClassPrior",
    "PRIORS",
    "BackgroundPrior",
    "SimulationConfig",
    "PARAMETER_KEYS",
    "priors_summary",
    "draw_parameters",
    "intrinsic_flux",
    "fold",
    "fold_library",
    "normalise_to_counts",
    "draw_background",
    "simulate_source",
    "simulate_batch",
    "simulate_shards",
]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------
# Priors
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """A uniform (or log-uniform) prior between two values.

    Parameters
    ----------
    lo, hi : float
        Limits.
    log : bool
        Uniform in the logarithm (log-uniform) rather than in the value.
    unit : str
        Unit of the values, for documentation.
    """

    lo: float
    hi: float
    log: bool = False
    unit: str = ""

    def __post_init__(self) -> None:
        if not self.lo <= self.hi or (self.log and self.lo <= 0):
            raise ValueError(f"bad prior range {self.lo}..{self.hi} (log={self.log})")

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` values from the prior."""
        if self.log:
            return np.exp(rng.uniform(np.log(self.lo), np.log(self.hi), n))
        return rng.uniform(self.lo, self.hi, n)


@dataclass(frozen=True)
class LinePrior:
    """A Gaussian emission line added to a power law.

    Parameters
    ----------
    probability : float
        Fraction of the sources of the class that have the line.
    energy : float
        Line centre, keV.
    ew : Range
        Equivalent width against the unabsorbed power law, keV.
    sigma : Range
        Gaussian width, keV.
    """

    probability: float
    energy: float
    ew: Range
    sigma: Range


@dataclass(frozen=True)
class SecondPlasmaPrior:
    """A second, hotter plasma component.

    Parameters
    ----------
    probability : float
        Fraction of the sources of the class that have it.
    kt_ratio : Range
        Its temperature over the first one's.
    em_ratio : Range
        Its emission measure (plasma norm) over the first one's.
    """

    probability: float
    kt_ratio: Range
    em_ratio: Range


@dataclass(frozen=True)
class ClassPrior:
    """Model and priors of one source class.

    Parameters
    ----------
    name : str
        Class name (as in :data:`sherpa_latent.classes.CLASS_NAMES`).
    expression : str
        The model, as a Sherpa expression with the project's XSPEC-free components.
    model : str
        Which continuum recipe builds it: ``"powerlaw"``, ``"disk+powerlaw"``,
        ``"bbody+powerlaw"`` or ``"plasma"``.
    nh : Range
        Absorbing column, cm^-2.
    param_name : str
        The class's main shape parameter, stored as ``param`` in shards.
    params : dict of str to Range
        Priors of the continuum parameters (keys among :data:`PARAMETER_KEYS`).
    line : LinePrior, optional
        An emission line on the power law.
    second_plasma : SecondPlasmaPrior, optional
        A second plasma temperature.
    norm_band : tuple of float
        Band in which the unabsorbed continuum photon flux is ``norm`` (and in which
        ``pl_frac`` is the power law's share), keV.
    notes : str
        What the numbers mean, where it is not obvious.
    """

    name: str
    expression: str
    model: str
    nh: Range
    param_name: str
    params: dict[str, Range]
    line: LinePrior | None = None
    second_plasma: SecondPlasmaPrior | None = None
    norm_band: tuple[float, float] = FIT_BAND
    notes: str = ""


_FE_K = 6.4  # keV, neutral iron K-alpha

PRIORS: dict[str, ClassPrior] = {
    "AGN": ClassPrior(
        name="AGN",
        expression="wabs * (powlaw1d + gauss1d)",
        model="powerlaw",
        nh=Range(1e20, 1e22, log=True, unit="cm^-2"),
        param_name="gamma",
        params={"gamma": Range(1.5, 2.3)},
        line=LinePrior(0.3, _FE_K, Range(0.05, 0.2, unit="keV"), Range(0.01, 0.1, unit="keV")),
        notes="Fe K line in 30%, EW 50-200 eV; no redshift",
    ),
    "obscured AGN": ClassPrior(
        name="obscured AGN",
        expression="wabs * (powlaw1d + gauss1d) + powlaw1d.scattered",
        model="powerlaw",
        nh=Range(1e22, 1e24, log=True, unit="cm^-2"),
        param_name="gamma",
        params={"gamma": Range(1.5, 2.3), "scatter_frac": Range(0.01, 0.05)},
        line=LinePrior(1.0, _FE_K, Range(0.05, 0.3, unit="keV"), Range(0.01, 0.1, unit="keV")),
        notes="scattered: unabsorbed power law of the same index at 1-5% of the norm; "
        "Fe K EW against the unabsorbed continuum",
    ),
    "HMXB": ClassPrior(
        name="HMXB",
        expression="wabs * (powlaw1d + gauss1d)",
        model="powerlaw",
        nh=Range(1e22, 1e23, log=True, unit="cm^-2"),
        param_name="gamma",
        params={"gamma": Range(0.5, 1.5)},
        line=LinePrior(0.4, _FE_K, Range(0.03, 0.3, unit="keV"), Range(0.01, 0.1, unit="keV")),
        notes="Fe K line in 40%",
    ),
    "LMXB": ClassPrior(
        name="LMXB",
        expression="wabs * (diskbb + powlaw1d)",
        model="disk+powerlaw",
        nh=Range(1e21, 3e22, log=True, unit="cm^-2"),
        param_name="tin",
        params={
            "tin": Range(0.5, 2.0, log=True, unit="keV"),
            "gamma": Range(1.7, 2.5),
            "pl_frac": Range(0.1, 0.6),
        },
        notes="pl_frac: power-law share of the unabsorbed 0.5-7 keV photon flux",
    ),
    "CV": ClassPrior(
        name="CV",
        expression="wabs * plasma",
        model="plasma",
        nh=Range(1e20, 3e21, log=True, unit="cm^-2"),
        param_name="kt",
        params={"kt": Range(5.0, 30.0, log=True, unit="keV"), "abundance": Range(0.3, 1.0)},
        notes="Fe XXV 6.7 keV line from the plasma model",
    ),
    "YSO": ClassPrior(
        name="YSO",
        expression="wabs * plasma",
        model="plasma",
        nh=Range(1e21, 1e23, log=True, unit="cm^-2"),
        param_name="kt",
        params={"kt": Range(1.0, 4.0, log=True, unit="keV"), "abundance": Range(0.2, 0.8)},
    ),
    "coronal star": ClassPrior(
        name="coronal star",
        expression="wabs * (plasma + plasma.hot)",
        model="plasma",
        nh=Range(1e19, 5e20, log=True, unit="cm^-2"),
        param_name="kt",
        params={"kt": Range(0.2, 1.0, log=True, unit="keV"), "abundance": Range(0.2, 1.0)},
        second_plasma=SecondPlasmaPrior(0.4, Range(1.5, 4.0), Range(0.1, 1.0)),
        notes="second temperature in 40%: 1.5-4 x kT, emission measure 0.1-1 x",
    ),
    "NS/pulsar": ClassPrior(
        name="NS/pulsar",
        expression="wabs * (bbodyrad + powlaw1d)",
        model="bbody+powerlaw",
        nh=Range(1e20, 1e22, log=True, unit="cm^-2"),
        param_name="bb_kt",
        params={
            "bb_kt": Range(0.05, 0.5, log=True, unit="keV"),
            "gamma": Range(1.0, 2.0),
            "pl_frac": Range(0.1, 0.9),
        },
        norm_band=(0.2, 10.0),
        notes="pl_frac: power-law share of the unabsorbed 0.2-10 keV photon flux",
    ),
}
"""Source classes and their priors, in the order of :data:`CLASS_NAMES` (ranges and their
references in docs/network.md). Every temperature is in keV; ``nh`` in cm^-2."""

if tuple(PRIORS) != CLASS_NAMES:  # pragma: no cover - a guard for whoever edits the table
    raise RuntimeError("PRIORS must list the classes of CLASS_NAMES, in that order")

_PRIOR_LIST: tuple[ClassPrior, ...] = tuple(PRIORS.values())

PARAMETER_KEYS: tuple[str, ...] = (
    "class_id",
    "log_nh",
    "param",
    "gamma",
    "scatter_frac",
    "line_e",
    "line_sigma",
    "line_ew",
    "tin",
    "bb_kt",
    "pl_frac",
    "kt",
    "kt2",
    "em2_ratio",
    "abundance",
    "norm",
)
"""Keys of the parameter dict of :func:`draw_parameters` (all arrays of shape (N,)).

``log_nh``: log10 N_H (cm^-2); ``gamma``: photon index; ``tin``, ``bb_kt``, ``kt``,
``kt2``: temperatures, keV (every source is at redshift 0); ``line_e``, ``line_sigma``,
``line_ew``: keV (``line_ew`` 0 without a line); ``norm``: unabsorbed continuum photon
flux in the class's ``norm_band``, photons/cm^2/s. Parameters a class does not use are
NaN (0 for ratios and widths)."""

_ZERO_DEFAULT = ("scatter_frac", "line_ew", "em2_ratio")


@dataclass(frozen=True)
class BackgroundPrior:
    """Priors of the simulated background in the source region.

    Parameters
    ----------
    source_fraction : Range
        Particle background counts in 0.5-7 keV as a fraction of the net source counts.
    rate : Range
        A detector floor added to it: particle counts/s in 0.5-7 keV in the region.
    slope : Range
        The particle spectrum is counts/keV proportional to E^slope.
    soft_fraction : Range
        Counts of the soft (sky) component over the whole input grid, as a fraction of
        the particle counts in 0.5-7 keV.
    soft_kt : Range
        Temperature of the soft component, keV: photons/keV E^-1 exp(-E/kT) times the
        response's effective area.
    scale : Range
        Background scale r (source over background region area x exposure).
    """

    source_fraction: Range = Range(3e-3, 0.1, log=True)
    rate: Range = Range(3e-6, 1e-4, log=True, unit="counts/s")
    slope: Range = Range(-0.3, 0.5)
    soft_fraction: Range = Range(0.0, 0.5)
    soft_kt: Range = Range(0.1, 0.3, log=True, unit="keV")
    scale: Range = Range(0.02, 0.5, log=True)


@dataclass(frozen=True)
class SimulationConfig:
    """Exposure, brightness and background of simulated spectra.

    Parameters
    ----------
    exposure : Range
        Exposure time, s (log-uniform 5-150 ks).
    net_counts : Range
        Expected net source counts in 0.5-7 keV (log-uniform 30-100,000).
    background : BackgroundPrior
        The background model.
    band : tuple of float
        The band of ``net_counts`` and ``log_flux``, keV.
    """

    exposure: Range = Range(5e3, 1.5e5, log=True, unit="s")
    net_counts: Range = Range(30.0, 1e5, log=True, unit="counts")
    background: BackgroundPrior = field(default_factory=BackgroundPrior)
    band: tuple[float, float] = FIT_BAND


def priors_summary(
    priors: dict[str, ClassPrior] | None = None, config: SimulationConfig | None = None
) -> dict:
    """The priors and simulation settings as plain JSON-able values (for manifests)."""
    priors = PRIORS if priors is None else priors
    config = SimulationConfig() if config is None else config
    return {
        "classes": {name: asdict(prior) for name, prior in priors.items()},
        "simulation": asdict(config),
    }


def draw_parameters(
    n: int,
    class_ids: int | Sequence[int] | np.ndarray | None = None,
    rng: np.random.Generator | int | None = None,
    *,
    priors: dict[str, ClassPrior] | None = None,
) -> dict[str, np.ndarray]:
    """Draw source classes and parameters.

    Parameters
    ----------
    n : int
        Number of sources.
    class_ids : int or array of int, optional
        Class of every source (one value for all, or one per source); drawn uniformly
        over the classes when not given.
    rng : numpy.random.Generator or int, optional
        Random numbers (or a seed).
    priors : dict, optional
        Class priors (default :data:`PRIORS`).

    Returns
    -------
    dict of str to ndarray
        The keys of :data:`PARAMETER_KEYS`, each of shape (n,); ``norm`` is 1 (set it
        with :func:`normalise_to_counts` or by hand).
    """
    prior_list = _prior_list(priors)
    rng = np.random.default_rng(rng)
    n = int(n)
    if class_ids is None:
        cid = rng.integers(0, len(prior_list), n)
    else:
        cid = np.broadcast_to(np.asarray(class_ids, dtype=np.int64), (n,)).copy()
    if n and (cid.min() < 0 or cid.max() >= len(prior_list)):
        raise ValueError(f"class ids must be 0-{len(prior_list) - 1}")
    out = {k: np.full(n, np.nan) for k in PARAMETER_KEYS if k != "class_id"}
    for key in _ZERO_DEFAULT:
        out[key][:] = 0.0
    out["norm"][:] = 1.0
    out["class_id"] = cid.astype(np.int16)
    for c in np.unique(cid):
        rows = np.flatnonzero(cid == c)
        m = rows.size
        prior = prior_list[c]
        out["log_nh"][rows] = np.log10(prior.nh.draw(rng, m))
        for name, rng_prior in prior.params.items():
            out[name][rows] = rng_prior.draw(rng, m)
        if prior.line is not None:
            has = rng.random(m) < prior.line.probability
            ew, sigma = prior.line.ew.draw(rng, m), prior.line.sigma.draw(rng, m)
            out["line_e"][rows] = np.where(has, prior.line.energy, np.nan)
            out["line_ew"][rows] = np.where(has, ew, 0.0)
            out["line_sigma"][rows] = np.where(has, sigma, np.nan)
        if prior.second_plasma is not None:
            sp = prior.second_plasma
            has = rng.random(m) < sp.probability
            ratio, em = sp.kt_ratio.draw(rng, m), sp.em_ratio.draw(rng, m)
            out["kt2"][rows] = np.where(has, out["kt"][rows] * ratio, np.nan)
            out["em2_ratio"][rows] = np.where(has, em, 0.0)
        out["param"][rows] = out[prior.param_name][rows]
    return out


def _prior_list(priors: dict[str, ClassPrior] | None) -> tuple[ClassPrior, ...]:
    return _PRIOR_LIST if priors is None else tuple(priors.values())


# ----------------------------------------------------------------------------------------
# Intrinsic spectra
# ----------------------------------------------------------------------------------------


class _LogTable:
    """A one-parameter kernel tabulated on a grid in log10(parameter), for speed.

    ln(flux) is interpolated linearly in log10(parameter) (step ``step`` dex); values
    outside the table go to the kernel itself.
    """

    def __init__(self, func, lo: float, hi: float, step: float, grid: EnergyGrid) -> None:
        self.func = func
        self.grid = grid
        self.x0 = np.log10(lo)
        self.step = step
        self.n = int(np.ceil((np.log10(hi) - self.x0) / step)) + 1
        x = self.x0 + step * np.arange(self.n)
        with np.errstate(divide="ignore"):
            self.table = np.log(np.maximum(func(10.0**x, grid.lo, grid.hi), 1e-300))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            pos = (np.log10(values) - self.x0) / self.step
        inside = (pos >= 0) & (pos <= self.n - 1)
        out = np.empty((values.size, self.grid.nbins))
        if np.any(inside):
            p = pos[inside]
            k = np.minimum(p.astype(np.int64), self.n - 2)
            f = (p - k)[:, None]
            out[inside] = np.exp(self.table[k] * (1.0 - f) + self.table[k + 1] * f)
        if np.any(~inside):
            out[~inside] = self.func(values[~inside], self.grid.lo, self.grid.hi)
        return out


@lru_cache(maxsize=8)
def _tables(emin: float, emax: float, nbins: int) -> dict[str, _LogTable]:
    """Kernel tables for one model grid (built on first use, a few seconds)."""
    grid = EnergyGrid(emin, emax, nbins)

    def wabs(nh22, lo, hi):
        return physics.wabs_transmission(nh22, lo, hi)

    def plasma0(kt, lo, hi):
        return physics.plasma_photon_flux(kt, 0.0, 0.0, 1.0, lo, hi)

    def plasma1(kt, lo, hi):  # the part proportional to the abundance
        return physics.plasma_photon_flux(kt, 1.0, 0.0, 1.0, lo, hi) - plasma0(kt, lo, hi)

    def disk(tin, lo, hi):
        return physics.diskbb_photon_flux(tin, 1.0, lo, hi)

    def bbody(kt, lo, hi):
        return physics.bbodyrad_photon_flux(kt, 1.0, lo, hi)

    return {
        "wabs": _LogTable(wabs, 1e-5, 1e3, 0.002, grid),  # N_H 1e17-1e25 cm^-2
        "plasma0": _LogTable(plasma0, 0.08, 60.0, 0.002, grid),
        "plasma1": _LogTable(plasma1, 0.08, 60.0, 0.002, grid),
        "disk": _LogTable(disk, 0.2, 5.0, 0.001, grid),
        "bbody": _LogTable(bbody, 0.02, 2.0, 0.001, grid),
    }


class _Kernels:
    """The physics kernels on one grid: tabulated (fast) or direct (exact)."""

    def __init__(self, grid: EnergyGrid, exact: bool) -> None:
        self.grid = grid
        self.lo, self.hi = grid.lo, grid.hi
        self.tables = None if exact else _tables(grid.emin, grid.emax, grid.nbins)

    def wabs(self, nh22: np.ndarray) -> np.ndarray:
        if self.tables is None:
            return physics.wabs_transmission(nh22, self.lo, self.hi)
        return self.tables["wabs"](nh22)

    def plasma(self, kt: np.ndarray, abundance: np.ndarray) -> np.ndarray:
        if self.tables is None:
            n = kt.size
            return physics.plasma_photon_flux(kt, abundance, np.zeros(n), np.ones(n), self.lo,
                                              self.hi)  # fmt: skip
        return self.tables["plasma0"](kt) + abundance[:, None] * self.tables["plasma1"](kt)

    def disk(self, tin: np.ndarray) -> np.ndarray:
        if self.tables is None:
            return physics.diskbb_photon_flux(tin, np.ones(tin.size), self.lo, self.hi)
        return self.tables["disk"](tin)

    def bbody(self, kt: np.ndarray) -> np.ndarray:
        if self.tables is None:
            return physics.bbodyrad_photon_flux(kt, np.ones(kt.size), self.lo, self.hi)
        return self.tables["bbody"](kt)

    def powerlaw(self, gamma: np.ndarray) -> np.ndarray:
        return physics.powerlaw_photon_flux(gamma, np.ones(gamma.size), self.lo, self.hi)

    def line(self, centre, sigma, norm) -> tuple[slice, np.ndarray]:
        """Gaussian lines evaluated only on the bins within 10 sigma of the centres."""
        first = int(np.searchsorted(self.hi, np.min(centre - 10.0 * sigma), side="left"))
        last = int(np.searchsorted(self.lo, np.max(centre + 10.0 * sigma), side="right"))
        window = slice(first, max(last, first + 1))
        return window, physics.gaussian_line_photon_flux(
            centre, sigma, norm, self.lo[window], self.hi[window]
        )


def _unit_band(component: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale rows to unit photon flux in the band; returns (scaled, band flux)."""
    band = component @ weights
    scale = np.where(band > 0, 1.0 / np.where(band > 0, band, 1.0), 0.0)
    return component * scale[:, None], band


def intrinsic_flux(
    params: dict[str, np.ndarray],
    model_grid: EnergyGrid = MODEL_GRID,
    *,
    priors: dict[str, ClassPrior] | None = None,
    absorbed: bool = True,
    exact: bool = False,
) -> np.ndarray:
    """Photon spectrum at the telescope (absorbed, before the instrument) on a grid.

    Parameters
    ----------
    params : dict of str to ndarray
        Source parameters as from :func:`draw_parameters` (arrays of shape (N,)).
    model_grid : EnergyGrid
        Energy grid (default: the model grid).
    priors : dict, optional
        Class priors (default :data:`PRIORS`): the recipe and normalisation band.
    absorbed : bool
        Apply the photoelectric absorption (False gives the unabsorbed spectrum).
    exact : bool
        Call the physics kernels directly instead of the tabulated ones (tables agree
        with the kernels to about 1e-5; direct calls are 10-100 times slower).

    Returns
    -------
    ndarray, shape (N, model_grid.nbins)
        Photon flux integrated over each bin, photons/cm^2/s.
    """
    prior_list = _prior_list(priors)
    p = {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in params.items()}
    cid = np.atleast_1d(np.asarray(params["class_id"])).astype(np.int64)
    kern = _Kernels(model_grid, exact)
    out = np.zeros((cid.size, model_grid.nbins))
    for c in np.unique(cid):
        rows = np.flatnonzero(cid == c)
        sub = {k: v[rows] for k, v in p.items()}
        prior = prior_list[c]
        weights = model_grid.band_weights(prior.norm_band)
        main, scattered = _continuum(prior, sub, kern, weights)
        if absorbed:
            main *= kern.wabs(10.0 ** (sub["log_nh"] - 22.0))
        if scattered is not None:
            main += scattered
        out[rows] = main * sub["norm"][:, None]
    return out


def _continuum(
    prior: ClassPrior, p: dict[str, np.ndarray], kern: _Kernels, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """Unit-norm continuum (+ line) to be absorbed, and an unabsorbed part (or None)."""
    scattered = None
    if prior.model == "powerlaw":
        main, band = _unit_band(kern.powerlaw(p["gamma"]), weights)
        ew = p["line_ew"]
        has = ew > 0
        if np.any(has):
            # Line flux = EW x the unit power law's density at the line, E^-gamma / band.
            e, g = p["line_e"][has], p["gamma"][has]
            density = e ** (-g) / np.where(band[has] > 0, band[has], np.inf)
            window, line = kern.line(e, p["line_sigma"][has], ew[has] * density)
            main[np.flatnonzero(has)[:, None], np.arange(window.start, window.stop)] += line
        frac = p["scatter_frac"]
        if np.any(frac > 0):
            scattered = np.zeros_like(main)
            rows = frac > 0
            unit, _ = _unit_band(kern.powerlaw(p["gamma"][rows]), weights)
            scattered[rows] = frac[rows, None] * unit
    elif prior.model in ("disk+powerlaw", "bbody+powerlaw"):
        other = kern.disk(p["tin"]) if prior.model == "disk+powerlaw" else kern.bbody(p["bb_kt"])
        other, _ = _unit_band(other, weights)
        pl, _ = _unit_band(kern.powerlaw(p["gamma"]), weights)
        f = p["pl_frac"][:, None]
        main = (1.0 - f) * other + f * pl
    elif prior.model == "plasma":
        ab = p["abundance"]
        total = kern.plasma(p["kt"], ab)
        second = np.isfinite(p["kt2"]) & (p["em2_ratio"] > 0)
        if np.any(second):
            extra = kern.plasma(p["kt2"][second], ab[second])
            total[second] += p["em2_ratio"][second, None] * extra
        main, _ = _unit_band(total, weights)
    else:
        raise ValueError(f"unknown model recipe {prior.model!r} of class {prior.name}")
    return main, scattered


# ----------------------------------------------------------------------------------------
# Folding and noise
# ----------------------------------------------------------------------------------------


def fold(flux: np.ndarray, response: np.ndarray, exposure) -> np.ndarray:
    """Expected source counts, ``exposure * R @ flux``.

    Parameters
    ----------
    flux : ndarray, shape (N, n_model) or (n_model,)
        Photon flux per model-grid bin, photons/cm^2/s.
    response : ndarray, shape (n_input, n_model) or (N, n_input, n_model)
        Projected response(s), cm^2.
    exposure : float or ndarray of shape (N,)
        Exposure, s.

    Returns
    -------
    ndarray, shape (N, n_input) or (n_input,)
    """
    flux = np.asarray(flux, dtype=float)
    response = np.asarray(response)
    if response.ndim == 3:
        counts = np.einsum("nim,nm->ni", response, flux, dtype=float)
    else:
        counts = flux @ response.T.astype(float)
    exposure = np.asarray(exposure, dtype=float)
    return counts * (exposure[..., None] if exposure.ndim else exposure)


def fold_library(
    flux: np.ndarray, library: ResponseLibrary, response_ids: np.ndarray, exposure
) -> np.ndarray:
    """Fold each spectrum through its own library response, grouped by response.

    Parameters
    ----------
    flux : ndarray, shape (N, n_model)
        Photons/cm^2/s per model-grid bin.
    library : ResponseLibrary
        The responses.
    response_ids : ndarray of int, shape (N,)
        Library index of each spectrum's response.
    exposure : float or ndarray of shape (N,)
        Exposure, s.

    Returns
    -------
    ndarray, shape (N, n_input)
        Expected source counts on the input grid.
    """
    flux = np.asarray(flux, dtype=float)
    ids = np.asarray(response_ids, dtype=np.int64)
    out = np.empty((flux.shape[0], library.response.shape[1]))
    order = np.argsort(ids, kind="stable")
    bounds = np.flatnonzero(np.diff(ids[order])) + 1
    for group in np.split(order, bounds):
        if group.size:
            out[group] = flux[group] @ library.response[ids[group[0]]].T.astype(float)
    exposure = np.broadcast_to(np.asarray(exposure, dtype=float), (flux.shape[0],))
    return out * exposure[:, None]


def normalise_to_counts(
    params: dict[str, np.ndarray],
    response: np.ndarray,
    exposure,
    net_counts,
    *,
    model_grid: EnergyGrid = MODEL_GRID,
    input_grid: EnergyGrid = INPUT_GRID,
    band: tuple[float, float] = FIT_BAND,
) -> dict[str, np.ndarray]:
    """Set ``params['norm']`` so the expected net counts in ``band`` equal ``net_counts``.

    Parameters
    ----------
    params : dict
        Source parameters (a new dict is returned; the input is not changed).
    response : ndarray, shape (n_input, n_model) or (N, n_input, n_model)
        Projected response(s), cm^2.
    exposure : float or ndarray of shape (N,)
        Exposure, s.
    net_counts : float or ndarray of shape (N,)
        Target expected source counts in ``band`` (input-grid bins with centres in it).

    Returns
    -------
    dict
        A copy of ``params`` with ``norm`` set.
    """
    unit = dict(params)
    unit["norm"] = np.ones_like(np.asarray(params["norm"], dtype=float))
    counts = fold(intrinsic_flux(unit, model_grid), response, exposure)
    in_band = np.atleast_2d(counts)[:, input_grid.band_mask(band)].sum(axis=1)
    out = dict(params)
    out["norm"] = np.asarray(net_counts, dtype=float) / in_band
    return out


def draw_background(
    net_counts: np.ndarray,
    exposure: np.ndarray,
    effective_area: np.ndarray,
    rng: np.random.Generator,
    *,
    prior: BackgroundPrior | None = None,
    input_grid: EnergyGrid = INPUT_GRID,
    band: tuple[float, float] = FIT_BAND,
) -> np.ndarray:
    """Expected background counts in the source region.

    A particle component, counts/keV proportional to E^slope (not folded through the
    mirror), with ``source_fraction * net_counts + rate * exposure`` counts in ``band``,
    plus a soft sky component, E^-1 exp(-E/kT) photons/keV times the effective area.

    Parameters
    ----------
    net_counts, exposure : ndarray, shape (N,)
        Net source counts in the band and exposure (s).
    effective_area : ndarray, shape (N, n_input)
        Effective area of each spectrum's response, cm^2.
    rng : numpy.random.Generator
        Random numbers.

    Returns
    -------
    ndarray, shape (N, n_input)
        Expected background counts.
    """
    prior = BackgroundPrior() if prior is None else prior
    n = np.asarray(net_counts).size
    mid, width = input_grid.mid, input_grid.width
    mask = input_grid.band_mask(band)
    total = prior.source_fraction.draw(rng, n) * net_counts + prior.rate.draw(rng, n) * exposure
    slope = prior.slope.draw(rng, n)
    particle = width[None, :] * mid[None, :] ** slope[:, None]
    particle *= (total / particle[:, mask].sum(axis=1))[:, None]
    kt = prior.soft_kt.draw(rng, n)
    soft = width[None, :] * np.exp(-mid[None, :] / kt[:, None]) / mid[None, :]
    soft = soft * np.asarray(effective_area, dtype=float)
    soft_sum = soft.sum(axis=1)
    soft_total = prior.soft_fraction.draw(rng, n) * total
    soft *= np.where(soft_sum > 0, soft_total / np.where(soft_sum > 0, soft_sum, 1.0), 0.0)[:, None]
    return particle + soft


def simulate_source(
    params: dict[str, np.ndarray],
    response,
    exposure,
    rng: np.random.Generator | int | None = None,
    *,
    background: np.ndarray | None = None,
    bkg_scale: float | np.ndarray | None = None,
    model_grid: EnergyGrid = MODEL_GRID,
) -> dict[str, np.ndarray]:
    """Observe given sources through a given response, with Poisson noise.

    For checks such as the same source through two responses: draw ``params`` once (and
    set ``norm``, for instance with :func:`normalise_to_counts`), then call this with each
    response.

    Parameters
    ----------
    params : dict
        Source parameters with absolute ``norm`` (photons/cm^2/s, see
        :data:`PARAMETER_KEYS`).
    response : ndarray or ResponseRepresentation
        Projected response, (n_input, n_model) or (N, n_input, n_model), cm^2; a
        ``ResponseRepresentation`` gives its R (and its exposure when ``exposure`` is None).
    exposure : float or ndarray of shape (N,), or None
        Exposure, s.
    rng : numpy.random.Generator or int, optional
        Random numbers.
    background : ndarray, shape (N, n_input), optional
        Expected background counts in the source region (none when not given).
    bkg_scale : float or ndarray, optional
        Background scale r: the background region holds Poisson(background / r) counts
        and the returned estimate is r times that; without it the expectation itself is
        returned.

    Returns
    -------
    dict
        ``flux`` (N, n_model), ``expected`` source counts, ``counts`` (observed, source +
        background), ``background`` (estimate in the source region), all (N, n_input).
    """
    rng = np.random.default_rng(rng)
    if hasattr(response, "response") and hasattr(response, "exposure"):
        if exposure is None:
            exposure = response.exposure
        response = response.response
    flux = intrinsic_flux(params, model_grid)
    expected = np.atleast_2d(fold(flux, response, exposure))
    bkg = np.zeros_like(expected) if background is None else np.asarray(background, float)
    counts = rng.poisson(expected + bkg).astype(float)
    if background is None:
        estimate = bkg
    elif bkg_scale is None:
        estimate = bkg.copy()
    else:
        r = np.asarray(bkg_scale, dtype=float)
        r = r[:, None] if r.ndim else r
        estimate = r * rng.poisson(bkg / r)
    return {"flux": flux, "expected": expected, "counts": counts, "background": estimate}


# ----------------------------------------------------------------------------------------
# Batches
# ----------------------------------------------------------------------------------------

_BATCH_CHUNK = 4096  # rows simulated at once (bounds memory: (chunk, n_model) float64)


def _single_threaded_blas():
    """Limit BLAS to one thread: the folds are many small products, which threads slow."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _choose_responses(
    n: int,
    library: ResponseLibrary,
    rng: np.random.Generator,
    response_ids: Sequence[int] | np.ndarray | None,
    real_fraction: float | None,
) -> np.ndarray:
    allowed = np.arange(len(library)) if response_ids is None else np.asarray(response_ids)
    if allowed.size == 0:
        raise ValueError("no responses to draw from")
    if real_fraction is None:
        return allowed[rng.integers(0, allowed.size, n)].astype(np.int32)
    kinds = np.array([library.kinds[i] for i in allowed])
    real, synth = allowed[kinds == "real"], allowed[kinds == "synthetic"]
    if real.size == 0 or synth.size == 0:
        return allowed[rng.integers(0, allowed.size, n)].astype(np.int32)
    use_real = rng.random(n) < real_fraction
    out = synth[rng.integers(0, synth.size, n)]
    out[use_real] = real[rng.integers(0, real.size, int(use_real.sum()))]
    return out.astype(np.int32)


def simulate_batch(
    n: int,
    library: ResponseLibrary,
    rng: np.random.Generator | int | None = None,
    *,
    response_ids: Sequence[int] | np.ndarray | None = None,
    real_fraction: float | None = None,
    class_ids: int | Sequence[int] | np.ndarray | None = None,
    keep_flux: bool = False,
    config: SimulationConfig | None = None,
    priors: dict[str, ClassPrior] | None = None,
) -> dict[str, np.ndarray]:
    """Simulate ``n`` spectra (the content of one shard).

    Parameters
    ----------
    n : int
        Number of spectra.
    library : ResponseLibrary
        Responses to fold through.
    rng : numpy.random.Generator or int, optional
        Random numbers (or a seed).
    response_ids : array of int, optional
        Library indices to draw responses from (default: all, uniformly).
    real_fraction : float, optional
        Probability of a real response (the rest synthetic); default: uniform over the
        allowed responses.
    class_ids : int or array of int, optional
        Classes (default: uniform over the classes).
    keep_flux : bool
        Also return the intrinsic ``flux`` (N, n_model).
    config : SimulationConfig, optional
        Exposure, counts and background priors.
    priors : dict, optional
        Class priors (default :data:`PRIORS`).

    Returns
    -------
    dict of str to ndarray
        The arrays of :data:`SHARD_KEYS` (and ``flux``), with their dtypes.
    """
    rng = np.random.default_rng(rng)
    config = SimulationConfig() if config is None else config
    n = int(n)
    if class_ids is not None and np.ndim(class_ids) > 0:
        class_ids = np.asarray(class_ids)
        if class_ids.shape != (n,):
            raise ValueError(f"class_ids has shape {class_ids.shape}, expected ({n},)")
    parts = []
    with _single_threaded_blas():
        for start in range(0, max(n, 1), _BATCH_CHUNK):
            m = min(_BATCH_CHUNK, n - start)
            classes = class_ids
            if classes is not None and np.ndim(classes) > 0:
                classes = classes[start : start + m]
            parts.append(
                _simulate_chunk(
                    m,
                    library,
                    rng,
                    response_ids,
                    real_fraction,
                    classes,
                    keep_flux,
                    config,
                    priors,
                )  # fmt: skip
            )
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _simulate_chunk(
    n: int,
    library: ResponseLibrary,
    rng: np.random.Generator,
    response_ids,
    real_fraction,
    class_ids,
    keep_flux: bool,
    config: SimulationConfig,
    priors,
) -> dict[str, np.ndarray]:
    """One chunk of :func:`simulate_batch`; redraws spectra with no counts in the band."""
    model_grid, input_grid = library.model_grid, library.input_grid
    mask = input_grid.band_mask(config.band)
    flux_w = model_grid.band_weights(config.band)
    n_in, n_model = input_grid.nbins, model_grid.nbins
    result = {
        "counts": np.zeros((n, n_in), np.float32),
        "background": np.zeros((n, n_in), np.float32),
        "bkg_scale": np.zeros(n, np.float32),
        "response_id": np.zeros(n, np.int32),
        "exposure": np.zeros(n, np.float32),
        "class_id": np.zeros(n, np.int16),
        "log_nh": np.zeros(n, np.float32),
        "param": np.zeros(n, np.float32),
        "log_flux": np.zeros(n, np.float32),
        "net_counts": np.zeros(n, np.float32),
    }
    if keep_flux:
        result["flux"] = np.zeros((n, n_model), np.float32)
    todo = np.arange(n)
    fixed_classes = None if class_ids is None else np.broadcast_to(np.asarray(class_ids), (n,))
    for _attempt in range(100):
        if todo.size == 0:
            break
        m = todo.size
        cls = None if fixed_classes is None else fixed_classes[todo]
        params = draw_parameters(m, cls, rng, priors=priors)
        rid = _choose_responses(m, library, rng, response_ids, real_fraction)
        exposure = config.exposure.draw(rng, m)
        target = config.net_counts.draw(rng, m)
        unit_flux = intrinsic_flux(params, model_grid, priors=priors)
        unit_counts = fold_library(unit_flux, library, rid, exposure)
        unit_band = unit_counts[:, mask].sum(axis=1)
        usable = np.isfinite(unit_band) & (unit_band > 0)
        scale = np.where(usable, target / np.where(usable, unit_band, 1.0), 0.0)
        source = unit_counts * scale[:, None]
        bkg = draw_background(
            target, exposure, library.effective_area[rid], rng, prior=config.background,
            input_grid=input_grid, band=config.band,
        )  # fmt: skip
        r = config.background.scale.draw(rng, m)
        counts = rng.poisson(source + bkg)
        bkg_estimate = r[:, None] * rng.poisson(bkg / r[:, None])
        ok = usable & (counts[:, mask].sum(axis=1) > 0)
        rows = todo[ok]
        result["counts"][rows] = counts[ok]
        result["background"][rows] = bkg_estimate[ok]
        result["bkg_scale"][rows] = r[ok]
        result["response_id"][rows] = rid[ok]
        result["exposure"][rows] = exposure[ok]
        result["class_id"][rows] = params["class_id"][ok]
        result["log_nh"][rows] = params["log_nh"][ok]
        result["param"][rows] = params["param"][ok]
        with np.errstate(divide="ignore"):
            result["log_flux"][rows] = np.log10((scale * (unit_flux @ flux_w))[ok])
        result["net_counts"][rows] = target[ok]
        if keep_flux:
            result["flux"][rows] = unit_flux[ok] * scale[ok, None]
        todo = todo[~ok]
    if todo.size:
        raise RuntimeError(
            f"{todo.size} spectra still had no counts in {config.band} keV after 100 draws; "
            "check the responses (zero effective area?)"
        )
    return result


# ----------------------------------------------------------------------------------------
# Shards
# ----------------------------------------------------------------------------------------


def simulate_shards(
    out_dir: str | os.PathLike,
    n_spectra: int,
    library: ResponseLibrary | str | os.PathLike,
    *,
    shard_size: int = 50_000,
    seed: int = 0,
    response_ids: Sequence[int] | np.ndarray | None = None,
    real_fraction: float | None = None,
    keep_flux: bool = False,
    progress: bool = True,
    config: SimulationConfig | None = None,
    workers: int = 1,
    scheduler: str | os.PathLike | None = None,
) -> dict:
    """Simulate a data set into ``shard_00000.npz``, ... and ``manifest.json``; resumable.

    Shard ``k`` is made from its own random stream (``SeedSequence(seed,
    spawn_key=(k,))``), so the data depend only on the settings, not on interruptions.
    A shard already complete (readable, with the right rows) is not simulated again; the
    settings must match those in the folder's manifest.

    Parameters
    ----------
    out_dir : path-like
        Output folder (made if missing).
    n_spectra : int
        Number of spectra.
    library : ResponseLibrary or path-like
        Responses; a library object is saved into the folder as ``responses.npz``.
    shard_size : int
        Spectra per shard.
    seed : int
        Seed of the whole data set.
    response_ids : array of int, optional
        Library indices to draw responses from (default: all).
    real_fraction : float, optional
        Probability of drawing a real response (default: uniform over responses).
    keep_flux : bool
        Store the intrinsic flux (N, n_model) too (large).
    progress : bool
        Show a progress bar (tqdm).
    config : SimulationConfig, optional
        Exposure, counts and background priors.
    workers : int
        1: the shards are simulated in this process, one after the other. N > 1: on a local
        Dask cluster of N worker processes (:mod:`sherpa_latent.executors`; each loads the
        library file and builds its kernel tables once, a few seconds). The data do not
        depend on it. From a script, call under ``if __name__ == "__main__":``.
    scheduler : str or path-like, optional
        Address or scheduler file of a running Dask scheduler whose workers simulate the
        shards (one task per shard, written by the worker: ``out_dir`` and the library
        must be on a file system they see). See docs/scaling.md.

    Returns
    -------
    dict
        The manifest.

    Raises
    ------
    ShardError
        The folder holds shards made with other settings.
    """
    check_workers(workers, scheduler)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = SimulationConfig() if config is None else config
    n_spectra, shard_size = int(n_spectra), int(shard_size)
    if n_spectra < 0 or shard_size < 1:
        raise ValueError("n_spectra must be >= 0 and shard_size >= 1")
    if isinstance(library, ResponseLibrary):
        lib = library
        lib_path = out_dir / LIBRARY_FILE
        if not lib_path.is_file() or ResponseLibrary.load(lib_path).fingerprint() != (
            lib.fingerprint()
        ):
            if lib_path.is_file() and read_manifest(out_dir) is not None:
                raise ShardError(out_dir, "holds shards made with a different response library")
            lib.save(lib_path, clobber=True)
    else:
        lib_path = Path(library)
        lib = ResponseLibrary.load(lib_path)
    ids = None if response_ids is None else [int(i) for i in np.asarray(response_ids).ravel()]
    if ids is not None and any(i < 0 or i >= len(lib) for i in ids):
        raise ValueError(f"response ids must be 0-{len(lib) - 1}")
    n_shards = -(-n_spectra // shard_size)
    sizes = [min(shard_size, n_spectra - k * shard_size) for k in range(n_shards)]
    settings = {
        "n": n_spectra,
        "shard_size": shard_size,
        "seed": int(seed),
        "keep_flux": bool(keep_flux),
        "response_ids": ids,
        "real_fraction": real_fraction,
        "library_fingerprint": lib.fingerprint(),
        "input_grid": lib.input_grid.to_dict(),
        "model_grid": lib.model_grid.to_dict(),
        "priors": json.loads(json.dumps(priors_summary(None, config))),
    }
    old = read_manifest(out_dir)
    if old is not None:
        changed = [k for k, v in settings.items() if old.get(k) != v]
        if changed:
            raise ShardError(
                out_dir,
                f"holds shards made with other settings ({', '.join(changed)}); use another folder",
            )
    manifest = {
        "format": SHARD_FORMAT,
        "version": 1,
        **settings,
        "shards": [{"file": shard_name(k), "n": sizes[k]} for k in range(n_shards)],
        "library": {
            "file": os.path.relpath(lib_path.resolve(), out_dir.resolve())
            if lib_path.resolve().is_relative_to(out_dir.resolve())
            else str(lib_path.resolve()),
            "name": lib_path.name,
            "sha256": sha256_file(lib_path),
            "n_responses": len(lib),
        },
        "class_names": list(CLASS_NAMES),
        "shard_keys": {k: list(v) for k, v in SHARD_KEYS.items()},
        "package_version": __version__,
        "complete": False,
    }
    write_json(manifest_path(out_dir), manifest)
    n_in = lib.input_grid.nbins
    done = [shard_complete(out_dir / shard_name(k), sizes[k], keep_flux, n_in)
            for k in range(n_shards)]  # fmt: skip
    with tqdm(
        total=n_spectra,
        initial=sum(s for s, d in zip(sizes, done, strict=True) if d),
        unit="spectra",
        disable=not progress,
        desc="simulating",
    ) as bar:
        tasks = [
            (str(lib_path), str(out_dir / shard_name(k)), sizes[k], int(seed), k, ids,
             real_fraction, bool(keep_flux), config)
            for k in range(n_shards)
            if not done[k]
        ]  # fmt: skip
        if tasks:
            remote = scheduler not in (None, "")
            n_workers = 1 if remote else min(int(workers), len(tasks))
            with make_executor(n_workers, scheduler) as executor:
                if executor.in_process:
                    with _LIBRARY_LOCK:
                        _LIBRARY_CACHE.clear()
                        _LIBRARY_CACHE[_library_key(lib_path)] = lib
                try:
                    shards = executor.map_unordered(_simulate_shard_task, tasks, name="shard")
                    for _, size in shards:
                        bar.update(size)
                finally:
                    if executor.in_process:
                        with _LIBRARY_LOCK:
                            _LIBRARY_CACHE.clear()
    manifest["complete"] = True
    write_json(manifest_path(out_dir), manifest)
    return manifest


_LIBRARY_CACHE: dict[str, ResponseLibrary] = {}
_LIBRARY_LOCK = threading.Lock()


def _library_key(path: str | os.PathLike) -> str:
    """A library file's real path, size and modification time: a rewritten file is new."""
    st = os.stat(path)
    return f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}"


def _simulate_shard_task(task: tuple) -> int:
    """Simulate and write one shard; returns its number of spectra.

    The response library is read once per process (on a Dask worker: once per worker,
    one library at a time) while its file is unchanged.
    """
    lib_path, out_path, size, seed, k, ids, real_fraction, keep_flux, config = task
    key = _library_key(lib_path)
    with _LIBRARY_LOCK:
        lib = _LIBRARY_CACHE.get(key)
        if lib is None:
            _LIBRARY_CACHE.clear()
            lib = _LIBRARY_CACHE.setdefault(key, ResponseLibrary.load(lib_path))
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(k,)))
    data = simulate_batch(
        size, lib, rng, response_ids=ids, real_fraction=real_fraction, keep_flux=keep_flux,
        config=config,
    )  # fmt: skip
    save_npz(out_path, data)
    return size
