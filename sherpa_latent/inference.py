"""Encode spectra with a trained network: latents, N_H posterior, cluster, anomaly.

:func:`load_encoder` reads a network and its cluster model (by default the ones shipped
in the package, checked against their SHA-256) and returns a :class:`LatentEncoder`,
whose :meth:`~LatentEncoder.encode` turns spectra into :class:`LatentResult` rows.

One statistic
-------------
Every goodness-of-fit number the project prints or draws for a model of a spectrum comes
from :func:`model_statistic`: Sherpa's own statistic object, W-stat when the spectrum has a
background (the background is modelled, not subtracted) and C-stat without one, on the
spectrum's own channels as Sherpa groups them, with only ``band`` (0.5-7 keV) noticed. These
are the bins and the statistic of the classical fit (:mod:`sherpa_latent.classical`), so
the latent and classical numbers compare directly, and they are what Sherpa's ``fit()``
minimises in a session with ``set_stat("wstat")`` (or ``"cstat"``) and ``notice(0.5, 7)``.
:class:`FitStatistic` carries the value with what it was computed on (model, statistic,
band, bins, degrees of freedom), and :func:`format_statistic` is the one way it is written
in text reports, legends and messages.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .classes import CLASS_NAMES
from .grids import FIT_BAND
from .spectrum import ResponseRepresentation, Spectrum

if TYPE_CHECKING:
    from .models import LatentSpectrum

__all__ = [
    "LatentResult",
    "LatentEncoder",
    "load_encoder",
    "FitStatistic",
    "model_statistic",
    "format_statistic",
    "latent_source",
    "cash_statistic",
]


def format_statistic(
    model: str,
    statistic: str,
    value: float,
    dof: int,
    band: tuple[float, float],
    n_bins: int,
) -> str:
    """The one way a fit statistic is written: model, statistic, value, dof, band, bins.

    For instance ``"encoder latent: wstat 53.1 for 33 dof (0.5-7 keV, 42 bins)"``.

    Parameters
    ----------
    model : str
        Which model the statistic is of ("encoder latent", "fitted latent1", "classical
        wabs * powlaw1d", ...); "" leaves it out.
    statistic : str
        Sherpa's name of the statistic ("cstat" or "wstat").
    value : float
        The statistic.
    dof : int
        Degrees of freedom (bins less free parameters).
    band : tuple of float
        Energy range noticed, keV.
    n_bins : int
        Number of bins (channel groups) the statistic sums over.
    """
    head = f"{model}: " if model else ""
    return (
        f"{head}{statistic} {value:.1f} for {int(dof)} dof "
        f"({band[0]:g}-{band[1]:g} keV, {int(n_bins)} bins)"
    )


@dataclass(frozen=True)
class FitStatistic:
    """A fit statistic and exactly what it was computed on.

    Parameters
    ----------
    value : float
        The statistic.
    statistic : str
        ``"wstat"`` (a background, modelled) or ``"cstat"`` (no background).
    band : tuple of float
        Noticed energy range, keV. With grouped data Sherpa keeps every group that
        overlaps the band, so the outermost bins may reach a little beyond it.
    n_bins : int
        Number of bins summed over (channel groups of the data set, or channels when it
        is not grouped).
    dof : int
        ``n_bins`` less the model's free parameters.
    model : str
        Which model it is of (for instance "encoder latent").
    """

    value: float
    statistic: str
    band: tuple[float, float]
    n_bins: int
    dof: int
    model: str = ""

    def describe(self) -> str:
        """:func:`format_statistic` of this statistic."""
        return format_statistic(
            self.model, self.statistic, self.value, self.dof, self.band, self.n_bins
        )


def _free_parameters(source: Any) -> int:
    return sum(1 for p in getattr(source, "pars", ()) if not p.frozen)


def model_statistic(
    spectrum: Spectrum,
    source: Any,
    *,
    band: tuple[float, float] = FIT_BAND,
    n_params: int | None = None,
    model: str = "",
) -> FitStatistic:
    """The statistic of a source model folded through a spectrum's response.

    The one definition used by reports, plots and session commands (see the module's
    notes): W-stat with a background and C-stat without, from Sherpa's own statistic
    objects, over the data set's channel groups (its own grouping; single channels when
    it is not grouped) with only ``band`` noticed and the background not subtracted.
    The data set's filter and subtraction are restored afterwards.

    Parameters
    ----------
    spectrum : Spectrum
        The data.
    source : sherpa.models.model.ArithmeticModel
        Source model (photons/cm^2/s per bin on an energy grid in keV), folded with
        ``Response1D(spectrum.pha)``.
    band : tuple of float, optional
        Energy range to notice, keV.
    n_params : int, optional
        Free parameters, for the degrees of freedom (default: the model's thawed
        parameters, as Sherpa counts them).
    model : str, optional
        Label of the model, kept in the result.

    Returns
    -------
    FitStatistic
    """
    from sherpa.astro.instrument import Response1D
    from sherpa.fit import Fit
    from sherpa.stats import CStat, WStat

    from .classical import fitting_band

    pha = spectrum.pha
    with fitting_band(pha, band):
        folded = Response1D(pha)(source)
        has_background = bool(pha.background_ids)
        stat = WStat() if has_background else CStat()
        value = float(Fit(pha, folded, stat=stat).calc_stat())
        n_bins = int(np.size(pha.get_dep(filter=True)))
    free = _free_parameters(source) if n_params is None else int(n_params)
    return FitStatistic(
        value=value,
        statistic=stat.name,
        band=(float(band[0]), float(band[1])),
        n_bins=n_bins,
        dof=n_bins - free,
        model=model,
    )


def cash_statistic(counts: np.ndarray, model: np.ndarray) -> float:
    """Sherpa's ``cstat``: 2 sum(mu - n + n ln(n / mu)) over the given bins.

    Parameters
    ----------
    counts, model : ndarray
        Observed and expected counts per bin (expected floored at 1e-10, as the
        network's likelihood does).
    """
    n = np.asarray(counts, dtype=float)
    mu = np.clip(np.asarray(model, dtype=float), 1e-10, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(n > 0, n * np.log(n / mu), 0.0)
    return float(2.0 * np.sum(mu - n + term))


def latent_source(result: LatentResult, encoder: LatentEncoder, name: str = "encoder") -> Any:
    """A ``latent`` component holding an encoder result, as a Sherpa source model.

    ``z1``..``z8`` take the result's posterior means as they are (the soft limits of
    +-5 are widened for this component, so nothing is clipped) and ``norm`` is
    ``10**log_norm``. The component decodes with the encoder's network (the float64
    copy that Sherpa fits use).

    Parameters
    ----------
    result : LatentResult
        What the encoder said.
    encoder : LatentEncoder
        Its network.
    name : str, optional
        Component name.

    Returns
    -------
    LatentSpectrum
    """
    from sherpa.models.parameter import hugeval

    from .models import LatentSpectrum

    component: LatentSpectrum = LatentSpectrum(name)
    component.set_network(encoder)
    z = np.asarray(result.z, dtype=float)
    for par, value in zip(component.zs, z, strict=True):
        par.set(val=float(value), min=-hugeval, max=hugeval)
    component.norm.val = float(10.0 ** float(result.log_norm))
    return component


@dataclass(frozen=True)
class LatentResult:
    """What the network says about one spectrum.

    Parameters
    ----------
    file : str
        The spectrum's file (or data-set name).
    z, z_err : ndarray, shape (8,)
        Latent posterior means and standard deviations.
    log_norm, log_norm_err : float
        log10 of the 0.5-7 keV photon flux of the decoded spectrum, photons/cm^2/s, and
        its standard deviation (dex).
    nh : tuple of float
        N_H posterior median and 68% interval (value, lo, hi), 10^22 cm^-2.
    cluster : int
        Most probable cluster of the Gaussian mixture.
    cluster_classes : dict
        Class make-up of that cluster in the training set (class name -> fraction).
    cluster_label : str
        For instance ``"cluster 3: 71% HMXB, 20% LMXB"``.
    class_probabilities : dict
        Probability of each class (mixture memberships times the clusters' make-up).
    anomaly : float
        How badly the decoded spectrum fits the counts, in standard deviations of the
        C-statistic expected for a good fit (about 0 for a good fit): the network's
        posterior-predictive score over the input-grid bins (0.3-8 keV) that can hold
        counts, with the scaled background as a fixed part of the model.
    cstat, dof : float, int
        The statistic named by ``statistic`` of the decoded spectrum against the data,
        on ``n_bins`` bins in ``band``, and its degrees of freedom (``n_bins`` less the
        latent dimensions and the norm). For a :class:`~sherpa_latent.Spectrum` it is
        :func:`model_statistic`: Sherpa's W-stat (with a background) or C-stat on the
        data set's channel groups, the bins and statistic of the classical fit. For a
        bare ``ResponseRepresentation`` (no channels to fold onto, as in catalogue
        runs) it is C-stat over the input-grid bins in ``band`` that can hold counts,
        with the scaled background as a fixed part of the model.
    predicted_hardness : dict
        CSC hardness ratios (``hr_hm``, ``hr_hs``, ``hr_ms``) of the decoded spectrum
        folded through the spectrum's response, bands made of whole input-grid bins.
    statistic : str
        ``"wstat"`` or ``"cstat"``: what ``cstat`` holds.
    band : tuple of float
        Energy range of the statistic, keV.
    n_bins : int
        Number of bins the statistic sums over.
    model : str
        Which model the latents are of: ``"encoder"`` for the network's result.
    """

    file: str
    z: np.ndarray
    z_err: np.ndarray
    log_norm: float
    log_norm_err: float
    nh: tuple[float, float, float]
    cluster: int
    cluster_classes: dict[str, float] = field(default_factory=dict)
    cluster_label: str = ""
    class_probabilities: dict[str, float] = field(default_factory=dict)
    anomaly: float = float("nan")
    cstat: float = float("nan")
    dof: int = 0
    predicted_hardness: dict[str, float] = field(default_factory=dict)
    statistic: str = "cstat"
    band: tuple[float, float] = FIT_BAND
    n_bins: int = 0
    model: str = "encoder"

    def statistic_text(self) -> str:
        """The statistic as :func:`format_statistic` writes it (model "encoder latent")."""
        return format_statistic(
            f"{self.model} latent", self.statistic, self.cstat, self.dof, self.band, self.n_bins
        )

    def __post_init__(self) -> None:
        if self.z.shape != self.z_err.shape:
            raise ValueError("z and z_err differ in shape")
        if not self.nh[1] <= self.nh[0] <= self.nh[2]:
            raise ValueError(f"N_H interval {self.nh} does not contain its value")

    def to_dict(self) -> dict:
        """Plain numbers for JSON (N_H as [value, lo, hi] in 10^22 cm^-2)."""
        return {
            "z": [float(v) for v in self.z],
            "z_err": [float(v) for v in self.z_err],
            "log_norm": float(self.log_norm),
            "log_norm_err": float(self.log_norm_err),
            "nh": [float(v) for v in self.nh],
            "cluster": int(self.cluster),
            "cluster_label": self.cluster_label,
            "cluster_classes": {k: float(v) for k, v in self.cluster_classes.items()},
            "class_probabilities": {k: float(v) for k, v in self.class_probabilities.items()},
            "anomaly": float(self.anomaly),
            "cstat": float(self.cstat),
            "dof": int(self.dof),
            "statistic": self.statistic,
            "band": [float(v) for v in self.band],
            "n_bins": int(self.n_bins),
            "model": self.model,
            "predicted_hardness": {k: float(v) for k, v in self.predicted_hardness.items()},
        }


class LatentEncoder:
    """A loaded network and cluster model; use :func:`load_encoder` to make one.

    Parameters
    ----------
    model : LatentAutoencoder
        The network (on its device).
    clusters : ClusterModel or None
        The Gaussian-mixture cluster model.
    """

    def __init__(self, model, clusters) -> None:
        self.model = model
        self.clusters = clusters

    @property
    def name(self) -> str:
        """File name of the network."""
        return os.path.basename(str(getattr(self.model, "source_path", "network")))

    @property
    def sha256(self) -> str:
        """Recorded SHA-256 of the network weights."""
        return str(getattr(self.model, "metadata", {}).get("sha256", ""))

    def encode(
        self,
        items: Sequence[Spectrum | ResponseRepresentation],
        names: Sequence[str] | None = None,
        *,
        batch_size: int = 512,
    ) -> list[LatentResult]:
        """Encode spectra or representations.

        Parameters
        ----------
        items : sequence of Spectrum or ResponseRepresentation
            What to encode (representations must be on the network's grids).
        names : sequence of str, optional
            Names for the results (default: the spectra's paths).
        batch_size : int, optional
            Spectra per forward pass.

        Returns
        -------
        list of LatentResult
            One per item. A spectrum's ``cstat``/``dof`` is :meth:`statistic` (Sherpa's
            W-stat or C-stat on its channel groups in 0.5-7 keV); a bare representation's
            is C-stat on the input-grid bins in 0.5-7 keV (see :class:`LatentResult`).
        """
        from .network import encode_batch, stack_representations

        if not items:
            return []
        input_grid = self.model.config.input_grid
        model_grid = self.model.config.model_grid
        reps, labels = [], []
        for k, item in enumerate(items):
            if isinstance(item, Spectrum):
                reps.append(item.representation(input_grid, model_grid))
                labels.append(item.path)
            else:
                reps.append(item)
                labels.append(f"spectrum {k}")
        if names is not None:
            labels = list(names)
        out = encode_batch(
            self.model, stack_representations(reps), batch_size=batch_size, return_flux=True
        )
        results = []
        for i, rep in enumerate(reps):
            hardness = _hardness_of(rep.expected_counts(out["flux"][i]), rep.input_grid)
            result = self._result(labels[i], out, i, hardness)
            item = items[i]
            if isinstance(item, Spectrum):
                stat = self.statistic(item, result)
            else:
                stat = _input_grid_statistic(rep, out["flux"][i], self.model.config.latent_dim + 1)
            results.append(
                replace(
                    result,
                    cstat=stat.value,
                    dof=stat.dof,
                    statistic=stat.statistic,
                    band=stat.band,
                    n_bins=stat.n_bins,
                )
            )
        return results

    def statistic(
        self, spectrum: Spectrum, result: LatentResult, *, band: tuple[float, float] = FIT_BAND
    ) -> FitStatistic:
        """:func:`model_statistic` of a result's decoded spectrum (model "encoder latent").

        What :meth:`encode` stores in ``cstat``/``dof`` and what
        :func:`~sherpa_latent.plotting.plot_latent_fit` shows for the same result.

        Parameters
        ----------
        spectrum : Spectrum
            The data.
        result : LatentResult
            Latents and normalisation (from this network).
        band : tuple of float, optional
            Energy range, keV.
        """
        return model_statistic(
            spectrum,
            latent_source(result, self),
            band=band,
            n_params=self.model.config.latent_dim + 1,
            model=f"{result.model} latent",
        )

    def _result(self, name: str, out: dict, i: int, hardness: dict) -> LatentResult:
        mean, sigma = float(out["log_nh"][i]), float(out["log_nh_sigma"][i])
        nh = tuple(10.0 ** (v - 22.0) for v in (mean, mean - sigma, mean + sigma))
        z = np.asarray(out["z_mean"][i], dtype=float)
        cluster, make_up, label, probs = -1, {}, "", {}
        if self.clusters is not None:
            cluster = int(self.clusters.predict(z[None, :])[0])
            fractions = np.asarray(self.clusters.class_fractions[cluster])
            make_up = {CLASS_NAMES[k]: float(f) for k, f in enumerate(fractions) if f > 0}
            label = self.clusters.describe(cluster)
            p = np.asarray(self.clusters.class_probabilities(z[None, :])[0])
            probs = {CLASS_NAMES[k]: float(v) for k, v in enumerate(p)}
        return LatentResult(
            file=name,
            z=z,
            z_err=np.asarray(out["z_std"][i], dtype=float),
            log_norm=float(out["log_norm"][i]),
            log_norm_err=float(out["log_norm_std"][i]),
            nh=nh,
            cluster=cluster,
            cluster_classes=make_up,
            cluster_label=label,
            class_probabilities=probs,
            anomaly=float(out["anomaly"][i]),
            cstat=float(out["cstat"][i]),
            dof=int(out["dof"][i]),
            predicted_hardness=hardness,
        )

    def decode(self, z: np.ndarray, log_norm: float | np.ndarray) -> np.ndarray:
        """Photon flux on the model grid for latents and a normalisation.

        The network's own decoder (``LatentAutoencoder.decode``) in the network's dtype
        (float32 as loaded), on its device.

        Parameters
        ----------
        z : ndarray, shape (latent_dim,) or (B, latent_dim)
            Shape latents.
        log_norm : float or ndarray, shape (B,)
            log10 of the 0.5-7 keV photon flux, photons/cm^2/s.

        Returns
        -------
        ndarray, shape (n_model,) or (B, n_model)
            photons/cm^2/s per model-grid bin, float64.
        """
        return self.model.decode_numpy(np.asarray(z, dtype=float), log_norm)


def _input_grid_statistic(
    rep: ResponseRepresentation,
    flux: np.ndarray,
    n_params: int,
    band: tuple[float, float] = FIT_BAND,
) -> FitStatistic:
    """C-stat over the input-grid bins in ``band`` that can hold counts (no channels)."""
    grid = rep.input_grid
    used = ((rep.response.sum(axis=1) > 0) | (rep.background > 0)) & grid.band_mask(band)
    mu = rep.expected_counts(np.asarray(flux, dtype=float)) + rep.background
    n_bins = int(used.sum())
    return FitStatistic(
        value=cash_statistic(rep.counts[used], mu[used]),
        statistic="cstat",
        band=(float(band[0]), float(band[1])),
        n_bins=n_bins,
        dof=n_bins - n_params,
        model="encoder latent",
    )


def _hardness_of(counts: np.ndarray, grid) -> dict[str, float]:
    """Plug-in CSC hardness ratios of expected counts on an input grid."""
    from .grids import CSC_BANDS

    band = {name: float(counts[grid.band_mask(limits)].sum()) for name, limits in CSC_BANDS.items()}
    s, m, h = band["soft"], band["medium"], band["hard"]

    def ratio(a: float, b: float) -> float:
        return (b - a) / (b + a) if a + b > 0 else float("nan")

    return {"hr_hm": ratio(m, h), "hr_hs": ratio(s, h), "hr_ms": ratio(s, m)}


def load_encoder(
    network: str | os.PathLike | None = "default",
    *,
    clusters: str | os.PathLike | None = None,
    device: str = "auto",
) -> LatentEncoder:
    """Load a network and its cluster model, checking both SHA-256 sums.

    Parameters
    ----------
    network : path-like or "default"
        Network file or folder; "default" (or None) is the one shipped in the package.
    clusters : path-like, optional
        Cluster model; by default ``clusters.safetensors`` beside the network.
    device : str
        "auto" (CUDA when present), "cpu" or "cuda".
    """
    from .clusters import ClusterModel
    from .network import read_network

    path = None if network in (None, "default") else Path(network)
    model = read_network(path, device=device)
    if clusters is None:
        folder = Path(model.source_path).parent
        candidate = folder / "clusters.safetensors"
        clusters = candidate if candidate.exists() else None
    cluster_model = ClusterModel.load(clusters) if clusters is not None else None
    return LatentEncoder(model, cluster_model)
