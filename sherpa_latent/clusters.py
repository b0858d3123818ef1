"""Clusters of latent means: a Gaussian mixture kept as plain arrays.

A :class:`ClusterModel` is a Gaussian mixture fitted (with scikit-learn) to the latent
means of simulated training spectra, with each cluster's class make-up counted from the
same spectra. It is saved as safetensors arrays with a JSON sidecar (never pickled), and
predicts with numpy alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save as _st_save_numpy

from .classes import CLASS_NAMES
from .errors import NetworkFileError
from .weightsfile import DATA_DIR, read_json_sidecar, write_safetensors_pair

__all__ = ["ClusterModel", "fit_clusters", "default_clusters_path", "CLUSTERS_FILE"]

CLUSTERS_FILE = "clusters.safetensors"
"""File name of a cluster model in a network folder."""

CLUSTERS_FORMAT = "sherpa_latent-clusters-1"


class ClusterModel:
    """A Gaussian mixture over the latent means, kept as plain arrays.

    Parameters
    ----------
    weights : ndarray, (K,)
    means : ndarray, (K, D)
    covariances : ndarray, (K, D, D) for "full"
    precisions_cholesky : ndarray
        As scikit-learn's ``GaussianMixture.precisions_cholesky_``.
    covariance_type : str
        scikit-learn's covariance type ("full", "diag", "tied", "spherical").
    class_counts : ndarray, (K, n_classes), optional
        Training spectra of each class assigned to each cluster.
    class_names : sequence of str
    metadata : dict, optional
        Extra information saved with the model.
    """

    def __init__(
        self,
        weights: np.ndarray,
        means: np.ndarray,
        covariances: np.ndarray,
        precisions_cholesky: np.ndarray,
        covariance_type: str = "full",
        class_counts: np.ndarray | None = None,
        class_names: Sequence[str] = CLASS_NAMES,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.means = np.asarray(means, dtype=np.float64)
        self.covariances = np.asarray(covariances, dtype=np.float64)
        self.precisions_cholesky = np.asarray(precisions_cholesky, dtype=np.float64)
        self.covariance_type = str(covariance_type)
        self.class_names = tuple(class_names)
        k = len(self.weights)
        self.class_counts = (
            np.zeros((k, len(self.class_names)))
            if class_counts is None
            else np.asarray(class_counts, dtype=np.float64)
        )
        if self.means.shape[0] != k or self.class_counts.shape != (k, len(self.class_names)):
            raise ValueError("cluster arrays do not agree in their number of components")
        self._validate()
        self.metadata = dict(metadata or {})

    def _validate(self) -> None:
        """Refuse arrays that cannot be a Gaussian mixture (NaN, negative weights, shapes)."""
        shapes = {
            "full": ("kdd", "kdd"),
            "tied": ("dd", "dd"),
            "diag": ("kd", "kd"),
            "spherical": ("k", "k"),
        }
        if self.covariance_type not in shapes:
            raise ValueError(f"unknown covariance type {self.covariance_type!r}")
        k = len(self.weights)
        if self.means.ndim != 2 or k == 0:
            raise ValueError(f"means must be (K, D) with K > 0, got {self.means.shape}")
        d = self.means.shape[1]
        sizes = {"k": k, "d": d}
        for name, letters in zip(
            ("covariances", "precisions_cholesky"), shapes[self.covariance_type], strict=True
        ):
            want = tuple(sizes[c] for c in letters)
            if getattr(self, name).shape != want:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected {want}")
        for name in ("weights", "means", "covariances", "precisions_cholesky", "class_counts"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"{name} holds NaN or infinite values")
        if np.any(self.weights < 0) or not np.isclose(self.weights.sum(), 1.0, atol=1e-6):
            raise ValueError("mixture weights must be non-negative and sum to 1")
        if np.any(self.class_counts < 0):
            raise ValueError("class counts must be non-negative")
        diag = self.precisions_cholesky
        if self.covariance_type in ("full", "tied"):
            diag = np.diagonal(diag, axis1=-2, axis2=-1)
        if np.any(diag <= 0):
            raise ValueError("precision Cholesky factors must have a positive diagonal")

    @property
    def n_components(self) -> int:
        """Number of clusters."""
        return len(self.weights)

    @property
    def class_fractions(self) -> np.ndarray:
        """Fraction of each class among the training spectra of each cluster, (K, n_classes)."""
        tot = self.class_counts.sum(1, keepdims=True)
        return np.divide(
            self.class_counts, tot, out=np.zeros_like(self.class_counts), where=tot > 0
        )

    def log_membership(self, latents: np.ndarray) -> np.ndarray:
        """Log of weight x Gaussian density of each latent mean in each cluster, (N, K).

        Computed from the precision Cholesky factors as scikit-learn's ``GaussianMixture``
        does, with numpy alone, so that encoding a spectrum does not import scikit-learn.
        """
        x = np.atleast_2d(np.asarray(latents, dtype=np.float64))
        n_features = x.shape[1]
        prec = self.precisions_cholesky
        kind = self.covariance_type
        if kind == "full":
            y = np.einsum("nd,kde->nke", x, prec) - np.einsum("kd,kde->ke", self.means, prec)
            maha = np.sum(y**2, axis=2)
            log_det = np.sum(np.log(np.diagonal(prec, axis1=1, axis2=2)), axis=1)
        elif kind == "tied":
            y = x @ prec
            maha = np.sum((y[:, None, :] - (self.means @ prec)[None]) ** 2, axis=2)
            log_det = np.full(self.n_components, np.sum(np.log(np.diag(prec))))
        elif kind == "diag":
            maha = np.sum(((x[:, None, :] - self.means[None]) * prec[None]) ** 2, axis=2)
            log_det = np.sum(np.log(prec), axis=1)
        elif kind == "spherical":
            d2 = np.sum((x[:, None, :] - self.means[None]) ** 2, axis=2)
            maha = d2 * prec[None] ** 2
            log_det = n_features * np.log(prec)
        else:
            raise ValueError(f"unknown covariance type {kind!r}")
        log_gauss = -0.5 * (n_features * np.log(2 * np.pi) + maha) + log_det
        return log_gauss + np.log(self.weights)[None]

    def predict(self, latents: np.ndarray) -> np.ndarray:
        """Most probable cluster of each latent mean, (N,)."""
        return np.argmax(self.log_membership(latents), axis=1)

    def predict_proba(self, latents: np.ndarray) -> np.ndarray:
        """Cluster membership probabilities, (N, K)."""
        log_p = self.log_membership(latents)
        log_p -= log_p.max(axis=1, keepdims=True)
        p = np.exp(log_p)
        return p / p.sum(axis=1, keepdims=True)

    def class_probabilities(self, latents: np.ndarray) -> np.ndarray:
        """Class probabilities implied by the cluster memberships and make-ups, (N, n_classes)."""
        return self.predict_proba(latents) @ self.class_fractions

    def balanced_accuracy(self, latents: np.ndarray, class_ids: np.ndarray) -> float:
        """Balanced accuracy of the class predicted through the clusters."""
        pred = np.argmax(self.class_probabilities(latents), axis=1)
        class_ids = np.asarray(class_ids)
        recalls = [np.mean(pred[class_ids == c] == c) for c in np.unique(class_ids)]
        return float(np.mean(recalls))

    def describe(self, cluster: int, top: int = 3, min_fraction: float = 0.05) -> str:
        """One line on a cluster's class make-up, e.g. ``"cluster 3: 71% HMXB, 20% LMXB"``."""
        cluster = int(cluster)
        if not 0 <= cluster < self.n_components:
            raise IndexError(f"cluster {cluster} out of range (0-{self.n_components - 1})")
        frac = self.class_fractions[cluster]
        if frac.sum() <= 0:
            return f"cluster {cluster}: no training spectra"
        order = np.argsort(-frac, kind="stable")[:top]
        parts = [
            f"{100 * frac[i]:.0f}% {self.class_names[i]}"
            for i in order
            if frac[i] >= min_fraction or i == order[0]
        ]
        return f"cluster {cluster}: " + ", ".join(parts)

    # --- files ------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays that define the model."""
        return {
            "weights": self.weights,
            "means": self.means,
            "covariances": self.covariances,
            "precisions_cholesky": self.precisions_cholesky,
            "class_counts": self.class_counts,
        }

    def save(self, path: str | os.PathLike, clobber: bool = False) -> Path:
        """Write safetensors arrays and a JSON file beside them (with their SHA-256)."""
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_name(path.name + ".safetensors")
        arrays = {k: np.ascontiguousarray(v) for k, v in self.to_arrays().items()}
        data = _st_save_numpy(arrays, metadata={"format": CLUSTERS_FORMAT})
        meta = {
            "format": CLUSTERS_FORMAT,
            "covariance_type": self.covariance_type,
            "n_components": self.n_components,
            "class_names": list(self.class_names),
            "descriptions": [self.describe(k) for k in range(self.n_components)],
            **{
                k: v
                for k, v in self.metadata.items()
                if k not in ("format", "sha256", "weights_file")
            },
        }
        return write_safetensors_pair(path, data, meta, clobber=clobber)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> ClusterModel:
        """Read a cluster model written by :meth:`save`, checking its SHA-256.

        Parameters
        ----------
        path : path-like, optional
            The ``.safetensors`` file or its JSON sidecar, or a folder holding
            ``clusters.safetensors`` (default: the one shipped with the package).

        Raises
        ------
        NetworkFileError
            Missing or malformed files or a checksum mismatch.
        """
        from safetensors.numpy import load_file

        path = default_clusters_path() if path is None else Path(path)
        if path.is_dir():
            path = path / CLUSTERS_FILE
        weights, meta = read_json_sidecar(path, CLUSTERS_FORMAT)
        try:
            arrays = load_file(str(weights))
            extra = {
                k: v
                for k, v in meta.items()
                if k
                not in (
                    "format",
                    "covariance_type",
                    "n_components",
                    "class_names",
                    "descriptions",
                    "sha256",
                    "weights_file",
                )
            }
            return cls(
                arrays["weights"],
                arrays["means"],
                arrays["covariances"],
                arrays["precisions_cholesky"],
                meta["covariance_type"],
                arrays["class_counts"],
                meta["class_names"],
                extra,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise NetworkFileError(str(weights), f"not a valid cluster model ({exc})") from None

    @classmethod
    def from_mixture(
        cls,
        mixture: Any,
        latents: np.ndarray | None = None,
        class_ids: np.ndarray | None = None,
        class_names: Sequence[str] = CLASS_NAMES,
        metadata: Mapping[str, Any] | None = None,
    ) -> ClusterModel:
        """Take the arrays of a fitted mixture; count classes per cluster when given."""
        k = mixture.n_components
        counts = np.zeros((k, len(class_names)))
        if latents is not None and class_ids is not None:
            assign = mixture.predict(np.asarray(latents, dtype=np.float64))
            np.add.at(counts, (assign, np.asarray(class_ids, dtype=np.int64)), 1.0)
        return cls(
            mixture.weights_,
            mixture.means_,
            mixture.covariances_,
            mixture.precisions_cholesky_,
            mixture.covariance_type,
            counts,
            class_names,
            metadata,
        )


def default_clusters_path() -> Path:
    """The cluster model shipped with the package (``sherpa_latent/data/clusters.safetensors``)."""
    return DATA_DIR / CLUSTERS_FILE


def fit_clusters(
    latents: np.ndarray,
    class_ids: np.ndarray,
    n_components: int,
    seed: int = 0,
    *,
    class_names: Sequence[str] = CLASS_NAMES,
    covariance_type: str = "full",
) -> ClusterModel:
    """Fit a Gaussian mixture to training latent means and record each cluster's classes.

    Parameters
    ----------
    latents : ndarray, (N, latent_dim)
        Latent means of training spectra.
    class_ids : ndarray, (N,)
        Their true class ids.
    n_components : int
        Number of clusters.
    seed : int
        Random state of the mixture fit.
    class_names : sequence of str
    covariance_type : str

    Returns
    -------
    ClusterModel
    """
    from sklearn.mixture import GaussianMixture

    latents = np.asarray(latents, dtype=np.float64)
    gm = GaussianMixture(
        n_components=n_components,
        covariance_type=covariance_type,
        random_state=seed,
        n_init=2,
        max_iter=300,
        reg_covar=1e-5,
    )
    gm.fit(latents)
    return ClusterModel.from_mixture(
        gm, latents, class_ids, class_names, {"n_fit": int(len(latents)), "seed": int(seed)}
    )
