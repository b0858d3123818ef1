"""The classical answer: an absorbed power law fitted with Sherpa.

:func:`fit_absorbed_powerlaw` fits ``wabs * powlaw1d`` to a :class:`~sherpa_latent.Spectrum`
over 0.5-7 keV with the Cash statistic (W-stat when there is a background, so the
background is modelled, not subtracted), and gives Sherpa ``conf`` intervals (68%) for N_H
and the photon index, and absorbed and unabsorbed energy fluxes with 68% intervals in the
0.5-2, 2-7 and 0.5-7 keV bands. It uses Sherpa's object API, so a user's session (its data
ids, models and statistic) is left untouched.

Where the fit starts. Given a start (for instance the network's N_H and a photon index
read off its decoded spectrum, see :func:`photon_index_of`) the fit runs once from there,
and from the usual grid of starting N_H values only when that fit is poor: a parameter
at a limit of its range, or a statistic above what a good fit gives by more than three
standard deviations (:func:`expected_cstat`). Without a start it always fits from the
grid and keeps the best. The optimiser is Sherpa's ``LevMar`` (``NelderMead`` on request);
``conf`` refits with the same optimiser.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
from sherpa.astro import charge_e
from sherpa.astro.data import DataPHA
from sherpa.astro.instrument import Response1D
from sherpa.astro.utils import calc_energy_flux
from sherpa.estmethods import Confidence
from sherpa.fit import Fit
from sherpa.models.basic import PowLaw1D
from sherpa.optmethods import LevMar, NelderMead
from sherpa.sim import NormalParameterSampleFromScaleMatrix
from sherpa.stats import CStat, WStat
from sherpa.utils.logging import SherpaVerbosity

from .grids import FIT_BAND
from .physics import WAbs, powerlaw_photon_flux, wabs_transmission
from .spectrum import Spectrum

__all__ = [
    "BandFlux",
    "ClassicalFit",
    "FLUX_BANDS",
    "expected_cstat",
    "fit_absorbed_powerlaw",
    "fitting_band",
    "photon_index_of",
]

DEFAULT_NH_STARTS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
"""Starting N_H values of the multi-start fit, 10^22 cm^-2."""

FLUX_BANDS: tuple[tuple[float, float], ...] = ((0.5, 2.0), (2.0, 7.0), (0.5, 7.0))
"""Energy bands of the reported fluxes, keV."""

POOR_FIT_SIGMA = 3.0
"""A one-start fit is poor when its statistic exceeds the good-fit expectation by this many
standard deviations (then the grid of starts is tried as well)."""

FLUX_DRAWS = 1000
"""Parameter draws behind the flux intervals."""

_METHODS = {"levmar": LevMar, "neldermead": NelderMead}


@dataclass(frozen=True)
class BandFlux:
    """Energy flux of the fitted model in one band, with its 68% interval.

    Parameters
    ----------
    band : tuple of float
        Energy band, keV.
    absorbed, unabsorbed : tuple of float
        (best fit, lower, upper) energy flux, erg/cm^2/s, of ``wabs * powlaw1d`` and of
        ``powlaw1d`` alone. The bounds are the 15.9 and 84.1 percentiles of the fluxes of
        parameter sets drawn from the fit's covariance (Sherpa's
        ``NormalParameterSampleFromScaleMatrix``, clipped to the parameter ranges); NaN
        when the fit gave no intervals.
    """

    band: tuple[float, float]
    absorbed: tuple[float, float, float]
    unabsorbed: tuple[float, float, float]

    def to_dict(self) -> dict:
        """Plain numbers for JSON (keV, erg/cm^2/s)."""
        return {
            "band": [float(v) for v in self.band],
            "absorbed": [float(v) for v in self.absorbed],
            "unabsorbed": [float(v) for v in self.unabsorbed],
        }


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
        Degrees of freedom (``n_bins`` less the 3 free parameters).
    flux_absorbed, flux_unabsorbed : float
        Model energy flux in 0.5-7 keV, erg/cm^2/s (the best-fit values of ``fluxes``).
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
    fluxes : tuple of BandFlux
        Absorbed and unabsorbed energy fluxes with 68% intervals in 0.5-2, 2-7 and
        0.5-7 keV, all from one set of parameter draws.
    n_bins : int
        Bins (groups, where the spectrum is grouped) in the fit.
    start : str
        Where the fit started, in words (for instance ``"N_H 0.031, Gamma 2.04 (given)"``
        or ``"4 starting N_H"``), and why the grid of starts ran after a given start.
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
    fluxes: tuple[BandFlux, ...] = ()
    n_bins: int = 0
    start: str = ""

    def __post_init__(self) -> None:
        for name in ("nh", "gamma"):
            value, lo, hi = getattr(self, name)
            if self.note and np.isnan(lo) and np.isnan(hi):
                continue
            if not lo <= value <= hi:
                raise ValueError(f"{name} interval [{lo}, {hi}] does not contain {value}")

    @property
    def model(self) -> str:
        """The fitted model, as Sherpa writes it."""
        return "wabs * powlaw1d"

    def flux(self, band: tuple[float, float]) -> BandFlux | None:
        """The :class:`BandFlux` of ``band`` (keV), or None when it was not computed."""
        for item in self.fluxes:
            if np.allclose(item.band, band):
                return item
        return None

    def to_dict(self) -> dict:
        """Plain numbers for JSON (N_H in 10^22 cm^-2, fluxes in erg/cm^2/s)."""
        out = asdict(self)
        out["nh"], out["gamma"], out["band"] = list(self.nh), list(self.gamma), list(self.band)
        out["nh_at_limit"] = list(self.nh_at_limit)
        out["gamma_at_limit"] = list(self.gamma_at_limit)
        out["limit_notes"] = list(self.limit_notes)
        out["fluxes"] = [f.to_dict() for f in self.fluxes]
        return out


def fit_absorbed_powerlaw(
    spectrum: Spectrum,
    *,
    band: tuple[float, float] = FIT_BAND,
    nh_starts: Sequence[float] = DEFAULT_NH_STARTS,
    errors: bool = True,
    start: tuple[float, float] | None = None,
    method: str = "levmar",
    flux_draws: int = FLUX_DRAWS,
    seed: int | None = 0,
) -> ClassicalFit:
    """Fit ``wabs * powlaw1d`` with C-stat (W-stat with a background) and get intervals.

    Parameters
    ----------
    spectrum : Spectrum
        The spectrum; its Sherpa filter is restored afterwards.
    band : tuple of float, optional
        Energy range to fit, keV (default 0.5-7).
    nh_starts : sequence of float, optional
        Starting N_H values, 10^22 cm^-2 (photon index 2), the best of the fits is kept.
        With ``start`` they are used only when the fit from ``start`` is poor.
    errors : bool, optional
        Run ``conf`` for N_H and the photon index (68%) and draw the flux intervals.
        Without it the intervals are the best-fit value repeated.
    start : tuple of float, optional
        (N_H in 10^22 cm^-2, photon index) to start from, for instance the network's
        N_H and the index of its decoded spectrum (:func:`photon_index_of`).
    method : {"levmar", "neldermead"}
        Sherpa optimiser for the fits and for ``conf``.
    flux_draws : int, optional
        Parameter draws behind the flux intervals.
    seed : int or None, optional
        Seed of those draws (None: a fresh one each call).

    Returns
    -------
    ClassicalFit
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, not {method!r}")
    if start is not None:
        start = (float(start[0]), float(start[1]))
        if not all(np.isfinite(start)):
            raise ValueError(f"start {start} is not finite")
    with fitting_band(spectrum.pha, band) as pha:
        return _fit(pha, band, nh_starts, errors, start, method, flux_draws, seed)


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


def photon_index_of(
    elo: np.ndarray,
    ehi: np.ndarray,
    photon_flux: np.ndarray,
    nh: float,
    band: tuple[float, float] = FIT_BAND,
) -> float:
    """Photon index of a binned photon spectrum once absorption by ``nh`` is divided out.

    The least-squares slope of log(flux density) against log(energy) over the bins of
    ``band`` where the absorber lets through at least 5% (dividing by a smaller
    transmission only amplifies the model's floor): a starting value for a power-law fit,
    for instance from the network's decoded spectrum and its N_H.

    Parameters
    ----------
    elo, ehi : ndarray
        Bin edges, keV.
    photon_flux : ndarray
        Photons/cm^2/s in each bin (absorbed).
    nh : float
        Absorbing column to divide out, 10^22 cm^-2.
    band : tuple of float, optional
        Energy range used, keV.

    Returns
    -------
    float
        The photon index (NaN when fewer than two usable bins lie in the band).
    """
    elo, ehi = np.asarray(elo, float), np.asarray(ehi, float)
    flux = np.asarray(photon_flux, float)
    keep = (elo >= band[0]) & (ehi <= band[1]) & (flux > 0) & (ehi > elo)
    if np.count_nonzero(keep) < 2:
        return float("nan")
    lo, hi, flux = elo[keep], ehi[keep], flux[keep]
    transmission = wabs_transmission(max(float(nh), 0.0), lo, hi)
    seen = transmission >= 0.05
    if np.count_nonzero(seen) < 2:
        return float("nan")
    lo, hi = lo[seen], hi[seen]
    density = flux[seen] / (hi - lo) / transmission[seen]
    slope = np.polyfit(np.log(np.sqrt(lo * hi)), np.log(density), 1)[0]
    return float(-slope)


def expected_cstat(mu: np.ndarray) -> tuple[float, float]:
    """Mean and variance of the Cash statistic of a good fit with model counts ``mu``.

    Exact sums over the Poisson distribution of each bin's counts (Kaastra 2017, A&A 605,
    A51, gives the same quantities in closed approximations); above 50 counts a bin
    contributes 1 and 2, its chi-square limit.

    Parameters
    ----------
    mu : ndarray
        Model counts per bin (> 0).

    Returns
    -------
    tuple of float
        Expected statistic and its variance.
    """
    mu = np.asarray(mu, float)
    mu = mu[mu > 0]
    large = mu > 50.0
    mean, var = float(large.sum()), 2.0 * float(large.sum())
    small = mu[~large]
    if small.size:
        k = np.arange(int(np.ceil(small.max() + 12.0 * np.sqrt(small.max()) + 20.0)))
        kk, mm = k[None, :], small[:, None]
        log_p = kk * np.log(mm) - mm - _log_factorial(k)[None, :]
        p = np.exp(log_p)
        with np.errstate(divide="ignore", invalid="ignore"):
            c = 2.0 * (mm - kk + np.where(kk > 0, kk * np.log(kk / mm), 0.0))
        first = (p * c).sum(axis=1)
        second = (p * c * c).sum(axis=1)
        mean += float(first.sum())
        var += float((second - first * first).sum())
    return mean, var


def _log_factorial(k: np.ndarray) -> np.ndarray:
    """log(k!) for k = 0, 1, 2, ..."""
    return np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, k.size)))))


def _fit(pha, band, nh_starts, errors, start, method, flux_draws, seed) -> ClassicalFit:
    absorber = WAbs("gal")
    powerlaw = PowLaw1D("pl")
    powerlaw.gamma.set(val=2.0, min=-3.0, max=10.0)
    powerlaw.ampl.set(val=1e-4, min=0.0, max=1e3)
    absorber.nh.set(min=0.0, max=100.0)
    source = absorber * powerlaw
    folded = Response1D(pha)(source)
    has_background = bool(pha.background_ids)
    stat = WStat() if has_background else CStat()
    fit = Fit(pha, folded, stat=stat, method=_METHODS[method](), estmethod=Confidence())
    fit.estmethod.parallel = False  # two parameters: forking costs more than it saves
    pars = (absorber.nh, powerlaw.gamma, powerlaw.ampl)
    net = max(float(np.sum(pha.get_dep(filter=True))), 1.0)

    def run_from(nh0: float, gamma0: float):
        absorber.nh.val = float(np.clip(nh0, absorber.nh.min, absorber.nh.max))
        powerlaw.gamma.val = float(np.clip(gamma0, powerlaw.gamma.min, powerlaw.gamma.max))
        powerlaw.ampl.val = 1.0
        predicted = float(np.sum(pha.eval_model_to_fit(folded)))
        powerlaw.ampl.val = net / predicted if predicted > 0 else 1e-4
        result = fit.fit()
        return result.statval, tuple(float(p.val) for p in pars)

    tries = []
    if start is not None:
        tries.append(run_from(*start))
        why = _poor_fit(pha, folded, tries[0][0], pars)
        described = f"N_H {start[0]:.3g}, Gamma {start[1]:.3g} (given)"
        if why:
            tries += [run_from(nh0, 2.0) for nh0 in nh_starts]
            described += f", then {len(nh_starts)} starting N_H ({why})"
    else:
        tries = [run_from(nh0, 2.0) for nh0 in nh_starts]
        described = f"{len(nh_starts)} starting N_H"
    best_stat, best = min(tries, key=lambda t: t[0])
    for par, value in zip(pars, best, strict=True):
        par.val = value
    # From the best start once more: conf starts at the minimum, with its result object.
    result = fit.fit()
    if method == "levmar" and _limit_reason(pars):
        # LevMar finishes a parameter at a limit with a loose simplex; polish it properly.
        levmar_values = [float(p.val) for p in pars]
        polished = Fit(pha, folded, stat=stat, method=NelderMead()).fit()
        if polished.statval <= result.statval:
            result = polished
        else:
            for par, value in zip(pars, levmar_values, strict=True):
                par.val = value

    nh_val, gamma_val, best_ampl = (float(p.val) for p in pars)
    nh_int = (nh_val, nh_val, nh_val)
    gamma_int = (gamma_val, gamma_val, gamma_val)
    note = ""
    nh_at_limit = gamma_at_limit = (False, False)
    rstat = result.statval / result.dof if result.dof > 0 else np.inf
    draws = None
    if errors and rstat > fit.estmethod.max_rstat:
        note = (
            f"reduced {stat.name} {rstat:.2f} > {fit.estmethod.max_rstat:g}: the absorbed power "
            "law is rejected and conf gives no intervals"
        )
        nh_int = (nh_val, np.nan, np.nan)
        gamma_int = (gamma_val, np.nan, np.nan)
    elif errors:
        draws = _parameter_draws(fit, flux_draws, seed)
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
    for par, value in zip(pars, (nh_val, gamma_val, best_ampl), strict=True):
        par.val = value
    fluxes = _band_fluxes(pha, source, powerlaw, (nh_val, gamma_val, best_ampl), draws, errors)
    whole = next(f for f in fluxes if np.allclose(f.band, band))
    return ClassicalFit(
        nh=nh_int,
        gamma=gamma_int,
        norm=best_ampl,
        statistic="wstat" if has_background else "cstat",
        stat=float(result.statval),
        dof=int(result.dof),
        flux_absorbed=whole.absorbed[0],
        flux_unabsorbed=whole.unabsorbed[0],
        band=(float(band[0]), float(band[1])),
        note=note,
        nh_at_limit=nh_at_limit,
        gamma_at_limit=gamma_at_limit,
        limit_notes=_limit_notes(
            {
                "N_H": (absorber.nh, nh_int, nh_at_limit),
                "Gamma": (powerlaw.gamma, gamma_int, gamma_at_limit),
            }
        ),
        fluxes=fluxes,
        n_bins=int(np.size(pha.get_dep(filter=True))),
        start=described,
    )


def _poor_fit(pha: DataPHA, folded, statval: float, pars) -> str:
    """Why a fit is poor ("" when it is not): a parameter at a limit, or a high statistic."""
    why = _limit_reason(pars)
    if why:
        return why
    mu = np.asarray(pha.eval_model_to_fit(folded), float)
    if pha.background_ids:
        # W-stat: the good-fit statistic is close to C-stat's for the total counts.
        mu = mu + pha.apply_filter(pha.sum_background_data(), groupfunc=np.sum)
    mean, var = expected_cstat(mu)
    limit = mean + POOR_FIT_SIGMA * np.sqrt(var)
    if statval > limit:
        return f"statistic {statval:.1f} above {limit:.1f}, the good-fit mean + 3 sigma"
    return ""


def _limit_reason(pars) -> str:
    """Which parameter sits at a limit of its range ("" when none does).

    N_H and Gamma within 1e-6 of their range; the norm only at exactly 0 or its maximum.
    """
    for par in pars:
        tol = 1e-6 * (par.max - par.min) if par.name != "ampl" else 0.0
        for side, limit in (("lower", par.min), ("upper", par.max)):
            if abs(par.val - limit) <= tol:
                return f"{par.name} at its {side} limit"
    return ""


def _parameter_draws(fit: Fit, n: int, seed: int | None) -> np.ndarray | None:
    """Parameter sets drawn from the fit's covariance, clipped to the parameters' ranges."""
    if n <= 0:
        return None
    sampler = NormalParameterSampleFromScaleMatrix()
    try:
        samples = sampler.get_sample(fit, num=n, rng=np.random.default_rng(seed))
    except Exception:  # noqa: BLE001 - a singular covariance: no flux intervals
        return None
    if not np.all(np.isfinite(samples)):
        return None
    sampler.clip(fit, samples, clip="soft")  # in place
    return samples


def _band_fluxes(pha, source, powerlaw, best, draws, errors) -> tuple[BandFlux, ...]:
    """Best-fit fluxes by Sherpa's ``calc_energy_flux``; intervals from the draws."""
    out = []
    for lo, hi in FLUX_BANDS:
        absorbed = float(calc_energy_flux(pha, source, lo, hi))
        unabsorbed = float(calc_energy_flux(pha, powerlaw, lo, hi))
        if draws is not None:
            abs_draws, unabs_draws = _flux_of_draws(pha, draws, (lo, hi))
            a_lo, a_hi = np.percentile(abs_draws, (15.865, 84.135))
            u_lo, u_hi = np.percentile(unabs_draws, (15.865, 84.135))
            # The best fit lies inside; widen in the rare skewed case where it does not.
            a = (absorbed, min(a_lo, absorbed), max(a_hi, absorbed))
            u = (unabsorbed, min(u_lo, unabsorbed), max(u_hi, unabsorbed))
        elif errors:
            a, u = (absorbed, np.nan, np.nan), (unabsorbed, np.nan, np.nan)
        else:
            a, u = (absorbed,) * 3, (unabsorbed,) * 3
        out.append(
            BandFlux(
                band=(lo, hi),
                absorbed=tuple(float(v) for v in a),
                unabsorbed=tuple(float(v) for v in u),
            )
        )
    return tuple(out)


def _flux_of_draws(pha: DataPHA, draws: np.ndarray, band) -> tuple[np.ndarray, np.ndarray]:
    """Absorbed and unabsorbed energy flux (erg/cm^2/s) of every draw (N_H, Gamma, norm).

    The sum that Sherpa's ``calc_energy_flux`` makes (model integrated over the
    response's energy bins, times the bin's mid energy, partial bins at the band's edges
    by their overlap), over all draws at once.
    """
    elo, ehi = (np.asarray(a, float) for a in pha._get_indep(filter=False))
    lo, hi = band
    overlap = np.clip(np.minimum(ehi, hi) - np.maximum(elo, lo), 0.0, None)
    width = np.where(ehi > elo, ehi - elo, 1.0)
    scale = overlap / width
    keep = scale > 0
    elo, ehi, scale = elo[keep], ehi[keep], scale[keep]
    weight = scale * 0.5 * (elo + ehi) * charge_e
    photons = powerlaw_photon_flux(draws[:, 1], draws[:, 2], elo, ehi)
    transmission = wabs_transmission(draws[:, 0], elo, ehi)
    return (photons * transmission) @ weight, photons @ weight


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
