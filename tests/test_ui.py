"""Session commands: encode, get_latent, set_latent_source, estimate_nh, latent_report, and
the 3C 273 walkthrough with the shipped network (issue 4, what must hold 1 and 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from conftest import require_default_network
from sherpa.astro import ui
from sherpa.utils.err import IdentifierErr

import sherpa_latent.ui as slui
from sherpa_latent.columns import SESSION_COLUMNS
from sherpa_latent.errors import NetworkFileError, SpectrumError
from sherpa_latent.models import LatentSpectrum


@pytest.fixture
def two_spectra(session, sherpa_data: Path) -> None:
    ui.load_pha(1, str(sherpa_data / "3c273.pi"))
    ui.load_pha("b", str(sherpa_data / "acisf04938_000N002_r0043_pha3.fits"))


def test_encode_stores_the_result(two_spectra) -> None:
    first = slui.encode()
    assert first.z.shape == (8,) and np.all(np.isfinite(first.z))
    assert slui.get_latent() is first and slui.get_latent(1) is first
    other = slui.get_latent("b")
    assert other is slui.get_latent("b") and not np.array_equal(other.z, first.z)
    nh = slui.estimate_nh(1)
    assert len(nh) == 3 and nh[1] <= nh[0] <= nh[2] and nh == first.nh
    # loading another data set under the id makes the stored result stale
    ui.load_pha(1, ui.get_data("b").name)
    np.testing.assert_allclose(slui.get_latent(1).z, other.z)


def test_grouping_and_background_subtraction_do_not_change_the_encoding(two_spectra) -> None:
    plain = slui.encode(1)
    ui.group_counts(1, 20)
    ui.notice_id(1, 1.0, 3.0)
    ui.subtract(1)
    again = slui.encode(1)
    np.testing.assert_array_equal(again.z, plain.z)
    assert again.log_norm == plain.log_norm
    hr = slui.hardness_ratios(1)  # background-aware, whatever the subtraction
    assert -1 <= hr.hr_hm.mode <= 1


def test_missing_and_unusable_data_sets(two_spectra) -> None:
    for call in (slui.encode, slui.get_latent, slui.set_latent_source, slui.estimate_nh):
        with pytest.raises(IdentifierErr):
            call(7)
    slui.encode(1)
    ui.set_analysis(1, "wavelength")
    with pytest.raises(SpectrumError, match="wavelength"):
        slui.encode(1)
    with pytest.raises(SpectrumError, match="wavelength"):
        slui.get_latent(1)
    ui.load_arrays("c", [1.0, 2.0], [3.0, 4.0])
    with pytest.raises(SpectrumError, match="not a PHA"):
        slui.encode("c")
    with pytest.raises(NetworkFileError):
        slui.load_network("/nonexistent/network.safetensors")


def test_set_latent_source(two_spectra) -> None:
    result = slui.get_latent("b")
    src = slui.set_latent_source("b")
    assert isinstance(src, LatentSpectrum) and src.name == "latent.latent_b"
    assert ui.get_source("b") is src
    np.testing.assert_allclose([p.val for p in src.zs], np.clip(result.z, -5, 5))
    assert src.norm.val == pytest.approx(10**result.log_norm)
    assert src.network_sha256 == slui.get_network().sha256
    named = slui.set_latent_source(1, name="quasar")
    assert ui.get_model_component("quasar") is named and ui.get_source(1) is named
    ui.set_stat("cstat")
    ui.notice(0.5, 7.0)
    before = ui.calc_stat(1)
    ui.fit(1)
    assert ui.get_fit_results().statval <= before


def test_latent_report_without_classical_fit(two_spectra) -> None:
    table = slui.latent_report(classical=False)
    assert len(table) == 2 and list(table["ID"]) == ["1", "b"]
    assert table.colnames == list(SESSION_COLUMNS)  # the report table's, with ID
    assert table["Z"].shape == (2, 8)
    assert table["NH_LATENT"].unit == u.Unit("1e22 cm-2")
    assert table["NORM_LATENT"].unit == u.Unit("ph cm-2 s-1")
    for i, key in enumerate((1, "b")):
        result = slui.get_latent(key)
        np.testing.assert_array_equal(table["Z"][i], result.z)
        assert table["NH_LATENT_LO"][i] == result.nh[1]
        norm = [table[f"NORM_LATENT{s}"][i] for s in ("_LO", "", "_HI")]
        want = 10.0 ** (result.log_norm + np.array([-1.0, 0.0, 1.0]) * result.log_norm_err)
        np.testing.assert_allclose(norm, want, rtol=1e-12)
        assert table["STATISTIC_LATENT"][i] == result.statistic
        assert table["STAT_LATENT"][i] == result.cstat
    assert np.all(np.isnan(table["NH_CLASSICAL"])) and np.all(table["DOF_CLASSICAL"] == -1)
    # 3C 273 has RA_TARG/DEC_TARG, the CSC spectrum RA/DEC: both get a Galactic column
    assert np.all(np.isfinite(table["RA"])) and list(table["NH_GAL_SURVEY"]) == ["HI4PI"] * 2
    assert table.meta["NETSHA"] == slui.get_network().sha256


def test_latent_report_with_classical_fit(two_spectra) -> None:
    ui.subtract(1)
    ui.group_counts(1, 15)
    mask = ui.get_data(1).mask
    table = slui.latent_report(1)
    assert len(table) == 1
    row = table[0]
    assert row["STATISTIC_CLASSICAL"] == "wstat" and row["DOF_CLASSICAL"] > 0
    assert row["NBINS_CLASSICAL"] == row["DOF_CLASSICAL"] + 3
    assert row["NH_CLASSICAL_LO"] <= row["NH_CLASSICAL"] <= row["NH_CLASSICAL_HI"]
    assert 1.5 < row["GAMMA_CLASSICAL"] < 2.5
    assert table["FLUX_ABS_05_7"].unit == u.Unit("erg cm-2 s-1")
    assert row["FLUX_ABS_05_7_LO"] <= row["FLUX_ABS_05_7"] <= row["FLUX_ABS_05_7_HI"]
    assert row["NH_CLASSICAL_EXCEEDS_GAL"] == (row["NH_CLASSICAL_LO"] > row["NH_GAL"])
    assert ui.get_data(1).subtracted  # the session's data set is left as it was
    assert np.array_equal(ui.get_data(1).mask, mask)


# --- what must hold, with the shipped network ---------------------------------------------
@pytest.fixture
def default_session(pha_3c273: Path):
    require_default_network()
    ui.clean()
    slui.load_network("default", device="cpu")
    ui.load_pha(str(pha_3c273))
    yield
    ui.clean()


def _classical_session_fit():
    """wabs * powlaw1d in the session (same data, statistic and filter)."""
    ui.set_source(slui.wabs.gal * ui.powlaw1d.pl)
    gal, pl = ui.get_model_component("gal"), ui.get_model_component("pl")
    best = None
    for nh in (0.01, 0.1, 1.0):
        gal.nh, pl.gamma, pl.ampl = nh, 2.0, 1e-3
        ui.fit()
        stat = ui.get_fit_results().statval
        if best is None or stat < best[0]:
            best = (stat, nh, pl.gamma.val, pl.ampl.val, gal.nh.val)
    gal.nh, pl.gamma, pl.ampl = best[4], best[2], best[3]
    ui.fit()
    return ui.get_fit_results(), ui.calc_energy_flux(0.5, 7.0)


def test_walkthrough_on_3c273(default_session) -> None:
    """What must hold 1: the latent fit is no worse than the classical one plus 10, and
    conf gives finite intervals for the normalisation and a latent parameter."""
    result = slui.encode()
    src = slui.set_latent_source()
    ui.set_stat("cstat")
    ui.notice(0.5, 7.0)
    ui.fit()
    latent_fit = ui.get_fit_results()
    # conf (68%) on the normalisation and on the best-constrained latent parameter
    ui.covar()
    covar = ui.get_covar_results()
    sigmas = dict(zip(covar.parnames, covar.parmaxes, strict=True))
    best_z = min(src.zs, key=lambda p: sigmas.get(p.fullname) or np.inf)
    ui.set_conf_opt("sigma", 1.0)
    # Weakly constrained latents make each conf refit long; a looser levmar tolerance
    # gives the same intervals to 3 digits in a third of the time.
    ui.set_method_opt("ftol", 1e-4)
    ui.conf(src.norm, best_z)
    conf = ui.get_conf_results()
    intervals = dict(zip(conf.parnames, zip(conf.parmins, conf.parmaxes, strict=True), strict=True))

    classical, _ = _classical_session_fit()
    print(
        f"\n3C 273 C-stat 0.5-7 keV: latent {latent_fit.statval:.2f} ({latent_fit.dof} dof), "
        f"classical {classical.statval:.2f} ({classical.dof} dof); encoder log_norm "
        f"{result.log_norm:.3f}, fitted norm {src.norm.val:.4g}; conf {intervals}"
    )
    assert latent_fit.statval <= classical.statval + 10.0

    def finite(name: str) -> bool:
        lo, hi = intervals[name]
        return lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi)

    assert finite(src.norm.fullname)
    assert finite(best_z.fullname)


def test_mixed_models_and_flux_on_3c273(default_session) -> None:
    """What must hold 2: wabs * latent and latent + powlaw1d fit; the latent component's
    0.5-7 keV energy flux is within 10% of the classical model's."""
    ui.set_stat("cstat")
    ui.notice(0.5, 7.0)
    _, classical_flux = _classical_session_fit()

    src = slui.set_latent_source()
    gal = ui.get_model_component("gal")
    ui.set_source(gal * src)
    gal.nh = 0.03
    ui.freeze(gal.nh)
    ui.fit()
    absorbed = ui.get_fit_results()
    assert absorbed.succeeded and np.isfinite(absorbed.statval)

    src = slui.set_latent_source()
    ui.set_source(src + ui.powlaw1d.extra)
    extra = ui.get_model_component("extra")
    extra.gamma, extra.ampl = 1.7, 1e-5
    ui.fit()
    mixed = ui.get_fit_results()
    assert mixed.succeeded and np.isfinite(mixed.statval)

    ui.set_source(src)
    ui.fit()
    alone = ui.get_fit_results()
    latent_flux = ui.calc_energy_flux(0.5, 7.0, model=src)
    print(
        f"\n3C 273: wabs*latent C-stat {absorbed.statval:.2f}, latent+powlaw1d "
        f"{mixed.statval:.2f}, latent {alone.statval:.2f}; 0.5-7 keV flux latent "
        f"{latent_flux:.4g}, classical {classical_flux:.4g} erg/cm^2/s "
        f"({100 * (latent_flux / classical_flux - 1):+.2f}%)"
    )
    assert latent_flux == pytest.approx(classical_flux, rel=0.10)


def test_changed_scaling_makes_the_stored_encoding_stale(two_spectra) -> None:
    """Issue 12: a new BACKSCAL (or EXPOSURE) is a new data set for the network."""
    first = slui.encode(1)
    assert slui.get_latent(1) is first
    ui.set_backscal(1, 2 * float(ui.get_backscal(1)))
    again = slui.get_latent(1)
    assert again is not first
    assert slui.get_latent(1) is again
    ui.set_exposure(1, 0.5 * float(ui.get_exposure(1)))
    assert slui.get_latent(1) is not again


def test_latent_report_carries_the_warnings(two_spectra) -> None:
    table = slui.latent_report(classical=False)
    assert list(table["WARNINGS"]) == ["", ""]
    ui.get_data(1).set_arf(None)  # as if ANCRFILE = none
    table = slui.latent_report(1, classical=False)
    assert table["WARNINGS"][0].startswith("no ARF (ANCRFILE = none)")
