"""Figures: the spectrum with its folded models, and the latent space with the clusters.
Each writes a PNG that is opened again and must not be blank."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import require_default_network  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import imread  # noqa: E402
from sherpa.astro import ui  # noqa: E402

import sherpa_latent.ui as slui  # noqa: E402
from sherpa_latent import load_spectrum  # noqa: E402
from sherpa_latent.classical import ClassicalFit  # noqa: E402
from sherpa_latent.inference import load_encoder  # noqa: E402
from sherpa_latent.plotting import (  # noqa: E402
    cash_statistic,
    plot_latent_fit,
    plot_latent_space,
    poisson_errors,
)


def assert_not_blank(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 5000
    image = imread(path)
    pixels = image[..., :3].reshape(-1, 3)
    assert image.shape[0] > 200 and image.shape[1] > 200
    assert float(pixels.std()) > 0.05
    assert len(np.unique(np.round(pixels, 2), axis=0)) > 10  # lines, points, filled ellipses


@pytest.fixture
def session(small_network: Path, sherpa_data: Path):
    ui.clean()
    slui.load_network(small_network, device="cpu")
    ui.load_pha(1, str(sherpa_data / "3c273.pi"))
    ui.load_pha(2, str(sherpa_data / "acisf07867_000N001_r0002_pha3.fits"))
    yield
    ui.clean()


def test_poisson_errors_and_cash() -> None:
    lo, hi = poisson_errors(np.array([0.0, 1.0, 100.0]))
    assert lo[0] == 0 and hi[0] == pytest.approx(1.866, abs=1e-3)
    assert lo[2] == pytest.approx(9.99, abs=0.01) and hi[2] == pytest.approx(11.04, abs=0.01)
    counts = np.array([0.0, 3.0, 10.0])
    assert cash_statistic(counts, counts + (counts == 0)) == pytest.approx(2.0)


def test_plot_latent_fit_writes_a_png(small_network: Path, pha_3c273: Path, tmp_path) -> None:
    encoder = load_encoder(small_network, device="cpu")
    spectrum = load_spectrum(pha_3c273)
    (result,) = encoder.encode([spectrum])
    classical = ClassicalFit(
        nh=(0.02, 0.0, 0.05), gamma=(1.95, 1.9, 2.0), norm=1.6e-3, statistic="wstat",
        stat=40.0, dof=40, flux_absorbed=6e-12, flux_unabsorbed=6.2e-12,
    )  # fmt: skip
    path = tmp_path / "fit.png"
    fig = plot_latent_fit(spectrum, result, encoder, classical=classical, path=path)
    assert isinstance(fig, Figure)
    assert_not_blank(path)
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("latent model" in t and "C-stat" in t for t in texts)
    assert any("classical" in t for t in texts)
    assert "3C 273" in fig.axes[0].get_title() or "3c273" in fig.axes[0].get_title()


def test_plot_latent_space_writes_a_png(small_network: Path, sherpa_data: Path, tmp_path) -> None:
    encoder = load_encoder(small_network, device="cpu")
    spectra = [
        load_spectrum(sherpa_data / name)
        for name in ("3c273.pi", "acisf04938_000N002_r0043_pha3.fits")
    ]
    results = encoder.encode(spectra)
    path = tmp_path / "space.png"
    fig = plot_latent_space(results, encoder.clusters, dims=(2, 5), path=path)
    assert_not_blank(path)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "z3" and ax.get_ylabel() == "z6"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(labels) == encoder.clusters.n_components
    assert all(label.startswith("cluster ") for label in labels)
    assert {t.get_text() for t in ax.texts} == {"3c273.pi", "acisf04938_000N002_r0043_pha3.fits"}
    with pytest.raises(ValueError):
        plot_latent_space(results, encoder.clusters, dims=(1, 1))


def test_session_plots(session, tmp_path) -> None:
    path = tmp_path / "latent.png"
    fig = slui.plot_latent(path=path)
    assert_not_blank(path)
    assert len(fig.axes[0].texts) == 2
    src = slui.set_latent_source(1)
    src.norm = 2 * src.norm.val
    path = tmp_path / "latent_fit.png"
    slui.plot_latent_fit(1, path=path, classical=False)
    assert_not_blank(path)


def test_plots_with_the_shipped_network(pha_3c273: Path, tmp_path) -> None:
    """What must hold 5, with the network the package ships and the classical fit."""
    require_default_network()
    ui.clean()
    try:
        slui.load_network("default", device="cpu")
        ui.load_pha(str(pha_3c273))
        ui.subtract()
        ui.group_counts(20)
        fit_png, space_png = tmp_path / "fit.png", tmp_path / "space.png"
        slui.plot_latent_fit(path=fit_png)
        slui.plot_latent(path=space_png)
        assert_not_blank(fit_png)
        assert_not_blank(space_png)
    finally:
        ui.clean()
