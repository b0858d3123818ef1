"""Figures: the spectrum with its folded models, and the latent space with the clusters.

Each kind of plot (fit, latent space, the session's plots, the report's page) is written
as a PNG that is opened again and must not be blank, and every legend must lie inside
the figure."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import require_default_network, run_cli  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import imread  # noqa: E402
from sherpa.astro import ui  # noqa: E402

import sherpa_latent.ui as slui  # noqa: E402
from sherpa_latent import load_spectrum  # noqa: E402
from sherpa_latent.classical import ClassicalFit  # noqa: E402
from sherpa_latent.inference import load_encoder  # noqa: E402
from sherpa_latent.plotting import (  # noqa: E402
    cash_statistic,
    display_groups,
    plot_latent_fit,
    plot_latent_space,
    poisson_errors,
)
from sherpa_latent.regionfile import CLUSTER_COLORS

FAINT = "acisf07867_000N001_r0002_pha3.fits"


def assert_not_blank(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 5000
    image = imread(path)
    pixels = image[..., :3].reshape(-1, 3)
    assert image.shape[0] > 200 and image.shape[1] > 200
    assert float(pixels.std()) > 0.05
    assert len(np.unique(np.round(pixels, 2), axis=0)) > 10  # lines, points, filled ellipses


def legends(fig: Figure) -> list:
    found = list(fig.legends)
    for sub in fig.subfigs:
        found += list(sub.legends)
    return found + [a.get_legend() for a in fig.axes if a.get_legend() is not None]


def assert_legends_inside(fig: Figure) -> None:
    """Every legend (figure, sub-figure or axes) lies inside the figure as drawn."""
    if not hasattr(fig.canvas, "get_renderer"):  # a bare Figure, as written to a file
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    found = legends(fig)
    assert found, "no legend"
    for legend in found:
        ext = legend.get_window_extent(renderer)
        assert ext.x0 >= box.x0 - 1 and ext.y0 >= box.y0 - 1, (ext, box)
        assert ext.x1 <= box.x1 + 1 and ext.y1 <= box.y1 + 1, (ext, box)


def legend_labels(fig: Figure) -> list[str]:
    return [t.get_text() for leg in legends(fig) for t in leg.get_texts()]


def lab(colour: str) -> np.ndarray:
    """CIE L*a*b* (D65) of an sRGB colour."""
    rgb = np.array(to_rgb(colour))
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = (
        np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
        @ linear
        / np.array([0.95047, 1.0, 1.08883])
    )
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


@pytest.fixture
def session(small_network: Path, sherpa_data: Path):
    ui.clean()
    slui.load_network(small_network, device="cpu")
    ui.load_pha(1, str(sherpa_data / "3c273.pi"))
    ui.load_pha(2, str(sherpa_data / FAINT))
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
    assert_legends_inside(fig)
    texts = legend_labels(fig)
    assert any(t.startswith("encoder latent: wstat") and "42 bins" in t for t in texts)
    assert any(t.startswith("classical wabs * powlaw1d: wstat") for t in texts)
    assert any(t.startswith("data (") for t in texts)
    assert any(t.startswith("background") for t in texts)
    assert any("not in the statistics" in t for t in texts)  # the grey bands
    spectrum_ax, *residual_axes = fig.axes
    assert spectrum_ax.get_ylabel() == "counts / s / keV"
    # one residual panel per model, one above the other, not overlapping
    assert len(residual_axes) == 2
    boxes = [a.get_window_extent() for a in fig.axes]
    for a, b in itertools.combinations(boxes, 2):
        assert a.y1 <= b.y0 + 1 or b.y1 <= a.y0 + 1
    title = fig.texts[0].get_text() if fig.texts else fig._suptitle.get_text()
    assert "3C 273" in title and "ObsID 459" in title and "3c273.pi: encoder latent" in title
    assert "ACIS ACIS" not in title and "ACIS-S (chips S1-S5)" in title


def test_counts_per_second_per_kev(small_network: Path, pha_3c273: Path) -> None:
    """The points are counts/s/keV: summed back over the bins they give the counts."""
    encoder = load_encoder(small_network, device="cpu")
    spectrum = load_spectrum(pha_3c273)
    (result,) = encoder.encode([spectrum])
    fig = plot_latent_fit(spectrum, result, encoder)
    points = fig.axes[0].containers[0]  # the data's error bars
    x, y = points.lines[0].get_data()
    groups, _ = display_groups(spectrum, (0.3, 8.0), input_edges=None)
    e_min, e_max = spectrum.channel_energies
    width = np.array([e_max[g[-1]] - e_min[g[0]] for g in groups])
    counts = np.array([spectrum.counts[g].sum() for g in groups])
    keep = counts > 0
    np.testing.assert_allclose(y, (counts / width / spectrum.exposure)[keep], rtol=1e-12)
    assert len(x) == keep.sum()


def test_faint_spectrum_upper_limits_and_grouping(small_network: Path, sherpa_data: Path) -> None:
    encoder = load_encoder(small_network, device="cpu")
    spectrum = load_spectrum(sherpa_data / FAINT)
    (result,) = encoder.encode([spectrum])
    fig = plot_latent_fit(spectrum, result, encoder)
    labels = legend_labels(fig)
    assert "68% upper limit (bin without counts)" in labels  # every mark has an entry
    assert any("input grid" in t for t in labels)  # ungrouped: drawn on the input grid
    assert_legends_inside(fig)
    # group_counts-like display grouping: every display bin has at least 15 counts
    groups, words = display_groups(spectrum, (0.3, 8.0), min_counts=15)
    totals = np.array([spectrum.counts[g].sum() for g in groups])
    assert words == "grouped to at least 15 counts" and np.all(totals >= 15)
    joined = np.concatenate(groups)
    assert np.all(np.diff(joined) == 1)  # adjacent channels, none twice, none left out
    e_min, e_max = spectrum.channel_energies
    inside = np.flatnonzero((e_max > 0.3) & (e_min < 8.0))
    np.testing.assert_array_equal(joined, inside)
    fig = plot_latent_fit(spectrum, result, encoder, min_counts=15)
    labels = legend_labels(fig)
    assert "68% upper limit (bin without counts)" not in labels
    assert any("grouped to at least 15 counts" in t for t in labels)
    # the statistic keeps the data set's bins whatever the display
    stats = [t for t in labels if t.startswith("encoder latent")]
    assert stats and all(f"{result.n_bins} bins" in t for t in stats)
    with pytest.raises(ValueError, match="min_counts"):
        display_groups(spectrum, (0.3, 8.0), min_counts=0)


def test_detector_names(sherpa_data: Path) -> None:
    """ACIS chips by name (0-3: I0-I3, 4-9: S0-S5), from DETNAM."""
    names = {
        name: load_spectrum(sherpa_data / name).detector
        for name in ("3c273.pi", "acisf04938_000N002_r0043_pha3.fits", FAINT)
    }
    assert names == {
        "3c273.pi": "ACIS-S (chips S1-S5), HETG",  # DETNAM ACIS-56789, GRATING HETG
        "acisf04938_000N002_r0043_pha3.fits": "ACIS-I (chips I2-I3)",  # ACIS-23
        FAINT: "ACIS-S3",  # ACIS-7
    }


def test_cluster_colours_are_distinct() -> None:
    """16 colours, every pair at least 25 apart in CIE L*a*b* (tab20's pairs are ~17)."""
    assert len(CLUSTER_COLORS) == 16 and len(set(CLUSTER_COLORS)) == 16
    gaps = [np.linalg.norm(lab(a) - lab(b)) for a, b in itertools.combinations(CLUSTER_COLORS, 2)]
    assert min(gaps) > 25


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
    assert_legends_inside(fig)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "z3" and ax.get_ylabel() == "z6"
    labels = legend_labels(fig)
    cluster_labels = [t for t in labels if t.startswith("cluster ")]
    assert len(cluster_labels) == encoder.clusters.n_components
    assert any(t.startswith("spectrum:") for t in labels)
    assert any(t.startswith("2 sigma") for t in labels)
    assert {t.get_text() for t in ax.texts} == {"3c273.pi", "acisf04938_000N002_r0043_pha3.fits"}
    # the spectra's own clusters are highlighted and name the spectra
    own = {r.cluster for r in results}
    for k in range(encoder.clusters.n_components):
        (label,) = [t for t in cluster_labels if t.startswith(f"cluster {k}:")]
        assert ("\u2190" in label) == (k in own)
    widths = {p.get_label(): p.get_linewidth() for p in ax.patches if p.get_label()}
    thick = [w for label, w in widths.items() if "\u2190" in label]
    thin = [w for label, w in widths.items() if "\u2190" not in label]
    assert thick and min(thick) > max(thin)
    with pytest.raises(ValueError):
        plot_latent_space(results, encoder.clusters, dims=(1, 1))


def test_plots_into_given_axes(small_network: Path, pha_3c273: Path) -> None:
    encoder = load_encoder(small_network, device="cpu")
    spectrum = load_spectrum(pha_3c273)
    (result,) = encoder.encode([spectrum])
    fig = Figure(figsize=(16, 6))
    left, right = fig.subplots(1, 2)
    plot_latent_fit(spectrum, result, encoder, ax=left)
    plot_latent_space([result], encoder.clusters, ax=right)
    assert len(fig.axes) == 3  # spectrum, its residual panel, latent space
    assert_legends_inside(fig)


def test_session_plots(session, tmp_path) -> None:
    path = tmp_path / "latent.png"
    fig = slui.plot_latent(path=path)
    assert_not_blank(path)
    assert_legends_inside(fig)
    assert len(fig.axes[0].texts) == 2
    src = slui.set_latent_source(1)
    src.norm = 2 * src.norm.val
    path = tmp_path / "latent_fit.png"
    fig = slui.plot_latent_fit(1, path=path, classical=False)
    assert_not_blank(path)
    assert_legends_inside(fig)
    labels = legend_labels(fig)
    assert any(t.startswith(f"session {src.name}: wstat") for t in labels)  # not fitted
    path = tmp_path / "faint.png"
    fig = slui.plot_latent_fit(2, path=path, classical=False, min_counts=10)
    assert_not_blank(path)
    assert_legends_inside(fig)
    assert any("at least 10 counts" in t for t in legend_labels(fig))


def test_report_plot_page(tmp_path: Path, pha_3c273: Path) -> None:
    """sherpa-latent report --plot: both plots on one page, legends kept."""
    require_default_network()
    proc = run_cli("report", str(pha_3c273), "--no-fit", "--plot", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    png = tmp_path / "3c273.png"
    assert_not_blank(png)
    image = imread(png)
    assert image.shape[1] > 1.8 * image.shape[0]  # two panels side by side
    # the legends reach the right and bottom edges of the page but are not cut: the last
    # rows and columns of pixels are background only
    assert np.all(image[-3:, :, :3] > 0.95) and np.all(image[:, -3:, :3] > 0.95)


def test_plots_with_the_shipped_network(pha_3c273: Path, tmp_path) -> None:
    """The network the package ships, the classical fit, a subtracted and grouped session."""
    require_default_network()
    ui.clean()
    try:
        slui.load_network("default", device="cpu")
        ui.load_pha(str(pha_3c273))
        ui.subtract()
        ui.group_counts(20)
        fit_png, space_png = tmp_path / "fit.png", tmp_path / "space.png"
        fig = slui.plot_latent_fit(path=fit_png)
        assert_legends_inside(fig)
        assert any(t.startswith("classical wabs * powlaw1d") for t in legend_labels(fig))
        fig = slui.plot_latent(path=space_png)
        assert_legends_inside(fig)
        assert_not_blank(fit_png)
        assert_not_blank(space_png)
        assert ui.get_data().subtracted  # the session is left as it was
    finally:
        ui.clean()
