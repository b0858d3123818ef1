"""Dask: per-file jobs in one process, on 1 and 2 local Dask workers, and the old process pool.

``python -m benchmarks.scaling_dask DIR [--encode N] [--report N] [--repeats K]`` writes
(or reuses) simulated spectrum files in DIR and prints one JSON object with every point
below. Each point runs in a fresh Python process, so that no point inherits another's
caches, K times (the points interleaved); the fastest run of each is kept:

- ``encode``: ``encode_files`` then ``write_table``, batches of 256, with the shipped network:
  in this process (the default), through the process pool that ``encode workers=2`` used
  before Dask (files read by two ``spawn`` processes, batches encoded by the calling process:
  the code of that version, kept here as :func:`encode_with_process_pool`), and on a local
  Dask cluster of 1 and of 2 workers;
- ``report``: ``report_files`` with classical fits and the network, in this process and on 1
  and 2 local Dask workers;
- ``overhead``: empty tasks through a warm local cluster of one worker, the scheduler's cost
  per task, and what that costs per file at the batch sizes used.

For the Dask points the cluster's start (``startup_s``) and the run on it (``run_s``) are
timed apart; ``seconds`` is both. The marks of issue 14 compare ``seconds`` for ``encode``
(2 Dask workers against the old pool, both starting their processes inside the timing) and
``run_s`` for ``report`` (2 workers against 1: the throughput of the workers). Rates per
worker feed the estimate for 400,000 spectra in docs/scaling.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

ENCODE_BATCH = 256
"""Files per batch of ``encode`` (its default)."""

CATALOGUE_SIZE = 400_000
"""Spectra in the estimate of docs/scaling.md."""


# --- the process pool of encode before Dask ---------------------------------------------------
_POOL_STATE: dict[str, Any] = {}


def _pool_init(input_grid, model_grid) -> None:
    """A loading process of the old pool: quiet libraries, its own cache, Ctrl-C left alone."""
    from sherpa_latent.catalogue import ResponseCache

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.simplefilter("ignore")
    for name in ("sherpa", "astropy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    _POOL_STATE.update(cache=ResponseCache(), grids=(input_grid, model_grid))


def _pool_load(path: str):
    from sherpa_latent.catalogue import load_for_encoding

    return load_for_encoding(path, _POOL_STATE["cache"], *_POOL_STATE["grids"])


def _pool_batches(
    batches: Sequence[Sequence[str]], workers: int, grids: tuple
) -> Iterator[list[Any]]:
    """Each batch loaded by the pool; the next batch loads while one is encoded."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_pool_init, initargs=grids) as pool:
        todo = iter(batches)
        pending: deque = deque()

        def submit() -> None:
            batch = next(todo, None)
            if batch is not None:
                chunk = max(1, min(16, len(batch) // (4 * workers)))
                pending.append(pool.imap(_pool_load, list(batch), chunksize=chunk))

        submit()
        while pending:
            current = pending.popleft()
            submit()
            yield list(current)


def encode_with_process_pool(
    paths: Sequence[str], encoder, *, workers: int = 2, batch_size: int = ENCODE_BATCH
):
    """``encode_files(paths, encoder, workers=2)`` as it ran before Dask, for comparison.

    Files are read by ``workers`` spawned processes (each with its own response cache) and
    sent back as representations; the calling process encodes each batch while the pool
    reads the next. The rows are made and tabled by the catalogue's own functions.
    """
    from sherpa_latent.catalogue import _record, table_from_records

    config = encoder.model.config
    grids = (config.input_grid, config.model_grid)
    batches = [list(paths[s : s + batch_size]) for s in range(0, len(paths), batch_size)]
    records = []
    for loaded in _pool_batches(batches, workers, grids):
        good = [item for item in loaded if item.representation is not None]
        results = iter(
            encoder.encode([g.representation for g in good], names=[g.path for g in good])
            if good
            else ()
        )
        for item in loaded:
            result = next(results) if item.representation is not None else None
            records.append(_record(item.path, item, result, item.error))
    return table_from_records(records, encoder)


# --- one point, in a fresh process -------------------------------------------------------------
def _files(folder: Path, n: int) -> list[str]:
    from .spectrum_files import write_spectrum_files

    return [str(p) for p in write_spectrum_files(folder, n)]


def _local_cluster(workers: int):
    """A local cluster as ``workers=N`` starts it (sherpa_latent.executors.DaskExecutor)."""
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
        preload=["sherpa_latent.executors"],
    )


def _timed_on_cluster(workers: int, run: Callable[[str], Any]) -> tuple[Any, dict]:
    start = time.perf_counter()
    cluster = _local_cluster(workers)
    started = time.perf_counter()
    try:
        out = run(cluster.scheduler_address)
        finished = time.perf_counter()
    finally:
        cluster.close()
    return out, {
        "startup_s": started - start,
        "run_s": finished - started,
        "seconds": finished - start,
    }


def _encode_point(folder: Path, n: int, way: str, workers: int) -> dict:
    from sherpa_latent.catalogue import encode_files, write_table
    from sherpa_latent.inference import load_encoder

    paths = _files(folder, n)
    encoder = load_encoder(device="cpu")
    out = folder / f"dask_encode_{way}_{workers}.fits"
    times: dict[str, float] = {}
    start = time.perf_counter()
    if way == "in-process":
        table = encode_files(paths, encoder)
    elif way == "pool":
        table = encode_with_process_pool(paths, encoder, workers=workers)
    elif way == "dask":
        table, times = _timed_on_cluster(
            workers, lambda address: encode_files(paths, encoder, scheduler=address)
        )
    else:
        raise SystemExit(f"unknown way {way!r}")
    write_table(table, out, clobber=True)
    seconds = time.perf_counter() - start
    run_s = seconds - times.get("startup_s", 0.0)
    return {
        "job": "encode",
        "way": way,
        "workers": workers,
        "n_files": n,
        "batch_size": ENCODE_BATCH,
        "seconds": seconds,
        "startup_s": times.get("startup_s"),
        "run_s": run_s,
        "spectra_per_s": n / seconds,
        "run_spectra_per_s": n / run_s,
        "n_errors": int(sum(1 for e in table["ERROR"] if str(e).strip())),
    }


def _report_point(folder: Path, n: int, way: str, workers: int) -> dict:
    from sherpa_latent.catalogue import report_batch_size, report_files
    from sherpa_latent.inference import load_encoder

    paths = _files(folder, n)
    encoder = load_encoder(device="cpu")
    times: dict[str, float] = {}
    start = time.perf_counter()
    if way == "in-process":
        outcomes = report_files(paths, encoder=encoder, classical=True)
        batch = 1
    elif way == "dask":
        outcomes, times = _timed_on_cluster(
            workers,
            lambda address: report_files(paths, encoder=encoder, classical=True, scheduler=address),
        )
        batch = report_batch_size(n, workers, True)
    else:
        raise SystemExit(f"unknown way {way!r}")
    seconds = time.perf_counter() - start
    run_s = seconds - times.get("startup_s", 0.0)
    return {
        "job": "report",
        "way": way,
        "workers": workers,
        "n_files": n,
        "batch_size": batch,
        "seconds": seconds,
        "startup_s": times.get("startup_s"),
        "run_s": run_s,
        "spectra_per_s": n / seconds,
        "run_spectra_per_s": n / run_s,
        "n_errors": sum(1 for o in outcomes if o.failed),
    }


def _nothing(task: Any) -> Any:
    return task


def _overhead_point(n_tasks: int) -> dict:
    """The scheduler's cost per task: empty tasks through a warm one-worker cluster."""
    from sherpa_latent.executors import DaskExecutor

    cluster = _local_cluster(1)
    try:
        with DaskExecutor(cluster.scheduler_address) as executor:
            list(executor.map_unordered(_nothing, list(range(20))))  # warm
            start = time.perf_counter()
            done = sum(1 for _ in executor.map_unordered(_nothing, [["x.pi"]] * n_tasks))
            seconds = time.perf_counter() - start
    finally:
        cluster.close()
    per_task = seconds / done
    return {
        "job": "overhead",
        "n_tasks": done,
        "seconds": seconds,
        "ms_per_task": 1e3 * per_task,
        "ms_per_file_encode": 1e3 * per_task / ENCODE_BATCH,
    }


def run_point(kind: str, folder: str | os.PathLike, *args: Any, threads: int = 2) -> dict:
    """Run one point in a new Python process and return its JSON result."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    command = [sys.executable, "-m", "benchmarks.scaling_dask", "--point", kind, os.fspath(folder)]
    command += [str(a) for a in args]
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=3600
    )
    if done.returncode != 0:
        raise RuntimeError(f"dask point {kind} {args} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the whole set, marks and the page's section --------------------------------------------
def run_all(
    folder: str | os.PathLike,
    *,
    n_encode: int = 10000,
    n_report: int = 32,
    n_tasks: int = 500,
    repeats: int = 3,
    threads: int = 2,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Every point (each in a fresh process), the marks and the rates of the estimate.

    Each point runs ``repeats`` times, the points interleaved (round after round), and the
    fastest run of each is kept, with every run's ``seconds`` beside it: on a machine that
    other work shares, the fastest run is the one least disturbed.
    """
    say = log or (lambda message: None)
    folder = Path(folder)
    _files(folder, max(n_encode, n_report))  # written once, outside any timing
    plan = [
        ("encode", ("in-process", 1, n_encode)),
        ("encode", ("pool", 2, n_encode)),
        ("encode", ("dask", 1, n_encode)),
        ("encode", ("dask", 2, n_encode)),
        ("report", ("in-process", 1, n_report)),
        ("report", ("dask", 1, n_report)),
        ("report", ("dask", 2, n_report)),
        ("overhead", (n_tasks,)),
    ]
    runs: list[list[dict]] = [[] for _ in plan]
    for round_ in range(max(1, int(repeats))):
        for k, (kind, args) in enumerate(plan):
            say(f"dask, round {round_ + 1}: {kind} {' '.join(map(str, args))}")
            runs[k].append(run_point(kind, folder, *args, threads=threads))
    points = []
    for done in runs:
        best = dict(min(done, key=lambda r: r["seconds"]))
        best["all_seconds"] = [r["seconds"] for r in done]
        points.append(best)
    results = {"points": points, "cores": os.cpu_count(), "repeats": max(1, int(repeats))}
    results["marks"] = marks(points)
    results["estimate"] = estimate(points)
    return results


def _find(points: Sequence[dict], job: str, way: str, workers: int) -> dict:
    return next(
        p for p in points if p["job"] == job and p["way"] == way and p["workers"] == workers
    )


def marks(points: Sequence[dict]) -> dict:
    """Issue 14's marks: report on 2 workers against 1; encode on Dask against the old pool."""
    report_1 = _find(points, "report", "dask", 1)
    report_2 = _find(points, "report", "dask", 2)
    pool = _find(points, "encode", "pool", 2)
    dask_2 = _find(points, "encode", "dask", 2)
    report_speedup = report_2["run_spectra_per_s"] / report_1["run_spectra_per_s"]
    encode_ratio = dask_2["spectra_per_s"] / pool["spectra_per_s"]
    return {
        "report_2_over_1_workers": report_speedup,
        "report_ok": report_speedup >= 1.6,
        "encode_dask_over_pool": encode_ratio,
        "encode_ok": encode_ratio >= 0.9,
    }


def estimate(points: Sequence[dict], n_spectra: int = CATALOGUE_SIZE) -> dict:
    """Time for ``n_spectra`` from the measured rates of one worker (one core).

    Per worker: ``encode`` and ``report`` with fits on one Dask worker (its run, without the
    cluster's start). Workers are assumed to add up (the report mark measures how far they
    do on this machine); 64 one-core workers stand for a modest cluster allocation.
    """
    encode_1 = _find(points, "encode", "dask", 1)["run_spectra_per_s"]
    report_1 = _find(points, "report", "dask", 1)["run_spectra_per_s"]
    out = {"n_spectra": n_spectra, "encode_per_worker": encode_1, "report_per_worker": report_1}
    for workers in (1, 2, 64):
        out[f"encode_hours_{workers}"] = n_spectra / (encode_1 * workers) / 3600
        out[f"report_hours_{workers}"] = n_spectra / (report_1 * workers) / 3600
    return out


def summary_rows(results: dict | None) -> list[str]:
    """The rows of docs/benchmarks.md's summary table for the two Dask marks."""
    if not results:
        return []
    m = results["marks"]
    return [
        f"| `report` with classical fits: 2 local Dask workers over 1 (throughput of the run) | "
        f"{m['report_2_over_1_workers']:.2f}x | >= 1.6x | {'yes' if m['report_ok'] else 'no'} |",
        f"| `encode`: 2 local Dask workers over the process pool it replaced (whole run) | "
        f"{m['encode_dask_over_pool']:.2f}x | >= 0.9x | {'yes' if m['encode_ok'] else 'no'} |",
    ]


def section(results: dict | None) -> list[str]:
    """The Dask section of docs/benchmarks.md, every number from ``results``."""
    if not results:
        return []
    points, m, e = results["points"], results["marks"], results["estimate"]
    lines = [
        "",
        "## Dask: in one process, the old process pool, and local Dask workers",
        "",
        f"`benchmarks/scaling_dask.py`: each row is the fastest of {results['repeats']} runs, "
        "each run a fresh process, the rows' runs interleaved. `encode`: simulated files "
        f"(as above) in batches of {ENCODE_BATCH} with the shipped network, then the FITS "
        "table. `report`: classical fit with `conf` and the network, per spectrum. The "
        "process pool is `encode workers=2` as it ran before Dask (two reading processes, "
        "batches encoded by the calling process). For the Dask rows the local cluster's start "
        "and the run on it are timed apart; the total includes both.",
        "",
        "| job | where | files | total s | start s | run s | spectra/s (total) | spectra/s (run) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    names = {"in-process": "in this process", "pool": "old process pool", "dask": "Dask"}
    for p in points:
        if p["job"] == "overhead":
            continue
        plural = "s" if p["workers"] > 1 else ""
        where = names[p["way"]] + (
            f", {p['workers']} worker{plural}" if p["way"] != "in-process" else ""
        )
        start = "-" if p["startup_s"] is None else f"{p['startup_s']:.1f}"
        lines.append(
            f"| {p['job']} | {where} | {p['n_files']:,} | {p['seconds']:.1f} | {start} | "
            f"{p['run_s']:.1f} | {p['spectra_per_s']:.2f} | {p['run_spectra_per_s']:.2f} |"
        )
    overhead = next(p for p in points if p["job"] == "overhead")
    lines += [
        "",
        f"The scheduler's cost per task ({overhead['n_tasks']} empty tasks through a warm "
        f"one-worker cluster): {overhead['ms_per_task']:.2f} ms, "
        f"{overhead['ms_per_file_encode']:.4f} ms per file at {ENCODE_BATCH} files per task.",
        "",
        f"- `report` with classical fits, 2 Dask workers over 1 (run): "
        f"**{m['report_2_over_1_workers']:.2f}x** (mark >= 1.6x: "
        f"{'met' if m['report_ok'] else 'not met'}).",
        f"- `encode` on 2 Dask workers over the old process pool (total): "
        f"**{m['encode_dask_over_pool']:.2f}x** (mark >= 0.9x: "
        f"{'met' if m['encode_ok'] else 'not met'}).",
        f"- Per worker (one core): `encode` {e['encode_per_worker']:.1f} spectra/s, `report` "
        f"with fits {e['report_per_worker']:.2f} spectra/s; {e['n_spectra']:,} spectra take "
        f"{_duration(e['encode_hours_1'])} and {_duration(e['report_hours_1'])} on one "
        f"worker, {_duration(e['encode_hours_64'])} and {_duration(e['report_hours_64'])} "
        "on 64 (docs/scaling.md works the estimate through).",
    ]
    return lines


def _duration(hours: float) -> str:
    """Hours as a short duration: 15 s, 16 min, 58 h."""
    seconds = hours * 3600
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{hours:.0f} h"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling_dask")
    parser.add_argument("folder", type=Path, help="where the spectrum files are (made once)")
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--point", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--encode", type=int, default=10000, help="files for encode")
    parser.add_argument("--report", type=int, default=32, help="files for report with fits")
    parser.add_argument("--tasks", type=int, default=500, help="empty tasks for the overhead")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each point (fastest kept)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    if args.point is None:

        def say(message: str) -> None:
            print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

        results = run_all(
            args.folder,
            n_encode=args.encode,
            n_report=args.report,
            n_tasks=args.tasks,
            repeats=args.repeats,
            log=say,
        )
    elif args.point == "encode":
        way, workers, n = args.args[0], int(args.args[1]), int(args.args[2])
        results = _encode_point(args.folder, n, way, workers)
    elif args.point == "report":
        way, workers, n = args.args[0], int(args.args[1]), int(args.args[2])
        results = _report_point(args.folder, n, way, workers)
    elif args.point == "overhead":
        results = _overhead_point(int(args.args[0]))
    else:
        raise SystemExit(f"unknown point {args.point!r}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
