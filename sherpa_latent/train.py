"""Training of the latent autoencoder, its checkpoints, and the cluster model.

One command runs a recipe again::

    python -m sherpa_latent.train recipe.toml

The recipe is a TOML file of :class:`TrainConfig` keys with a ``[network]`` table of
:class:`~sherpa_latent.network.NetworkConfig` keys. Training reads dataset shards
(``.npz`` files of simulated spectra that point into a response library by
``response_id``), gathers each batch's projected responses on the device, and minimises
the C-statistic of the folded decoder output plus the KL terms and the N_H term
(:func:`~sherpa_latent.network.autoencoder_loss`). Every epoch it appends metrics to
``metrics.jsonl`` and writes a checkpoint; an interrupted run continues from the last
checkpoint. At the end a Gaussian mixture is fitted to the training latent means
(:func:`fit_clusters`) and the network and cluster model are written without pickle.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import save as _st_save_numpy
from safetensors.torch import load_file as _st_load_torch
from safetensors.torch import save as _st_save_torch
from sklearn.mixture import GaussianMixture

from .classes import CLASS_NAMES
from .errors import NetworkFileError
from .fileio import atomic_output
from .grids import INPUT_GRID, MODEL_GRID, EnergyGrid
from .network import (
    LatentAutoencoder,
    NetworkConfig,
    _atomic_write,
    anomaly_score,
    autocast_context,
    autoencoder_loss,
    batch_to_tensors,
    cstat,
    encode_batch,
    predicted_counts,
    read_json_sidecar,
    resolve_device,
    save_network,
    sha256_file,
    sidecar_path,
    used_bins,
    write_safetensors_pair,
)
from .responses import ResponseLibrary
from .simulate import LIBRARY_FILE, MANIFEST, read_shard, shard_paths

__all__ = [
    "TrainConfig",
    "TrainResult",
    "train",
    "evaluate",
    "find_shards",
    "shard_sizes",
    "load_response_bank",
    "batches_from_shards",
    "learning_rate_at",
    "beta_at",
    "ClusterModel",
    "fit_clusters",
    "default_clusters_path",
    "library_path",
    "write_toy_dataset",
    "main",
]

SHARD_KEYS = ("counts", "background", "exposure", "response_id", "class_id", "log_nh")
"""Shard columns the training reads (shards may hold more)."""

CHECKPOINT_WEIGHTS = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint_state.pt"
METRICS_FILE = "metrics.jsonl"
NETWORK_FILE = "network.safetensors"
CLUSTERS_FILE = "clusters.safetensors"


# --------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """A training recipe.

    Parameters
    ----------
    data_dir : str
        Folder of the training shards.
    library : str, optional
        Response library file (``.npz`` or ``.safetensors`` holding ``response``
        (n_resp, n_in, n_model), cm^2, and ``effective_area`` (n_resp, n_in), cm^2);
        relative paths are inside ``data_dir``. Default: the library named by the
        shard folder's manifest, else ``responses.npz`` in ``data_dir``.
    output_dir : str
        Where checkpoints, metrics, the network and the cluster model go.
    val_dir : str, optional
        Folder of validation shards (same library); otherwise the last ``val_fraction``
        of the rows of every training shard are held out.
    val_fraction : float
        Held-out fraction when there is no ``val_dir``.
    epochs : int
        Passes over the training set.
    batch_size : int
        Spectra per step.
    learning_rate : float
        Peak AdamW learning rate.
    weight_decay : float
        AdamW weight decay.
    schedule : {"onecycle", "cosine"}
        Learning-rate schedule over all steps: "onecycle" warms up (cosine) from
        lr/25 over ``warmup_fraction`` and anneals (cosine) to ``lr * min_lr_fraction``;
        "cosine" warms up linearly from 0 and anneals (cosine) likewise.
    warmup_fraction : float
        Fraction of the steps spent warming up.
    min_lr_fraction : float
        Final learning rate as a fraction of the peak.
    beta_start, beta_max : float
        KL weight at the start and after the warm-up (1 is the exact ELBO).
    beta_warmup_fraction : float
        Fraction of the steps over which beta rises linearly.
    nh_weight : float
        Weight of the N_H Gaussian negative log-likelihood, per spectrum, nats.
    grad_clip : float
        Maximum gradient norm (0: no clipping).
    device : str
        "auto", "cpu" or "cuda".
    seed : int
        Seed of the weights, the data order and the sampling noise.
    num_threads : int, optional
        torch CPU threads (default: torch's choice).
    max_steps : int, optional
        Cap on the total optimiser steps (the schedules span the capped length).
    checkpoint_every : int
        Also checkpoint every this many steps (0: at the end of each epoch only).
    max_val_spectra : int
        Validation spectra evaluated per epoch (the first ones, in file order).
    n_clusters : int
        Gaussian-mixture components of the cluster model (0: none).
    max_cluster_spectra : int
        Training spectra whose latent means the mixture is fitted to.
    cache_shards : bool
        Keep the shards in memory after the first read.
    progress : bool
        Show a tqdm progress bar.
    resume : bool
        Continue from a checkpoint in ``output_dir`` when there is one.
    clobber : bool
        Overwrite a finished network and cluster model in ``output_dir``.
    network : NetworkConfig
        The architecture.
    """

    data_dir: str = "data/training"
    library: str | None = None
    output_dir: str = "runs/default"
    val_dir: str | None = None
    val_fraction: float = 0.05
    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "onecycle"
    warmup_fraction: float = 0.05
    min_lr_fraction: float = 0.02
    beta_start: float = 0.0
    beta_max: float = 1.0
    beta_warmup_fraction: float = 0.2
    nh_weight: float = 2.0
    grad_clip: float = 0.0
    device: str = "auto"
    seed: int = 0
    num_threads: int | None = None
    max_steps: int | None = None
    checkpoint_every: int = 0
    max_val_spectra: int = 20000
    n_clusters: int = 16
    max_cluster_spectra: int = 200000
    cache_shards: bool = True
    progress: bool = True
    resume: bool = True
    clobber: bool = False
    network: NetworkConfig = field(default_factory=NetworkConfig)

    def __post_init__(self) -> None:
        if isinstance(self.network, Mapping):
            self.network = NetworkConfig.from_dict(self.network)
        if self.schedule not in ("onecycle", "cosine"):
            raise ValueError(f"schedule must be 'onecycle' or 'cosine', got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")

    # JSON-friendly forms ------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain dictionary (the ``network`` table nested)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "network"}
        out["network"] = self.network.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: str | os.PathLike | None = None):
        """Build from a dictionary; unknown keys raise ``ValueError``.

        Relative ``data_dir``, ``output_dir`` and ``val_dir`` are taken relative to
        ``base_dir`` when given.
        """
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training config keys: {', '.join(sorted(unknown))}")
        data = dict(data)
        if base_dir is not None:
            for key in ("data_dir", "output_dir", "val_dir"):
                value = data.get(key)
                if value is not None and not os.path.isabs(value):
                    data[key] = os.path.normpath(os.path.join(base_dir, value))
        return cls(**data)

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> TrainConfig:
        """Read a TOML recipe (paths in it are relative to the file's folder)."""
        path = Path(path)
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        return cls.from_dict(data, base_dir=path.parent.resolve())


@dataclass
class TrainResult:
    """What :func:`train` made.

    Parameters
    ----------
    output_dir : Path
    network_path : Path or None
        The saved network (None when stopped early).
    clusters_path : Path or None
        The saved cluster model.
    metrics : dict
        Final validation metrics (and cluster metrics).
    epochs_completed : int
    steps : int
        Optimiser steps taken in all.
    finished : bool
        False when the run stopped early (``stop_after_steps``) leaving a checkpoint.
    """

    output_dir: Path
    network_path: Path | None
    clusters_path: Path | None
    metrics: dict
    epochs_completed: int
    steps: int
    finished: bool


# --------------------------------------------------------------------------------------
# schedules
# --------------------------------------------------------------------------------------
def learning_rate_at(step: int, total: int, config: TrainConfig) -> float:
    """Learning rate at an optimiser step (0-based) of a run of ``total`` steps."""
    peak, floor = config.learning_rate, config.learning_rate * config.min_lr_fraction
    warm = int(round(config.warmup_fraction * total))
    if step < warm:
        frac = (step + 1) / warm
        if config.schedule == "onecycle":
            start = peak / 25.0
            return start + (peak - start) * 0.5 * (1.0 - math.cos(math.pi * frac))
        return peak * frac
    frac = (step - warm) / max(1, total - warm - 1)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))


def beta_at(step: int, total: int, config: TrainConfig) -> float:
    """KL weight at an optimiser step: linear from ``beta_start`` to ``beta_max``."""
    ramp = config.beta_warmup_fraction * total
    frac = 1.0 if ramp <= 0 else min(1.0, step / ramp)
    return config.beta_start + (config.beta_max - config.beta_start) * frac


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------
def find_shards(directory: str | os.PathLike) -> list[Path]:
    """Shard files of a folder, in order (its manifest's, else by shard number)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: shard folder not found")
    paths = shard_paths(directory)
    if not paths:
        raise FileNotFoundError(f"{directory}: no shard files (shard_00000.npz, ...)")
    return paths


def library_path(data_dir: str | os.PathLike, library: str | os.PathLike | None = None) -> Path:
    """The response library of a shard folder.

    ``library`` if given (relative to ``data_dir``), else the file the folder's manifest
    names, else ``responses.npz`` in the folder.
    """
    data_dir = Path(data_dir)
    if library is not None:
        path = Path(library)
        return path if path.is_absolute() else data_dir / path
    manifest = data_dir / MANIFEST
    if manifest.is_file():
        try:
            name = json.loads(manifest.read_text(encoding="utf-8"))["library"]["file"]
            path = Path(name)
            return path if path.is_absolute() else data_dir / path
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return data_dir / LIBRARY_FILE


def _read_shard(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Read some columns of a shard (no pickle), checked by the simulator's reader.

    The single place that knows the shard format (``sherpa_latent.simulate``).
    """
    return read_shard(path, list(keys))


def shard_sizes(paths: Sequence[Path]) -> list[int]:
    """Number of spectra in each shard."""
    return [int(len(_read_shard(p, ("exposure",))["exposure"])) for p in paths]


def _split_rows(n: int, split: str, val_fraction: float) -> np.ndarray:
    """Row indices of one shard in a split: the last ``val_fraction`` rows are validation."""
    n_val = int(math.ceil(n * val_fraction)) if val_fraction > 0 else 0
    if split == "train":
        return np.arange(n - n_val)
    if split == "val":
        return np.arange(n - n_val, n)
    return np.arange(n)


def batches_from_shards(
    paths: Sequence[Path],
    batch_size: int,
    *,
    split: str = "all",
    val_fraction: float = 0.0,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    skip_batches: int = 0,
    drop_last: bool = False,
    keys: Sequence[str] = SHARD_KEYS,
    cache: dict | None = None,
    limit: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield batches of spectra from shards, one shard in memory at a time.

    The order depends only on ``(seed, epoch)``: shards are visited in a shuffled order
    and their rows shuffled, with the remainder of one shard carried into the next.

    Parameters
    ----------
    paths : sequence of Path
        Shard files.
    batch_size : int
    split : {"all", "train", "val"}
        Rows to use (see ``val_fraction``).
    val_fraction : float
        Fraction of each shard's rows (the last ones) that form the validation split.
    shuffle : bool
        Shuffle shards and rows (otherwise file order).
    seed, epoch : int
        Define the order.
    skip_batches : int
        Batches to pass over without yielding (to resume inside an epoch).
    drop_last : bool
        Drop a final short batch.
    keys : sequence of str
        Columns to read.
    cache : dict, optional
        Shards already read, keyed by path; filled as shards are read.
    limit : int, optional
        Stop after this many spectra.

    Yields
    ------
    dict of ndarray
        The columns of ``batch_size`` spectra (``response_id`` points into the library).
    """
    rng = np.random.default_rng([int(seed), int(epoch)])
    order = rng.permutation(len(paths)) if shuffle else np.arange(len(paths))
    pending: list[dict[str, np.ndarray]] = []
    n_pending = 0
    produced = 0
    emitted = 0

    def take(n: int) -> dict[str, np.ndarray]:
        nonlocal pending, n_pending
        parts: list[dict[str, np.ndarray]] = []
        need = n
        while need > 0:
            head = pending[0]
            m = len(head[keys[0]])
            if m <= need:
                parts.append(pending.pop(0))
                need -= m
            else:
                parts.append({k: v[:need] for k, v in head.items()})
                pending[0] = {k: v[need:] for k, v in head.items()}
                need = 0
        n_pending -= n
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in keys}

    for idx in order:
        path = paths[int(idx)]
        if cache is not None and path in cache:
            data = cache[path]
        else:
            data = _read_shard(path, keys)
            if cache is not None:
                cache[path] = data
        rows = _split_rows(len(data[keys[0]]), split, val_fraction)
        if shuffle:
            rows = rng.permutation(rows)
        if len(rows) == 0:
            continue
        pending.append({k: data[k][rows] for k in keys})
        n_pending += len(rows)
        while n_pending >= batch_size:
            if limit is not None and produced >= limit:
                return
            batch = take(batch_size)
            produced += batch_size
            emitted += 1
            if emitted > skip_batches:
                yield batch
    if n_pending > 0 and not drop_last and (limit is None or produced < limit):
        emitted += 1
        if emitted > skip_batches:
            yield take(n_pending)


def load_response_bank(
    path: str | os.PathLike,
    device: torch.device | str = "cpu",
    network: NetworkConfig | None = None,
) -> dict[str, torch.Tensor]:
    """Read the response library onto a device.

    Parameters
    ----------
    path : path-like
        ``.npz`` (read without pickle; a :class:`~sherpa_latent.responses.ResponseLibrary`
        file) or ``.safetensors`` with ``response`` (n_resp, n_in, n_model), cm^2, and
        ``effective_area`` (n_resp, n_in), cm^2.
    device : torch.device or str
    network : NetworkConfig, optional
        Check that the library's grids are the network's.

    Returns
    -------
    dict of Tensor
        float32 ``response`` and ``effective_area``, and ``used`` (rows of R with any
        area, bool), on ``device``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: response library not found")
    grids: dict[str, np.ndarray] = {}
    if path.suffix == ".safetensors":
        arrays = {k: v.numpy() for k, v in _st_load_torch(str(path)).items()}
    else:
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: np.asarray(npz[k]) for k in ("response", "effective_area")}
                grids = {
                    k: np.asarray(npz[k]) for k in ("input_grid", "model_grid") if k in npz.files
                }
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise ValueError(f"{path}: not a readable response library ({exc})") from None
    resp = np.asarray(arrays["response"], dtype=np.float32)
    area = np.asarray(arrays["effective_area"], dtype=np.float32)
    if resp.ndim != 3 or area.shape != resp.shape[:2]:
        raise ValueError(
            f"{path}: response {resp.shape} and effective_area {area.shape} do not match"
        )
    if network is not None:
        for key, want in (("input_grid", network.input_grid), ("model_grid", network.model_grid)):
            have = grids.get(key)
            want_arr = np.array([want["emin"], want["emax"], want["nbins"]], dtype=float)
            if have is not None and not np.allclose(np.asarray(have, float), want_arr):
                raise ValueError(
                    f"{path}: library {key} {have.tolist()} is not the network's "
                    f"{want_arr.tolist()}"
                )
        n_in, n_model = network.input_grid["nbins"], network.model_grid["nbins"]
        if resp.shape[1:] != (n_in, n_model):
            raise ValueError(
                f"{path}: responses are {resp.shape[1:]}, the network expects ({n_in}, {n_model})"
            )
    dev = torch.device(device)
    return {
        "response": torch.from_numpy(resp).to(dev),
        "effective_area": torch.from_numpy(area).to(dev),
        "used": torch.from_numpy(resp.sum(-1) > 0).to(dev),
    }


# --------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------
def evaluate(
    model: LatentAutoencoder,
    batches: Iterator[Mapping[str, np.ndarray]],
    bank: Mapping[str, torch.Tensor],
    *,
    nh_weight: float = 1.0,
) -> dict[str, float]:
    """Validation metrics with the posterior means (no sampling).

    Returns
    -------
    dict of float
        Means per spectrum of ``loss`` (beta = 1), ``cstat``, ``kl_z``, ``kl_norm``,
        ``nh_nll``; medians of ``cstat_dof`` and ``anomaly``; ``nh_mae`` (dex);
        ``nh_coverage68`` and ``nh_coverage95`` (fraction of true log N_H within 1 and
        1.96 sigma); ``n`` spectra.
    """
    device = model.device
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    per: dict[str, list[np.ndarray]] = {"cstat_dof": [], "anomaly": [], "nh_err": [], "nh_sig": []}
    n = 0
    n_params = model.config.latent_dim + 1
    try:
        with torch.inference_mode():
            for batch in batches:
                tb = batch_to_tensors(batch, device, bank)
                with autocast_context(device):
                    out = model(tb, sample=False)
                _, comps = autoencoder_loss(
                    out,
                    tb,
                    beta=1.0,
                    nh_weight=nh_weight,
                    log_norm_prior=model.config.log_norm_prior,
                    n_params=n_params,
                )
                b = len(tb["counts"])
                for k, v in comps.items():
                    if k != "cstat_dof":
                        sums[k] = sums.get(k, 0.0) + float(v) * b
                mu = predicted_counts(out["flux"], tb["response"], tb["exposure"], tb["background"])
                c = cstat(tb["counts"], mu).sum(-1)
                used = used_bins(tb)
                dof = (used.sum(-1) - n_params).clamp_min(1)
                per["cstat_dof"].append((c / dof).cpu().numpy())
                per["anomaly"].append(
                    anomaly_score(
                        c.double().cpu().numpy(),
                        mu.double().cpu().numpy(),
                        used.cpu().numpy(),
                        n_params,
                    )
                )
                if "log_nh" in tb:
                    per["nh_err"].append((out["log_nh_mean"] - tb["log_nh"]).cpu().numpy())
                    per["nh_sig"].append(out["log_nh_log_sigma"].exp().cpu().numpy())
                n += b
    finally:
        model.train(was_training)
    if n == 0:
        return {"n": 0}
    res = {k: v / n for k, v in sums.items()}
    res["cstat_dof_median"] = float(np.median(np.concatenate(per["cstat_dof"])))
    res["anomaly_median"] = float(np.median(np.concatenate(per["anomaly"])))
    if per["nh_err"]:
        err = np.abs(np.concatenate(per["nh_err"]))
        sig = np.concatenate(per["nh_sig"])
        res["nh_mae"] = float(np.mean(err))
        res["nh_coverage68"] = float(np.mean(err <= sig))
        res["nh_coverage95"] = float(np.mean(err <= 1.96 * sig))
    res["n"] = n
    return res


# --------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------
def _save_checkpoint(out_dir: Path, model: LatentAutoencoder, optimizer, state: dict) -> None:
    """Weights to safetensors, optimiser and counters to our own torch file."""
    weights = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    data = _st_save_torch(weights)
    _atomic_write(out_dir / CHECKPOINT_WEIGHTS, data)
    full = dict(state)
    full["weights_sha256"] = sha256_file(out_dir / CHECKPOINT_WEIGHTS)
    full["optimizer"] = optimizer.state_dict()
    full["torch_rng"] = torch.get_rng_state()
    if torch.cuda.is_available():
        full["cuda_rng"] = torch.cuda.get_rng_state_all()
    with atomic_output(out_dir / CHECKPOINT_STATE) as tmp:
        torch.save(full, tmp)


def _load_checkpoint(
    out_dir: Path, model: LatentAutoencoder, optimizer, config: TrainConfig
) -> dict:
    """Restore a checkpoint written by :func:`_save_checkpoint` (weights_only load)."""
    state_path = out_dir / CHECKPOINT_STATE
    weights_path = out_dir / CHECKPOINT_WEIGHTS
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    _check_resumable(state.get("config", "{}"), config)
    if sha256_file(weights_path) != state.get("weights_sha256"):
        raise NetworkFileError(
            str(weights_path), "checkpoint weights do not match the checkpoint state"
        )
    model.load_state_dict(_st_load_torch(str(weights_path), device=str(model.device)))
    optimizer.load_state_dict(state.pop("optimizer"))
    torch.set_rng_state(state.pop("torch_rng"))
    cuda_rng = state.pop("cuda_rng", None)
    if cuda_rng is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_rng)
    return state


def _trim_metrics(path: Path, max_step: int) -> None:
    """Drop metric lines written after the checkpoint being resumed from."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= max_step:
                keep.append(line)
        except json.JSONDecodeError:
            continue
    _atomic_write(path, ("\n".join(keep) + "\n" if keep else "").encode("utf-8"))


def _append_metrics(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


# --------------------------------------------------------------------------------------
# the training loop
# --------------------------------------------------------------------------------------
_SYNC_EVERY = 20
"""Steps between reads of the loss components from the device."""

_RESUME_KEYS = (
    "batch_size",
    "seed",
    "learning_rate",
    "schedule",
    "data_dir",
    "val_fraction",
    "epochs",
    "max_steps",
    "weight_decay",
    "warmup_fraction",
    "min_lr_fraction",
    "beta_start",
    "beta_max",
    "beta_warmup_fraction",
    "nh_weight",
    "grad_clip",
)
"""Settings a checkpoint must share with the config that resumes it."""


def train(
    config: TrainConfig,
    *,
    command_line: str | None = None,
    stop_after_steps: int | None = None,
) -> TrainResult:
    """Train a network from a recipe, resuming from a checkpoint when there is one.

    Parameters
    ----------
    config : TrainConfig
    command_line : str, optional
        Recorded in the network's metadata.
    stop_after_steps : int, optional
        Stop once this many steps (in all) are done, leaving a checkpoint and no
        network, as an interruption would (for tests and time-sliced runs).

    Returns
    -------
    TrainResult
    """
    threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(int(config.num_threads))
    try:
        return _train(config, command_line, stop_after_steps)
    finally:
        torch.set_num_threads(threads)


def _train(
    config: TrainConfig, command_line: str | None, stop_after_steps: int | None
) -> TrainResult:
    device = resolve_device(config.device)
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net_path, clu_path = out_dir / NETWORK_FILE, out_dir / CLUSTERS_FILE
    metrics_path = out_dir / METRICS_FILE
    finished = net_path.exists()
    if finished and not config.clobber:
        raise FileExistsError(f"{net_path}: file exists; set clobber = true to overwrite")
    if clu_path.exists() and not config.clobber:
        raise FileExistsError(f"{clu_path}: file exists; set clobber = true to overwrite")
    # Replacing a finished network means training again, not resuming its last
    # checkpoint; the old network goes now, so that an interrupted retraining resumes.
    start_over = finished and config.clobber
    if start_over:
        for p in (net_path, sidecar_path(net_path), clu_path, sidecar_path(clu_path)):
            p.unlink(missing_ok=True)

    # data ------------------------------------------------------------------------------
    train_paths = find_shards(config.data_dir)
    if config.val_dir:
        val_paths, val_split, train_split, vfrac = (
            find_shards(config.val_dir),
            "all",
            "all",
            0.0,
        )
    else:
        val_paths, val_split, train_split, vfrac = (
            train_paths,
            "val",
            "train",
            config.val_fraction,
        )
    library = library_path(config.data_dir, config.library)
    bank = load_response_bank(library, device, network=config.network)
    sizes = shard_sizes(train_paths)
    n_train = sum(len(_split_rows(s, train_split, vfrac)) for s in sizes)
    val_sizes = sizes if val_paths is train_paths else shard_sizes(val_paths)
    n_val = sum(len(_split_rows(s, val_split, vfrac)) for s in val_sizes)
    if n_train == 0:
        raise ValueError(f"{config.data_dir}: no training spectra")
    bs = config.batch_size
    drop_last = n_train >= bs
    steps_per_epoch = n_train // bs if drop_last else 1
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, int(config.max_steps))
    cache: dict | None = {} if config.cache_shards else None

    # model and optimiser ------------------------------------------------------------------
    torch.manual_seed(config.seed)
    model = LatentAutoencoder(config.network).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    state = {
        "epoch": 0,
        "step_in_epoch": 0,
        "global_step": 0,
        "sums": {},
        "n_sum": 0,
        "elapsed_s": 0.0,
        "config": json.dumps(_jsonable_config(config)),
    }
    ckpt_exists = (out_dir / CHECKPOINT_STATE).exists()
    if ckpt_exists and config.resume and not start_over:
        loaded = _load_checkpoint(out_dir, model, optimizer, config)
        state.update(loaded)
        state["config"] = json.dumps(_jsonable_config(config))
        _trim_metrics(metrics_path, state["global_step"])
    else:
        if metrics_path.exists():
            if not config.clobber:
                raise FileExistsError(
                    f"{metrics_path}: file exists; resume, or set clobber = true to start over"
                )
            metrics_path.unlink()

    def lr_beta(step: int) -> tuple[float, float]:
        return learning_rate_at(step, total_steps, config), beta_at(step, total_steps, config)

    from tqdm.auto import tqdm

    pbar = tqdm(
        total=total_steps,
        initial=state["global_step"],
        disable=not config.progress,
        unit="step",
        dynamic_ncols=True,
        desc="training",
    )
    n_params = config.network.latent_dim + 1
    t_start = time.perf_counter() - float(state["elapsed_s"])
    finished_epochs = state["epoch"]
    stopped = False

    comp_keys = ("loss", "cstat", "cstat_dof", "kl_z", "kl_norm", "nh_nll")
    acc: torch.Tensor | None = None
    acc_n = 0

    def flush(beta: float) -> None:
        """Move the accumulated loss components to the state; fail on a non-finite loss."""
        nonlocal acc, acc_n
        if acc is None:
            return
        values = acc.tolist()
        if not all(math.isfinite(v) for v in values):
            raise FloatingPointError(
                f"loss is not finite by step {state['global_step']}; lower learning_rate or "
                "set grad_clip"
            )
        for k, v in zip(comp_keys, values, strict=True):
            state["sums"][k] = state["sums"].get(k, 0.0) + v
        state["n_sum"] += acc_n
        pbar.set_postfix(
            loss=f"{values[0] / acc_n:.4g}",
            cdof=f"{values[2] / acc_n:.3g}",
            beta=f"{beta:.2g}",
            refresh=False,
        )
        acc, acc_n = None, 0

    def end_epoch() -> None:
        nonlocal finished_epochs
        flush(lr_beta(max(0, state["global_step"] - 1))[1])
        n_sum = max(1, state["n_sum"])
        train_metrics = {k: v / n_sum for k, v in state["sums"].items()}
        val_iter = batches_from_shards(
            val_paths,
            max(bs, 1024),
            split=val_split,
            val_fraction=vfrac,
            shuffle=False,
            cache=cache,
            limit=config.max_val_spectra,
        )
        val_metrics = evaluate(model, val_iter, bank, nh_weight=config.nh_weight)
        lr, beta = lr_beta(max(0, state["global_step"] - 1))
        record = {
            "epoch": state["epoch"] + 1,
            "step": state["global_step"],
            "partial": state["step_in_epoch"] < steps_per_epoch,
            "lr": lr,
            "beta": beta,
            "time_s": time.perf_counter() - t_start,
            "train": train_metrics,
            "val": val_metrics,
        }
        _append_metrics(metrics_path, record)
        pbar.write(_format_epoch(record))
        state["epoch"] += 1
        state["step_in_epoch"] = 0
        state["sums"], state["n_sum"] = {}, 0
        finished_epochs = state["epoch"]
        state["elapsed_s"] = time.perf_counter() - t_start
        _save_checkpoint(out_dir, model, optimizer, state)

    model.train()
    try:
        while state["global_step"] < total_steps:
            batches = batches_from_shards(
                train_paths,
                bs,
                split=train_split,
                val_fraction=vfrac,
                shuffle=True,
                seed=config.seed,
                epoch=state["epoch"],
                skip_batches=state["step_in_epoch"],
                drop_last=drop_last,
                cache=cache,
            )
            for batch in batches:
                if state["global_step"] >= total_steps or state["step_in_epoch"] >= steps_per_epoch:
                    break
                lr, beta = lr_beta(state["global_step"])
                for group in optimizer.param_groups:
                    group["lr"] = lr
                tb = batch_to_tensors(batch, device, bank)
                with autocast_context(device):
                    out = model(tb, sample=True)
                loss, comps = autoencoder_loss(
                    out,
                    tb,
                    beta=beta,
                    nh_weight=config.nh_weight,
                    log_norm_prior=config.network.log_norm_prior,
                    n_params=n_params,
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                # accumulate on the device; synchronise only every few steps
                zero = torch.zeros_like(comps["loss"])
                vec = torch.stack([comps.get(k, zero) for k in comp_keys]) * len(tb["counts"])
                acc = vec if acc is None else acc + vec
                acc_n += len(tb["counts"])
                state["global_step"] += 1
                state["step_in_epoch"] += 1
                pbar.update(1)
                if state["global_step"] % _SYNC_EVERY == 0:
                    flush(beta)
                if config.checkpoint_every and state["global_step"] % config.checkpoint_every == 0:
                    flush(beta)
                    state["elapsed_s"] = time.perf_counter() - t_start
                    _save_checkpoint(out_dir, model, optimizer, state)
                if stop_after_steps is not None and state["global_step"] >= stop_after_steps:
                    stopped = True
                    break
            if stopped:
                if state["step_in_epoch"] >= steps_per_epoch:
                    end_epoch()
                else:
                    flush(0.0)
                    state["elapsed_s"] = time.perf_counter() - t_start
                    _save_checkpoint(out_dir, model, optimizer, state)
                break
            end_epoch()
    except KeyboardInterrupt:
        flush(0.0)
        state["elapsed_s"] = time.perf_counter() - t_start
        _save_checkpoint(out_dir, model, optimizer, state)
        pbar.close()
        raise
    pbar.close()
    if stopped and state["global_step"] < total_steps:
        return TrainResult(out_dir, None, None, {}, finished_epochs, state["global_step"], False)

    # clusters and the final network ---------------------------------------------------------
    final_val = _last_metrics(metrics_path).get("val", {})
    metrics: dict[str, Any] = dict(final_val)
    meta_clusters = None
    clusters_path = None
    if config.n_clusters > 0:
        tr_iter = batches_from_shards(
            train_paths,
            2048,
            split=train_split,
            val_fraction=vfrac,
            shuffle=False,
            cache=cache,
            limit=config.max_cluster_spectra,
            keys=SHARD_KEYS,
        )
        z, cls = _latents(model, tr_iter, bank)
        n_comp = min(config.n_clusters, len(z))
        clusters = fit_clusters(z, cls, n_comp, config.seed, class_names=config.network.class_names)
        val_iter = batches_from_shards(
            val_paths,
            2048,
            split=val_split,
            val_fraction=vfrac,
            shuffle=False,
            cache=cache,
            limit=config.max_val_spectra,
        )
        zv, cv = _latents(model, val_iter, bank)
        if len(zv):
            metrics["cluster_balanced_accuracy"] = clusters.balanced_accuracy(zv, cv)
        clusters_path = clusters.save(clu_path, clobber=config.clobber)
        meta_clusters = {
            "file": clusters_path.name,
            "sha256": sha256_file(clusters_path),
            "n_components": clusters.n_components,
            "n_fit": int(len(z)),
        }
    recipe = _jsonable_config(config)
    metadata = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "training": {
            "recipe": recipe,
            "command_line": command_line,
            "epochs_completed": finished_epochs,
            "steps": state["global_step"],
            "wall_time_s": round(time.perf_counter() - t_start, 1),
            "device": str(device),
        },
        "data": {
            "n_train": n_train,
            "n_val": n_val,
            "n_train_shards": len(train_paths),
            "n_responses": int(bank["response"].shape[0]),
            "library": library.name,
            "library_sha256": sha256_file(library),
        },
        "metrics": metrics,
        "clusters": meta_clusters,
    }
    network_path = save_network(model, net_path, metadata, clobber=config.clobber)
    return TrainResult(
        out_dir, network_path, clusters_path, metrics, finished_epochs, state["global_step"], True
    )


def _latents(model: LatentAutoencoder, batches, bank) -> tuple[np.ndarray, np.ndarray]:
    zs, cs = [], []
    for batch in batches:
        res = encode_batch(model, batch, batch_size=len(batch["counts"]), bank=bank)
        zs.append(res["z_mean"])
        cs.append(np.asarray(batch["class_id"], dtype=np.int64))
    if not zs:
        return np.zeros((0, model.config.latent_dim), np.float32), np.zeros(0, np.int64)
    return np.concatenate(zs), np.concatenate(cs)


def _jsonable_config(config: TrainConfig) -> dict:
    d = config.to_dict()
    return json.loads(json.dumps(d, default=str))


def _check_resumable(saved_json: str, config: TrainConfig) -> None:
    saved = json.loads(saved_json)
    now = _jsonable_config(config)
    if saved.get("network") != now["network"]:
        raise ValueError(
            f"{config.output_dir}: the checkpoint was made with a different network config; "
            "use another output_dir or resume = false"
        )
    changed = [k for k in _RESUME_KEYS if saved.get(k) != now.get(k)]
    if changed:
        raise ValueError(
            f"{config.output_dir}: the checkpoint was made with different "
            f"{', '.join(changed)}; use another output_dir or resume = false"
        )


def _last_metrics(path: Path) -> dict:
    if not path.exists():
        return {}
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return json.loads(lines[-1]) if lines else {}


def _format_epoch(rec: dict) -> str:
    tr, va = rec["train"], rec["val"]
    parts = [
        f"epoch {rec['epoch']} step {rec['step']}",
        f"train loss {tr.get('loss', float('nan')):.4g}",
        f"val C/dof {va.get('cstat_dof_median', float('nan')):.3f}",
    ]
    if "nh_mae" in va:
        parts.append(f"N_H MAE {va['nh_mae']:.3f} cov68 {va['nh_coverage68']:.2f}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------
# clusters
# --------------------------------------------------------------------------------------
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
        self.metadata = dict(metadata or {})
        self._mixture: GaussianMixture | None = None

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

    @property
    def mixture(self) -> GaussianMixture:
        """A scikit-learn ``GaussianMixture`` rebuilt from the arrays (not refitted)."""
        if self._mixture is None:
            gm = GaussianMixture(
                n_components=self.n_components, covariance_type=self.covariance_type
            )
            gm.weights_ = self.weights
            gm.means_ = self.means
            gm.covariances_ = self.covariances
            gm.precisions_cholesky_ = self.precisions_cholesky
            gm.precisions_ = _precisions(self.precisions_cholesky, self.covariance_type)
            gm.converged_ = True
            gm.n_iter_ = 0
            gm.lower_bound_ = float("nan")
            gm.n_features_in_ = self.means.shape[1]
            self._mixture = gm
        return self._mixture

    def predict(self, latents: np.ndarray) -> np.ndarray:
        """Most probable cluster of each latent mean, (N,)."""
        return self.mixture.predict(np.atleast_2d(np.asarray(latents, dtype=np.float64)))

    def predict_proba(self, latents: np.ndarray) -> np.ndarray:
        """Cluster membership probabilities, (N, K)."""
        return self.mixture.predict_proba(np.atleast_2d(np.asarray(latents, dtype=np.float64)))

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
        mixture: GaussianMixture,
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
    return Path(__file__).resolve().parent / "data" / CLUSTERS_FILE


def _precisions(prec_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    if covariance_type == "full":
        return np.einsum("kij,klj->kil", prec_chol, prec_chol)
    if covariance_type == "tied":
        return prec_chol @ prec_chol.T
    return prec_chol**2


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


# --------------------------------------------------------------------------------------
# a toy data set for tests and timing (not physics)
# --------------------------------------------------------------------------------------
def write_toy_dataset(
    directory: str | os.PathLike,
    n_spectra: int = 1024,
    n_shards: int = 2,
    n_responses: int = 8,
    seed: int = 0,
    input_grid: EnergyGrid = INPUT_GRID,
    model_grid: EnergyGrid = MODEL_GRID,
    log_flux_range: tuple[float, float] = (-5.0, -3.0),
) -> Path:
    """Write a small synthetic training set in the shard format (for tests and timing).

    Responses are smooth effective-area curves with Gaussian energy redistribution;
    sources are absorbed power laws and blackbodies of three toy classes; counts are
    Poisson with a flat background. The physics is deliberately crude.

    Parameters
    ----------
    directory : path-like
        Folder to write ``responses.npz`` and ``shard_00000.npz``, ... into (the layout
        of :func:`sherpa_latent.simulate.simulate_shards`, without a manifest).
    n_spectra, n_shards, n_responses : int
    seed : int
    input_grid, model_grid : EnergyGrid
    log_flux_range : tuple of float
        Range of log10 0.5-7 keV photon flux, photons/cm^2/s.

    Returns
    -------
    Path
        The folder.
    """
    from scipy.special import ndtr

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    e = model_grid.mid
    lo_in, hi_in = input_grid.lo, input_grid.hi
    resp = np.empty((n_responses, input_grid.nbins, model_grid.nbins), np.float32)
    for r in range(n_responses):
        peak = rng.uniform(1.0, 2.0)
        a0 = rng.uniform(150.0, 600.0)
        cut = rng.uniform(0.3, 0.6)
        area = a0 * np.exp(-0.5 * (np.log(e / peak) / 0.9) ** 2) * (1 - np.exp(-((e / cut) ** 3)))
        sig = 0.04 + 0.05 * np.sqrt(e)
        prob = ndtr((hi_in[:, None] - e[None, :]) / sig) - ndtr((lo_in[:, None] - e[None, :]) / sig)
        resp[r] = (prob * area[None, :]).astype(np.float32)
    # effective area per input bin: the ARF at the bin centre (no redistribution)
    e_in = input_grid.mid
    area_in = np.stack([np.interp(e_in, e, resp[r].sum(0)) for r in range(n_responses)])
    ResponseLibrary(
        names=tuple(f"toy-{r:04d}" for r in range(n_responses)),
        kinds=("synthetic",) * n_responses,
        epochs=np.full(n_responses, 2010.0),
        response=resp,
        effective_area=area_in,
        input_grid=input_grid.to_dict(),
        model_grid=model_grid.to_dict(),
        details=("toy response (sherpa_latent.train.write_toy_dataset)",) * n_responses,
    ).save(directory / LIBRARY_FILE, clobber=True)

    band = (
        np.clip(np.minimum(model_grid.hi, 7.0) - np.maximum(model_grid.lo, 0.5), 0, None)
        / model_grid.width
    )
    cls = rng.integers(0, 3, n_spectra)
    log_nh = np.where(
        cls == 1, rng.uniform(22.0, 23.0, n_spectra), rng.uniform(20.0, 22.0, n_spectra)
    )
    param = np.where(
        cls == 0,
        rng.uniform(1.5, 2.3, n_spectra),
        np.where(cls == 1, rng.uniform(0.5, 1.5, n_spectra), rng.uniform(0.1, 0.5, n_spectra)),
    )
    log_flux = rng.uniform(*log_flux_range, n_spectra)
    exposure = np.exp(rng.uniform(np.log(5e3), np.log(1e5), n_spectra))
    rid = rng.integers(0, n_responses, n_spectra)
    sigma_abs = 2.0e-22 * e ** (-8.0 / 3.0)
    shape = np.where(
        cls[:, None] == 2,
        e[None, :] ** 2 / np.expm1(np.clip(e[None, :] / param[:, None], None, 500)),
        e[None, :] ** (-param[:, None]),
    )
    shape = shape * np.exp(-(10.0 ** log_nh[:, None]) * sigma_abs[None, :]) * model_grid.width
    flux = shape / (shape @ band)[:, None] * (10.0**log_flux)[:, None]
    src = exposure[:, None] * np.einsum("nij,nj->ni", resp[rid], flux)
    bkg_scale = np.full(n_spectra, 0.1)
    bkg_rate = rng.uniform(0.0, 2e-5, n_spectra)[:, None] * area_in[rid] / 300.0
    bkg_true = bkg_rate * exposure[:, None]
    bkg_region = rng.poisson(bkg_true / bkg_scale[:, None])
    background = bkg_scale[:, None] * bkg_region
    counts = rng.poisson(src + bkg_true)
    net = counts.sum(1) - background.sum(1)
    for s, rows in enumerate(np.array_split(np.arange(n_spectra), n_shards)):
        np.savez(
            directory / f"shard_{s:05d}.npz",
            counts=counts[rows].astype(np.float32),
            background=background[rows].astype(np.float32),
            exposure=exposure[rows].astype(np.float32),
            response_id=rid[rows].astype(np.int32),
            class_id=cls[rows].astype(np.int16),
            log_nh=log_nh[rows].astype(np.float32),
            param=param[rows].astype(np.float32),
            log_flux=log_flux[rows].astype(np.float32),
            net_counts=net[rows].astype(np.float32),
            bkg_scale=bkg_scale[rows].astype(np.float32),
        )
    return directory


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sherpa_latent.train recipe.toml [--max-steps N] [--clobber] ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m sherpa_latent.train", description="Train the sherpa_latent autoencoder."
    )
    parser.add_argument("recipe", help="TOML training recipe")
    parser.add_argument("--output-dir", help="override output_dir")
    parser.add_argument("--max-steps", type=int, help="override max_steps")
    parser.add_argument("--epochs", type=int, help="override epochs")
    parser.add_argument("--device", help="auto, cpu or cuda")
    parser.add_argument("--clobber", action="store_true", help="overwrite a finished network")
    parser.add_argument("--no-resume", action="store_true", help="ignore a checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    config = TrainConfig.from_toml(args.recipe)
    overrides = {
        "output_dir": args.output_dir,
        "max_steps": args.max_steps,
        "epochs": args.epochs,
        "device": args.device,
    }
    for key, value in overrides.items():
        if value is not None:
            setattr(config, key, value)
    config.clobber = config.clobber or args.clobber
    config.resume = config.resume and not args.no_resume
    config.progress = config.progress and not args.no_progress
    argv_list = list(sys.argv if argv is None else ["sherpa_latent.train", *argv])
    try:
        result = train(config, command_line=" ".join(argv_list))
    except (FileExistsError, FileNotFoundError, ValueError, NetworkFileError) as exc:
        print(f"sherpa_latent.train: {exc}", file=sys.stderr)
        return 1
    print(f"network: {result.network_path}")
    if result.clusters_path:
        print(f"clusters: {result.clusters_path}")
    print(json.dumps(result.metrics, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
