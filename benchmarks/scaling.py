"""Scaling: time and peak memory against the number of spectra, each size in a fresh process.

``python -m benchmarks.scaling files DIR N WORKERS`` encodes the first N spectrum files of
DIR end to end; ``python -m benchmarks.scaling shards DIR N BATCH`` streams the first N
spectra of a shard folder through the network. Each prints one JSON line: seconds, time
per spectrum, the peak resident memory of the process, and (for files) the peak of the
process and its workers together.
Running every size in its own process keeps the peak-memory figures independent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from .memory import TreeMemory, peak_rss_mib


def run_point(
    kind: str, folder: str | os.PathLike, n: int, extra: int, threads: int, device: str = "cpu"
) -> dict:
    """Run one scaling point in a new Python process and return its JSON result."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "benchmarks.scaling", kind, os.fspath(folder), str(n), str(extra)]
    cmd.append(device)
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"scaling point {kind} n={n} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _files_point(folder: Path, n: int, workers: int, device: str) -> dict:
    from sherpa_latent.inference import load_encoder

    from .speed import end_to_end

    paths = sorted(folder.glob("obs*/src*[0-9].pi"), key=lambda p: p.name)[:n]
    if len(paths) < n:
        raise RuntimeError(f"{folder}: {len(paths)} spectrum files, {n} asked for")
    encoder = load_encoder(device=device)
    with TreeMemory() as memory:
        result = end_to_end(paths, encoder, workers=workers, out_file=folder / f"scaling_{n}.fits")
    result["peak_tree_mib"] = memory.peak_mib
    return result


def _shards_point(folder: Path, n: int, batch_size: int, device: str) -> dict:
    from sherpa_latent.inference import load_encoder
    from sherpa_latent.training.shards import ShardSet, library_path
    from sherpa_latent.training.train import response_bank

    from .speed import network_pass

    encoder = load_encoder(device=device)
    bank = response_bank(library_path(folder), encoder.model.device)
    keys = ("counts", "background", "exposure", "response_id")
    done, checksum = 0, 0.0
    start = time.perf_counter()
    for batch in ShardSet(folder).batches(batch_size, shuffle=False, keys=keys):
        if done >= n:
            break
        take = min(len(batch["counts"]), n - done)
        batch = {k: v[:take] for k, v in batch.items()}
        checksum += float(np.sum(network_pass(encoder, batch, bank, batch_size)))
        done += take
    elapsed = time.perf_counter() - start
    if done < n:
        raise RuntimeError(f"{folder}: {done} spectra in the shards, {n} asked for")
    return {
        "n_spectra": done,
        "batch_size": batch_size,
        "seconds": elapsed,
        "seconds_per_spectrum": elapsed / done,
        "spectra_per_s": done / elapsed,
        "mean_log_nh": checksum / done,
        "peak_rss_mib": peak_rss_mib(),
        "device": device,
    }


def main(argv: list[str]) -> None:
    kind, folder, n, extra = argv[0], Path(argv[1]), int(argv[2]), int(argv[3])
    device = argv[4] if len(argv) > 4 else "cpu"
    warnings.simplefilter("ignore")
    if kind == "files":
        result = _files_point(folder, n, extra, device)
    elif kind == "shards":
        result = _shards_point(folder, n, extra, device)
    else:
        raise SystemExit(f"unknown scaling kind {kind!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
