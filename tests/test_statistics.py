"""One statistic per result: the text report, the plots and Sherpa's fit() say the same.

The report's latent line and plot_latent_fit's legend are parsed and compared for 3C 273 and
the two CSC spectra in the sherpa package; after fit() in a session the plot shows Sherpa's
fitted statistic; a flux of a latent component outside its model grid warns."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import SHERPA_SPECTRA, require_default_network  # noqa: E402
from sherpa.astro import ui  # noqa: E402
from sherpa.astro.utils import calc_energy_flux  # noqa: E402

import sherpa_latent.ui as slui  # noqa: E402
from sherpa_latent import load_spectrum  # noqa: E402
from sherpa_latent.classical import fit_absorbed_powerlaw  # noqa: E402
from sherpa_latent.inference import (  # noqa: E402
    cash_statistic,
    format_statistic,
    load_encoder,
    model_statistic,
)
from sherpa_latent.models import LatentGridWarning  # noqa: E402
from sherpa_latent.plotting import plot_latent_fit  # noqa: E402
from sherpa_latent.report import report_spectrum  # noqa: E402

STAT = re.compile(
    r"(?P<model>[^:\n]+): (?P<statistic>cstat|wstat) (?P<value>-?[\d.]+) for (?P<dof>-?\d+) dof "
    r"\((?P<lo>[\d.]+)-(?P<hi>[\d.]+) keV, (?P<bins>\d+) bins\)"
)


def parse(text: str) -> list[dict]:
    """Every statistic written by format_statistic in a text."""
    return [m.groupdict() | {"model": m["model"].strip()} for m in STAT.finditer(text)]


def legend_texts(fig) -> str:
    legends = list(fig.legends) + [a.get_legend() for a in fig.axes if a.get_legend()]
    return "\n".join(t.get_text() for leg in legends for t in leg.get_texts())


def titles(fig) -> str:
    """The figure's and its axes' titles."""
    return " ".join([t.get_text() for t in fig.texts] + [a.get_title() for a in fig.axes])


@pytest.fixture(scope="module")
def encoder():
    require_default_network()
    return load_encoder("default", device="cpu")


@pytest.fixture
def shipped_session(pha_3c273: Path):
    require_default_network()
    ui.clean()
    slui.load_network("default", device="cpu")
    ui.load_pha(str(pha_3c273))
    yield
    ui.clean()


def test_format_statistic_is_parsed_back() -> None:
    text = format_statistic("encoder latent", "wstat", 38.84, 33, (0.5, 7.0), 42)
    assert text == "encoder latent: wstat 38.8 for 33 dof (0.5-7 keV, 42 bins)"
    (found,) = parse(text)
    assert found == {
        "model": "encoder latent", "statistic": "wstat", "value": "38.8", "dof": "33",
        "lo": "0.5", "hi": "7", "bins": "42",
    }  # fmt: skip


@pytest.mark.parametrize("name", SHERPA_SPECTRA)
def test_report_and_plot_show_one_statistic(encoder, sherpa_data: Path, name: str) -> None:
    """What must hold 6: the report's latent statistic is the one plot_latent_fit shows."""
    spectrum = load_spectrum(sherpa_data / name)
    report = report_spectrum(spectrum, classical=False, encoder=encoder, galactic=False)
    result = report.latent
    in_report = [s for s in parse(report.to_text()) if s["model"] == "encoder latent"]
    assert len(in_report) == 1, report.to_text()
    fig = plot_latent_fit(spectrum, result, encoder)
    in_plot = [s for s in parse(legend_texts(fig)) if s["model"] == "encoder latent"]
    assert in_plot == in_report
    # what the result carries is that number, on the classical fit's bins and statistic
    expected = "wstat" if spectrum.pha.background_ids else "cstat"
    assert result.statistic == expected and result.band == (0.5, 7.0)
    assert float(in_report[0]["value"]) == pytest.approx(result.cstat, abs=0.05)
    assert int(in_report[0]["bins"]) == result.n_bins == result.dof + 9
    pha = spectrum.pha
    pha.notice(0.5, 7.0)
    try:
        assert result.n_bins == len(pha.get_dep(filter=True))
    finally:
        pha.notice()


def test_classical_statistic_in_the_plot_is_the_fit(encoder, pha_3c273: Path) -> None:
    """The classical model drawn has the statistic its fit reported (same bins)."""
    spectrum = load_spectrum(pha_3c273)
    (result,) = encoder.encode([spectrum])
    fit = fit_absorbed_powerlaw(spectrum)
    fig = plot_latent_fit(spectrum, result, encoder, classical=fit)
    (classical,) = [s for s in parse(legend_texts(fig)) if s["model"].startswith("classical")]
    assert classical["statistic"] == fit.statistic
    assert float(classical["value"]) == pytest.approx(fit.stat, abs=0.05)
    assert int(classical["dof"]) == fit.dof
    assert int(classical["bins"]) == result.n_bins  # the latent and classical bins agree


def test_statistic_is_sherpas_own(encoder, pha_3c273: Path) -> None:
    """model_statistic of a latent component is Sherpa's calc_stat in the same session set-up."""
    spectrum = load_spectrum(pha_3c273)
    (result,) = encoder.encode([spectrum])
    ui.clean()
    try:
        slui.load_network("default", device="cpu")
        ui.load_pha(str(pha_3c273))
        src = slui.set_latent_source()
        ui.set_stat("wstat")
        ui.notice(0.5, 7)
        in_session = ui.calc_stat()
        stat = model_statistic(spectrum, src)
        assert stat.value == pytest.approx(in_session, rel=1e-9)
        assert stat.value == pytest.approx(result.cstat, abs=1e-3)  # z within +-5: not clipped
    finally:
        ui.clean()


def test_after_fit_the_plot_shows_the_fitted_statistic(shipped_session) -> None:
    """What must hold 6: after fit() the plot draws the fitted component with statval."""
    encoded = slui.encode()
    src = slui.set_latent_source()
    for par in src.zs[2:]:  # a quick fit: z1, z2 and norm free
        par.freeze()
    ui.set_stat("wstat")
    ui.notice(0.5, 7)
    ui.fit()
    fitted = ui.get_fit_results()
    fig = slui.plot_latent_fit(classical=False)
    (shown,) = parse(legend_texts(fig))
    assert shown["model"] == f"fitted {src.name}"
    assert float(shown["value"]) == pytest.approx(fitted.statval, abs=0.05)
    assert int(shown["bins"]) == fitted.numpoints and int(shown["dof"]) == fitted.dof
    assert float(shown["value"]) <= encoded.cstat + 0.05  # the fit does not make it worse
    assert f"fitted {src.name}" in titles(fig)  # the plot says which result it draws
    # the same plot with another filter: the legend keeps the 0.5-7 keV definition and
    # a line says what Sherpa's fit used instead
    ui.notice(0.3, 8)
    ui.fit()
    fig = slui.plot_latent_fit(classical=False)
    title = titles(fig)
    assert "Sherpa's fit()" in title and "differs from the plot" in title
    assert f"{ui.get_fit_results().statval:.1f}" in title


def test_plot_after_an_expression_draws_the_session_model(shipped_session) -> None:
    src = slui.set_latent_source()
    for par in src.zs[1:]:  # a quick fit: z1 and norm free
        par.freeze()
    ui.set_source(slui.wabs.gal * src)
    gal = ui.get_model_component("gal")
    gal.nh = 0.0173
    gal.nh.freeze()
    ui.set_stat("wstat")
    ui.notice(0.5, 7)
    ui.fit()
    fig = slui.plot_latent_fit(classical=False)
    (shown,) = parse(legend_texts(fig))
    assert shown["model"] == f"fitted wabs.gal * {src.name}"
    assert float(shown["value"]) == pytest.approx(ui.get_fit_results().statval, abs=0.05)
    assert "encoder" not in legend_texts(fig)
    # a parameter changed after the fit: drawn, but no longer called fitted
    src.norm = 2 * src.norm.val
    (shown,) = parse(legend_texts(slui.plot_latent_fit(classical=False)))
    assert shown["model"] == f"session wabs.gal * {src.name}"


def test_a_source_without_latent_says_the_encoder_is_drawn(shipped_session) -> None:
    ui.set_source(ui.powlaw1d.pl)
    fig = slui.plot_latent_fit(classical=False)
    (shown,) = parse(legend_texts(fig))
    assert shown["model"] == "encoder latent"
    assert "has no latent component" in titles(fig)


def test_representations_get_the_input_grid_statistic(encoder, sherpa_data: Path) -> None:
    """Without channels (catalogue runs) the statistic is C-stat on the input grid, said so."""
    spectrum = load_spectrum(sherpa_data / "acisf07867_000N001_r0002_pha3.fits")
    cfg = encoder.model.config
    rep = spectrum.representation(cfg.input_grid, cfg.model_grid)
    (result,) = encoder.encode([rep])
    used = ((rep.response.sum(axis=1) > 0) | (rep.background > 0)) & cfg.input_grid.band_mask(
        (0.5, 7.0)
    )
    assert result.statistic == "cstat" and result.n_bins == int(used.sum())
    mu = rep.expected_counts(encoder.decode(result.z, result.log_norm)) + rep.background
    assert result.cstat == pytest.approx(cash_statistic(rep.counts[used], mu[used]), rel=1e-3)


def test_flux_outside_the_model_grid_warns(shipped_session) -> None:
    src = slui.set_latent_source()
    with warnings.catch_warnings():
        warnings.simplefilter("error", LatentGridWarning)
        inside = ui.calc_energy_flux(0.5, 7)  # no warning inside the grid
    assert inside > 0
    for _ in range(2):  # the second time the model cache answers: it still warns
        with pytest.warns(LatentGridWarning, match=r"10-20 keV lies outside .* 0\.2-10 keV"):
            assert ui.calc_energy_flux(10, 20) == 0.0
    with pytest.warns(LatentGridWarning, match=r"2-12 keV reaches beyond"):
        partial = calc_energy_flux(ui.get_data(), src, 2, 12)  # object API too
    assert partial > 0
    ui.set_source(slui.wabs.gal * src)
    with pytest.warns(LatentGridWarning):
        ui.calc_photon_flux(9, 11)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LatentGridWarning)
        ui.set_stat("wstat")
        ui.calc_stat()  # folding through the response (to 11 keV) is no flux: no warning
    assert np.isfinite(ui.calc_stat())
