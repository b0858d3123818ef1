"""Tests of the Bayesian hardness ratios (sherpa_latent.hardness)."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest
from scipy import integrate, stats

from sherpa_latent.grids import CSC_BANDS
from sherpa_latent.hardness import (
    DEFAULT_PRIOR,
    PRIORS,
    CredibleValue,
    HardnessRatios,
    HardnessValue,
    band_posterior_samples,
    hardness_ratio,
    hardness_ratios,
    hardness_ratios_from_counts,
    posterior_summary,
)

BANDS = ("soft", "medium", "hard")
HR_DEFS = {"hr_hm": ("medium", "hard"), "hr_hs": ("soft", "hard"), "hr_ms": ("soft", "medium")}


def _true_ratios(lam: dict[str, float]) -> dict[str, float]:
    return {name: (lam[b] - lam[a]) / (lam[b] + lam[a]) for name, (a, b) in HR_DEFS.items()}


# --------------------------------------------------------------------------- the kernel


def test_mixture_matches_direct_marginalisation():
    """The Gamma-mixture posterior equals the numerically marginalised joint posterior."""
    n, nb, r = 7, 25, 0.15
    a, b = PRIORS["flat"]
    lam = np.linspace(0.0, 40.0, 2001)
    xi = np.linspace(1e-9, 120.0, 6001)
    grid_l, grid_x = np.meshgrid(lam, xi, indexing="ij")
    mu = grid_l + r * grid_x
    logp = (
        n * np.log(np.where(mu > 0, mu, 1e-300))
        - mu
        + (nb + b - 1) * np.log(grid_x)
        - grid_x
        + (a - 1) * np.log(np.where(grid_l > 0, grid_l, 1e-300))
    )
    dens = integrate.trapezoid(np.exp(logp - logp.max()), xi, axis=1)
    cdf = integrate.cumulative_trapezoid(dens, lam, initial=0.0)
    cdf /= cdf[-1]

    samples = band_posterior_samples(n, nb, r, 200_000, prior="flat", rng=1)
    empirical = np.searchsorted(np.sort(samples), lam, side="right") / samples.size
    assert np.max(np.abs(empirical - cdf)) < 0.006


def test_no_background_is_gamma():
    """With r = 0 the posterior is Gamma(N + a), whatever the background counts."""
    n = 17
    for prior, (a, _) in PRIORS.items():
        s = band_posterior_samples(n, 0, 0.0, 50_000, prior=prior, rng=3)
        assert stats.kstest(s, stats.gamma(n + a).cdf).statistic < 0.01
        s_with_b = band_posterior_samples(n, 999, 0.0, 50_000, prior=prior, rng=3)
        np.testing.assert_array_equal(s, s_with_b)
    # zero counts and no background: Gamma(a), still positive and finite
    s0 = band_posterior_samples(0, 0, 0.0, 20_000, rng=4)
    assert np.all(np.isfinite(s0)) and np.all(s0 >= 0)
    assert stats.kstest(s0, stats.gamma(PRIORS[DEFAULT_PRIOR][0]).cdf).statistic < 0.015


def test_background_shifts_posterior():
    """The posterior mean follows N - r B (+ prior terms) once counts are large."""
    n, nb, r = 5_000, 20_000, 0.1
    s = band_posterior_samples(n, nb, r, 40_000, rng=5)
    expected_sd = math.sqrt(n + r * r * nb)
    assert abs(s.mean() - (n - r * nb)) < 0.05 * expected_sd + 2
    assert s.std() == pytest.approx(expected_sd, rel=0.05)


def test_million_counts_fast():
    """N = 1e6 in source and background regions works, quickly and accurately."""
    n, nb, r = 1_000_000, 1_000_000, 0.1
    t0 = time.perf_counter()
    s = band_posterior_samples(n, nb, r, 20_000, rng=6)
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0
    assert np.all(np.isfinite(s))
    expected_sd = math.sqrt(n + r * r * nb)
    assert abs(np.median(s) - (n - r * nb)) < 0.1 * expected_sd
    assert s.std() == pytest.approx(expected_sd, rel=0.05)


def test_posterior_summary_hpd_and_mode():
    rng = np.random.default_rng(8)
    x = rng.normal(2.0, 0.5, 200_000)
    mode, lo, hi = posterior_summary(x, 0.68)
    assert mode == pytest.approx(2.0, abs=0.02)
    assert lo == pytest.approx(2.0 - 0.5 * 0.994, abs=0.01)
    assert hi == pytest.approx(2.0 + 0.5 * 0.994, abs=0.01)
    # a density peaking at a bound: the mode sits at the bound, the interval touches it
    y = 1.0 - rng.exponential(0.1, 200_000)
    mode, lo, hi = posterior_summary(y, 0.68, lower=-1.0, upper=1.0)
    assert mode > 0.98
    assert hi > 0.999 and lo == pytest.approx(1.0 + 0.1 * math.log(0.32), abs=0.005)


# --------------------------------------------------------------------------- calibration


def _coverage(total: float, n_draws: int, n_samples: int, seed: int) -> dict[str, float]:
    r = 0.1
    frac = {"soft": 0.3, "medium": 0.3, "hard": 0.4}
    lam = {band: total * f for band, f in frac.items()}
    # Background-region rates: in the source region r * xi is about 30% of all counts.
    xi = {band: total * f for band, f in zip(BANDS, (4 / 3, 1.0, 2.0), strict=True)}
    truth = _true_ratios(lam)
    rng = np.random.default_rng(seed)
    src = rng.poisson([lam[b] + r * xi[b] for b in BANDS], size=(n_draws, 3))
    bkg = rng.poisson([xi[b] for b in BANDS], size=(n_draws, 3))
    post_rng = np.random.default_rng(seed + 1)
    hits = dict.fromkeys(HR_DEFS, 0)
    for i in range(n_draws):
        res = hardness_ratios_from_counts(
            dict(zip(BANDS, src[i], strict=True)),
            dict(zip(BANDS, bkg[i], strict=True)),
            r,
            n_samples=n_samples,
            rng=post_rng,
        )
        for name, (_, lo, hi) in res.to_dict().items():
            hits[name] += lo <= truth[name] <= hi
    return {name: h / n_draws for name, h in hits.items()}


@pytest.mark.slow
@pytest.mark.parametrize(("total", "n_draws"), [(30.0, 4000), (3000.0, 2000)])
def test_interval_coverage_is_calibrated(total, n_draws):
    """68% intervals contain the true ratio in 68 +- 4% of Poisson draws (with background).

    The binomial standard error of a coverage is 0.7% (4,000 draws) or 1.0% (2,000 draws);
    at 30 counts the coverage is about 66.5% (Poisson discreteness), so more draws are
    used there to keep it clear of the 64% limit.
    """
    coverage = _coverage(total, n_draws=n_draws, n_samples=4000, seed=2006)
    print(
        f"\n68% coverage at {total:g} net counts: "
        + ", ".join(f"{k} {v:.3f}" for k, v in coverage.items())
    )
    for name, c in coverage.items():
        assert 0.64 <= c <= 0.72, f"{name} coverage {c:.3f} at {total:g} counts"


# --------------------------------------------------------------------------- known limits


def test_many_counts_no_background_matches_plug_in():
    counts = {"soft": 40_000, "medium": 25_000, "hard": 60_000}
    res = hardness_ratios_from_counts(counts, None, 0.0)
    plug_in = _true_ratios({k: float(v) for k, v in counts.items()})
    for name, value in res.to_dict().items():
        mode, lo, hi = value
        a, b = (counts[x] for x in HR_DEFS[name])
        sigma = 2 * math.sqrt(a * b * b + b * a * a) / (a + b) ** 2  # Gaussian propagation
        # Monte Carlo noise of the mode is about 0.1 sigma with 20,000 samples
        assert mode == pytest.approx(plug_in[name], abs=0.35 * sigma)
        assert lo < plug_in[name] < hi
        assert (hi - lo) / 2 == pytest.approx(0.994 * sigma, rel=0.05)
    for band, value in res.net_counts.items():
        # flat prior: the posterior mode of the intensity is N itself
        assert value.mode == pytest.approx(counts[band], abs=0.35 * math.sqrt(counts[band]))


def test_sign_convention():
    hard_source = hardness_ratio(20, 0, 200, 0, 0.0)  # (b - a) / (b + a), b harder
    assert hard_source.mode > 0.7 and hard_source.lo > 0.6
    soft_source = hardness_ratio(200, 0, 20, 0, 0.0)
    assert soft_source.mode < -0.7 and soft_source.hi < -0.6
    res = hardness_ratios_from_counts({"soft": 10, "medium": 50, "hard": 300}, None, 0.0)
    assert res.hr_hm.mode > 0 and res.hr_hs.mode > res.hr_hm.mode and res.hr_ms.mode > 0


def test_zero_counts_in_a_band_gives_valid_interval():
    res = hardness_ratios_from_counts(
        {"soft": 0, "medium": 3, "hard": 25}, {"soft": 4, "medium": 2, "hard": 1}, 0.1
    )
    for name in ("hr_hs", "hr_ms"):
        v = getattr(res, name)
        assert -1.0 <= v.lo <= v.mode <= v.hi <= 1.0
        assert v.hi > 0.99  # no soft photons: the ratio reaches up to +1
        assert v.hi - v.lo > 0.05
    assert res.net_soft.lo == pytest.approx(0.0, abs=0.05)
    assert 0.0 <= res.net_soft.mode <= res.net_soft.hi
    # nothing in either band: the prior alone, still a valid interval
    empty = hardness_ratio(0, 0, 0, 0, 0.1)
    assert -1.0 <= empty.lo <= empty.mode <= empty.hi <= 1.0
    assert empty.hi - empty.lo > 0.5


def test_reproducible_with_fixed_rng():
    src = {"soft": 12, "medium": 9, "hard": 20}
    bkg = {"soft": 30, "medium": 20, "hard": 50}
    first = hardness_ratios_from_counts(src, bkg, 0.1)
    assert hardness_ratios_from_counts(src, bkg, 0.1) == first  # rng=None: fixed seed
    seeded = hardness_ratios_from_counts(src, bkg, 0.1, rng=42)
    again = hardness_ratios_from_counts(src, bkg, 0.1, rng=np.random.default_rng(42))
    assert seeded == again
    other = hardness_ratios_from_counts(src, bkg, 0.1, rng=43)
    assert other != seeded
    # Monte Carlo noise is well below the interval width (measured: bounds about 2-3%,
    # mode about 4% of the width, standard deviations over seeds)
    for name in HR_DEFS:
        a, b = getattr(seeded, name), getattr(other, name)
        width = a.hi - a.lo
        assert abs(a.lo - b.lo) < 0.1 * width and abs(a.hi - b.hi) < 0.1 * width
        assert abs(a.mode - b.mode) < 0.2 * width
        assert abs((a.hi - a.lo) - (b.hi - b.lo)) < 0.05 * width


def test_results_structure():
    res = hardness_ratios_from_counts({"soft": 5, "medium": 8, "hard": 13, "broad": 26}, None, 0)
    assert isinstance(res, HardnessRatios)
    d = res.to_dict()
    assert set(d) == {"hr_hm", "hr_hs", "hr_ms"}
    for name, value in d.items():
        assert value == getattr(res, name).as_list()
        assert len(value) == 3 and all(type(v) is float for v in value)
    assert isinstance(res.hr_hm, HardnessValue)
    assert set(res.net_counts) == set(BANDS)
    assert all(isinstance(v, CredibleValue) for v in res.net_counts.values())
    assert res.prior == PRIORS[DEFAULT_PRIOR] and res.level == 0.68
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.hr_hm = res.hr_hs  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.hr_hm.mode = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        HardnessValue(0.0, -1.5, 0.5)
    with pytest.raises(ValueError, match="lo <= hi"):
        CredibleValue(1.0, 2.0, 0.5)
    wider = hardness_ratios_from_counts({"soft": 5, "medium": 8, "hard": 13}, None, 0, level=0.9)
    assert wider.hr_hm.hi - wider.hr_hm.lo > res.hr_hm.hi - res.hr_hm.lo


class _FakeSpectrum:
    """Just the two members hardness_ratios() may use."""

    def __init__(self, counts: dict[tuple[float, float], tuple[int, int]], scale: float):
        self._counts = counts
        self.background_scale = scale
        self.calls: list[tuple[float, float]] = []

    def band_counts(self, elo_kev: float, ehi_kev: float) -> tuple[int, int]:
        self.calls.append((elo_kev, ehi_kev))
        return self._counts[(elo_kev, ehi_kev)]


def test_hardness_ratios_from_spectrum():
    per_band = {"soft": (14, 40), "medium": (22, 30), "hard": (35, 55)}
    spec = _FakeSpectrum({CSC_BANDS[b]: per_band[b] for b in BANDS}, 0.08)
    res = hardness_ratios(spec, rng=11)
    assert sorted(spec.calls) == sorted(CSC_BANDS[b] for b in BANDS)
    direct = hardness_ratios_from_counts(
        {b: c[0] for b, c in per_band.items()}, {b: c[1] for b, c in per_band.items()}, 0.08, rng=11
    )
    assert res == direct


# --------------------------------------------------------------------------- bad input


GOOD_SRC = {"soft": 5, "medium": 6, "hard": 7}
GOOD_BKG = {"soft": 1, "medium": 2, "hard": 3}


@pytest.mark.parametrize(
    ("src", "bkg", "scale", "kwargs", "match"),
    [
        ({**GOOD_SRC, "soft": -1}, GOOD_BKG, 0.1, {}, "soft source counts must be non-negative"),
        ({**GOOD_SRC, "hard": float("nan")}, GOOD_BKG, 0.1, {}, "hard source counts must be"),
        ({**GOOD_SRC, "medium": float("inf")}, GOOD_BKG, 0.1, {}, "must be finite"),
        ({**GOOD_SRC, "soft": 2.5}, GOOD_BKG, 0.1, {}, "whole number"),
        ({**GOOD_SRC, "soft": "five"}, GOOD_BKG, 0.1, {}, "number of counts"),
        (GOOD_SRC, {**GOOD_BKG, "hard": -3}, 0.1, {}, "hard background counts"),
        (GOOD_SRC, {**GOOD_BKG, "soft": float("nan")}, 0.1, {}, "soft background counts"),
        (GOOD_SRC, GOOD_BKG, -0.1, {}, "background scale"),
        (GOOD_SRC, GOOD_BKG, float("nan"), {}, "background scale"),
        (GOOD_SRC, GOOD_BKG, float("inf"), {}, "background scale"),
        ({"soft": 1, "hard": 2}, GOOD_BKG, 0.1, {}, "missing 'medium'"),
        (GOOD_SRC, {"soft": 1, "medium": 2}, 0.1, {}, "missing 'hard'"),
        (GOOD_SRC, GOOD_BKG, 0.1, {"prior": "uniformish"}, "unknown prior"),
        (GOOD_SRC, GOOD_BKG, 0.1, {"prior": (1.0, -1.0)}, "positive"),
        (GOOD_SRC, GOOD_BKG, 0.1, {"n_samples": 0}, "n_samples"),
        (GOOD_SRC, GOOD_BKG, 0.1, {"n_samples": 100.5}, "n_samples"),
        (GOOD_SRC, GOOD_BKG, 0.1, {"level": 1.2}, "credible level"),
        (GOOD_SRC, GOOD_BKG, 0.1, {"rng": "seed"}, "rng"),
    ],
)
def test_bad_input_raises(src, bkg, scale, kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        hardness_ratios_from_counts(src, bkg, scale, **kwargs)
    assert "\n" not in str(info.value)


def test_bad_input_raises_lower_level():
    with pytest.raises(ValueError, match="source counts must be non-negative"):
        band_posterior_samples(-2, 0, 0.1, 100)
    with pytest.raises(ValueError, match="background scale"):
        hardness_ratio(1, 1, 1, 1, -1.0)
    with pytest.raises(ValueError, match="finite"):
        posterior_summary(np.array([0.0, np.nan, 1.0]))
