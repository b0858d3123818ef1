"""Training with DistributedDataParallel on the CPU: one process, and torchrun with 1 and 2 ranks.

``python -m benchmarks.scaling_ddp SHARDS WORK [--steps 200] [--batch-size 64]`` trains the
same small network on the same shards for the same number of steps with the same global
batch three ways: ``sherpa-latent train recipe.toml`` (one plain process), and
``torchrun --standalone --nproc_per_node=N --no-python sherpa-latent train recipe.toml``
with N = 1 and 2 (gloo), each rank one thread. It prints one JSON object: training steps
per second and spectra per second (from the run's own ``metrics.jsonl``: steps over the
training loop's wall time, which includes one small validation), the whole command's wall
time, and the final validation loss of each, with the relative change of the 2-rank loss
from the one-process loss.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent

SMALL_NETWORK = {
    "d_model": 32,
    "n_layers": 2,
    "n_heads": 2,
    "ff_dim": 64,
    "decoder_widths": [128],
}
"""The network trained: small, so that 200 steps take seconds on one core."""


def _recipe(shards: Path, steps: int, batch_size: int, max_val: int, seed: int) -> str:
    net = "\n".join(f"{k} = {json.dumps(v)}" for k, v in SMALL_NETWORK.items())
    return f"""work_dir = "work"

[train]
data_dir = {json.dumps(str(shards.resolve()))}
val_fraction = 0.05
epochs = 1000
max_steps = {steps}
batch_size = {batch_size}
learning_rate = 2e-3
num_threads = 1
device = "cpu"
progress = false
n_clusters = 0
max_val_spectra = {max_val}
seed = {seed}

[train.network]
{net}
"""


def _command(ranks: int | None) -> list[str]:
    if ranks is None:
        return [str(BIN / "sherpa-latent"), "train", "recipe.toml"]
    return [
        str(BIN / "torchrun"),
        "--standalone",
        f"--nproc_per_node={ranks}",
        "--no-python",
        "sherpa-latent",
        "train",
        "recipe.toml",
    ]


def ddp_point(
    shards: str | os.PathLike,
    folder: str | os.PathLike,
    ranks: int | None,
    *,
    steps: int = 200,
    batch_size: int = 64,
    max_val: int = 1024,
    seed: int = 0,
) -> dict:
    """Train once, in a fresh ``folder`` (removed first), and return its numbers.

    Parameters
    ----------
    shards : path-like
        Shard folder (with its response library).
    folder : path-like
        Where the recipe and the run go.
    ranks : int or None
        torchrun ranks (gloo); None for one plain process.
    steps, batch_size : int
        Optimiser steps, and the global batch (spectra per step over all ranks).
    max_val : int
        Validation spectra.
    seed : int
        The recipe's seed.
    """
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "recipe.toml").write_text(
        _recipe(Path(shards), steps, batch_size, max_val, seed), encoding="utf-8"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "1"
    start = time.perf_counter()
    done = subprocess.run(
        _command(ranks), cwd=folder, env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"DDP point ranks={ranks} failed: {done.stderr.strip()[-2000:]}")
    lines = (folder / "work" / "network" / "metrics.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    steps_per_s = last["step"] / last["time_s"]
    return {
        "way": "one process"
        if ranks is None
        else f"torchrun, {ranks} rank{'s' if ranks > 1 else ''}",
        "ranks": 1 if ranks is None else ranks,
        "torchrun": ranks is not None,
        "steps": last["step"],
        "batch_size": batch_size,
        "batch_per_rank": batch_size // (ranks or 1),
        "threads_per_rank": 1,
        "training_seconds": last["time_s"],
        "steps_per_s": steps_per_s,
        "samples_per_s": steps_per_s * batch_size,
        "command_seconds": wall,
        "val_loss": last["val"]["loss"],
        "val_n": last["val"]["n"],
    }


def ddp_scaling(
    shards: str | os.PathLike,
    work: str | os.PathLike,
    *,
    steps: int = 200,
    batch_size: int = 64,
    max_val: int = 1024,
) -> dict:
    """One plain process, then torchrun with 1 and 2 ranks; see the module's text."""
    work = Path(work)
    rows = [
        ddp_point(shards, work / name, ranks, steps=steps, batch_size=batch_size, max_val=max_val)
        for name, ranks in (("one_process", None), ("ranks_1", 1), ("ranks_2", 2))
    ]
    one, two = rows[0], rows[-1]
    return {
        "steps": steps,
        "batch_size": batch_size,
        "network": SMALL_NETWORK,
        "rows": rows,
        "val_loss_change_2_ranks": abs(two["val_loss"] - one["val_loss"]) / abs(one["val_loss"]),
        "speedup_2_ranks_over_1": two["steps_per_s"] / rows[1]["steps_per_s"],
    }


LOSS_MARK = 0.02
"""The issue's mark: 2 ranks reach one process's validation loss within 2%."""


def summary_rows(ddp: dict | None) -> list[str]:
    """Rows of the benchmark page's summary table."""
    if not ddp:
        return []
    change = ddp["val_loss_change_2_ranks"]
    return [
        f"| training, torchrun with 2 CPU ranks: validation loss after {ddp['steps']} steps "
        f"against one process (same global batch) | {100 * change:.2g}% | < "
        f"{100 * LOSS_MARK:g}% | {'yes' if change < LOSS_MARK else 'no'} |"
    ]


def section(ddp: dict | None) -> list[str]:
    """The page's section on training with DistributedDataParallel."""
    if not ddp:
        return []
    net = ", ".join(f"{k} {v}" for k, v in ddp["network"].items())
    lines = [
        "",
        "## Training on several processes (torchrun)",
        "",
        f"The same recipe ({ddp['steps']} steps, global batch {ddp['batch_size']}, a small "
        f"network: {net}) on the benchmark's simulated shards, three ways: "
        "`sherpa-latent train recipe.toml` in one process, and `torchrun --standalone "
        "--nproc_per_node=N --no-python sherpa-latent train recipe.toml` with N = 1 and 2 "
        "(DistributedDataParallel, gloo), one thread per rank. Steps per second are the "
        "run's own: steps over the training loop's wall time in `metrics.jsonl` (one small "
        "validation included); the command's time also counts start-up and the "
        "calibrations that follow training.",
        "",
        "| way | ranks | spectra per rank and step | steps/s | spectra/s | command (s) | "
        "validation loss |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in ddp["rows"]:
        lines.append(
            f"| {r['way']} | {r['ranks']} | {r['batch_per_rank']} | {r['steps_per_s']:.1f} | "
            f"{r['samples_per_s']:,.0f} | {r['command_seconds']:.1f} | {r['val_loss']:.4f} |"
        )
    lines += [
        "",
        f"2 ranks against 1 rank: {ddp['speedup_2_ranks_over_1']:.2f}x the steps per second. "
        f"Validation loss of 2 ranks against one process: relative change "
        f"{ddp['val_loss_change_2_ranks']:.1e} (the ranks take slices of one process's "
        "batches and of its sampling noise; docs/scaling.md).",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scaling_ddp", description=__doc__.split("\n")[0]
    )
    parser.add_argument("shards", type=Path, help="shard folder with its response library")
    parser.add_argument("work", type=Path, help="folder for the three runs")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-val", type=int, default=1024)
    args = parser.parse_args(argv)
    result = ddp_scaling(
        args.shards, args.work, steps=args.steps, batch_size=args.batch_size, max_val=args.max_val
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
