"""Figures: a spectrum with its folded latent and classical models, and the latent space.

Every function returns the matplotlib ``Figure`` and, given ``path``, writes it as a PNG.
Without ``ax`` a figure is made: through pyplot when nothing is to be written (so that it
shows in an interactive session), otherwise as a bare ``Figure`` that needs no display and
leaves pyplot's list of figures alone (safe under the Agg backend and in batch runs).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .grids import FIT_BAND

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .classical import ClassicalFit
    from .clusters import ClusterModel
    from .inference import LatentEncoder, LatentResult
    from .spectrum import Spectrum

__all__ = ["plot_latent_fit", "plot_latent_space", "cash_statistic", "poisson_errors"]


def _new_axes(ax: Axes | None, path, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    if path is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=figsize)
    else:
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
    return fig, fig.add_subplot()


def _save(fig: Figure, path: str | os.PathLike | None) -> None:
    if path is not None:
        fig.savefig(os.fspath(path), dpi=100, bbox_inches="tight")


def poisson_errors(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """68% Poisson error bars (Gehrels 1986 approximations), counts.

    Parameters
    ----------
    counts : ndarray
        Observed counts.

    Returns
    -------
    tuple of ndarray
        Lower and upper error (0 and about 1.87 for no counts).
    """
    n = np.asarray(counts, dtype=float)
    upper = 1.0 + np.sqrt(n + 0.75)
    lower = np.where(n > 0, np.sqrt(np.clip(n - 0.25, 0.0, None)), 0.0)
    return np.minimum(lower, n), upper


def cash_statistic(counts: np.ndarray, model: np.ndarray) -> float:
    """Sherpa's ``cstat``: 2 sum(mu - n + n ln(n / mu)) over the given bins.

    Parameters
    ----------
    counts, model : ndarray
        Observed and expected counts per bin.
    """
    n = np.asarray(counts, dtype=float)
    mu = np.clip(np.asarray(model, dtype=float), 1e-10, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(n > 0, n * np.log(n / mu), 0.0)
    return float(2.0 * np.sum(mu - n + term))


def _classical_flux(classical: Any, grid) -> np.ndarray:
    """Model-grid photon flux of a ClassicalFit (wabs * powlaw1d) or a Sherpa model."""
    if hasattr(classical, "calc") and hasattr(classical, "pars"):
        return np.asarray(classical(grid.lo, grid.hi), dtype=float)
    from sherpa.models.basic import PowLaw1D

    from .physics import WAbs

    absorber, powerlaw = WAbs("gal"), PowLaw1D("pl")
    absorber.nH.val = float(classical.nh[0])
    powerlaw.gamma.val = float(classical.gamma[0])
    powerlaw.ampl.val = float(classical.norm)
    return np.asarray((absorber * powerlaw)(grid.lo, grid.hi), dtype=float)


def plot_latent_fit(
    spectrum: Spectrum,
    result: LatentResult,
    encoder: LatentEncoder,
    classical: ClassicalFit | Any | None = None,
    ax: Axes | None = None,
    path: str | os.PathLike | None = None,
    *,
    band: tuple[float, float] = FIT_BAND,
) -> Figure:
    """A spectrum with the folded latent model (and classical model), residuals below.

    Counts are shown per keV on the encoder's input grid (ungrouped counts moved to the
    grid by channel energy) with 68% Poisson error bars. The latent model is
    ``exposure * R @ decode(z, log_norm) + background``, with R the spectrum's projected
    response; the classical model is folded the same way. The legend gives each model's
    Cash statistic over the input bins inside ``band``.

    Parameters
    ----------
    spectrum : Spectrum
        The data.
    result : LatentResult
        Latents and normalisation to decode (for instance from ``encoder.encode``).
    encoder : LatentEncoder
        The network (its grids and decoder).
    classical : ClassicalFit or Sherpa model, optional
        The classical absorbed-power-law fit, or any Sherpa source model (keV, photons/
        cm^2/s per bin), to fold and show as well.
    ax : matplotlib Axes, optional
        Where to draw the spectrum; the residual panel is added below it.
    path : path-like, optional
        PNG file to write.
    band : tuple of float, optional
        Energy range of the Cash statistics and of the shaded fit band, keV.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    cfg = encoder.model.config
    rep = spectrum.representation(cfg.input_grid, cfg.model_grid)
    grid = rep.input_grid
    width = grid.width
    flux = encoder.decode(np.asarray(result.z), float(result.log_norm))
    models = {"latent": rep.expected_counts(flux) + rep.background}
    if classical is not None:
        cl_flux = _classical_flux(classical, rep.model_grid)
        models["classical"] = rep.expected_counts(cl_flux) + rep.background

    fig, ax = _new_axes(ax, path, (7.0, 6.0))
    resid_ax = make_axes_locatable(ax).append_axes("bottom", size="35%", pad=0.08, sharex=ax)

    shown = rep.effective_area > 0
    in_band = shown & grid.band_mask(band)
    counts = rep.counts
    err_lo, err_hi = poisson_errors(counts)
    x, xerr = grid.mid[shown], np.vstack([grid.mid - grid.lo, grid.hi - grid.mid])[:, shown]
    positive = counts[shown] > 0
    ax.errorbar(
        x[positive],
        (counts / width)[shown][positive],
        xerr=xerr[:, positive],
        yerr=np.vstack([err_lo / width, err_hi / width])[:, shown][:, positive],
        fmt="o",
        ms=3,
        color="black",
        ecolor="0.4",
        elinewidth=0.8,
        label=f"data ({int(round(counts[in_band].sum()))} counts in {band[0]:g}-{band[1]:g} keV)",
        zorder=3,
    )
    if np.any(~positive):  # bins with no counts: 68% upper limits
        ax.errorbar(
            x[~positive],
            (err_hi / width)[shown][~positive],
            xerr=xerr[:, ~positive],
            yerr=0.3 * (err_hi / width)[shown][~positive],
            uplims=True,
            fmt="none",
            ecolor="0.4",
            elinewidth=0.8,
            zorder=3,
        )
    edges = grid.edges
    styles = {"latent": ("tab:red", "-"), "classical": ("tab:blue", "--")}
    labels = {"latent": "latent model", "classical": "classical wabs * powlaw1d"}
    for key, mu in models.items():
        color, ls = styles[key]
        stat = cash_statistic(counts[in_band], mu[in_band])
        values = np.where(shown, mu / width, np.nan)
        ax.stairs(
            values,
            edges,
            color=color,
            linestyle=ls,
            lw=1.6,
            label=f"{labels[key]} (C-stat {stat:.1f} / {int(in_band.sum())} bins)",
            zorder=2,
        )
        sigma = np.sqrt(np.clip(mu, 1e-10, None))
        resid = np.where(shown, (counts - mu) / sigma, np.nan)
        resid_ax.errorbar(
            grid.mid[shown],
            resid[shown],
            yerr=1.0,
            fmt="o" if key == "latent" else "s",
            ms=3,
            color=color,
            mfc=color if key == "latent" else "none",
            elinewidth=0.6,
            label=labels[key],
        )
    if np.any(rep.background > 0):
        ax.stairs(
            np.where(shown, rep.background / width, np.nan),
            edges,
            color="0.5",
            lw=1.0,
            linestyle=":",
            label="background (scaled)",
            zorder=1,
        )
    for a in (ax, resid_ax):
        a.axvspan(grid.emin, band[0], color="0.92", zorder=0)
        a.axvspan(band[1], grid.emax, color="0.92", zorder=0)
    resid_ax.axhline(0.0, color="0.3", lw=0.8)

    ax.set_xscale("log")
    positive_y = (counts / width)[shown][positive]
    if positive_y.size:
        ax.set_yscale("log")
        floor = 0.3 * positive_y.min()
        top = max(
            positive_y.max(), max(np.nanmax(m[shown] / width[shown]) for m in models.values())
        )
        ax.set_ylim(floor, 3.0 * top)
    ax.set_xlim(grid.emin, grid.emax)
    ax.set_ylabel("counts / keV")
    ax.tick_params(labelbottom=False)
    ticks = [t for t in (0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 7.0, 10.0) if grid.emin <= t <= grid.emax]
    resid_ax.xaxis.set_major_locator(FixedLocator(ticks))
    resid_ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    resid_ax.xaxis.set_minor_formatter(NullFormatter())
    resid_ax.set_xlabel("Energy (keV)")
    resid_ax.set_ylabel(r"residual ($\sigma$)")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(_title(spectrum), fontsize=10)
    _save(fig, path)
    return fig


def _title(spectrum: Spectrum) -> str:
    parts = [spectrum.object or os.path.basename(spectrum.path)]
    if spectrum.obsid:
        parts.append(f"ObsID {spectrum.obsid}")
    if spectrum.instrument:
        parts.append(spectrum.instrument)
    return "   ".join(parts)


def _covariance_2d(clusters: ClusterModel, k: int, dims: tuple[int, int]) -> np.ndarray:
    cov = np.asarray(clusters.covariances)
    kind = clusters.covariance_type
    if kind == "full":
        full = cov[k]
    elif kind == "tied":
        full = cov
    elif kind == "diag":
        full = np.diag(cov[k])
    else:  # spherical
        full = np.eye(clusters.means.shape[1]) * float(cov[k])
    return full[np.ix_(dims, dims)]


def plot_latent_space(
    results: Sequence[LatentResult],
    clusters: ClusterModel | None,
    dims: tuple[int, int] = (0, 1),
    ax: Axes | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Two latent dimensions: the clusters' 1 and 2 sigma ellipses and the spectra on them.

    Parameters
    ----------
    results : sequence of LatentResult
        Spectra to place (posterior mean with its standard deviation as error bars,
        labelled with the file name).
    clusters : ClusterModel or None
        The Gaussian mixture of the training latents; each component is drawn as its 1
        and 2 sigma ellipses in the chosen plane, labelled with its class make-up.
    dims : tuple of int, optional
        The two latent dimensions, counted from 0 (``(0, 1)`` is z1 against z2).
    ax : matplotlib Axes, optional
        Where to draw.
    path : path-like, optional
        PNG file to write.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.patches import Ellipse

    dims = (int(dims[0]), int(dims[1]))
    if dims[0] == dims[1] or min(dims) < 0:
        raise ValueError(f"dims must be two different latent dimensions, got {dims}")
    fig, ax = _new_axes(ax, path, (8.5, 6.0))
    legend: list[tuple[int, Any]] = []
    if clusters is not None:
        means = np.asarray(clusters.means)
        if max(dims) >= means.shape[1]:
            raise ValueError(f"dims {dims} outside the {means.shape[1]} latent dimensions")
        cmap = _colours(clusters.n_components)
        order = np.argsort(-np.asarray(clusters.weights))
        for k in order:
            cov = _covariance_2d(clusters, int(k), dims)
            vals, vecs = np.linalg.eigh(cov)
            vals = np.clip(vals, 0.0, None)
            angle = float(np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1])))
            centre = means[k, list(dims)]
            colour = cmap[int(k)]
            for n_sigma, alpha in ((1, 0.25), (2, 0.08)):
                patch = ax.add_patch(
                    Ellipse(
                        centre,
                        2 * n_sigma * np.sqrt(vals[-1]),
                        2 * n_sigma * np.sqrt(vals[0]),
                        angle=angle,
                        facecolor=(*colour[:3], alpha),
                        edgecolor=colour,
                        lw=1.2 if n_sigma == 1 else 0.8,
                        linestyle="-" if n_sigma == 1 else "--",
                        label=clusters.describe(int(k)) if n_sigma == 1 else None,
                    )
                )
                if n_sigma == 1:
                    legend.append((int(k), patch))
    for i, res in enumerate(results):
        z, z_err = np.asarray(res.z), np.asarray(res.z_err)
        if max(dims) >= z.size:
            raise ValueError(f"dims {dims} outside the {z.size} latent dimensions")
        ax.errorbar(
            z[dims[0]],
            z[dims[1]],
            xerr=z_err[dims[0]],
            yerr=z_err[dims[1]],
            fmt="o",
            color="black",
            ms=5,
            capsize=2,
            zorder=5,
        )
        ax.annotate(
            os.path.basename(str(res.file)),
            (z[dims[0]], z[dims[1]]),
            xytext=(5, 5 - 11 * (i % 4)),  # staggered, so that close points stay legible
            textcoords="offset points",
            fontsize=8,
            zorder=6,
        )
    ax.autoscale_view()
    ax.set_xlabel(f"z{dims[0] + 1}")
    ax.set_ylabel(f"z{dims[1] + 1}")
    ax.set_title("latent space: clusters (1 and 2 sigma) and spectra", fontsize=10)
    if clusters is not None:
        legend.sort(key=lambda item: item[0])  # by cluster number
        ax.legend(
            [patch for _, patch in legend],
            [patch.get_label() for _, patch in legend],
            fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            frameon=False,
        )
    _save(fig, path)
    return fig


def _colours(n: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]
