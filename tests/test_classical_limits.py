"""Classical fits of faint spectra say when a bound is a parameter limit, not a measurement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import write_modified_pha

from sherpa_latent import load_spectrum
from sherpa_latent.classical import fit_absorbed_powerlaw
from sherpa_latent.report import report_spectrum

NH_LIMITS, GAMMA_LIMITS = (0.0, 100.0), (-3.0, 10.0)


def _faint(tmp_path: Path, pha: Path, n_counts: int, seed: int) -> Path:
    """3C 273 with its counts replaced by ``n_counts`` drawn from its own 0.5-7 keV shape."""
    counts = fits.getdata(pha, 1)["COUNTS"].astype(float)
    e = load_spectrum(pha).channel_energies
    mid = 0.5 * (e[0] + e[1])
    shape = np.where((mid > 0.5) & (mid < 7.0), counts, 0.0)
    rng = np.random.default_rng(seed)
    new = np.bincount(
        rng.choice(len(shape), n_counts, p=shape / shape.sum()), minlength=len(shape)
    ).astype(np.int32)
    return write_modified_pha(tmp_path / f"faint_{n_counts}_{seed}.pi", pha, counts=new)


@pytest.mark.parametrize(("n_counts", "seed"), [(1, 0), (5, 1), (10, 1), (30, 2)])
def test_limits_are_never_printed_as_measured_bounds(
    tmp_path: Path, pha_3c273: Path, n_counts: int, seed: int
) -> None:
    spectrum = load_spectrum(_faint(tmp_path, pha_3c273, n_counts, seed))
    fit = fit_absorbed_powerlaw(spectrum)
    text = report_spectrum(spectrum).to_text()
    for name, values, flags, limits in (
        ("N_H", fit.nh, fit.nh_at_limit, NH_LIMITS),
        ("Gamma", fit.gamma, fit.gamma_at_limit, GAMMA_LIMITS),
    ):
        _, lo, hi = values
        assert flags == (lo <= limits[0], hi >= limits[1]), (name, values, flags)
        for hit, side in zip(flags, ("below", "above"), strict=True):
            if hit and not (name == "N_H" and side == "below"):
                assert f"{name} is unconstrained {side}" in " ".join(fit.limit_notes)
        if any(flags):
            assert "(limit)" in text
        assert all(note in text for note in fit.limit_notes)
    data = json.loads(report_spectrum(spectrum, classical=True).to_json())
    assert [data["NH_CLASSICAL_LO_AT_LIMIT"], data["NH_CLASSICAL_HI_AT_LIMIT"]] == list(
        fit.nh_at_limit
    )
    assert all(note in data["WARNINGS"] for note in fit.limit_notes)


def test_a_single_photon_allows_no_absorption(tmp_path: Path, pha_3c273: Path) -> None:
    fit = fit_absorbed_powerlaw(load_spectrum(_faint(tmp_path, pha_3c273, 1, 0)))
    assert fit.nh[1] == 0.0 and fit.nh_at_limit[0]
    assert "N_H is consistent with 0" in " ".join(fit.limit_notes)


def test_a_bright_spectrum_has_no_limit_notes(pha_3c273: Path) -> None:
    fit = fit_absorbed_powerlaw(load_spectrum(pha_3c273))
    assert fit.limit_notes == () and fit.nh_at_limit == (False, False)
    assert fit.gamma_at_limit == (False, False)


def test_limits_and_warnings_travel_into_the_fits_table(tmp_path: Path, pha_3c273: Path) -> None:
    from sherpa_latent.catalogue import report_table

    spectrum = load_spectrum(_faint(tmp_path, pha_3c273, 5, 1))
    report = report_spectrum(spectrum)
    table = report_table([report], encoder=None)
    fit = report.classical
    row = table[0]
    assert (row["NH_CLASSICAL_LO_AT_LIMIT"], row["NH_CLASSICAL_HI_AT_LIMIT"]) == fit.nh_at_limit
    assert (row["GAMMA_CLASSICAL_LO_AT_LIMIT"], row["GAMMA_CLASSICAL_HI_AT_LIMIT"]) == (
        fit.gamma_at_limit
    )
    assert fit.limit_notes and all(note in table["WARNINGS"][0] for note in fit.limit_notes)
