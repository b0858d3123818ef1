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
"""

from __future__ import annotations

import json
import math
import os
import time
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
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
from .shards import TRAINING_KEYS, find_shards, library_path, shard_batches, shard_sizes, split_rows

__all__ = [
    "TrainConfig",
    "TrainResult",
    "train",
    "validation_metrics",
    "response_bank",
    "learning_rate_at",
    "beta_at",
    "NETWORK_FILE",
]

CHECKPOINT_WEIGHTS = "checkpoint.safetensors"
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
) -> tuple[dict, dict, torch.Tensor, dict]:
    """One batch through the network and the loss: (tensors, outputs, loss, components)."""
    tb = batch_to_tensors(batch, model.device, bank)
    with autocast_context(model.device):
        out = model(tb, sample=sample)
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
    with atomic_output(out_dir / CHECKPOINT_WEIGHTS) as tmp:
        tmp.write_bytes(_st_save_torch(weights))
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
    bank = response_bank(library, device, network=config.network)
    sizes = shard_sizes(train_paths)
    n_train = sum(len(split_rows(s, train_split, vfrac)) for s in sizes)
    val_sizes = sizes if val_paths is train_paths else shard_sizes(val_paths)
    n_val = sum(len(split_rows(s, val_split, vfrac)) for s in val_sizes)
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
        val_iter = shard_batches(
            val_paths,
            max(bs, 1024),
            split=val_split,
            val_fraction=vfrac,
            shuffle=False,
            cache=cache,
            limit=config.max_val_spectra,
        )
        val_metrics = validation_metrics(model, val_iter, bank, nh_weight=config.nh_weight)
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
            )
            for batch in batches:
                if state["global_step"] >= total_steps or state["step_in_epoch"] >= steps_per_epoch:
                    break
                lr, beta = lr_beta(state["global_step"])
                for group in optimizer.param_groups:
                    group["lr"] = lr
                tb, _, loss, comps = _forward(
                    model, batch, bank, beta=beta, nh_weight=config.nh_weight, sample=True
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
        clusters = fit_clusters(z, cls, n_comp, config.seed, class_names=config.network.class_names)
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
