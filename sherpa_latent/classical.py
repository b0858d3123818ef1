"""The classical answer: an absorbed power law fitted with Sherpa.

:func:`fit_absorbed_powerlaw` fits ``wabs * powlaw1d`` to a :class:`~sherpa_latent.Spectrum`
over 0.5-7 keV with the Cash statistic (W-stat when there is a background, so the
background is modelled, not subtracted), from several starting N_H values, and gives
Sherpa ``conf`` intervals (68%) for N_H and the photon index together with the absorbed
and unabsorbed 0.5-7 keV energy fluxes. It uses Sherpa's object API, so a user's session
(its data ids, models and statistic) is left untouched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
from sherpa.astro.data import DataPHA
from sherpa.astro.instrument import Response1D
from sherpa.astro.utils import calc_energy_flux
from sherpa.estmethods import Confidence
from sherpa.fit import Fit
from sherpa.models.basic import PowLaw1D
from sherpa.optmethods import NelderMead
from sherpa.stats import CStat, WStat
from sherpa.utils.logging import SherpaVerbosity

from .grids import FIT_BAND
from .physics import WAbs
from .spectrum import Spectrum

__all__ = ["ClassicalFit", "fit_absorbed_powerlaw", "fitting_band"]

DEFAULT_NH_STARTS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
"""Starting N_H values of the multi-start fit, 10^22 cm^-2."""


@dataclass(frozen=True)
class ClassicalFit:
    """Result of the classical absorbed-power-law fit.

    Parameters
    ----------
    nh : tuple of float
        (best fit, lower, upper) of N_H, 10^22 cm^-2, 68% intervals from ``conf``; a bound
        that reaches the parameter limit is the limit (0 for the lower bound), and the
        lower bound is 0 whenever N_H = 0 fits within the 68% interval's statistic.
    gamma : tuple of float
        (best fit, lower, upper) photon index.
    norm : float
        Power-law amplitude at 1 keV, photons/keV/cm^2/s.
    statistic : str
        ``"wstat"`` or ``"cstat"``.
    stat : float
        Best-fit statistic value.
    dof : int
        Degrees of freedom.
    flux_absorbed, flux_unabsorbed : float
        Model energy flux in 0.5-7 keV, erg/cm^2/s.
    band : tuple of float
        Fitted energy range, keV.
    note : str
        Why the intervals are missing (NaN bounds), "" when ``conf`` ran: Sherpa's
        ``conf`` refuses a fit whose reduced statistic exceeds 3, since the model is then
        rejected and its intervals would mean nothing.
    nh_at_limit, gamma_at_limit : tuple of bool
        Whether the lower and the upper bound are the parameter's limit rather than a
        measured bound (N_H 0-100 x 10^22 cm^-2, photon index -3 to 10). For N_H a lower
        bound of 0 means the data are consistent with no absorption; any other bound at a
        limit means the data do not constrain that side.
    limit_notes : tuple of str
        Plain sentences on every bound or best-fit value that is a parameter limit.
    """

    nh: tuple[float, float, float]
    gamma: tuple[float, float, float]
    norm: float
    statistic: str
    stat: float
    dof: int
    flux_absorbed: float
    flux_unabsorbed: float
    band: tuple[float, float] = FIT_BAND
    note: str = ""
    nh_at_limit: tuple[bool, bool] = (False, False)
    gamma_at_limit: tuple[bool, bool] = (False, False)
    limit_notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("nh", "gamma"):
            value, lo, hi = getattr(self, name)
            if self.note and np.isnan(lo) and np.isnan(hi):
                continue
            if not lo <= value <= hi:
                raise ValueError(f"{name} interval [{lo}, {hi}] does not contain {value}")

    def to_dict(self) -> dict:
        """Plain numbers for JSON (N_H in 10^22 cm^-2, fluxes in erg/cm^2/s)."""
        out = asdict(self)
        out["nh"], out["gamma"], out["band"] = list(self.nh), list(self.gamma), list(self.band)
        out["nh_at_limit"] = list(self.nh_at_limit)
        out["gamma_at_limit"] = list(self.gamma_at_limit)
        out["limit_notes"] = list(self.limit_notes)
        return out


def fit_absorbed_powerlaw(
    spectrum: Spectrum,
    *,
    band: tuple[float, float] = FIT_BAND,
    nh_starts: Sequence[float] = DEFAULT_NH_STARTS,
    errors: bool = True,
) -> ClassicalFit:
    """Fit ``wabs * powlaw1d`` with C-stat (W-stat with a background) and get intervals.

    Parameters
    ----------
    spectrum : Spectrum
        The spectrum; its Sherpa filter is restored afterwards.
    band : tuple of float, optional
        Energy range to fit, keV (default 0.5-7).
    nh_starts : sequence of float, optional
        Starting N_H values, 10^22 cm^-2; the best of the fits is kept.
    errors : bool, optional
        Run ``conf`` for N_H and the photon index (68%). Without it the intervals are
        the best-fit value repeated.

    Returns
    -------
    ClassicalFit
    """
    with fitting_band(spectrum.pha, band) as pha:
        return _fit(pha, band, nh_starts, errors)


@contextmanager
def fitting_band(pha: DataPHA, band: tuple[float, float] = FIT_BAND) -> Iterator[DataPHA]:
    """Ready a data set for a Cash-statistic fit over ``band``, and put it back afterwards.

    Inside the context the background is not subtracted (W-stat models it), only the
    band (keV) is noticed and Sherpa's informational logging is quiet; on leaving, the
    filter and the subtraction are as they were.
    """
    saved_mask = pha.mask.copy() if isinstance(pha.mask, np.ndarray) else pha.mask
    saved_subtracted = pha.subtracted
    try:
        with SherpaVerbosity("ERROR"):
            if pha.subtracted:
                pha.unsubtract()
            pha.notice()
            pha.notice(*band)
            yield pha
    finally:
        pha.mask = saved_mask
        if saved_subtracted and not pha.subtracted:
            pha.subtract()


def _fit(pha, band, nh_starts, errors) -> ClassicalFit:
    absorber = WAbs("gal")
    powerlaw = PowLaw1D("pl")
    powerlaw.gamma.set(val=2.0, min=-3.0, max=10.0)
    powerlaw.ampl.set(val=1e-4, min=0.0, max=1e3)
    absorber.nh.set(min=0.0, max=100.0)
    source = absorber * powerlaw
    folded = Response1D(pha)(source)
    has_background = bool(pha.background_ids)
    stat = WStat() if has_background else CStat()
    fit = Fit(pha, folded, stat=stat, method=NelderMead(), estmethod=Confidence())

    net = max(float(np.sum(pha.get_dep(filter=True))), 1.0)
    best = None
    for nh0 in nh_starts:
        absorber.nh.val = nh0
        powerlaw.gamma.val = 2.0
        powerlaw.ampl.val = 1.0
        predicted = float(np.sum(pha.eval_model_to_fit(folded)))
        powerlaw.ampl.val = net / predicted if predicted > 0 else 1e-4
        result = fit.fit()
        if best is None or result.statval < best[0]:
            best = (result.statval, absorber.nh.val, powerlaw.gamma.val, powerlaw.ampl.val)
    # Polish from the best start so that conf starts at the minimum.
    _, absorber.nh.val, powerlaw.gamma.val, powerlaw.ampl.val = best
    result = fit.fit()

    nh_val, gamma_val = float(absorber.nh.val), float(powerlaw.gamma.val)
    best_ampl = float(powerlaw.ampl.val)
    nh_int = (nh_val, nh_val, nh_val)
    gamma_int = (gamma_val, gamma_val, gamma_val)
    note = ""
    nh_at_limit = gamma_at_limit = (False, False)
    rstat = result.statval / result.dof if result.dof > 0 else np.inf
    if errors and rstat > fit.estmethod.max_rstat:
        note = (
            f"reduced {stat.name} {rstat:.2f} > {fit.estmethod.max_rstat:g}: the absorbed power "
            "law is rejected and conf gives no intervals"
        )
        nh_int = (nh_val, np.nan, np.nan)
        gamma_int = (gamma_val, np.nan, np.nan)
    elif errors:
        conf = fit.est_errors(parlist=(absorber.nh, powerlaw.gamma))
        bounds = dict(
            zip(conf.parnames, zip(conf.parmins, conf.parmaxes, strict=True), strict=True)
        )
        nh_int = _interval(nh_val, *bounds[absorber.nh.fullname], absorber.nh)
        gamma_int = _interval(gamma_val, *bounds[powerlaw.gamma.fullname], powerlaw.gamma)
        if nh_int[1] > absorber.nh.min and _fits_within(
            fit, absorber.nh, absorber.nh.min, result.statval + _DELTA_STAT_68
        ):
            nh_int = (nh_int[0], float(absorber.nh.min), nh_int[2])
        nh_at_limit = _at_limit(nh_int, absorber.nh)
        gamma_at_limit = _at_limit(gamma_int, powerlaw.gamma)

    # conf and the profile check move the parameters: the fluxes are of the best fit.
    absorber.nh.val, powerlaw.gamma.val, powerlaw.ampl.val = nh_val, gamma_val, best_ampl
    flux_abs = float(calc_energy_flux(pha, source, *band))
    flux_unabs = float(calc_energy_flux(pha, powerlaw, *band))
    return ClassicalFit(
        nh=nh_int,
        gamma=gamma_int,
        norm=best_ampl,
        statistic="wstat" if has_background else "cstat",
        stat=float(result.statval),
        dof=int(result.dof),
        flux_absorbed=flux_abs,
        flux_unabsorbed=flux_unabs,
        band=(float(band[0]), float(band[1])),
        note=note,
        nh_at_limit=nh_at_limit,
        gamma_at_limit=gamma_at_limit,
        limit_notes=_limit_notes(
            {"N_H": (absorber.nh, nh_int, nh_at_limit),
             "Gamma": (powerlaw.gamma, gamma_int, gamma_at_limit)}
        ),
    )


def _interval(value: float, err_lo, err_hi, par) -> tuple[float, float, float]:
    """Turn conf's offsets into bounds; a missing bound is the parameter's limit."""
    lo = par.min if err_lo is None or not np.isfinite(err_lo) else value + err_lo
    hi = par.max if err_hi is None or not np.isfinite(err_hi) else value + err_hi
    return float(value), float(min(lo, value)), float(max(hi, value))


_DELTA_STAT_68 = 1.0
"""Rise of the Cash statistic that bounds a 68% interval of one parameter."""


def _fits_within(fit: Fit, par, value: float, stat_limit: float) -> bool:
    """Whether the fit with ``par`` frozen at ``value`` reaches a statistic below the limit.

    The other free parameters are refitted (a profile point); everything is restored.
    """
    saved = [(p, p.val) for p in fit.model.pars if not p.frozen]
    try:
        par.val = value
        par.freeze()
        return bool(fit.fit().statval <= stat_limit)
    finally:
        par.thaw()
        for p, v in saved:
            p.val = v


def _at_limit(interval: tuple[float, float, float], par) -> tuple[bool, bool]:
    """Whether each bound of an interval is the parameter's hard limit."""
    _, lo, hi = interval
    span = par.max - par.min
    return bool(lo <= par.min + 1e-9 * span), bool(hi >= par.max - 1e-9 * span)


def _limit_notes(params: dict) -> tuple[str, ...]:
    """Sentences on the best fits and bounds that are parameter limits, not measurements.

    ``params`` maps a printed name to (parameter, (value, lo, hi), (lo at limit, hi at limit)).
    """
    notes = []
    for name, (par, (value, _, _), (lo_hit, hi_hit)) in params.items():
        span = par.max - par.min
        for side, limit in (("lower", par.min), ("upper", par.max)):
            if name == "N_H" and limit == 0:
                continue  # no absorption is a physical answer, not a failure
            if abs(value - limit) <= 1e-4 * span:
                notes.append(
                    f"{name}'s best fit is at its {side} limit {limit:g}: the fit did not "
                    "converge inside the allowed range"
                )
        if name == "N_H" and lo_hit and par.min == 0:
            notes.append("N_H is consistent with 0 (lower bound at the limit 0)")
        elif lo_hit:
            notes.append(f"{name} is unconstrained below (lower bound at the limit {par.min:g})")
        if hi_hit:
            notes.append(f"{name} is unconstrained above (upper bound at the limit {par.max:g})")
    return tuple(notes)
