"""The text report's science lines and its helpdesk paragraph, every number from the report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import require_default_network

from sherpa_latent import load_spectrum
from sherpa_latent.report import latent_start, report_spectrum

NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
CONVENTIONS = {"68%", "10^22", "cm^-2", "cm^2"}
"""Tokens of the paragraph that are units or the interval's level, not values."""


@pytest.fixture(scope="module")
def encoder():
    require_default_network()
    from sherpa_latent.inference import load_encoder

    return load_encoder(device="cpu")


@pytest.fixture(scope="module")
def report_3c273(pha_3c273: Path, encoder):
    return report_spectrum(load_spectrum(pha_3c273), encoder=encoder)


def _numbers_in(data) -> list[float]:
    """Every number in a report's data, strings that are numbers included (OBSID)."""
    if isinstance(data, dict):
        return [v for value in data.values() for v in _numbers_in(value)]
    if isinstance(data, list | tuple):
        return [v for value in data for v in _numbers_in(value)]
    if isinstance(data, bool) or data is None:
        return []
    if isinstance(data, int | float):
        return [float(data)]
    if isinstance(data, str) and NUMBER.fullmatch(data.strip()):
        return [float(data)]
    return []


def _shown_as(value: float, text: str) -> bool:
    """Whether ``value`` rounds to ``text`` at the precision ``text`` is written with."""
    if "e" in text:
        mantissa = text.split("e")[0]
        digits = len(mantissa.replace("-", "").replace("+", "").replace(".", "")) - 1
        return float(f"{value:.{digits}e}") == float(text)
    decimals = len(text.split(".")[1]) if "." in text else 0
    return round(value, decimals) == pytest.approx(float(text), abs=1e-12)


def test_every_number_in_the_helpdesk_paragraph_is_the_reports(report_3c273) -> None:
    paragraph = report_3c273.helpdesk_paragraph()
    data = report_3c273.to_dict()
    values = _numbers_in(data)
    exposure = float(data["EXPOSURE"])
    cleaned = paragraph
    # Names quoted from the report (OBJECT "3C 273", INSTRUMENT "ACIS ACIS-56789") are
    # text, not numbers; so are the units and the intervals' level.
    names = [v for v in data.values() if isinstance(v, str) and not NUMBER.fullmatch(v.strip())]
    for token in sorted(names, key=len, reverse=True) + sorted(CONVENTIONS):
        if token:
            cleaned = cleaned.replace(token, " ")
    found = NUMBER.findall(cleaned)
    assert len(found) >= 15, paragraph  # the paragraph carries the science, not just words
    for text in found:
        # The exposure is written in ks; every other number in the unit of its column.
        ok = any(_shown_as(v, text) for v in values) or _shown_as(exposure / 1e3, text)
        assert ok, f"{text} in the paragraph is none of the report's values"
    # It says what the data say.
    fit = report_3c273.classical
    assert f"{fit.gamma[0]:.2f} [{fit.gamma[1]:.2f}, {fit.gamma[2]:.2f}]" in paragraph
    assert f"{report_3c273.galactic.nh:.3g} x 10^22 cm^-2 (HI4PI)" in paragraph
    # The text report ends with it, wrapped.
    assert " ".join(report_3c273.to_text().split()).endswith(" ".join(paragraph.split()))


def test_the_classical_line_names_model_statistic_band_and_bins(report_3c273) -> None:
    fit = report_3c273.classical
    text = report_3c273.to_text()
    line = next(x for x in text.splitlines() if x.startswith("  classical"))
    assert line.split()[:4] == ["classical", "wabs", "*", "powlaw1d:"]
    assert f"{fit.statistic} {fit.stat:.1f} for {fit.dof} dof" in line
    assert "(0.5-7 keV, 42 bins)" in line and fit.n_bins == 42
    for flux in fit.fluxes:
        band = f"{flux.band[0]:g}-{flux.band[1]:g} keV"
        absorbed = f"{flux.absorbed[0]:.3g} [{flux.absorbed[1]:.3g}, {flux.absorbed[2]:.3g}]"
        assert any(band in x and absorbed in x for x in text.splitlines())


def test_galactic_lines_compare_both_fitted_columns(report_3c273) -> None:
    text = report_3c273.to_text()
    galactic = report_3c273.galactic
    lines = [x.strip() for x in text.splitlines()]
    for name, interval in (
        ("classical", report_3c273.classical.nh),
        ("latent", report_3c273.latent.nh),
    ):
        line = next(x for x in lines if x.startswith(f"{name} N_H"))
        if galactic.exceeded_by(interval):
            excess = galactic.excess(interval)
            assert "above the Galactic column" in line
            assert f"excess {excess[0]:.3g} [{excess[1]:.3g}, {excess[2]:.3g}]" in line
        else:
            assert "Galactic column" in line and "excess" not in line


def test_the_classical_fit_starts_where_the_network_points(report_3c273, encoder) -> None:
    start = latent_start(encoder, report_3c273.latent)
    assert start[0] == report_3c273.latent.nh[0]
    assert 0.0 <= start[1] <= 4.0
    how = report_3c273.classical.start
    assert how.startswith(f"N_H {start[0]:.3g}, Gamma {start[1]:.3g} (given)")
