"""Training of the latent autoencoder, its checkpoints, and the cluster model.

The ``[train]`` table of a recipe (``sherpa-latent train recipe.toml``, see
:mod:`sherpa_latent.training.recipe`) holds :class:`TrainConfig` keys, with a ``[network]``
table of :class:`~sherpa_latent.network.NetworkConfig` keys. Training reads dataset shards
(``.npz`` files of simulated spectra that point into a response library by
``response_id``), gathers each batch's projected responses on the device, and minimises
the C-statistic of the folded decoder output plus the KL terms and the N_H term
(:func:`~sherpa_latent.network.autoencoder_loss`). Every epoch it appends metrics to
``metrics.jsonl`` and writes a checkpoint; an interrupted run continues from the last
checkpoint. At the end a Gaussian mixture is fitted to the training latent means
(:func:`~sherpa_latent.clusters.fit_clusters`) and the network and cluster model are
written without pickle.

Under ``torchrun`` (one process per rank, the torchrun environment variables set) the
same call trains with :class:`torch.nn.parallel.DistributedDataParallel`: gloo on the
CPU, NCCL on CUDA. Each rank takes its own slice, ``batch_size / world_size`` spectra, of
every batch that one process would take (see
:func:`~sherpa_latent.training.shards.shard_batches`) and the same slice of that batch's
sampling noise, so that N ranks train as one process with the recipe's batch does, up to
rounding. The validation metrics are gathered from every rank; rank 0 alone writes the
checkpoints, the metrics, the cluster model and the network while the others wait.
Without the torchrun variables it is the plain single process, with nothing to start by
hand.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file as _st_load_torch
from safetensors.torch import save as _st_save_torch

from ..clusters import CLUSTERS_FILE, fit_clusters
from ..errors import NetworkFileError
from ..fileio import atomic_output, sha256_file
from ..network import (
    LatentAutoencoder,
    NetworkConfig,
    anomaly_score,
    autocast_context,
    autoencoder_loss,
    batch_to_tensors,
    cstat,
    encode_batch,
    predicted_counts,
    resolve_device,
    save_network,
    used_bins,
)
from ..weightsfile import sidecar_path
from .response_library import ResponseLibrary
from .shards import (
    TRAINING_KEYS,
    find_shards,
    library_path,
    rank_range,
    shard_batches,
    shard_sizes,
    split_rows,
)

__all__ = [
    "TrainConfig",
    "TrainResult",
    "DistributedRun",
    "distributed_run",
    "train",
    "check_world_size",
    "validation_metrics",
    "response_bank",
    "learning_rate_at",
    "beta_at",
    "NETWORK_FILE",
]

CHECKPOINT_WEIGHTS = "checkpoint.safetensors"
CHECKPOINT_NEXT = "checkpoint.next.safetensors"
CHECKPOINT_STATE = "checkpoint_state.pt"
METRICS_FILE = "metrics.jsonl"
NETWORK_FILE = "network.safetensors"


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
# several processes (torchrun)
# --------------------------------------------------------------------------------------
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""Environment variables that ``torchrun`` sets for each process it starts."""

_WAIT_TIMEOUT = timedelta(days=2)
"""How long a rank waits at a barrier for rank 0 (simulating, fitting clusters)."""

_PASSED_ON = {
    "FileExistsError": FileExistsError,
    "FileNotFoundError": FileNotFoundError,
    "ValueError": ValueError,
}
"""Errors of rank 0 that the other ranks raise as the same type (others: RuntimeError)."""


@dataclass(frozen=True)
class DistributedRun:
    """This process's place in a distributed run (rank 0 of 1 without ``torchrun``).

    Parameters
    ----------
    rank : int
        Global rank (0-based).
    world_size : int
        Number of ranks in all, over every node.
    local_rank : int
        Rank on this node (the CUDA device index).
    backend : str or None
        ``"gloo"`` or ``"nccl"``; None for a plain single process.
    control : object, optional
        The gloo process group that carries barriers and Python objects (default: the
        default group).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    control: Any = None

    @property
    def enabled(self) -> bool:
        """Whether a torch.distributed process group is in use."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that writes files."""
        return self.rank == 0

    def device(self, device: str | torch.device = "auto") -> torch.device:
        """The torch device of this rank: the CUDA device ``local_rank`` under NCCL."""
        dev = resolve_device(device)
        if self.enabled and dev.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return dev

    def gather(self, obj: Any) -> list:
        """``obj`` of every rank, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.control)
        return out

    def on_main(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on rank 0 only; every rank gets its result (or its error).

        The other ranks wait (a barrier) while rank 0 works, so that nothing runs twice
        at the same time on the same files.
        """
        if not self.enabled:
            return fn(*args, **kwargs)
        payload: list = [None]
        if self.is_main:
            try:
                payload[0] = ("ok", fn(*args, **kwargs))
            except BaseException as exc:
                message = " ".join(str(exc).split()) or type(exc).__name__
                dist.broadcast_object_list(
                    [("error", (type(exc).__name__, message))], src=0, group=self.control
                )
                raise
        dist.broadcast_object_list(payload, src=0, group=self.control)
        status, value = payload[0]
        if status == "error":
            name, message = value
            raise _PASSED_ON.get(name, RuntimeError)(f"{message} (on rank 0)")
        return value


_ACTIVE: list[DistributedRun] = []


@contextmanager
def distributed_run(device: str | torch.device = "auto") -> Iterator[DistributedRun]:
    """The distributed run this process belongs to, set up from ``torchrun``'s variables.

    Without the variables (:data:`TORCHRUN_VARIABLES`) it yields a plain single process
    (rank 0 of 1) and starts nothing. With them it initialises the default process group
    from the environment (``env://``): NCCL when ``device`` resolves to CUDA (this rank
    then uses CUDA device ``LOCAL_RANK``), gloo otherwise, plus a gloo group for barriers
    and small Python objects; the groups are destroyed on the way out. Nested uses, and a
    process group that the caller set up, are reused as they are.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"} or torch.device
        The training device; it decides the backend.

    Yields
    ------
    DistributedRun
    """
    if _ACTIVE:
        yield _ACTIVE[-1]
        return
    if dist.is_available() and dist.is_initialized():
        world = dist.get_world_size()
        rank = dist.get_rank()
        local = int(os.environ.get("LOCAL_RANK", rank))
        yield DistributedRun(rank, world, local, str(dist.get_backend()), None)
        return
    if any(k not in os.environ for k in TORCHRUN_VARIABLES):
        yield DistributedRun()
        return
    if not dist.is_available():  # every rank would otherwise train alone on the same files
        raise RuntimeError("started by torchrun, but this torch has no torch.distributed")
    local = int(os.environ["LOCAL_RANK"])
    backend = "nccl" if resolve_device(device).type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend, init_method="env://")
    try:
        control = dist.new_group(backend="gloo", timeout=_WAIT_TIMEOUT)
        run = DistributedRun(dist.get_rank(), dist.get_world_size(), local, backend, control)
        _ACTIVE.append(run)
        try:
            yield run
        finally:
            _ACTIVE.pop()
    finally:
        dist.destroy_process_group()


class _SharedNoise(torch.nn.Module):
    """The autoencoder's forward for one rank, with the sampling noise of the whole batch.

    Every rank keeps the same random state as one process would, draws the noise of the
    whole global batch (as :meth:`LatentAutoencoder.forward` draws it for a batch of that
    size) and uses its own slice, so that N ranks reproduce one process step by step.
    ``tests/test_ddp.py`` checks that this is :meth:`LatentAutoencoder.forward`.
    """

    def __init__(self, model: LatentAutoencoder) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, batch: Mapping[str, torch.Tensor], sample: bool, rows: tuple[int, int, int]
    ) -> dict:
        """``rows`` is (start, stop, size): this rank's slice of a global batch of ``size``."""
        model = self.model
        out = model.encode(
            batch["counts"], batch["background"], batch["effective_area"], batch["exposure"]
        )
        z, log_norm = out["z_mean"], out["log_norm_mean"]
        if sample:
            start, stop, size = rows
            eps_z = torch.randn((size, *z.shape[1:]), dtype=z.dtype, device=z.device)
            eps_n = torch.randn(
                (size, *log_norm.shape[1:]), dtype=log_norm.dtype, device=log_norm.device
            )
            z = z + torch.exp(0.5 * out["z_logvar"]) * eps_z[start:stop]
            log_norm = log_norm + torch.exp(0.5 * out["log_norm_logvar"]) * eps_n[start:stop]
        out["z"], out["log_norm"] = z, log_norm
        out["flux"] = model.decode(z, log_norm)
        return out


def _merge_sums(run: DistributedRun, state: dict) -> tuple[dict[str, float], int]:
    """Sum the training-loss sums of every rank into rank 0's state (others restart at 0)."""
    if run.world_size == 1:
        return dict(state["sums"]), int(state["n_sum"])
    parts = run.gather((state["sums"], state["n_sum"]))
    sums: dict[str, float] = {}
    for part, _ in parts:
        for k, v in part.items():
            sums[k] = sums.get(k, 0.0) + v
    n_sum = int(sum(n for _, n in parts))
    state["sums"], state["n_sum"] = (dict(sums), n_sum) if run.is_main else ({}, 0)
    return sums, n_sum


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
def response_bank(
    library: ResponseLibrary | str | os.PathLike,
    device: torch.device | str = "cpu",
    network: NetworkConfig | None = None,
) -> dict[str, torch.Tensor]:
    """The response library as float32 tensors on a device.

    Parameters
    ----------
    library : ResponseLibrary or path-like
        The library, or its ``.npz`` file (read by :meth:`ResponseLibrary.load`).
    device : torch.device or str
    network : NetworkConfig, optional
        Check that the library's grids are the network's.

    Returns
    -------
    dict of Tensor
        ``response`` (n_resp, n_in, n_model) and ``effective_area`` (n_resp, n_in), cm^2,
        and ``used`` (rows of R with any area, bool), on ``device``.
    """
    if not isinstance(library, ResponseLibrary):
        library = ResponseLibrary.load(library)
    if network is not None:
        for key in ("input_grid", "model_grid"):
            have, want = getattr(library, key), getattr(network, key)
            if have != want:
                raise ValueError(f"library {key} {have} is not the network's {want}")
    dev = torch.device(device)
    resp = torch.from_numpy(np.array(library.response, dtype=np.float32))
    return {
        "response": resp.to(dev),
        "effective_area": torch.from_numpy(np.array(library.effective_area)).to(dev),
        "used": (resp.sum(-1) > 0).to(dev),
    }


# --------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------
def _forward(
    model: LatentAutoencoder,
    batch: dict[str, np.ndarray],
    bank: dict[str, torch.Tensor],
    *,
    beta: float,
    nh_weight: float,
    sample: bool = False,
    module: torch.nn.Module | None = None,
    rows: tuple[int, int, int] | None = None,
) -> tuple[dict, dict, torch.Tensor, dict]:
    """One batch through the network and the loss: (tensors, outputs, loss, components).

    In a distributed run ``module`` is the DistributedDataParallel wrapper of a
    :class:`_SharedNoise` around ``model`` and ``rows`` this rank's slice of the global
    batch, ``(start, stop, size)``.
    """
    tb = batch_to_tensors(batch, model.device, bank)
    with autocast_context(model.device):
        if module is None:
            out = model(tb, sample=sample)
        else:
            out = module(tb, sample, rows)
    loss, comps = autoencoder_loss(
        out,
        tb,
        beta=beta,
        nh_weight=nh_weight,
        log_norm_prior=model.config.log_norm_prior,
        n_params=model.config.latent_dim + 1,
    )
    return tb, out, loss, comps


def validation_metrics(
    model: LatentAutoencoder,
    batches: Iterator[Mapping[str, np.ndarray]],
    bank: Mapping[str, torch.Tensor],
    *,
    nh_weight: float = 1.0,
    gather: Callable[[Any], list] | None = None,
) -> dict[str, float]:
    """Validation metrics with the posterior means (no sampling).

    Parameters
    ----------
    model : LatentAutoencoder
    batches : iterator of dict of ndarray
        Validation batches (in a distributed run, this rank's part).
    bank : mapping of Tensor
        The response library on the model's device (see :func:`response_bank`).
    nh_weight : float
        Weight of the N_H term in ``loss``.
    gather : callable, optional
        In a distributed run, :meth:`DistributedRun.gather`: every rank's sums and
        per-spectrum values are collected, so that every rank returns the metrics of the
        whole validation set (the same numbers one process gets from all its batches).

    Returns
    -------
    dict of float
        Means per spectrum of ``loss`` (beta = 1), ``cstat``, ``kl_z``, ``kl_norm``,
        ``nh_nll``; medians of ``cstat_dof`` and ``anomaly``; ``nh_mae`` (dex);
        ``nh_coverage68`` and ``nh_coverage95`` (fraction of true log N_H within 1 and
        1.96 sigma); ``n`` spectra.
    """
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    per: dict[str, list[np.ndarray]] = {"cstat_dof": [], "anomaly": [], "nh_err": [], "nh_sig": []}
    n = 0
    n_params = model.config.latent_dim + 1
    try:
        with torch.inference_mode():
            for batch in batches:
                tb, out, _, comps = _forward(model, batch, bank, beta=1.0, nh_weight=nh_weight)
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
    part = (sums, n, {k: np.concatenate(v) if v else None for k, v in per.items()})
    parts = [part] if gather is None else gather(part)
    sums, n = {}, 0
    for part_sums, part_n, _ in parts:
        n += part_n
        for k, v in part_sums.items():
            sums[k] = sums.get(k, 0.0) + v
    values = {
        k: np.concatenate([p[2][k] for p in parts if p[2][k] is not None])
        for k in per
        if any(p[2][k] is not None for p in parts)
    }
    if n == 0:
        return {"n": 0}
    res = {k: v / n for k, v in sums.items()}
    res["cstat_dof_median"] = float(np.median(values["cstat_dof"]))
    res["anomaly_median"] = float(np.median(values["anomaly"]))
    if "nh_err" in values:
        err = np.abs(values["nh_err"])
        sig = values["nh_sig"]
        res["nh_mae"] = float(np.mean(err))
        res["nh_coverage68"] = float(np.mean(err <= sig))
        res["nh_coverage95"] = float(np.mean(err <= 1.96 * sig))
    res["n"] = n
    return res


# --------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------
def _save_checkpoint(
    out_dir: Path,
    model: LatentAutoencoder,
    optimizer,
    state: dict,
    run: DistributedRun | None = None,
) -> None:
    """Weights to safetensors, optimiser and counters to our own torch file.

    The new weights go to ``checkpoint.next.safetensors``, then the state (which names
    their SHA-256), and only then do the weights take the place of
    ``checkpoint.safetensors``: a process killed at any point leaves a state whose weights
    are on disk. In a distributed run every rank calls it at the same step: the
    training-loss sums of the ranks are added up, and rank 0 alone writes.
    """
    run = run or DistributedRun()
    if run.world_size > 1:
        _merge_sums(run, state)
    if not run.is_main:
        return
    weights = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    blob = _st_save_torch(weights)
    with atomic_output(out_dir / CHECKPOINT_NEXT) as tmp:
        tmp.write_bytes(blob)
    full = dict(state)
    full["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    full["optimizer"] = optimizer.state_dict()
    full["torch_rng"] = torch.get_rng_state()
    if torch.cuda.is_available():
        full["cuda_rng"] = torch.cuda.get_rng_state_all()
    if model.device.type == "cuda":
        full["device_rng"] = torch.cuda.get_rng_state(model.device)
    full["world_size"] = run.world_size
    with atomic_output(out_dir / CHECKPOINT_STATE) as tmp:
        torch.save(full, tmp)
    os.replace(out_dir / CHECKPOINT_NEXT, out_dir / CHECKPOINT_WEIGHTS)


def _load_checkpoint(
    out_dir: Path,
    model: LatentAutoencoder,
    optimizer,
    config: TrainConfig,
    run: DistributedRun | None = None,
) -> dict:
    """Restore a checkpoint written by :func:`_save_checkpoint` (weights_only load).

    Every rank of a distributed run loads the same checkpoint, random state included (the
    ranks share one random state, that of one process), whatever the number of ranks
    that made it; only rank 0 keeps the training-loss sums of the epoch in progress.
    """
    run = run or DistributedRun()
    state_path = out_dir / CHECKPOINT_STATE
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    _check_resumable(state.get("config", "{}"), config)
    # the weights the state names: in place, or still beside it when the run was stopped
    # between writing the state and moving the weights into place
    weights_path = out_dir / CHECKPOINT_WEIGHTS
    for candidate in (out_dir / CHECKPOINT_WEIGHTS, out_dir / CHECKPOINT_NEXT):
        if candidate.is_file() and sha256_file(candidate) == state.get("weights_sha256"):
            weights_path = candidate
            break
    else:
        raise NetworkFileError(
            str(weights_path), "checkpoint weights do not match the checkpoint state"
        )
    model.load_state_dict(_st_load_torch(str(weights_path), device=str(model.device)))
    optimizer.load_state_dict(state.pop("optimizer"))
    torch.set_rng_state(state.pop("torch_rng"))
    cuda_rng = state.pop("cuda_rng", None)
    device_rng = state.pop("device_rng", None)
    state.pop("world_size", None)
    if run.world_size == 1:
        if cuda_rng is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_rng)
    elif device_rng is not None and model.device.type == "cuda":
        torch.cuda.set_rng_state(device_rng, model.device)
    if not run.is_main:
        state["sums"], state["n_sum"] = {}, 0
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
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(keep) + "\n" if keep else "", encoding="utf-8")


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

    Under ``torchrun`` every rank calls it (see :func:`distributed_run`): the model is
    wrapped in DistributedDataParallel, each rank takes its slice of
    ``batch_size / world_size`` spectra of every batch, and rank 0 writes every file.

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
        The same on every rank.

    Raises
    ------
    ValueError
        ``batch_size`` is not a multiple of the number of ranks, or a checkpoint in
        ``output_dir`` was made with other settings.
    FileExistsError
        A finished network is in ``output_dir`` and ``clobber`` is not set.
    """
    threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(int(config.num_threads))
    try:
        with distributed_run(config.device) as run:
            return _train(config, command_line, stop_after_steps, run)
    finally:
        torch.set_num_threads(threads)


def check_world_size(batch_size: int, world_size: int) -> None:
    """Refuse a global batch that does not divide evenly among the ranks.

    Raises
    ------
    ValueError
        One line saying so.
    """
    if world_size > 1 and batch_size % world_size:
        raise ValueError(
            f"batch_size {batch_size} does not divide among {world_size} ranks; make it a "
            f"multiple of {world_size} (each rank takes batch_size / {world_size} spectra "
            "a step)"
        )


def _prepare_output(config: TrainConfig) -> dict:
    """Clobber and resume decisions on the output folder (rank 0: it may delete files)."""
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
    resume = (out_dir / CHECKPOINT_STATE).exists() and config.resume and not start_over
    if not resume and metrics_path.exists():
        if not config.clobber:
            raise FileExistsError(
                f"{metrics_path}: file exists; resume, or set clobber = true to start over"
            )
        metrics_path.unlink()
    return {"resume": resume}


def _train(
    config: TrainConfig,
    command_line: str | None,
    stop_after_steps: int | None,
    run: DistributedRun,
) -> TrainResult:
    device = run.device(config.device)
    world, rank = run.world_size, run.rank
    bs = config.batch_size
    check_world_size(bs, world)
    rank_bs = bs // world
    out_dir = Path(config.output_dir)
    net_path, clu_path = out_dir / NETWORK_FILE, out_dir / CLUSTERS_FILE
    metrics_path = out_dir / METRICS_FILE
    plan = run.on_main(_prepare_output, config)

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
    bank = response_bank(library, device, network=config.network)
    sizes = shard_sizes(train_paths)
    n_train = sum(len(split_rows(s, train_split, vfrac)) for s in sizes)
    val_sizes = sizes if val_paths is train_paths else shard_sizes(val_paths)
    n_val = sum(len(split_rows(s, val_split, vfrac)) for s in val_sizes)
    if n_train == 0:
        raise ValueError(f"{config.data_dir}: no training spectra")
    if n_train < world:
        raise ValueError(f"{config.data_dir}: {n_train} training spectra for {world} ranks")
    drop_last = n_train >= bs
    steps_per_epoch = n_train // bs if drop_last else 1
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, int(config.max_steps))
    # one short batch when there are fewer spectra than a batch: its slices may differ by
    # one, so each rank's mean loss is weighted by its share to keep the global mean
    global_rows = bs if drop_last else n_train
    cache: dict | None = {} if config.cache_shards else None

    # model and optimiser ------------------------------------------------------------------
    torch.manual_seed(config.seed)
    model = LatentAutoencoder(config.network).to(device)
    net: torch.nn.Module | None = None
    rows = (0, global_rows, global_rows)
    if run.enabled:
        from torch.nn.parallel import DistributedDataParallel

        # The constructor also copies rank 0's weights to every rank; the buffers are
        # constants. Every rank keeps the random state of one process (seeded alike).
        net = DistributedDataParallel(
            _SharedNoise(model),
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,
        )
        rows = (*rank_range(global_rows, rank, world), global_rows)
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
        "resumed_at_steps": [],
        "config": json.dumps(_jsonable_config(config)),
    }
    if plan["resume"]:
        loaded = _load_checkpoint(out_dir, model, optimizer, config, run)
        state.update(loaded)
        state["config"] = json.dumps(_jsonable_config(config))
        state["resumed_at_steps"] = [*state.get("resumed_at_steps", []), state["global_step"]]
        if run.is_main:
            _trim_metrics(metrics_path, state["global_step"])
            print(
                f"{out_dir}: resuming from the checkpoint at step {state['global_step']} "
                f"of {total_steps} (epoch {state['epoch'] + 1})",
                file=sys.stderr,
                flush=True,
            )

    def lr_beta(step: int) -> tuple[float, float]:
        return learning_rate_at(step, total_steps, config), beta_at(step, total_steps, config)

    from tqdm.auto import tqdm

    pbar = tqdm(
        total=total_steps,
        initial=state["global_step"],
        disable=not config.progress or not run.is_main,
        unit="step",
        dynamic_ncols=True,
        desc="training" if world == 1 else f"training ({world} ranks)",
    )
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

    def checkpoint() -> None:
        state["elapsed_s"] = time.perf_counter() - t_start
        _save_checkpoint(out_dir, model, optimizer, state, run)

    def end_epoch() -> None:
        nonlocal finished_epochs
        flush(lr_beta(max(0, state["global_step"] - 1))[1])
        sums, n_sum = _merge_sums(run, state)
        train_metrics = {k: v / max(1, n_sum) for k, v in sums.items()}
        val_iter = shard_batches(
            val_paths,
            max(bs, 1024),
            split=val_split,
            val_fraction=vfrac,
            shuffle=False,
            cache=cache,
            limit=config.max_val_spectra,
            rank=rank,
            world_size=world,
        )
        val_metrics = validation_metrics(
            model,
            val_iter,
            bank,
            nh_weight=config.nh_weight,
            gather=run.gather if world > 1 else None,
        )
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
        if run.is_main:
            _append_metrics(metrics_path, record)
            pbar.write(_format_epoch(record))
        state["epoch"] += 1
        state["step_in_epoch"] = 0
        state["sums"], state["n_sum"] = {}, 0
        finished_epochs = state["epoch"]
        checkpoint()

    model.train()
    try:
        while state["global_step"] < total_steps:
            batches = shard_batches(
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
                rank=rank,
                world_size=world,
            )
            for batch in batches:
                if state["global_step"] >= total_steps or state["step_in_epoch"] >= steps_per_epoch:
                    break
                lr, beta = lr_beta(state["global_step"])
                for group in optimizer.param_groups:
                    group["lr"] = lr
                tb, _, loss, comps = _forward(
                    model,
                    batch,
                    bank,
                    beta=beta,
                    nh_weight=config.nh_weight,
                    sample=True,
                    module=net,
                    rows=rows,
                )
                if net is not None and global_rows % world:
                    loss = loss * ((rows[1] - rows[0]) * world / global_rows)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # under DDP the gradients are averaged over the ranks here
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
                    checkpoint()
                if stop_after_steps is not None and state["global_step"] >= stop_after_steps:
                    stopped = True
                    break
            if stopped:
                if state["step_in_epoch"] >= steps_per_epoch:
                    end_epoch()
                else:
                    flush(0.0)
                    checkpoint()
                break
            end_epoch()
    except KeyboardInterrupt:
        pbar.close()
        if world == 1:  # the ranks of a run stop at different points: keep the last one
            flush(0.0)
            checkpoint()
        raise
    pbar.close()
    if stopped and state["global_step"] < total_steps:
        return TrainResult(out_dir, None, None, {}, finished_epochs, state["global_step"], False)

    # clusters and the final network (rank 0; the others wait) ---------------------------------
    def finish() -> tuple[Path, Path | None, dict]:
        final_val = _last_metrics(metrics_path).get("val", {})
        metrics: dict[str, Any] = dict(final_val)
        meta_clusters = None
        clusters_path = None
        if config.n_clusters > 0:
            tr_iter = shard_batches(
                train_paths,
                2048,
                split=train_split,
                val_fraction=vfrac,
                shuffle=False,
                cache=cache,
                limit=config.max_cluster_spectra,
                keys=TRAINING_KEYS,
            )
            z, cls = _latents(model, tr_iter, bank)
            n_comp = min(config.n_clusters, len(z))
            clusters = fit_clusters(
                z, cls, n_comp, config.seed, class_names=config.network.class_names
            )
            val_iter = shard_batches(
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
                "world_size": world,
                "backend": run.backend,
                "batch_per_rank": rank_bs,
                "resumed_at_steps": list(state["resumed_at_steps"]),
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
        return network_path, clusters_path, metrics

    network_path, clusters_path, metrics = run.on_main(finish)
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
