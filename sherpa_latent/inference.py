"""Encode spectra with a trained network: latents, N_H posterior, cluster, anomaly.

:func:`load_encoder` reads a network and its cluster model (by default the ones shipped
in the package, checked against their SHA-256) and returns a :class:`LatentEncoder`,
whose :meth:`~LatentEncoder.encode` turns spectra into :class:`LatentResult` rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .classes import CLASS_NAMES
from .spectrum import ResponseRepresentation, Spectrum

__all__ = ["LatentResult", "LatentEncoder", "load_encoder"]


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
        C-statistic expected for a good fit (about 0 for a good fit).
    cstat, dof : float, int
        C-statistic of the decoded spectrum against the counts, and degrees of freedom.
    predicted_hardness : dict
        CSC hardness ratios (``hr_hm``, ``hr_hs``, ``hr_ms``) of the decoded spectrum
        folded through the spectrum's response, bands made of whole input-grid bins.
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
            results.append(self._result(labels[i], out, i, hardness))
        return results

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
