"""Run every benchmark and write ``docs/benchmarks.md``, its JSON and its plots.

    python -m benchmarks --clobber            # the full run (about 20-30 min on 2 cores)
    python -m benchmarks --quick --out-dir /tmp/b --work-dir /tmp/w   # a check in a minute

The data the benchmarks need (simulated spectrum files and shards) are made in
``--work-dir`` on the first run and reused after; every number on the page is measured in
the run that writes it, except the science numbers, copied from ``docs/evaluation.json``
(made by ``sherpa-latent evaluate``) with that file's network checksum beside them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

READING_SPECTRA = (
    "3c273.pi",
    "acisf04938_000N002_r0043_pha3.fits",
    "acisf07867_000N001_r0002_pha3.fits",
)
"""The real spectra (with background, ARF and RMF) of the sherpa package timed for reading."""


@dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark run."""

    batch_sizes: tuple[int, ...] = (1, 4, 16, 64, 256, 1024, 4096)
    end_to_end_files: int = 1000
    scaling_files: tuple[int, ...] = (1000, 10000)
    scaling_shards: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    shard_batch: int = 1024
    breakdown_files: int = 300
    reading_files: int = 100
    reading_repeats: int = 3
    classical_files: int = 12
    classical_start_spectra: int = 500
    report_runs: int = 5
    agreement_files: int | None = None
    ddp_steps: int = 200
    dask_encode_files: int = 10000  # a catalogue run: the cluster start (~3 s) weighs little
    dask_report_files: int = 32
    dask_repeats: int = 3
    repeats: int = 5
    min_seconds: float = 0.5


QUICK = Plan(
    batch_sizes=(1, 64),
    end_to_end_files=12,
    scaling_files=(12, 24),
    scaling_shards=(1000, 2000),
    shard_batch=500,
    breakdown_files=6,
    reading_files=4,
    reading_repeats=2,
    classical_files=1,
    classical_start_spectra=3,
    report_runs=1,
    agreement_files=1,
    ddp_steps=20,
    dask_encode_files=32,
    dask_report_files=2,
    dask_repeats=1,
    repeats=1,
    min_seconds=0.05,
)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def prepare_shards(folder: Path, n: int) -> Path:
    """Simulated spectra through the sherpa package's and synthetic responses (made once)."""
    from sherpa_latent.training.recipe import build_library
    from sherpa_latent.training.simulate import simulate_shards

    library_file = folder.parent / "benchmark_library.npz"
    if not library_file.exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        folders = ["sherpa:astro/datastack/tests/data"]
        build_library(folders, n_synthetic=16, seed=5).save(library_file)
    simulate_shards(folder, n, library_file, shard_size=min(50_000, n), seed=99, progress=True)
    return folder


def science_numbers(path: Path) -> dict | None:
    """The evaluation's JSON, as written by ``sherpa-latent evaluate`` (None when absent)."""
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def run(plan: Plan, work_dir: Path, out_dir: Path, *, gpu: bool = True) -> dict:
    """Run the benchmarks of ``plan``; return every number measured."""
    import torch

    from sherpa_latent.inference import load_encoder

    from . import speed
    from .agreement import agreement_table, real_spectrum_files
    from .machine import describe_machine
    from .scaling import run_point
    from .spectrum_files import write_spectrum_files

    warnings.simplefilter("ignore")
    results: dict = {"machine": describe_machine(), "plan": asdict(plan)}
    encoder = load_encoder(device="cpu")
    results["network"] = {"file": encoder.name, "sha256": encoder.sha256}

    n_files = max(plan.scaling_files + (plan.end_to_end_files,))
    _log(f"writing {n_files} simulated spectrum files (reused when present)")
    files_dir = work_dir / "files"
    paths = write_spectrum_files(files_dir, n_files)
    shards_dir = prepare_shards(work_dir / "shards", max(plan.scaling_shards))

    _log("network only, CPU")
    batch, bank = speed.shard_inputs(shards_dir, max(plan.batch_sizes) * 2)
    results["network_only"] = {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "rows": speed.network_throughput(
            encoder,
            batch,
            bank,
            plan.batch_sizes,
            repeats=plan.repeats,
            min_seconds=plan.min_seconds,
        ),
    }

    _log("end to end, 1 and 2 workers")
    threads = torch.get_num_threads()
    results["end_to_end"] = [
        run_point("files", files_dir, plan.end_to_end_files, workers, threads) for workers in (1, 2)
    ]
    _log("where the time goes")
    results["breakdown"] = speed.time_breakdown(paths[: plan.breakdown_files], encoder)
    _log("reading: the reader beside Sherpa's read_pha")
    package = [p for p in real_spectrum_files(shared=None) if p.name in READING_SPECTRA]
    results["reading"] = {
        "simulated": speed.reading(paths[: plan.reading_files], repeats=plan.reading_repeats),
        "sherpa_package": speed.reading(package, repeats=max(plan.reading_repeats, 10)),
    }
    _log("classical loop")
    results["classical"] = speed.classical_loop(paths[: plan.classical_files])
    _log(f"classical fit from the network's start: {plan.classical_start_spectra} spectra")
    from .classical_start import report_command_time, start_agreement

    results["classical_start"] = start_agreement(encoder, plan.classical_start_spectra)
    _log(f"sherpa-latent report on 3C 273, {plan.report_runs} timed runs")
    results["report_command"] = report_command_time(repeats=plan.report_runs)
    # The default run (one process, nothing started) is the fastest on 2 cores; the
    # classical fit is compared with it.
    e2e_default = results["end_to_end"][0]["seconds_per_spectrum"]
    results["speedup_classical_over_end_to_end"] = (
        results["classical"]["median_seconds_per_spectrum"] / e2e_default
    )

    _log("scaling: files")
    # The default (one process) end-to-end run is already the scaling point of its size. It
    # scales the work itself; 2 workers add a fixed start (a Dask cluster) that the Dask
    # section measures apart.
    done = {plan.end_to_end_files: results["end_to_end"][0]}
    results["scaling_files"] = [
        done.get(n) or run_point("files", files_dir, n, 1, threads) for n in plan.scaling_files
    ]
    _log("scaling: shards")
    results["scaling_shards"] = [
        run_point("shards", shards_dir, n, plan.shard_batch, threads) for n in plan.scaling_shards
    ]
    _log("training: one process, torchrun with 1 and 2 CPU ranks")
    from .scaling_ddp import ddp_scaling

    results["ddp"] = ddp_scaling(shards_dir, work_dir / "ddp", steps=plan.ddp_steps)
    _log("Dask: encode and report in one process, the old process pool, 1 and 2 workers")
    from .scaling_dask import run_all as dask_scaling

    results["dask"] = dask_scaling(
        files_dir,
        n_encode=plan.dask_encode_files,
        n_report=plan.dask_report_files,
        repeats=plan.dask_repeats,
        threads=threads,
        log=_log,
    )

    results["gpu"] = None
    if gpu and torch.cuda.is_available():
        _log(f"GPU: {torch.cuda.get_device_name(0)}")
        gpu_encoder = load_encoder(device="cuda")
        gpu_bank = {k: v.to("cuda") for k, v in bank.items()}
        results["gpu"] = {
            "device": torch.cuda.get_device_name(0),
            "network_only": speed.network_throughput(
                gpu_encoder, batch, gpu_bank, plan.batch_sizes, repeats=plan.repeats
            ),
            "end_to_end": run_point(
                "files", files_dir, plan.end_to_end_files, 2, threads, device="cuda"
            ),
            "shards": run_point(
                "shards", shards_dir, max(plan.scaling_shards), 4096, threads, device="cuda"
            ),
        }

    _log("agreement with classical fits on real spectra")
    files = real_spectrum_files()[: plan.agreement_files]
    results["agreement"] = agreement_table(encoder, files)
    results["science"] = science_numbers(REPO / "docs" / "evaluation.json")
    results["marks"] = _marks(results)
    return results


def _marks(results: dict) -> dict:
    """The issue's pass marks, computed from the numbers."""
    best = max(row["spectra_per_s"] for row in results["network_only"]["rows"])

    def change(rows: list[dict], key: str) -> float:
        first, last = rows[0][key], rows[-1][key]
        return abs(last - first) / first

    files, shards = results["scaling_files"], results["scaling_shards"]
    return {
        "speedup": results["speedup_classical_over_end_to_end"],
        "speedup_ok": results["speedup_classical_over_end_to_end"] >= 20,
        "network_best_spectra_per_s": best,
        "network_ok": best >= 2000,
        "files_time_change": change(files, "seconds_per_spectrum"),
        "files_memory_change": change(files, "peak_tree_mib"),
        "shards_time_change": change(shards, "seconds_per_spectrum"),
        "shards_memory_change": change(shards, "peak_rss_mib"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "benchmarks")
    parser.add_argument("--out-dir", type=Path, default=REPO / "docs")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the harness")
    parser.add_argument("--no-gpu", action="store_true", help="skip the GPU figures")
    parser.add_argument("--clobber", action="store_true", help="overwrite an existing page")
    args = parser.parse_args(argv)

    from .page import write_outputs

    page = args.out_dir / "benchmarks.md"
    if page.exists() and not args.clobber:
        print(f"python -m benchmarks: {page}: file exists; use --clobber", file=sys.stderr)
        return 1
    start = time.perf_counter()
    plan = QUICK if args.quick else Plan()
    results = run(plan, args.work_dir, args.out_dir, gpu=not args.no_gpu)
    results["total_seconds"] = time.perf_counter() - start
    write_outputs(results, args.out_dir)
    _log(f"wrote {page} in {results['total_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
