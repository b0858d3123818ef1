"""Fold a Sherpa source model through a projected response R, and fit with Sherpa.

For spectra that exist only on the input grid (simulated ones) and for quick fits of real
ones, :class:`ProjectedFoldModel` plays the part of Sherpa's ``Response1D``: it evaluates
the source model on the model grid and returns ``exposure * R @ flux + background`` on the
input grid, as a Sherpa model expression that Sherpa's ``Fit`` can minimise with the Cash
statistic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sherpa.data import Data1DInt
from sherpa.fit import Fit
from sherpa.models.basic import PowLaw1D
from sherpa.models.model import ArithmeticModel, CompositeModel
from sherpa.optmethods import NelderMead
from sherpa.stats import CStat
from sherpa.utils.err import ModelErr

from ..grids import FIT_BAND
from ..spectrum import ResponseRepresentation

__all__ = ["ProjectedFoldModel", "representation_data", "fit_absorbed_powerlaw_projected"]


class ProjectedFoldModel(CompositeModel, ArithmeticModel):
    """Expected counts on the input grid for a source model, through a projected response.

    Parameters
    ----------
    source : sherpa.models.model.ArithmeticModel
        The source model (photons/cm^2/s per bin when integrated over energy, keV).
    representation : ResponseRepresentation
        Supplies R (cm^2), the exposure (s), the background (counts) and the grids.
    """

    def __init__(self, source: ArithmeticModel, representation: ResponseRepresentation):
        self.source = source
        self.representation = representation
        self._pars = ()
        CompositeModel.__init__(self, f"fold_R({source.name})", (source,))

    def startup(self, cache: bool = False) -> None:
        self.source.startup(cache)
        CompositeModel.startup(self, cache)

    def teardown(self) -> None:
        self.source.teardown()
        CompositeModel.teardown(self)

    def calc(self, p, xlo, *args, **kwargs) -> np.ndarray:
        """Counts in the input-grid bins whose lower edges are ``xlo`` (keV).

        R fixes the grid: ``xlo`` only selects bins (Sherpa passes the noticed ones).
        """
        rep = self.representation
        grid = rep.model_grid
        flux = self.source.calc(p, grid.lo, grid.hi)
        counts = rep.expected_counts(flux) + rep.background
        edges = rep.input_grid.lo
        xlo = np.asarray(xlo, dtype=float)
        if xlo.shape == edges.shape:
            return counts
        index = np.clip(np.searchsorted(edges, xlo * (1 - 1e-9)), 0, len(edges) - 1)
        if not np.allclose(edges[index], xlo, rtol=1e-6):
            raise ModelErr("badarg", "energy grid", "the input-grid bins of the representation")
        return counts[index]


def representation_data(representation: ResponseRepresentation, name: str = "spectrum"):
    """The counts of a representation as Sherpa ``Data1DInt`` on the input grid (keV)."""
    grid = representation.input_grid
    return Data1DInt(name, grid.lo, grid.hi, np.asarray(representation.counts, dtype=float))


def fit_absorbed_powerlaw_projected(
    representation: ResponseRepresentation,
    *,
    nh_starts: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
    band: tuple[float, float] = FIT_BAND,
) -> dict:
    """Best-fit ``wabs * powlaw1d`` to input-grid counts with C-stat, from several N_H starts.

    The background of the representation is taken as known (added to the model).

    Parameters
    ----------
    representation : ResponseRepresentation
        Counts, background, R and exposure of one spectrum.
    nh_starts : sequence of float, optional
        Starting N_H values, 10^22 cm^-2.
    band : tuple of float, optional
        Input-grid bins whose centres lie in this range are fitted, keV.

    Returns
    -------
    dict
        ``nh`` (10^22 cm^-2), ``gamma``, ``ampl`` (photons/keV/cm^2/s at 1 keV), ``stat``
        (C-stat) and ``dof``.
    """
    from ..physics import WAbs

    absorber, powerlaw = WAbs("abs"), PowLaw1D("pl")
    absorber.nh.set(min=0.0, max=100.0)
    powerlaw.gamma.set(val=2.0, min=-3.0, max=10.0)
    powerlaw.ampl.set(val=1e-4, min=0.0, max=1e3)
    folded = ProjectedFoldModel(absorber * powerlaw, representation)
    data = representation_data(representation)
    data.mask = representation.input_grid.band_mask(band)
    fit = Fit(data, folded, stat=CStat(), method=NelderMead())

    source_counts = max(float(np.sum((data.y - representation.background)[data.mask])), 1.0)
    best = None
    for nh0 in nh_starts:
        absorber.nh.val, powerlaw.gamma.val, powerlaw.ampl.val = nh0, 2.0, 1.0
        unit = float(np.sum((folded(data.xlo, data.xhi) - representation.background)[data.mask]))
        powerlaw.ampl.val = source_counts / unit if unit > 0 else 1e-4
        result = fit.fit()
        if best is None or result.statval < best[0]:
            best = (result.statval, absorber.nh.val, powerlaw.gamma.val, powerlaw.ampl.val, result)
    stat, nh, gamma, ampl, result = best
    return {"nh": nh, "gamma": gamma, "ampl": ampl, "stat": stat, "dof": int(result.dof)}
