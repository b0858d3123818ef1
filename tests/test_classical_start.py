"""The classical fit from one given start: same optimum as the grid, fallback when poor.

Also the pieces it rests on: the good-fit expectation of the Cash statistic, the photon
index read off a binned spectrum, and the benchmark harness that measures the agreement.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import require_default_network
from sherpa.astro.data import DataPHA
from sherpa.astro.fake import fake_pha
from sherpa.astro.instrument import Response1D
from sherpa.data import Data1D
from sherpa.models.basic import Polynom1D, PowLaw1D
from sherpa.stats import CStat

from sherpa_latent import load_spectrum
from sherpa_latent.classical import (
    DEFAULT_NH_STARTS,
    expected_cstat,
    fit_absorbed_powerlaw,
    photon_index_of,
)
from sherpa_latent.physics import BBodyRad, WAbs, powerlaw_photon_flux, wabs_transmission
from sherpa_latent.spectrum import spectrum_from_pha


def _simulated(pha_3c273: Path, component, counts: float, seed: int, nh: float = 0.5):
    """3C 273's responses and background with Poisson counts of ``wabs * component``."""
    template = load_spectrum(pha_3c273).pha
    pha = DataPHA(
        f"sim_{seed}",
        np.asarray(template.channel, float),
        np.zeros_like(np.asarray(template.counts, float)),
        exposure=template.exposure,
        backscal=template.backscal,
        header=dict(template.header),
    )
    pha.set_arf(template.get_arf())
    pha.set_rmf(template.get_rmf())
    pha.set_background(template.get_background())
    pha.set_analysis("energy")
    absorber = WAbs("abs")
    absorber.nH = nh
    folded = Response1D(pha)(absorber * component)
    pha.notice(0.5, 7.0)
    scale = counts / float(np.sum(pha.eval_model_to_fit(folded)))
    pha.notice()
    fake_pha(pha, scale * folded, include_bkg_data=True, rng=np.random.default_rng(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return spectrum_from_pha(pha, pha.name)


def test_expected_cstat_matches_poisson_draws() -> None:
    rng = np.random.default_rng(3)
    mu = np.concatenate([rng.uniform(0.05, 3.0, 60), rng.uniform(3.0, 40.0, 30), [80.0, 200.0]])
    mean, var = expected_cstat(mu)
    draws = rng.poisson(mu, size=(4000, mu.size)).astype(float)
    # Sherpa's own C-stat of each draw against mu (a straight line y = x on x = mu is mu).
    line = Polynom1D("mu")
    line.c0, line.c1 = 0.0, 1.0
    stat = CStat()
    values = np.array([stat.calc_stat(Data1D("d", mu, d), line)[0] for d in draws])
    # Mean and variance within sampling error.
    assert abs(values.mean() - mean) < 4 * np.sqrt(var / values.size)
    assert values.var() == pytest.approx(var, rel=0.1)
    # Far below one count per bin the expectation is well under one per bin (Kaastra 2017).
    low, _ = expected_cstat(np.full(100, 0.1))
    assert low < 60


@pytest.mark.parametrize(("nh", "gamma"), [(0.0, 1.7), (0.3, 2.4), (3.0, 1.2)])
def test_photon_index_of_an_absorbed_power_law(nh: float, gamma: float) -> None:
    edges = np.geomspace(0.2, 10.0, 1025)
    lo, hi = edges[:-1], edges[1:]
    flux = powerlaw_photon_flux(gamma, 1e-3, lo, hi) * wabs_transmission(nh, lo, hi)
    assert photon_index_of(lo, hi, flux, nh) == pytest.approx(gamma, abs=0.01)
    # Without dividing out the absorption the slope is flatter: the N_H matters.
    if nh >= 1:
        assert photon_index_of(lo, hi, flux, 0.0) < gamma - 0.2
    assert np.isnan(photon_index_of(lo[:1], hi[:1], flux[:1], nh))


def test_one_start_reaches_the_grid_optimum_on_3c273(pha_3c273: Path) -> None:
    spectrum = load_spectrum(pha_3c273)
    grid = fit_absorbed_powerlaw(spectrum, errors=False, method="neldermead")
    one = fit_absorbed_powerlaw(spectrum, errors=False, start=(0.03, 2.0))
    assert one.stat <= grid.stat + 0.01
    assert one.start.startswith("N_H 0.03, Gamma 2 (given)")
    assert "starting N_H" not in one.start  # a good first fit: no fallback
    assert one.nh[0] == pytest.approx(grid.nh[0], abs=0.005)
    assert one.gamma[0] == pytest.approx(grid.gamma[0], abs=0.01)
    assert one.n_bins == grid.n_bins == one.dof + 3


@pytest.mark.parametrize(("counts", "seed"), [(80.0, 1), (3000.0, 2)])
def test_one_start_from_far_away_still_reaches_the_optimum(
    pha_3c273: Path, counts: float, seed: int
) -> None:
    pl = PowLaw1D("pl")
    pl.gamma = 1.8
    spectrum = _simulated(pha_3c273, pl, counts, seed)
    grid = fit_absorbed_powerlaw(spectrum, errors=False, method="neldermead")
    for start in ((0.01, 3.5), (20.0, 0.5)):
        one = fit_absorbed_powerlaw(spectrum, errors=False, start=start)
        assert one.stat <= grid.stat + 0.01, (start, one.start, one.stat, grid.stat)


def test_a_poor_first_fit_falls_back_to_the_grid(pha_3c273: Path) -> None:
    # A bright blackbody: an absorbed power law fits badly from anywhere, and says why.
    bb = BBodyRad("bb")
    bb.kT = 0.4
    spectrum = _simulated(pha_3c273, bb, 20000.0, 5, nh=0.2)
    fit = fit_absorbed_powerlaw(spectrum, errors=False, start=(0.2, 2.0))
    assert f"then {len(DEFAULT_NH_STARTS)} starting N_H" in fit.start
    assert "statistic" in fit.start or "limit" in fit.start
    grid = fit_absorbed_powerlaw(spectrum, errors=False, method="neldermead")
    assert fit.stat <= grid.stat + 0.01


def test_bad_arguments_are_refused(pha_3c273: Path) -> None:
    spectrum = load_spectrum(pha_3c273)
    with pytest.raises(ValueError, match="method must be one of"):
        fit_absorbed_powerlaw(spectrum, method="simplex")
    with pytest.raises(ValueError, match="not finite"):
        fit_absorbed_powerlaw(spectrum, start=(float("nan"), 2.0))


def test_benchmark_harness_measures_what_it_says() -> None:
    require_default_network()
    from benchmarks.classical_start import section, simulate_spectra, start_agreement, summary_rows
    from sherpa_latent.inference import load_encoder

    spectra, truths = simulate_spectra(3, seed=11)
    assert [t["template"] for t in truths] == [
        "3c273.pi",
        "acisf04938_000N002_r0043_pha3.fits",
        "acisf07867_000N001_r0002_pha3.fits",
    ]
    for spectrum, truth in zip(spectra, truths, strict=True):
        assert spectrum.pha.background_ids and spectrum.pha.grouping is None
        assert 30 <= truth["source_counts"] <= 20000
        assert spectrum.net_counts() > 0
    result = start_agreement(load_encoder(device="cpu"), 2, seed=11)
    rows = result["rows"]
    assert result["n_spectra"] == len(rows) == 2
    assert result["fraction_within"] == np.mean([r["difference"] <= 0.01 for r in rows])
    for row in rows:
        assert row["difference"] == pytest.approx(row["stat_one"] - row["stat_four"])
    page = "\n".join(summary_rows(result, None) + section(result, None))
    assert f"{100 * result['fraction_within']:.1f}%" in page
    assert rows[0]["name"] in page
