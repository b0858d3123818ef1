"""Speed: the network alone, end to end from files, reading, and the classical loop.

Every function returns plain numbers (seconds, spectra per second) for the JSON file;
times are medians over repeats where a repeat is cheap, and single timed passes where it
is not (the end-to-end runs and the classical loop, whose per-spectrum figures are
medians or means over many spectra instead).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sherpa_latent.catalogue import ResponseCache, encode_files, write_table
from sherpa_latent.classical import fit_absorbed_powerlaw
from sherpa_latent.inference import LatentEncoder
from sherpa_latent.network import encode_batch
from sherpa_latent.reader import ResponseFileCache, read_spectrum
from sherpa_latent.spectrum import load_spectrum
from sherpa_latent.training.shards import ShardSet, library_path
from sherpa_latent.training.train import response_bank

from .memory import peak_rss_mib


def shard_inputs(shard_dir: str | os.PathLike, n: int) -> tuple[dict, dict]:
    """The first ``n`` spectra of a shard folder and its response bank (CPU tensors)."""
    bank = response_bank(library_path(shard_dir))
    shards = ShardSet(shard_dir)
    keys = ("counts", "background", "exposure", "response_id")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    have = 0
    for batch in shards.batches(batch_size=min(n, 8192), shuffle=False, keys=keys):
        for k in keys:
            parts[k].append(np.asarray(batch[k]))
        have += len(batch["counts"])
        if have >= n:
            break
    return {k: np.concatenate(v)[:n] for k, v in parts.items()}, bank


def network_pass(encoder: LatentEncoder, batch: dict, bank: dict, batch_size: int) -> np.ndarray:
    """Encoder, N_H head, decoded fit and cluster assignment of a batch of spectra."""
    out = encode_batch(encoder.model, batch, batch_size=batch_size, bank=bank)
    if encoder.clusters is not None:
        encoder.clusters.predict(out["z_mean"])
        encoder.clusters.class_probabilities(out["z_mean"])
    return out["log_nh"]


def network_throughput(
    encoder: LatentEncoder,
    batch: dict,
    bank: dict,
    batch_sizes: Sequence[int],
    *,
    repeats: int = 5,
    min_seconds: float = 0.5,
) -> list[dict]:
    """Spectra per second through the network at each batch size (median of repeats).

    Each repeat passes enough whole batches to last about ``min_seconds``.
    """
    rows = []
    n_total = len(batch["counts"])
    for size in batch_sizes:
        size = min(size, n_total)
        one = {k: v[:size] for k, v in batch.items()}
        start = time.perf_counter()
        network_pass(encoder, one, bank, size)  # warm-up, and a first estimate
        first = max(time.perf_counter() - start, 1e-6)
        n_batches = max(1, int(min_seconds / first))
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(n_batches):
                network_pass(encoder, one, bank, size)
            rates.append(n_batches * size / (time.perf_counter() - start))
        rows.append(
            {
                "batch_size": int(size),
                "spectra_per_s": float(statistics.median(rates)),
                "min_spectra_per_s": float(min(rates)),
                "max_spectra_per_s": float(max(rates)),
                "repeats": repeats,
                "batches_per_repeat": n_batches,
            }
        )
    return rows


def end_to_end(
    paths: Sequence[Path],
    encoder: LatentEncoder,
    *,
    workers: int,
    out_file: Path,
    batch_size: int = 256,
) -> dict:
    """Files on disk to a FITS table: wall time, per spectrum, and failed rows."""
    start = time.perf_counter()
    table = encode_files(paths, encoder, workers=workers, batch_size=batch_size)
    write_table(table, out_file, clobber=True)
    elapsed = time.perf_counter() - start
    n_errors = int(sum(1 for e in table["ERROR"] if str(e).strip()))
    return {
        "n_files": len(paths),
        "workers": workers,
        "seconds": elapsed,
        "seconds_per_spectrum": elapsed / len(paths),
        "spectra_per_s": len(paths) / elapsed,
        "n_errors": n_errors,
        "peak_rss_mib": peak_rss_mib(),
    }


def time_breakdown(paths: Sequence[Path], encoder: LatentEncoder, batch_size: int = 256) -> dict:
    """Where the end-to-end time goes, in one process: reading, projecting, the network.

    Reading is :func:`~sherpa_latent.spectrum.load_spectrum` (the reader's PHA and
    background into Sherpa objects, with the checks; ARF and RMF objects are read once
    per observation and reused); projecting is making the representation on the
    network's grids (the response projected once per ARF/RMF content); the network is
    :meth:`LatentEncoder.encode` on batches.
    """
    import warnings

    cache = ResponseCache()
    read_s, project_s, reps = 0.0, 0.0, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in paths:
            start = time.perf_counter()
            spectrum = load_spectrum(path, cache=cache.files)
            mid = time.perf_counter()
            reps.append(cache.representation(spectrum))
            end = time.perf_counter()
            read_s += mid - start
            project_s += end - mid
    start = time.perf_counter()
    for k in range(0, len(reps), batch_size):
        encoder.encode(reps[k : k + batch_size])
    network_s = time.perf_counter() - start
    n = len(paths)
    total = read_s + project_s + network_s
    return {
        "n_files": n,
        "read_ms_per_spectrum": 1e3 * read_s / n,
        "project_ms_per_spectrum": 1e3 * project_s / n,
        "network_ms_per_spectrum": 1e3 * network_s / n,
        "read_fraction": read_s / total,
        "project_fraction": project_s / total,
        "network_fraction": network_s / total,
        "projections_computed": cache.misses,
    }


def _sherpa_read_reusing(path: str, arf, rmf):
    """Sherpa's ``read_pha`` of a spectrum and its background, given ARF and RMF objects.

    What the catalogue did before the reader, when Sherpa's ``read_arf``/``read_rmf``
    handed back objects already read: here the file is opened with astropy, its
    RESPFILE/ANCRFILE are set to none in memory, Sherpa's ``read_pha`` reads it (and the
    background its BACKFILE names, from disk), and the objects are attached. Nothing in
    Sherpa is replaced.
    """
    from astropy.io import fits
    from sherpa.astro import io

    with fits.open(path, memmap=False) as hdus:
        header = hdus["SPECTRUM"].header
        header["RESPFILE"], header["ANCRFILE"] = "none", "none"
        pha = io.read_pha(hdus)
    pha.set_response(arf, rmf)
    for bkg_id in pha.background_ids:
        pha.get_background(bkg_id).set_response(arf, rmf)
    pha.set_analysis("energy")
    return pha


def reading(paths: Sequence[Path], *, repeats: int = 3) -> dict:
    """Reading a spectrum with its background, ms per spectrum, three ways on the same files.

    - ``reader``: :func:`sherpa_latent.reader.read_spectrum`, ARF and RMF objects
      reused from a :class:`~sherpa_latent.reader.ResponseFileCache` (warm);
    - ``sherpa_reusing``: Sherpa's ``read_pha`` of the spectrum and its background, ARF
      and RMF objects read before and attached (the old catalogue path);
    - ``sherpa``: Sherpa's ``read_pha`` as ``load_pha`` runs it, reading the ARF and RMF
      too.

    Every file is read once by each way before timing; then ``repeats`` rounds, each
    reading every file once each way, interleaved. Figures are medians (and quartiles)
    over all reads.
    """
    import warnings

    from sherpa.astro import io
    from sherpa.utils.logging import SherpaVerbosity

    cache = ResponseFileCache()
    given = {}
    with warnings.catch_warnings(), SherpaVerbosity("ERROR"):
        warnings.simplefilter("ignore")
        for path in paths:
            pha = read_spectrum(path, cache=cache).pha
            arf, rmf = pha.get_arf(), pha.get_rmf()
            given[path] = (
                None if arf is None else io.read_arf(arf.name),
                None if rmf is None else io.read_rmf(rmf.name),
            )
        ways = {
            "reader": lambda p: read_spectrum(p, cache=cache),
            "sherpa_reusing": lambda p: _sherpa_read_reusing(os.fspath(p), *given[p]),
            "sherpa": lambda p: io.read_pha(os.fspath(p)),
        }
        times: dict[str, list[float]] = {k: [] for k in ways}
        for path in paths:  # warm-up: each way once per file
            for way in ways.values():
                way(path)
        for _ in range(repeats):
            for path in paths:
                for name, way in ways.items():
                    start = time.perf_counter()
                    way(path)
                    times[name].append(time.perf_counter() - start)
    out: dict = {"n_files": len(paths), "repeats": repeats}
    for name, values in times.items():
        ms = 1e3 * np.asarray(values)
        out[f"{name}_ms_per_spectrum"] = float(np.median(ms))
        out[f"{name}_ms_quartiles"] = [float(np.percentile(ms, 25)), float(np.percentile(ms, 75))]
    out["speedup_over_sherpa_reusing"] = (
        out["sherpa_reusing_ms_per_spectrum"] / out["reader_ms_per_spectrum"]
    )
    out["speedup_over_sherpa"] = out["sherpa_ms_per_spectrum"] / out["reader_ms_per_spectrum"]
    return out


def classical_loop(paths: Sequence[Path]) -> dict:
    """Sherpa load + ``wabs * powlaw1d`` fit from 4 starting N_H + ``conf``, per file."""
    import warnings

    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in paths:
            start = time.perf_counter()
            spectrum = load_spectrum(path)
            fit_absorbed_powerlaw(spectrum, errors=True)
            times.append(time.perf_counter() - start)
    return {
        "n_files": len(paths),
        "median_seconds_per_spectrum": float(np.median(times)),
        "mean_seconds_per_spectrum": float(np.mean(times)),
        "min_seconds": float(np.min(times)),
        "max_seconds": float(np.max(times)),
    }
