"""Figures: a spectrum with its folded latent and classical models, and the latent space.

Every function returns the matplotlib ``Figure`` and, given ``path``, writes it as a PNG.
Without ``ax`` or ``figure`` a figure is made with constrained layout (so that ``savefig``
keeps every legend and label): through pyplot when nothing is to be written (so that it
shows in an interactive session), otherwise as a bare ``Figure`` that needs no display and
leaves pyplot's list of figures alone (safe under the Agg backend and in batch runs).
``figure`` may also be a sub-figure (``Figure.subfigures``), to put several plots on one
page as ``sherpa-latent report --plot`` does.

The spectrum is drawn as Sherpa draws it: counts/s/keV on the data set's own channel
groups, the models folded through the spectrum's ARF and RMF by Sherpa. Each model's
legend entry gives its statistic from :func:`sherpa_latent.inference.model_statistic`, the
number the text report prints for the same result.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .grids import FIT_BAND, channel_bin_index
from .inference import cash_statistic
from .regionfile import CLUSTER_COLORS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, FigureBase

    from .classical import ClassicalFit
    from .clusters import ClusterModel
    from .inference import FitStatistic, LatentEncoder, LatentResult
    from .spectrum import Spectrum

__all__ = [
    "plot_latent_fit",
    "plot_latent_space",
    "cash_statistic",
    "poisson_errors",
    "display_groups",
]


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


def _title_lines(spectrum: Spectrum) -> tuple[str, str]:
    """(OBJECT, ObsID and detector; the file name)."""
    first = [spectrum.object or os.path.basename(spectrum.path)]
    if spectrum.obsid:
        first.append(f"ObsID {spectrum.obsid}")
    detector = spectrum.detector
    if detector:
        first.append(detector)
    return "  \u00b7  ".join(first), os.path.basename(spectrum.path)


# --------------------------------------------------------------------------------------
# display bins
# --------------------------------------------------------------------------------------
def display_groups(
    spectrum: Spectrum,
    energy_range: tuple[float, float],
    *,
    min_counts: int | None = None,
    input_edges: np.ndarray | None = None,
) -> tuple[list[np.ndarray], str]:
    """Channel groups to draw a spectrum on, and a few words on what they are.

    Parameters
    ----------
    spectrum : Spectrum
        The data (its channels, EBOUNDS and grouping).
    energy_range : tuple of float
        Energies to show, keV; groups overlapping it are kept.
    min_counts : int, optional
        Group adjacent channels (from the low-energy end of the range) until each group
        holds at least this many counts, as Sherpa's ``group_counts`` does; a short last
        group joins the one before. For display only: statistics keep the data set's
        own bins. Default: the data set's grouping when it has one (the bins of the
        statistics), otherwise the channels gathered on ``input_edges``.
    input_edges : ndarray, optional
        Bin edges, keV, for ungrouped data without ``min_counts`` (the encoder's input
        grid); channels go to the bin of their mid-energy.

    Returns
    -------
    list of ndarray, str
        Channel indices (0-based) of each group, low energy first; and a description
        such as "the data set's grouping" for the legend.
    """
    e_min, e_max = spectrum.channel_energies
    n = len(e_min)
    lo, hi = float(energy_range[0]), float(energy_range[1])
    inside = (e_max > lo) & (e_min < hi)
    if min_counts is not None:
        min_counts = int(min_counts)
        if min_counts < 1:
            raise ValueError(f"min_counts must be a positive number of counts, got {min_counts}")
        counts = spectrum.counts
        groups: list[list[int]] = []
        current: list[int] = []
        total = 0.0
        for i in np.flatnonzero(inside):
            current.append(int(i))
            total += counts[i]
            if total >= min_counts:
                groups.append(current)
                current, total = [], 0.0
        if current:
            if groups:
                groups[-1].extend(current)
            else:
                groups.append(current)
        return [np.asarray(g) for g in groups], f"grouped to at least {min_counts} counts"
    grouping = getattr(spectrum.pha, "grouping", None)
    if spectrum.pha.grouped and grouping is not None and len(grouping) == n:
        starts = np.flatnonzero(np.asarray(grouping) > 0)
        if starts.size == 0 or starts[0] != 0:
            starts = np.concatenate([[0], starts])
        bounds = np.append(starts, n)
        groups_arr = [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        kept = [g for g in groups_arr if inside[g].any()]
        return kept, "the data set's grouping"
    if input_edges is None:
        return [np.asarray([i]) for i in np.flatnonzero(inside)], "channels"
    index = channel_bin_index(e_min, e_max, np.asarray(input_edges, dtype=float))
    kept = []
    for k in np.unique(index[index >= 0]):
        members = np.flatnonzero((index == k) & inside)
        if members.size:
            kept.append(members)
    return kept, f"channels gathered on the {len(input_edges) - 1}-bin input grid"


def _sum_groups(values: np.ndarray, groups: Sequence[np.ndarray]) -> np.ndarray:
    return np.array([float(np.sum(values[g])) for g in groups])


# --------------------------------------------------------------------------------------
# the spectrum with its models
# --------------------------------------------------------------------------------------
def _classical_source(classical: Any) -> tuple[Any, str]:
    """A Sherpa source model of a ClassicalFit (wabs * powlaw1d), or the model given."""
    if hasattr(classical, "calc") and hasattr(classical, "pars"):
        return classical, f"classical {classical.name}"
    from sherpa.models.basic import PowLaw1D

    from .physics import WAbs

    absorber, powerlaw = WAbs("gal"), PowLaw1D("pl")
    absorber.nh.val = float(classical.nh[0])
    powerlaw.gamma.val = float(classical.gamma[0])
    powerlaw.ampl.val = float(classical.norm)
    return absorber * powerlaw, "classical wabs * powlaw1d"


def _channel_model(spectrum: Spectrum, source: Any) -> np.ndarray:
    """Predicted source counts per channel (ungrouped) of a folded source model."""
    from sherpa.astro.instrument import Response1D

    pha = spectrum.pha
    return np.asarray(pha.eval_model(Response1D(pha)(source)), dtype=float)


def _layout(
    ax: Axes | None,
    figure: FigureBase | None,
    path: str | os.PathLike | None,
    n_resid: int,
) -> tuple[Figure, FigureBase | None, Axes, list[Axes]]:
    """(top figure, the (sub)figure that owns the layout or None, spectrum axes, residual axes)."""
    if ax is not None:
        from mpl_toolkits.axes_grid1 import make_axes_locatable

        divider = make_axes_locatable(ax)
        resid = [
            divider.append_axes("bottom", size="22%", pad=0.08, sharex=ax) for _ in range(n_resid)
        ]
        return ax.figure, None, ax, resid
    if figure is None:
        size = (7.5, 4.6 + 1.4 * n_resid)
        if path is None:
            import matplotlib.pyplot as plt

            figure = plt.figure(figsize=size, layout="constrained")
        else:
            from matplotlib.figure import Figure

            figure = Figure(figsize=size, layout="constrained")
    axes = figure.subplots(
        1 + n_resid, 1, sharex=True, height_ratios=[3.0] + [1.0] * n_resid, squeeze=False
    )[:, 0]
    return figure.figure, figure, axes[0], list(axes[1:])


def _save(fig: Figure, path: str | os.PathLike | None) -> None:
    if path is not None:
        fig.savefig(os.fspath(path), dpi=100)


def plot_latent_fit(
    spectrum: Spectrum,
    result: LatentResult | None,
    encoder: LatentEncoder,
    classical: ClassicalFit | Any | None = None,
    ax: Axes | None = None,
    path: str | os.PathLike | None = None,
    *,
    band: tuple[float, float] = FIT_BAND,
    min_counts: int | None = None,
    source: Any | None = None,
    source_label: str = "",
    note: str = "",
    figure: FigureBase | None = None,
) -> Figure:
    """A spectrum with its folded latent model (and classical model), residuals below.

    The data are drawn in counts/s/keV, as Sherpa draws them, on the data set's own
    channel groups (``min_counts`` regroups them for display), with 68% Poisson error
    bars and 68% upper limits for groups without counts. Each model is folded through the
    spectrum's ARF and RMF by Sherpa and drawn with the scaled background added (the
    data are not background subtracted). Its legend entry names the model and gives its
    statistic from :func:`~sherpa_latent.inference.model_statistic` (W-stat with a
    background, C-stat without, on the data set's bins in ``band``): for an encoder
    result the very number of ``result.cstat`` and of the text report. Each model has
    its own residual panel, (data - model) / sqrt(model) per display bin.

    Parameters
    ----------
    spectrum : Spectrum
        The data.
    result : LatentResult or None
        The encoder's result to decode and draw (None when ``source`` is given).
    encoder : LatentEncoder
        The network (its decoder, and its input grid for ungrouped data).
    classical : ClassicalFit or Sherpa model, optional
        The classical absorbed-power-law fit, or any Sherpa source model (keV, photons/
        cm^2/s per bin), to fold and show as well.
    ax : matplotlib Axes, optional
        Where to draw the spectrum; the residual panels are added below it.
    path : path-like, optional
        PNG file to write.
    band : tuple of float, optional
        Energy range of the statistics and of the unshaded part of the plot, keV.
    min_counts : int, optional
        Group the display to at least this many counts per bin (faint spectra); the
        statistics keep the data set's own bins.
    source : Sherpa model, optional
        Draw this source model instead of ``result`` (for instance a session's fitted
        ``latent`` component, or ``wabs.gal * latent.src``).
    source_label : str, optional
        What ``source`` is, for the legend (default: its name).
    note : str, optional
        A line added under the title (for instance how a session fit differs).
    figure : Figure or SubFigure, optional
        Where to lay out the panels (instead of ``ax``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    from .inference import model_statistic

    if source is None and result is None:
        raise ValueError("plot_latent_fit needs an encoder result or a source model")
    cfg = encoder.model.config
    grid = cfg.input_grid
    entries: list[tuple[FitStatistic, np.ndarray]] = []
    if source is None:
        stat = encoder.statistic(spectrum, result, band=band)
        from .inference import latent_source

        latent = latent_source(result, encoder)
        entries.append((stat, _channel_model(spectrum, latent)))
    else:
        label = source_label or source.name
        stat = model_statistic(spectrum, source, band=band, model=label)
        entries.append((stat, _channel_model(spectrum, source)))
    if classical is not None:
        cl_source, cl_label = _classical_source(classical)
        cl_stat = model_statistic(spectrum, cl_source, band=band, model=cl_label)
        entries.append((cl_stat, _channel_model(spectrum, cl_source)))

    groups, grouping_text = display_groups(
        spectrum, (grid.emin, grid.emax), min_counts=min_counts, input_edges=grid.edges
    )
    if not groups:
        raise ValueError(f"{spectrum.path}: no channels in {grid.emin:g}-{grid.emax:g} keV")
    e_min, e_max = spectrum.channel_energies
    lo = np.array([e_min[g[0]] for g in groups])
    hi = np.array([e_max[g[-1]] for g in groups])
    width = hi - lo
    scale = 1.0 / (spectrum.exposure * width)  # counts -> counts/s/keV
    counts = _sum_groups(spectrum.counts, groups)
    bkg_channels = spectrum.background_counts
    background = (
        np.zeros(len(groups))
        if bkg_channels is None
        else spectrum.background_scale * _sum_groups(bkg_channels, groups)
    )
    edges = np.append(lo, hi[-1])
    contiguous = np.allclose(lo[1:], hi[:-1])
    mid = np.sqrt(lo * hi)

    fig, layout_owner, ax, resid_axes = _layout(ax, figure, path, len(entries))
    handles: list[Any] = []

    err_lo, err_hi = poisson_errors(counts)
    positive = counts > 0
    xerr = np.vstack([mid - lo, hi - mid])
    in_band_counts = spectrum.band_counts(*band)[0]
    handles.append(
        ax.errorbar(
            mid[positive],
            (counts * scale)[positive],
            xerr=xerr[:, positive],
            yerr=np.vstack([err_lo * scale, err_hi * scale])[:, positive],
            fmt="o",
            ms=3,
            color="black",
            ecolor="0.35",
            elinewidth=0.8,
            label=f"data ({int(round(in_band_counts))} counts in {band[0]:g}-{band[1]:g} keV; "
            f"bins: {grouping_text})",
            zorder=4,
        )
    )
    if np.any(~positive):  # bins with no counts: 68% upper limits
        ax.errorbar(
            mid[~positive],
            (err_hi * scale)[~positive],
            xerr=xerr[:, ~positive],
            yerr=0.35 * (err_hi * scale)[~positive],
            uplims=True,
            fmt="none",
            ecolor="0.35",
            elinewidth=0.8,
            zorder=4,
        )
        handles.append(
            Line2D(
                [],
                [],
                color="0.35",
                marker="v",
                ms=5,
                linestyle="none",
                label="68% upper limit (bin without counts)",
            )
        )
    styles = [("tab:red", "-", "o"), ("tab:blue", "--", "s")]
    tops = [float(np.max((counts * scale)[positive])) if positive.any() else 0.0]
    for k, (stat, channel_model) in enumerate(entries):
        color, ls, marker = styles[k % len(styles)]
        mu = _sum_groups(channel_model, groups) + background
        values = mu * scale
        tops.append(float(np.nanmax(values)))
        text = stat.describe() + (" (+ background)" if bkg_channels is not None else "")
        if contiguous:
            line = ax.stairs(values, edges, color=color, linestyle=ls, lw=1.6, zorder=3)
        else:
            (line,) = ax.plot(mid, values, color=color, linestyle=ls, lw=1.6, zorder=3)
        line.set_label(text)
        handles.append(line)
        resid_ax = resid_axes[k]
        sigma = np.sqrt(np.clip(mu, 1e-10, None))
        ok = mu > 0
        resid_ax.errorbar(
            mid[ok],
            ((counts - mu) / sigma)[ok],
            yerr=1.0,
            fmt=marker,
            ms=3,
            color=color,
            mfc=color if k == 0 else "none",
            elinewidth=0.6,
        )
        resid_ax.axhline(0.0, color="0.3", lw=0.8)
        resid_ax.set_ylabel(r"$\sigma$")
        resid_ax.text(
            0.01,
            0.95,
            f"residuals: {stat.model}",
            transform=resid_ax.transAxes,
            fontsize=7,
            va="top",
            ha="left",
            color=color,
        )
    if bkg_channels is not None and np.any(background > 0):
        bkg_values = np.where(background > 0, background * scale, np.nan)
        if contiguous:
            bkg_line = ax.stairs(bkg_values, edges, color="0.5", lw=1.0, linestyle=":", zorder=2)
        else:
            (bkg_line,) = ax.plot(mid, bkg_values, color="0.5", lw=1.0, linestyle=":", zorder=2)
        bkg_line.set_label("background (scaled to the source region)")
        handles.append(bkg_line)
    x_lo, x_hi = float(lo[0]), float(hi[-1])
    for a in (ax, *resid_axes):
        if x_lo < band[0]:
            a.axvspan(x_lo, band[0], color="0.9", zorder=0)
        if band[1] < x_hi:
            a.axvspan(band[1], x_hi, color="0.9", zorder=0)
    handles.append(
        Patch(color="0.9", label=f"outside {band[0]:g}-{band[1]:g} keV (not in the statistics)")
    )

    ax.set_xscale("log")
    ax.set_xlim(x_lo, x_hi)
    positive_y = (counts * scale)[positive]
    if positive_y.size:
        ax.set_yscale("log")
        ax.set_ylim(0.3 * positive_y.min(), 3.0 * max(tops))
    ax.set_ylabel("counts / s / keV")
    ax.tick_params(labelbottom=False)
    bottom = resid_axes[-1] if resid_axes else ax
    for a in resid_axes[:-1]:
        a.tick_params(labelbottom=False)
    ticks = [t for t in (0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 7.0, 10.0) if x_lo <= t <= x_hi]
    bottom.xaxis.set_major_locator(FixedLocator(ticks))
    bottom.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    bottom.xaxis.set_minor_formatter(NullFormatter())
    bottom.tick_params(labelbottom=True)
    bottom.set_xlabel("Energy (keV)")

    first, file_line = _title_lines(spectrum)
    what = entries[0][0].model
    subtitle = f"{file_line}: {what}" + (f"\n{note}" if note else "")
    labels = [h.get_label() for h in handles]
    if layout_owner is not None:
        layout_owner.suptitle(f"{first}\n{subtitle}", fontsize=9)
        layout_owner.legend(handles, labels, loc="outside lower center", ncols=1, fontsize=7.5)
    else:
        ax.set_title(f"{first}\n{subtitle}", fontsize=9)
        ax.legend(handles, labels, loc="best", fontsize=6.5)
    _save(fig, path)
    return fig


# --------------------------------------------------------------------------------------
# latent space
# --------------------------------------------------------------------------------------
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
    *,
    figure: FigureBase | None = None,
) -> Figure:
    """Two latent dimensions: the clusters' 1 and 2 sigma ellipses and the spectra on them.

    Each cluster has its own colour, the one region files give it
    (:data:`sherpa_latent.regionfile.CLUSTER_COLORS`); the clusters the spectra fall in are
    drawn bolder, and their legend entries name the spectra. Each spectrum is
    a point in its cluster's colour with its 1 sigma error bars, labelled with its file.

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
    figure : Figure or SubFigure, optional
        Where to lay out the axes and the legend (instead of ``ax``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Ellipse

    dims = (int(dims[0]), int(dims[1]))
    if dims[0] == dims[1] or min(dims) < 0:
        raise ValueError(f"dims must be two different latent dimensions, got {dims}")
    owner: FigureBase | None = None
    if ax is None:
        if figure is None:
            if path is None:
                import matplotlib.pyplot as plt

                figure = plt.figure(figsize=(11.0, 6.0), layout="constrained")
            else:
                from matplotlib.figure import Figure

                figure = Figure(figsize=(11.0, 6.0), layout="constrained")
        owner = figure
        ax = figure.subplots()
    fig = ax.figure
    own: dict[int, list[str]] = {}
    for res in results:
        if int(res.cluster) >= 0:
            own.setdefault(int(res.cluster), []).append(os.path.basename(str(res.file)))
    legend: list[tuple[int, Any]] = []
    colours = list(CLUSTER_COLORS)
    if clusters is not None:
        means = np.asarray(clusters.means)
        if max(dims) >= means.shape[1]:
            raise ValueError(f"dims {dims} outside the {means.shape[1]} latent dimensions")
        order = np.argsort(-np.asarray(clusters.weights))
        for k in order:
            k = int(k)
            cov = _covariance_2d(clusters, k, dims)
            vals, vecs = np.linalg.eigh(cov)
            vals = np.clip(vals, 0.0, None)
            angle = float(np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1])))
            centre = means[k, list(dims)]
            colour = colours[k % len(colours)]
            mine = k in own
            label = clusters.describe(k)
            if mine:
                label = f"{label}  \u2190 {', '.join(own[k])}"
            for n_sigma, alpha in ((1, 0.35 if mine else 0.18), (2, 0.1 if mine else 0.05)):
                patch = ax.add_patch(
                    Ellipse(
                        centre,
                        2 * n_sigma * np.sqrt(vals[-1]),
                        2 * n_sigma * np.sqrt(vals[0]),
                        angle=angle,
                        facecolor=(*_rgb(colour), alpha),
                        edgecolor=colour,
                        lw=(2.8 if mine else 1.1) if n_sigma == 1 else 0.8,
                        linestyle="-" if n_sigma == 1 else "--",
                        label=label if n_sigma == 1 else None,
                        zorder=3 if mine else 1,
                    )
                )
                if n_sigma == 1:
                    legend.append((k, patch))
    for i, res in enumerate(results):
        z, z_err = np.asarray(res.z), np.asarray(res.z_err)
        if max(dims) >= z.size:
            raise ValueError(f"dims {dims} outside the {z.size} latent dimensions")
        k = int(res.cluster)
        face = colours[k % len(colours)] if k >= 0 and clusters is not None else "black"
        ax.errorbar(
            z[dims[0]],
            z[dims[1]],
            xerr=z_err[dims[0]],
            yerr=z_err[dims[1]],
            fmt="o",
            color="black",
            mfc=face,
            mec="black",
            ms=7,
            capsize=2,
            zorder=5,
        )
        ax.annotate(
            os.path.basename(str(res.file)),
            (z[dims[0]], z[dims[1]]),
            xytext=(6, 6 - 11 * (i % 4)),  # staggered, so that close points stay legible
            textcoords="offset points",
            fontsize=8,
            zorder=6,
        )
    ax.autoscale_view()
    ax.set_xlabel(f"z{dims[0] + 1}")
    ax.set_ylabel(f"z{dims[1] + 1}")
    title = "latent space: clusters of the training spectra (1 and 2 sigma), spectra encoded"
    handles: list[Any] = []
    if results:
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                color="black",
                mfc="white",
                ms=7,
                linestyle="none",
                label="spectrum: posterior mean \u00b1 1 sigma (filled with its cluster's colour)",
            )
        )
    if clusters is not None:
        legend.sort(key=lambda item: item[0])  # by cluster number
        handles += [patch for _, patch in legend]
        handles.append(
            Line2D([], [], color="0.4", lw=0.8, linestyle="--", label="2 sigma ellipse (dashed)")
        )
    if handles:
        labels = [h.get_label() for h in handles]
        if owner is not None:
            owner.legend(handles, labels, loc="outside right upper", fontsize=7, frameon=False)
        else:
            ax.legend(handles, labels, loc="best", fontsize=6)
    ax.set_title(title, fontsize=9)
    _save(fig, path)
    return fig


def _rgb(colour: str) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return to_rgb(colour)
