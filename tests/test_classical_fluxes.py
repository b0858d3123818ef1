"""Fluxes of the classical fit: Sherpa's values, intervals from one set of draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sherpa.astro.flux import sample_flux
from sherpa.astro.instrument import Response1D
from sherpa.astro.utils import calc_energy_flux
from sherpa.fit import Fit
from sherpa.models.basic import PowLaw1D
from sherpa.stats import WStat

from sherpa_latent import load_spectrum
from sherpa_latent.classical import (
    FLUX_BANDS,
    _flux_of_draws,
    fit_absorbed_powerlaw,
    fitting_band,
)
from sherpa_latent.physics import WAbs


@pytest.fixture(scope="module")
def spectrum_3c273(pha_3c273: Path):
    return load_spectrum(pha_3c273)


@pytest.fixture(scope="module")
def fit_3c273(spectrum_3c273):
    return fit_absorbed_powerlaw(spectrum_3c273)


def _model(fit):
    absorber, powerlaw = WAbs("a"), PowLaw1D("p")
    absorber.nH = fit.nh[0]
    powerlaw.gamma, powerlaw.ampl = fit.gamma[0], fit.norm
    return absorber, powerlaw


def test_best_fit_fluxes_are_sherpas(spectrum_3c273, fit_3c273) -> None:
    fit = fit_3c273
    assert [f.band for f in fit.fluxes] == list(FLUX_BANDS)
    absorber, powerlaw = _model(fit)
    for flux in fit.fluxes:
        lo, hi = flux.band
        assert flux.absorbed[0] == pytest.approx(
            calc_energy_flux(spectrum_3c273.pha, absorber * powerlaw, lo, hi), rel=1e-9
        )
        assert flux.unabsorbed[0] == pytest.approx(
            calc_energy_flux(spectrum_3c273.pha, powerlaw, lo, hi), rel=1e-9
        )
        # Absorption only removes photons.
        assert flux.unabsorbed[0] >= flux.absorbed[0]
    whole = fit.flux((0.5, 7.0))
    assert (whole.absorbed[0], whole.unabsorbed[0]) == (fit.flux_absorbed, fit.flux_unabsorbed)
    soft, hard = fit.flux((0.5, 2.0)), fit.flux((2.0, 7.0))
    assert soft.absorbed[0] + hard.absorbed[0] == pytest.approx(whole.absorbed[0], rel=1e-9)


def test_vectorised_draw_fluxes_equal_sherpa_for_each_draw(spectrum_3c273, fit_3c273) -> None:
    rng = np.random.default_rng(1)
    draws = np.column_stack(
        [rng.uniform(0.0, 2.0, 4), rng.uniform(1.0, 3.0, 4), rng.uniform(1e-4, 1e-3, 4)]
    )
    absorbed, unabsorbed = _flux_of_draws(spectrum_3c273.pha, draws, (0.7, 5.3))
    for row, a, u in zip(draws, absorbed, unabsorbed, strict=True):
        absorber, powerlaw = WAbs("a"), PowLaw1D("p")
        absorber.nH, powerlaw.gamma, powerlaw.ampl = row
        pha = spectrum_3c273.pha
        assert a == pytest.approx(calc_energy_flux(pha, absorber * powerlaw, 0.7, 5.3), rel=1e-9)
        assert u == pytest.approx(calc_energy_flux(pha, powerlaw, 0.7, 5.3), rel=1e-9)


def test_intervals_agree_with_sherpas_sample_flux(spectrum_3c273, fit_3c273) -> None:
    fit = fit_3c273
    absorber, powerlaw = _model(fit)
    absorber.nH.set(min=0.0, max=100.0)
    powerlaw.gamma.set(min=-3.0, max=10.0)
    powerlaw.ampl.set(min=0.0, max=1e3)
    with fitting_band(spectrum_3c273.pha) as pha:
        sherpa_fit = Fit(pha, Response1D(pha)(absorber * powerlaw), stat=WStat())
        for flux in fit.fluxes:
            lo, hi = flux.band
            for values, src in ((flux.absorbed, absorber * powerlaw), (flux.unabsorbed, powerlaw)):
                rows = sample_flux(
                    sherpa_fit,
                    pha,
                    src,
                    correlated=True,
                    num=2000,
                    lo=lo,
                    hi=hi,
                    clip="soft",
                    rng=np.random.default_rng(7),
                )
                p16, p84 = np.percentile(rows[:, 0], (15.865, 84.135))
                half = 0.5 * (p84 - p16)
                assert values[1] == pytest.approx(p16, abs=0.15 * half), (flux.band, src.name)
                assert values[2] == pytest.approx(p84, abs=0.15 * half), (flux.band, src.name)
                assert values[1] < values[0] < values[2]


def test_fluxes_are_reproducible_and_follow_errors(spectrum_3c273, fit_3c273) -> None:
    again = fit_absorbed_powerlaw(spectrum_3c273)
    assert again.fluxes == fit_3c273.fluxes  # seeded draws
    other = fit_absorbed_powerlaw(spectrum_3c273, seed=99)
    assert other.fluxes != fit_3c273.fluxes
    quick = fit_absorbed_powerlaw(spectrum_3c273, errors=False)
    for flux in quick.fluxes:
        assert flux.absorbed[0] == flux.absorbed[1] == flux.absorbed[2]
    data = fit_3c273.to_dict()
    assert data["fluxes"][2]["band"] == [0.5, 7.0]
    assert data["fluxes"][2]["absorbed"] == list(fit_3c273.fluxes[2].absorbed)
    assert data["n_bins"] == fit_3c273.n_bins == 42  # 3C 273's groups in 0.5-7 keV


def test_a_rejected_fit_has_no_flux_intervals(tmp_path: Path, pha_3c273: Path) -> None:
    from astropy.io import fits
    from conftest import write_modified_pha

    counts = fits.getdata(pha_3c273, 1)["COUNTS"].astype(np.int64)
    counts[200:260] += 400  # a line no power law can follow
    spectrum = load_spectrum(write_modified_pha(tmp_path / "line.pi", pha_3c273, counts=counts))
    fit = fit_absorbed_powerlaw(spectrum)
    assert "rejected" in fit.note
    for flux in fit.fluxes:
        assert np.isfinite(flux.absorbed[0]) and np.isnan(flux.absorbed[1])
