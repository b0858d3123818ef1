"""Catalogue runs on Dask (issue 14: points 1, 3 and 4 for Dask; must-holds 1, 2, 5, 6).

A real ``dask scheduler`` and two ``dask worker`` processes are started on 127.0.0.1 (the
commands of docs/scaling.md, on a random free port) for the module and stopped at its end.
The spectra are copies of the Chandra spectra in the installed sherpa package with their
counts redrawn, and a few broken files. What is tested is that a run through the workers
gives the rows of a run in one process, that a worker or the driver killed part way loses
and repeats nothing, that workers read each response once, and that the default starts and
imports nothing of Dask. Speed is measured by ``benchmarks/scaling_dask.py``, not here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from conftest import (
    SHERPA_DATA,
    SHERPA_SPECTRA,
    complete_batches,
    kill_after_batches,
    make_small_network,
)

from sherpa_latent.catalogue import (
    encode_files,
    progress_path,
    read_table,
    report_files,
    worker_counts,
)
from sherpa_latent.errors import OutputError
from sherpa_latent.executors import DaskExecutor, SchedulerError, make_executor
from sherpa_latent.inference import load_encoder

REPO = Path(__file__).resolve().parents[1]
SCALING = REPO / "docs" / "scaling.md"
DOC_PORT = "8786"
N_VARIANTS = 10  # distinct spectra written per source; the rest are byte copies
N_GOOD = 210
LATENT_TOLERANCE = 1e-6


# --- the commands of docs/scaling.md ---------------------------------------------------
def doc_commands(section: str) -> list[str]:
    """The command lines of the ``bash`` blocks of one section of docs/scaling.md.

    Comments are dropped and a trailing ``&`` (run in the background) is removed.
    """
    text = SCALING.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/scaling.md has no section {section!r}"
    lines = []
    for block in re.findall(r"^```bash\n(.*?)^```", match.group(1), re.M | re.S):
        for line in block.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                lines.append(line.removesuffix("&").strip())
    return lines


def _argv(line: str, port: int | None = None) -> list[str]:
    """A documented command as an argument list, on ``port`` instead of 8786."""
    if port is not None:
        line = line.replace(f":{DOC_PORT}", f":{port}").replace(
            f"--port {DOC_PORT}", f"--port {port}"
        )
    words = shlex.split(line)
    if words[0] == "sherpa-latent":
        return [sys.executable, "-m", "sherpa_latent.cli", *words[1:]]
    if words[0] == "dask":
        return [str(Path(sys.executable).with_name("dask")), *words[1:]]
    raise AssertionError(f"docs/scaling.md: unexpected command {line!r}")


def _sherpa_latent(line: str, folder: Path, port: int | None = None, **kwargs):
    return subprocess.run(
        _argv(line, port), cwd=folder, capture_output=True, text=True, timeout=600, **kwargs
    )


def test_the_documented_commands_are_the_tested_ones() -> None:
    laptop, workstation = doc_commands("Laptop"), doc_commands("Workstation")
    kinds = [" ".join(shlex.split(line)[:2]) for line in workstation]
    assert kinds[:3] == ["dask scheduler", "dask worker", "dask worker"], workstation
    assert [k for k in kinds[3:]] == ["sherpa-latent encode", *["sherpa-latent report"] * 2]
    # The scheduler runs are the laptop's runs with scheduler= added.
    scheduled = [line for line in workstation if line.startswith("sherpa-latent")]
    assert [line.split(" scheduler=")[0] for line in scheduled] == laptop[:3]
    assert all(line.endswith(f"scheduler=tcp://127.0.0.1:{DOC_PORT}") for line in scheduled)
    assert "workers=2" in laptop[3]
    # The cluster-specific parts say so in every block.
    slurm = SCALING.read_text(encoding="utf-8").split("## SLURM cluster", 1)[1]
    slurm = slurm.split("\n## ", 1)[0]
    blocks = re.findall(r"^```\w+\n(.*?)^```", slurm, re.M | re.S)
    assert blocks and all("cluster-specific" in block for block in blocks)
    assert "dask_jobqueue" in slurm and "SLURMCluster" in slurm


# --- data ----------------------------------------------------------------------------
def write_spectra(folder: Path, n_good: int, seed: int = 3) -> list[str]:
    """Spectra named in ``spectra.lis`` (relative names, some broken) and ``bright.lis``.

    The three spectra of the sherpa package are copied with their counts redrawn
    (Poisson, scaled by 0.3-1.5) into ``N_VARIANTS`` files each, with absolute names of
    their responses and backgrounds; the other good files are byte copies of those.
    Broken ones: truncated, not FITS, missing, zero exposure, no counts, a missing RMF.
    Returns the names as the stack gives them.
    """
    spectra = folder / "spectra"
    spectra.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    variants = []
    for k, name in enumerate(SHERPA_SPECTRA):
        with fits.open(SHERPA_DATA / name) as hdus:
            header = hdus[1].header
            for key in ("RESPFILE", "ANCRFILE", "BACKFILE"):
                value = str(header.get(key, "none")).strip()
                if value.lower() != "none":
                    header[key] = str(SHERPA_DATA / value)
            counts = np.asarray(hdus[1].data["COUNTS"]).copy()
            for v in range(N_VARIANTS):
                scale = rng.uniform(0.3, 1.5)
                hdus[1].data["COUNTS"] = rng.poisson(counts * scale).astype(counts.dtype)
                header["OBJECT"] = f"SOURCE {k} VARIANT {v}"
                path = spectra / f"v{k}_{v:02d}.pi"
                hdus.writeto(path)
                variants.append(path)
            if k == 0:
                header["EXPOSURE"] = 0.0
                hdus.writeto(spectra / "bad_exposure.pi")
                header["EXPOSURE"] = 1e4
                hdus[1].data["COUNTS"] = np.zeros_like(counts)
                hdus.writeto(spectra / "bad_no_counts.pi")
                hdus[1].data["COUNTS"] = counts
                header["RESPFILE"] = str(folder / "missing.rmf")
                hdus.writeto(spectra / "bad_missing_rmf.pi")
    names = [f"spectra/{p.name}" for p in variants]
    for i in range(len(variants), n_good):
        source = variants[i % len(variants)]
        shutil.copyfile(source, spectra / f"c{i:04d}.pi")
        names.append(f"spectra/c{i:04d}.pi")
    data = (spectra / "v0_00.pi").read_bytes()
    (spectra / "bad_truncated.pi").write_bytes(data[: len(data) // 3])
    (spectra / "bad_text.pi").write_text("not a FITS file\n")
    bad = [
        "spectra/bad_truncated.pi", "spectra/bad_text.pi", "spectra/bad_missing.pi",
        "spectra/bad_exposure.pi", "spectra/bad_no_counts.pi", "spectra/bad_missing_rmf.pi",
    ]  # fmt: skip
    for k, name in enumerate(bad):  # spread among the good ones
        names.insert(17 + 31 * k, name)
    (folder / "spectra.lis").write_text("\n".join(names) + "\n")
    bright = ["spectra/v0_00.pi", "spectra/v1_00.pi", "spectra/v2_00.pi", "spectra/bad_text.pi"]
    (folder / "bright.lis").write_text("\n".join(bright) + "\n")
    return names


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dask")
    write_spectra(folder, N_GOOD)
    return folder


@pytest.fixture(scope="module")
def names(workdir: Path) -> list[str]:
    return (workdir / "spectra.lis").read_text().split()


# --- the cluster -----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """The scheduler and workers of docs/scaling.md's workstation section, as processes."""

    def __init__(self, folder: Path) -> None:
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen] = []
        self.log = folder / "dask.log"
        commands = [line for line in doc_commands("Workstation") if line.startswith("dask ")]
        with open(self.log, "ab") as log:
            for line in commands:
                self.processes.append(
                    subprocess.Popen(
                        _argv(line, self.port),
                        cwd=folder,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its own group: the nanny's worker goes too
                    )
                )
                if line.startswith("dask scheduler"):
                    self._wait_for_port()
        self.executor = make_executor(scheduler=self.address)
        self.client = self.executor.client
        self.client.wait_for_workers(2, timeout=180)

    def _wait_for_port(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            assert self.processes[0].poll() is None, self.log.read_text()
            time.sleep(0.2)
        raise AssertionError(f"the scheduler did not start: {self.log.read_text()}")

    def worker_pids(self) -> dict[str, int]:
        """Worker address -> process id (the worker itself, not its nanny)."""
        return self.client.run(os.getpid)

    def close(self) -> None:
        self.executor.close()
        for proc in reversed(self.processes):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)


@pytest.fixture(scope="module")
def cluster(workdir: Path):
    running = Cluster(workdir)
    try:
        yield running
    finally:
        running.close()


# --- comparing tables ----------------------------------------------------------------
def _values(column) -> np.ndarray:
    if hasattr(column, "filled"):
        column = column.filled("" if column.dtype.kind in "SU" else np.nan)
    values = np.asarray(column)
    return values.astype(str) if values.dtype.kind == "S" else values


def assert_same_rows(got: Table, want: Table, tolerance: float = LATENT_TOLERANCE) -> None:
    """Same columns and rows: text exactly, numbers within ``tolerance`` (NaN where NaN)."""
    assert got.colnames == want.colnames
    assert len(got) == len(want)
    for name in want.colnames:
        a, b = _values(got[name]), _values(want[name])
        assert a.shape == b.shape, name
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=0, atol=tolerance, err_msg=name)
        else:
            assert np.array_equal(a, b), (name, a[a != b][:3], b[a != b][:3])


@pytest.fixture(scope="module")
def in_process(workdir: Path) -> dict[str, Table]:
    """The laptop commands of docs/scaling.md, in one process: the reference rows."""
    out = {}
    for line in doc_commands("Laptop")[:3]:
        run = _sherpa_latent(line, workdir)
        assert run.returncode == 1, run.stderr  # the broken files fail
        assert "Traceback" not in run.stderr
        output = re.search(r"outfile=(\S+)", line).group(1)
        out[output] = read_table(workdir / output)
        (workdir / output).rename(workdir / f"in_process_{output}")
    return out


# --- must-hold 1 ---------------------------------------------------------------------
def test_scheduler_runs_give_the_rows_of_the_in_process_run(
    workdir: Path, names: list[str], cluster: Cluster, in_process: dict[str, Table]
) -> None:
    start = time.monotonic()
    scheduled = [line for line in doc_commands("Workstation") if line.startswith("sherpa-")]
    for line in scheduled:
        run = _sherpa_latent(line, workdir, cluster.port)
        assert run.returncode == 1, run.stderr
        assert "Traceback" not in run.stderr
        output = re.search(r"outfile=(\S+)", line).group(1)
        got, want = read_table(workdir / output), in_process[output]
        assert_same_rows(got, want)
        (workdir / output).unlink()
    took = time.monotonic() - start
    latents = in_process["latents.fits"]
    assert list(_values(latents["FILE"])) == names  # one row per file, in the list's order
    errors = _values(latents["ERROR"])
    failed = [n for n, e in zip(names, errors, strict=True) if e]
    assert failed == [n for n in names if "/bad_" in n]
    assert all(error.startswith(name) for name, error in zip(names, errors, strict=True) if error)
    assert np.isfinite(np.asarray(latents["Z"])[errors == ""]).all()
    bright = in_process["bright.fits"]
    assert np.isfinite(np.asarray(bright["NH_CLASSICAL"])[:3]).all()  # fits ran
    assert np.isfinite(np.asarray(bright["NH_LATENT"])[:3]).all()
    print(f"\nthe three runs through the scheduler: {took:.1f} s")


def test_a_local_cluster_run_gives_the_rows_of_the_in_process_run(
    workdir: Path, in_process: dict[str, Table]
) -> None:
    line = doc_commands("Laptop")[3]
    run = _sherpa_latent(line, workdir)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    output = re.search(r"outfile=(\S+)", line).group(1)
    assert_same_rows(read_table(workdir / output), in_process["latents.fits"])


# --- must-hold 2 ---------------------------------------------------------------------
def test_a_worker_killed_mid_run_leaves_every_file_once(
    workdir: Path, names: list[str], cluster: Cluster, in_process: dict[str, Table], monkeypatch
) -> None:
    """Encode and report through the scheduler; a worker is killed (SIGKILL) part way."""
    monkeypatch.chdir(workdir)
    cluster.client.wait_for_workers(2, timeout=180)
    encoder = load_encoder("default", device="cpu")
    progress = workdir / "killed.partial.jsonl"
    seen: list[int] = []
    killed: list[int] = []

    def kill_one_worker(n: int) -> None:
        seen.append(n)
        if not killed:
            pid = next(iter(cluster.worker_pids().values()))
            os.kill(pid, signal.SIGKILL)  # the nanny starts a new one
            killed.append(pid)

    table = encode_files(
        names,
        encoder,
        batch_size=10,
        scheduler=cluster.address,
        progress=kill_one_worker,
        progress_file=progress,
    )
    assert killed and sum(seen) == len(names)  # every file counted once
    batches = [line for line in progress.read_text().splitlines()[1:]]
    numbers = [int(re.match(r'\{"batch":(\d+),', line).group(1)) for line in batches]
    assert sorted(numbers) == list(range(-(-len(names) // 10)))  # each batch recorded once
    want = in_process["latents.fits"]
    assert list(table["FILE"]) == names
    # batches of 10, not 256: the same spectra, passed through the network in other groups
    for name in ("Z", "Z_ERR", "NH_LATENT", "ANOMALY", "ERROR", "OBJECT"):
        a, b = _values(table[name]), _values(want[name])
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5, err_msg=name)
        else:
            assert np.array_equal(a, b), name

    cluster.client.wait_for_workers(2, timeout=180)
    shown: list[int] = []

    def kill_again(outcome) -> None:
        shown.append(outcome.index)
        if len(killed) == 1:
            pid = next(iter(cluster.worker_pids().values()))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    outcomes = report_files(
        names, classical=False, scheduler=cluster.address, batch_size=8, on_outcome=kill_again
    )
    assert len(killed) == 2
    assert shown == list(range(len(names)))  # each spectrum once, in order
    assert [o.file for o in outcomes] == names
    hardness = in_process["hardness.fits"]
    for outcome, row in zip(outcomes, hardness, strict=True):
        if outcome.failed:
            assert outcome.report["error"] == row["ERROR"]
        else:
            assert outcome.report.hardness.hr_hm.mode == pytest.approx(row["HR_HM"], abs=1e-12)


def test_a_driver_killed_mid_run_resumes(
    workdir: Path, names: list[str], cluster: Cluster, in_process: dict[str, Table]
) -> None:
    cluster.client.wait_for_workers(2, timeout=180)
    line = (
        f"sherpa-latent encode @spectra.lis outfile=resumed.fits batch-size=4 "
        f"scheduler={cluster.address}"
    )
    progress = progress_path(workdir / "resumed.fits")
    run = subprocess.Popen(
        _argv(line),
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    kill_after_batches(run, progress, 3, timeout=300, group=False)  # the driver only
    finished = complete_batches(progress)
    assert not (workdir / "resumed.fits").exists() and finished >= 3
    again = _sherpa_latent(line, workdir)
    assert again.returncode == 1, again.stderr
    assert "resuming from" in again.stderr and "Traceback" not in again.stderr
    assert not progress.exists()
    got = read_table(workdir / "resumed.fits")
    assert list(_values(got["FILE"])) == names
    want = in_process["latents.fits"]
    for name in ("Z", "NH_LATENT", "ERROR"):
        a, b = _values(got[name]), _values(want[name])
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5, err_msg=name)
        else:
            assert np.array_equal(a, b), name


# --- must-hold 3 ---------------------------------------------------------------------
def test_each_worker_reads_a_response_once(
    workdir: Path, names: list[str], cluster: Cluster, monkeypatch
) -> None:
    monkeypatch.chdir(workdir)
    cluster.client.restart()  # fresh worker processes: empty caches
    cluster.client.wait_for_workers(2, timeout=180)
    encoder = load_encoder("default", device="cpu")
    table = encode_files(names, encoder, batch_size=16, scheduler=cluster.address)
    assert len(table) == len(names)
    counts = cluster.client.run(worker_counts)
    print(f"\nper worker: {sorted(counts.values(), key=lambda c: c['files'])}")
    assert len(counts) == 2
    assert sum(c["files"] for c in counts.values()) == len(names)
    n_responses = 2 * len(SHERPA_SPECTRA)  # an ARF and an RMF per source
    for worker, c in counts.items():
        assert c["files"] >= 30, (worker, c)  # both did a share of the work
        assert c["response_reads"] <= n_responses, (worker, c)
        assert c["projections"] <= len(SHERPA_SPECTRA), (worker, c)


# --- must-hold 5 ---------------------------------------------------------------------
def test_the_default_starts_nothing_and_imports_no_dask(tmp_path: Path) -> None:
    network = make_small_network(tmp_path / "net")
    code = f"""
import multiprocessing, sys, threading
before = threading.active_count()
import sherpa_latent
from sherpa_latent.catalogue import encode_files, report_files
from sherpa_latent.inference import load_encoder
encoder = load_encoder({str(network)!r}, device="cpu")
files = [{str(SHERPA_DATA / "3c273.pi")!r}, "missing.pi"]
table = encode_files(files, encoder)
assert list(table["ERROR"] != "") == [False, True]
outcomes = report_files(files, classical=False, encoder=encoder)
assert [o.failed for o in outcomes] == [False, True]
assert not multiprocessing.active_children()
print(sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")))
"""
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"


# --- bad settings ----------------------------------------------------------------------
def test_workers_and_scheduler_exclude_each_other(workdir: Path) -> None:
    run = _sherpa_latent(
        "sherpa-latent encode @spectra.lis outfile=x.fits workers=2 scheduler=tcp://127.0.0.1:1",
        workdir,
    )
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "workers or scheduler, not both" in lines[0], run.stderr
    assert not (workdir / "x.fits").exists()


def test_an_unreachable_scheduler_is_one_line() -> None:
    port = _free_port()  # nothing listens there
    with pytest.raises(SchedulerError, match=f"cannot reach the Dask scheduler at .*:{port}"):
        DaskExecutor(f"tcp://127.0.0.1:{port}", timeout=3).close()


# --- the other per-file jobs: simulate's shards, evaluate's classical fits ------------------
def test_shards_and_classical_fits_on_the_scheduler_equal_in_process(
    cluster: Cluster, tmp_path: Path
) -> None:
    from sherpa_latent.training.evaluate import classical_fits
    from sherpa_latent.training.real_responses import real_responses
    from sherpa_latent.training.response_library import ResponseLibrary
    from sherpa_latent.training.shards import library_path, read_shard
    from sherpa_latent.training.simulate import simulate_shards
    from sherpa_latent.training.synthetic_responses import synthetic_responses

    library = ResponseLibrary.concatenate(
        [real_responses([SHERPA_DATA]), synthetic_responses(3, rng=11)]
    )
    here, there = tmp_path / "here", tmp_path / "there"
    settings = {"shard_size": 120, "seed": 8, "progress": False}
    simulate_shards(here, 240, library, **settings)
    manifest = simulate_shards(there, 240, library, scheduler=cluster.address, **settings)
    assert manifest["complete"] and len(manifest["shards"]) == 2
    for shard in manifest["shards"]:
        a, b = read_shard(here / shard["file"]), read_shard(there / shard["file"])
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)

    rows = list(range(10))  # two tasks (FITS_PER_TASK is 8)
    lib = library_path(here)
    mine = classical_fits(here, lib, rows, tmp_path / "fits_here.json")
    theirs = classical_fits(
        here, lib, rows, tmp_path / "fits_there.json", scheduler=cluster.address
    )
    assert sorted(theirs) == rows
    for i in rows:
        np.testing.assert_allclose(theirs[i], mine[i], rtol=1e-9, atol=0, err_msg=str(i))


# --- the benchmark's old path and its marks ------------------------------------------
def test_the_benchmark_old_process_pool_gives_the_rows_of_encode_files(tmp_path: Path) -> None:
    from benchmarks.scaling_dask import encode_with_process_pool

    network = load_encoder(make_small_network(tmp_path / "net"), device="cpu")
    files = [str(SHERPA_DATA / name) for name in SHERPA_SPECTRA] * 2 + ["missing.pi"]
    old = encode_with_process_pool(files, network, workers=2, batch_size=3)
    new = encode_files(files, network, batch_size=3)
    assert_same_rows(old, new, tolerance=0.0)


def test_the_benchmark_marks_are_the_ratios_of_its_rates() -> None:
    from benchmarks.scaling_dask import estimate, marks, section, summary_rows

    def point(job, way, workers, seconds, run_s):
        return {
            "job": job, "way": way, "workers": workers, "n_files": 100, "batch_size": 1,
            "seconds": seconds, "startup_s": None if way != "dask" else seconds - run_s,
            "run_s": run_s, "spectra_per_s": 100 / seconds, "run_spectra_per_s": 100 / run_s,
        }  # fmt: skip

    points = [
        point("encode", "in-process", 1, 10.0, 10.0),
        point("encode", "pool", 2, 8.0, 8.0),
        point("encode", "dask", 1, 12.0, 11.0),
        point("encode", "dask", 2, 9.0, 8.0),
        point("report", "in-process", 1, 100.0, 100.0),
        point("report", "dask", 1, 101.0, 100.0),
        point("report", "dask", 2, 61.0, 60.0),
        {"job": "overhead", "n_tasks": 10, "seconds": 0.05, "ms_per_task": 5.0,
         "ms_per_file_encode": 5.0 / 256},
    ]  # fmt: skip
    m = marks(points)
    assert m["report_2_over_1_workers"] == pytest.approx(100 / 60)
    assert m["report_ok"]
    assert m["encode_dask_over_pool"] == pytest.approx(8 / 9)
    assert not m["encode_ok"]
    e = estimate(points, n_spectra=400_000)
    assert e["report_hours_64"] == pytest.approx(400_000 / (1.0 * 64) / 3600)
    results = {"points": points, "marks": m, "estimate": e, "repeats": 1}
    text = "\n".join(section(results) + summary_rows(results))
    assert "1.67x" in text and "0.89x" in text and "not met" in text


def _duration(cell: str) -> float:
    value, unit = cell.split()
    return float(value.replace(",", "")) * {"s": 1, "min": 60, "h": 3600}[unit]


def test_the_worked_estimate_follows_from_the_quoted_rates() -> None:
    """docs/scaling.md: each time of the estimate is 400,000 / (rate x workers)."""
    text = SCALING.read_text(encoding="utf-8").split("## Estimate for 400,000 spectra", 1)[1]
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("| `")
    ]
    rates = {r[0]: r for r in rows if "spectra/s" in r[1]}
    times = {r[0]: r for r in rows if "spectra/s" not in r[1]}
    assert set(rates) == set(times) == {"`encode`", "`report` with classical fits"}
    for job, cells in times.items():
        one = float(rates[job][1].split()[0])
        two = float(rates[job][2].split()[0])
        expected = [400_000 / one, 400_000 / two, 400_000 / (64 * one), 400_000 / (256 * one)]
        for cell, want in zip(cells[1:], expected, strict=True):
            assert _duration(cell) == pytest.approx(want, rel=0.04), (job, cell)


def test_report_plots_are_written_by_the_workers(
    workdir: Path, cluster: Cluster, tmp_path: Path, monkeypatch
) -> None:
    """PNG files named relative to the command's folder land there, written by the workers."""
    monkeypatch.chdir(workdir)
    network = load_encoder(make_small_network(tmp_path / "net"), device="cpu")
    items = ["spectra/v0_00.pi", "spectra/v1_00.pi", "spectra/bad_text.pi"]
    plots = {0: "pngs/a.png", 1: "pngs/b.png", 2: "pngs/c.png"}
    (workdir / "pngs").mkdir()
    outcomes = report_files(
        items, classical=False, encoder=network, plots=plots, scheduler=cluster.address
    )
    assert [o.plot_error for o in outcomes] == ["", "", ""]
    assert [o.failed for o in outcomes] == [False, False, True]
    assert sorted(p.name for p in (workdir / "pngs").iterdir()) == ["a.png", "b.png"]
    assert (workdir / "pngs" / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(o.seconds["plot"] > 0 for o in outcomes[:2])
    with pytest.raises(OutputError, match="exists and clobber is not set"):
        report_files(items, encoder=network, plots=plots, scheduler=cluster.address)
