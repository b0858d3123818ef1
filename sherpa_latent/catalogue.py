"""Encode many spectrum files into one table, one row per file, failures included.

:func:`encode_files` loads each file (in worker processes when asked), encodes the good
ones in batches in the calling process and returns an astropy ``Table`` with units; a
file that cannot be used gets a row whose ``ERROR`` column says why. With a progress
file (:func:`progress_path`) every finished batch is recorded as it completes, so that a
run that was interrupted goes on from where it stopped. :func:`write_table` writes a
table as FITS atomically, with provenance keywords, and refuses to overwrite without
``clobber``; :func:`read_table` reads one back. :func:`report_table` turns
``sherpa-latent report`` results into a table.

Text that FITS cannot hold: string columns of FITS tables are printable ASCII. A column
with any other character (a file name such as ``3c 273 ü.pi``, or an error message that
quotes one) is written percent-encoded, as RFC 3986 does it for URLs: each such character,
and ``%`` itself, becomes the ``%XX`` escapes of its UTF-8 bytes (``3c 273 %C3%BC.pi``).
The ``PCTENC`` keyword of the table lists the columns written that way (absent when there
are none); :func:`read_table` decodes them, so names read back exactly, and any FITS reader
shows them legibly. Other columns are written as they are.

Loading: :func:`~sherpa_latent.spectrum.load_spectrum` reads each PHA file and its
background with :mod:`sherpa_latent.reader` into Sherpa's own objects. Spectra of one
observation share their ARF and RMF, so a :class:`ResponseCache` hands the same
``DataARF``/``DataRMF`` objects to every spectrum that names an unchanged file (the
reader's :class:`~sherpa_latent.reader.ResponseFileCache`, keyed by path, size and
modification time) and keeps the projected responses (keyed by the SHA-256 of the ARF and
RMF bytes and the grids), since projecting a response costs several times reading a
spectrum. Nothing in Sherpa is patched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import signal
import threading
import warnings
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy import units as u
from astropy.table import Table

from .classes import CLASS_NAMES
from .errors import ProgressMismatch
from .fileio import (
    atomic_output,
    escape_fits_text,
    needs_fits_escape,
    sha256_file,
    unescape_fits_text,
)
from .grids import INPUT_GRID, MODEL_GRID, EnergyGrid
from .inference import LatentEncoder, LatentResult
from .reader import ResponseFileCache, file_key, using_cache
from .report import error_message
from .spectrum import ResponseRepresentation, Spectrum, load_spectrum

if TYPE_CHECKING:
    from .report import SpectrumReport

NH_UNIT = u.Unit("1e22 cm-2")
"""Unit of the N_H columns: values are in 10^22 cm^-2 (a quantity times 1e22 would store
plain cm^-2 and contradict the NHUNIT keyword)."""

__all__ = [
    "LoadedSpectrum",
    "ResponseCache",
    "ProgressFile",
    "ProgressMismatch",
    "encode_files",
    "load_for_encoding",
    "progress_path",
    "results_table",
    "table_from_records",
    "report_table",
    "fits_ready",
    "read_table",
    "write_table",
]

PROGRESS_SUFFIX = ".partial.jsonl"
"""Added to the output's name to make the progress file of an ``encode`` run."""

_PROGRESS_FORMAT = "sherpa_latent encode progress"
_PROGRESS_VERSION = 1

ESCAPED_KEYWORD = "PCTENC"
"""Table keyword listing the string columns written percent-encoded (see the module notes)."""


# --- loading -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedSpectrum:
    """What loading one file gives the encoder: a representation, or an error.

    Parameters
    ----------
    path : str
        The file, as given.
    representation : ResponseRepresentation or None
        Counts, background, effective area, projected response (float32) and exposure,
        on the network's grids; None when the file could not be used.
    object, obsid : str
        OBJECT and OBS_ID from the header ("" when unknown).
    position : tuple of float or None
        (RA_TARG, DEC_TARG), degrees.
    error : str
        One line naming the file and the problem ("" for a good file).
    """

    path: str
    representation: ResponseRepresentation | None = None
    object: str = ""
    obsid: str = ""
    position: tuple[float, float] | None = None
    error: str = ""


class ResponseCache:
    """Response files read once and projected once, for spectra that share them.

    Parameters
    ----------
    max_entries : int, optional
        Most response objects and projected responses kept (least recently used
        ones are dropped first).

    Notes
    -----
    Two levels: :attr:`files`, the reader's cache of ``DataARF``/``DataRMF`` objects
    keyed by (real path, size, modification time), passed to
    :func:`~sherpa_latent.spectrum.load_spectrum`; and the projected response with the
    effective area, keyed by the SHA-256 of the ARF and RMF bytes and the grids, used by
    :meth:`representation`. Safe to share between threads.
    """

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = int(max_entries)
        self.files = ResponseFileCache(max_entries)
        self._lock = threading.Lock()
        self._digests: dict[tuple[str, int, int], str] = {}
        self._projected: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def digest(self, path: str) -> str:
        """SHA-256 of a file's bytes (computed once per path, size and mtime)."""
        key = file_key(path)
        with self._lock:
            found = self._digests.get(key)
        if found is None:
            found = sha256_file(path)
            with self._lock:
                self._digests[key] = found
        return found

    @contextlib.contextmanager
    def reading(self) -> Iterator[ResponseCache]:
        """While active, ``load_spectrum`` in this thread shares :attr:`files`.

        Kept for code written against the old memoised Sherpa reader; it sets the
        reader's context variable (:func:`~sherpa_latent.reader.using_cache`) and
        changes nothing in Sherpa. Passing ``cache=self.files`` to ``load_spectrum``
        does the same.
        """
        with using_cache(self.files):
            yield self

    def _key(self, spectrum: Spectrum, input_grid: EnergyGrid, model_grid: EnergyGrid):
        rmf, arf = spectrum.pha.get_rmf(), spectrum.pha.get_arf()
        names = [getattr(rmf, "name", None), None if arf is None else getattr(arf, "name", None)]
        if names[0] is None or not os.path.isfile(str(names[0])):
            return None
        if arf is not None and (names[1] is None or not os.path.isfile(str(names[1]))):
            return None
        grids = tuple((g.emin, g.emax, g.nbins) for g in (input_grid, model_grid))
        return (
            self.digest(str(names[0])),
            "" if arf is None else self.digest(str(names[1])),
            grids,
        )

    def representation(
        self,
        spectrum: Spectrum,
        input_grid: EnergyGrid = INPUT_GRID,
        model_grid: EnergyGrid = MODEL_GRID,
    ) -> ResponseRepresentation:
        """The spectrum's representation, with the projected response as float32.

        Equal to ``spectrum.representation(input_grid, model_grid)`` with its response
        cast to float32 (what the network takes), but the projection is done once per
        ARF and RMF content.
        """
        key = self._key(spectrum, input_grid, model_grid)
        with self._lock:
            cached = None if key is None else self._projected.get(key)
            if cached is None:
                self.misses += 1
            else:
                self.hits += 1
                self._projected.move_to_end(key)
        if cached is None:
            rep = spectrum.representation(input_grid, model_grid)
            rep = replace(rep, response=np.asarray(rep.response, dtype=np.float32))
            if key is not None:
                with self._lock:
                    self._projected[key] = (rep.effective_area, rep.response)
                    while len(self._projected) > self.max_entries:
                        self._projected.popitem(last=False)
            return rep
        effective_area, response = cached
        counts, background = spectrum.binned_counts(input_grid)
        return ResponseRepresentation(
            counts=counts,
            background=background,
            effective_area=effective_area,
            response=response,
            exposure=spectrum.exposure,
            input_grid=input_grid,
            model_grid=model_grid,
        )


def load_for_encoding(
    path: str,
    cache: ResponseCache | None = None,
    input_grid: EnergyGrid = INPUT_GRID,
    model_grid: EnergyGrid = MODEL_GRID,
) -> LoadedSpectrum:
    """Load one file and make its representation; never raises for a bad file.

    Parameters
    ----------
    path : str
        PHA file.
    cache : ResponseCache, optional
        Shared responses (a fresh cache when None).
    input_grid, model_grid : EnergyGrid
        The network's grids.
    """
    cache = ResponseCache() if cache is None else cache
    facts: dict[str, Any] = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec = load_spectrum(path, cache=cache.files)
            facts = {"object": spec.object, "obsid": spec.obsid, "position": spec.position}
            rep = cache.representation(spec, input_grid, model_grid)
        return LoadedSpectrum(path, rep, **facts)
    except Exception as exc:  # noqa: BLE001 - one bad file never stops the others
        return LoadedSpectrum(path, None, error=error_message(path, exc), **facts)


_WORKER: dict[str, Any] = {}


def _worker_init(input_grid: EnergyGrid, model_grid: EnergyGrid) -> None:
    """Set up a loading process: quiet libraries, its own cache, Ctrl-C left to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.simplefilter("ignore")
    for name in ("sherpa", "astropy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    _WORKER.update(cache=ResponseCache(), grids=(input_grid, model_grid))


def _worker_load(path: str) -> LoadedSpectrum:
    return load_for_encoding(path, _WORKER["cache"], *_WORKER["grids"])


def _load_batches(
    batches: Sequence[Sequence[str]],
    workers: int,
    grids: tuple[EnergyGrid, EnergyGrid],
    on_loaded: Callable[[int], None],
) -> Iterator[list[LoadedSpectrum]]:
    """Yield each batch loaded; with workers, the next batch loads while one is encoded."""
    if not batches:
        return
    if workers <= 1:
        cache = ResponseCache()
        for batch in batches:
            out = []
            for path in batch:
                out.append(load_for_encoding(path, cache, *grids))
                on_loaded(1)
            yield out
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch
    with context.Pool(workers, initializer=_worker_init, initargs=grids) as pool:
        todo = iter(batches)
        pending: deque = deque()

        def submit() -> None:
            batch = next(todo, None)
            if batch is not None:
                chunk = max(1, min(16, len(batch) // (4 * workers)))
                pending.append(pool.imap(_worker_load, list(batch), chunksize=chunk))

        submit()
        while pending:
            current = pending.popleft()
            submit()
            out = []
            for item in current:
                out.append(item)
                on_loaded(1)
            yield out


# --- rows ----------------------------------------------------------------------------------
def _record(
    path: str,
    facts: LoadedSpectrum | Spectrum | None,
    result: LatentResult | None,
    error: str,
) -> dict[str, Any]:
    """One row as plain JSON-able values (the same whether fresh or read back)."""
    position = getattr(facts, "position", None) if facts is not None else None
    rec: dict[str, Any] = {
        "file": str(path),
        "object": getattr(facts, "object", "") if facts is not None else "",
        "obsid": getattr(facts, "obsid", "") if facts is not None else "",
        "ra": float("nan") if position is None else float(position[0]),
        "dec": float("nan") if position is None else float(position[1]),
        "error": error,
    }
    if result is not None:
        rec.update(
            z=[float(v) for v in result.z],
            z_err=[float(v) for v in result.z_err],
            log_norm=float(result.log_norm),
            log_norm_err=float(result.log_norm_err),
            nh=[float(v) for v in result.nh],
            cluster=int(result.cluster),
            cluster_label=result.cluster_label,
            cluster_classes=[float(result.cluster_classes.get(c, 0.0)) for c in CLASS_NAMES],
            anomaly=float(result.anomaly),
            cstat=float(result.cstat),
            dof=int(result.dof),
        )
    return rec


def table_from_records(
    records: Sequence[dict[str, Any]], encoder: LatentEncoder, *, latent_dim: int | None = None
) -> Table:
    """Build the output table from row records (see :func:`encode_files`).

    Parameters
    ----------
    records : sequence of dict
        One per file, in output order.
    encoder : LatentEncoder
        The network (for the latent size and the provenance keywords).
    latent_dim : int, optional
        Number of latents (default: the encoder's).
    """
    n = len(records)
    dim = encoder.model.config.latent_dim if latent_dim is None else latent_dim
    nan = np.nan
    z = np.full((n, dim), nan)
    z_err = np.full((n, dim), nan)
    cols: dict[str, np.ndarray] = {
        name: np.full(n, nan)
        for name in ("LOG_NORM", "LOG_NORM_ERR", "NH", "NH_LO", "NH_HI", "ANOMALY", "CSTAT")
    }
    dof = np.zeros(n, dtype=np.int32)
    cluster = np.full(n, -1, dtype=np.int16)
    fractions = np.zeros((n, len(CLASS_NAMES)))
    label = np.full(n, "", dtype=object)
    obj, obsid, error = (np.full(n, "", dtype=object) for _ in range(3))
    ra, dec = np.full(n, nan), np.full(n, nan)
    for i, rec in enumerate(records):
        obj[i], obsid[i], error[i] = rec["object"], rec["obsid"], rec["error"]
        ra[i], dec[i] = rec["ra"], rec["dec"]
        if "z" not in rec:
            continue
        z[i], z_err[i] = rec["z"], rec["z_err"]
        cols["LOG_NORM"][i], cols["LOG_NORM_ERR"][i] = rec["log_norm"], rec["log_norm_err"]
        cols["NH"][i], cols["NH_LO"][i], cols["NH_HI"][i] = rec["nh"]
        cols["ANOMALY"][i], cols["CSTAT"][i], dof[i] = rec["anomaly"], rec["cstat"], rec["dof"]
        cluster[i], label[i] = rec["cluster"], rec["cluster_label"]
        fractions[i] = rec["cluster_classes"]
    table = Table()
    table["FILE"] = np.array([rec["file"] for rec in records], dtype=str)
    table["OBJECT"] = obj.astype(str)
    table["OBSID"] = obsid.astype(str)
    table["RA"] = ra * u.deg
    table["DEC"] = dec * u.deg
    table["Z"] = z
    table["Z_ERR"] = z_err
    table["LOG_NORM"] = cols["LOG_NORM"] * u.dex(u.ph / u.cm**2 / u.s)
    table["LOG_NORM_ERR"] = cols["LOG_NORM_ERR"] * u.dex
    for key in ("NH", "NH_LO", "NH_HI"):
        table[key] = cols[key] * NH_UNIT
    table["CLUSTER"] = cluster
    table["CLUSTER_LABEL"] = label.astype(str)
    table["CLUSTER_CLASSES"] = fractions
    table["ANOMALY"] = cols["ANOMALY"]
    table["CSTAT"] = cols["CSTAT"]
    table["DOF"] = dof
    table["ERROR"] = error.astype(str)
    table.meta.update(provenance(encoder))
    return table


def results_table(rows, encoder: LatentEncoder) -> Table:
    """Build the output table from (path, spectrum, result, error) rows."""
    return table_from_records([_record(p, s, r, e) for p, s, r, e in rows], encoder)


def provenance(encoder: LatentEncoder | None) -> dict:
    """FITS keywords saying which package, network and grids made a table."""
    from . import __version__

    meta = {
        "CREATOR": f"sherpa_latent {__version__}",
        "DATE": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if encoder is None:
        return meta
    config = encoder.model.config
    ingrid, modgrid = config.input_grid, config.model_grid
    return meta | {
        "NETWORK": encoder.name,
        "NETSHA": encoder.sha256,
        "INGRID": f"{ingrid.emin}-{ingrid.emax} keV log x {ingrid.nbins}",
        "MODGRID": f"{modgrid.emin}-{modgrid.emax} keV log x {modgrid.nbins}",
        "CLASSES": ",".join(CLASS_NAMES),
        "NHUNIT": "1e22 cm^-2, median and 68% interval",
        "NORMBAND": "log10 photon flux 0.5-7 keV",
    }


# --- progress file ---------------------------------------------------------------------
# ProgressMismatch lives in sherpa_latent.errors; it is imported above, so
# ``from sherpa_latent.catalogue import ProgressMismatch`` keeps working.


def progress_path(output: str | os.PathLike) -> Path:
    """The progress file kept beside an ``encode`` output while the run is going."""
    output = Path(output)
    return output.with_name(output.name + PROGRESS_SUFFIX)


class ProgressFile:
    """Finished rows of an ``encode`` run, one JSON line per batch, appended as they finish.

    The first line describes the run (network SHA-256, grids, batch size); each further
    line holds the rows of one batch, keyed by the file name as given. A line cut short
    by an interruption, or any line that is not a batch, is dropped with every line after
    it (those batches are done again). A file whose first line is not a header of this
    format (not a progress file, or one damaged) is moved aside to ``PATH.invalid`` and
    the run starts over, so that it never blocks a run.

    Parameters
    ----------
    path : path-like
        The progress file.
    identity : dict
        What a run must share with the one that made the file to resume it.
    """

    def __init__(self, path: str | os.PathLike, identity: dict[str, Any]) -> None:
        self.path = Path(path)
        entry = {"format": _PROGRESS_FORMAT, "version": _PROGRESS_VERSION, **identity}
        self.identity = json.loads(json.dumps(entry))  # as it reads back from the file

    def read(
        self, *, restart: bool = False, log: Callable[[str], None] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Rows recorded so far (file -> record); makes the file when there is none.

        Parameters
        ----------
        restart : bool
            Start over when the file belongs to another kind of run (otherwise
            :class:`ProgressMismatch`).
        log : callable, optional
            Told (one line) when a file without a valid header is moved aside.
        """
        done: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            good_end, header, invalid = 0, None, False
            with open(self.path, "rb") as handle:
                for raw in handle:
                    if not raw.endswith(b"\n"):
                        break
                    try:
                        entry = json.loads(raw)
                    except ValueError:
                        invalid = header is None
                        break
                    if header is None:
                        if not _is_header(entry):
                            invalid = True
                            break
                        header = entry
                    else:
                        rows = _batch_rows(entry)
                        if rows is None:
                            break
                        for rec in rows:
                            done[rec["file"]] = rec
                    good_end += len(raw)
            if header is not None and header != self.identity:
                if not restart:
                    raise ProgressMismatch(
                        self.path,
                        "progress file of another run (network, grids or batch size "
                        "differ); remove it or set clobber to start over",
                    )
                header, done = None, {}
            if invalid:
                aside = self.path.with_name(self.path.name + ".invalid")
                os.replace(self.path, aside)
                if log is not None:
                    log(
                        f"{self.path} has no valid header (not a progress file of this "
                        f"format): moved to {aside}, starting over"
                    )
            elif header is None:
                self.path.unlink()  # empty, or cut before its first line was complete
            else:
                with open(self.path, "r+b") as handle:
                    handle.truncate(good_end)
                return done
        self._append(self.identity)
        return done

    def _append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def append(self, batch: int, records: Sequence[dict[str, Any]]) -> None:
        """Record the rows of one finished batch."""
        self._append({"batch": int(batch), "rows": list(records)})

    def remove(self) -> None:
        """Delete the file (once the final output is written)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _is_header(entry: Any) -> bool:
    """Whether a decoded first line is the header of a progress file of this format."""
    return isinstance(entry, dict) and entry.get("format") == _PROGRESS_FORMAT


def _batch_rows(entry: Any) -> list[dict[str, Any]] | None:
    """The rows of a decoded batch line, or None when the line is not a batch."""
    rows = entry.get("rows") if isinstance(entry, dict) else None
    if not isinstance(rows, list):
        return None
    for rec in rows:
        if not (isinstance(rec, dict) and isinstance(rec.get("file"), str)):
            return None
        if not isinstance(rec.get("error"), str):
            return None
    return rows


# --- the run ---------------------------------------------------------------------------------
def encode_files(
    paths: Sequence[str | os.PathLike],
    encoder: LatentEncoder,
    *,
    batch_size: int = 256,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    progress_file: str | os.PathLike | None = None,
    restart: bool = False,
    log: Callable[[str], None] | None = None,
) -> Table:
    """Load and encode files; every file gets a row, bad ones with an error.

    Parameters
    ----------
    paths : sequence of path-like
        PHA files; the table's rows are in this order.
    encoder : LatentEncoder
        The network.
    batch_size : int, optional
        Files per batched pass through the network (and per record in the progress
        file). Batches are fixed slices of ``paths``, so a resumed run passes the same
        spectra together through the network as an uninterrupted one.
    workers : int, optional
        Processes that read the files (1: read in this process).
    progress : callable, optional
        Called with the number of files just loaded (for a progress bar); on a resumed
        run first with the number already done.
    progress_file : path-like, optional
        Where finished batches are recorded; rows found there are not done again (rows
        with an error are retried). The caller removes it once the output is safe. Only
        one run may use a progress file at a time: ``sherpa-latent encode`` holds
        :func:`~sherpa_latent.fileio.output_lock` on its output for the whole run.
    restart : bool, optional
        Discard a progress file made by another kind of run instead of refusing.
    log : callable, optional
        Receives one-line notes (for instance how many files a resumed run skips).

    Returns
    -------
    astropy.table.Table
        Columns FILE, OBJECT, OBSID, RA, DEC, Z, Z_ERR, LOG_NORM, LOG_NORM_ERR, NH, NH_LO,
        NH_HI, CLUSTER, CLUSTER_LABEL, CLUSTER_CLASSES, ANOMALY, CSTAT, DOF, ERROR.

    Raises
    ------
    ProgressMismatch
        The progress file belongs to another kind of run and ``restart`` is not set.
    """
    paths = [os.fspath(p) for p in paths]
    batch_size = max(1, int(batch_size))
    grids = (encoder.model.config.input_grid, encoder.model.config.model_grid)
    recorder = None
    done: dict[str, dict[str, Any]] = {}
    if progress_file is not None:
        recorder = ProgressFile(progress_file, _identity(encoder, batch_size))
        recorded = recorder.read(restart=restart, log=log)
        done = {k: v for k, v in recorded.items() if not v["error"]}
        if done:
            n_done = sum(1 for p in paths if p in done)
            if log is not None:
                log(
                    f"resuming from {recorder.path}: {n_done} of {len(paths)} files done, "
                    f"{len(paths) - n_done} to go"
                )
            if progress is not None and n_done:
                progress(n_done)
    starts = range(0, len(paths), batch_size)
    todo = [
        (k, [p for p in paths[s : s + batch_size] if p not in done]) for k, s in enumerate(starts)
    ]
    todo = [(k, batch) for k, batch in todo if batch]
    loaded_batches = _load_batches(
        [batch for _, batch in todo], workers, grids, progress or (lambda n: None)
    )
    try:
        for (k, _), loaded in zip(todo, loaded_batches, strict=True):
            good = [item for item in loaded if item.representation is not None]
            results = iter(
                encoder.encode([g.representation for g in good], names=[g.path for g in good])
                if good
                else ()
            )
            records = [
                _record(
                    item.path,
                    item,
                    next(results) if item.representation is not None else None,
                    item.error,
                )
                for item in loaded
            ]
            for rec in records:
                done[rec["file"]] = rec
            if recorder is not None:
                recorder.append(k, records)
    finally:
        loaded_batches.close()
    return table_from_records([done[p] for p in paths], encoder)


def _identity(encoder: LatentEncoder, batch_size: int) -> dict[str, Any]:
    config = encoder.model.config
    return {
        "network": encoder.name,
        "netsha": encoder.sha256,
        "clusters": _cluster_fingerprint(encoder.clusters),
        "ingrid": config.input_grid.to_dict(),
        "modgrid": config.model_grid.to_dict(),
        "batch_size": int(batch_size),
    }


def _cluster_fingerprint(clusters) -> str | None:
    """SHA-256 of a cluster model's arrays (None without one)."""
    if clusters is None:
        return None
    sha = hashlib.sha256()
    for name in ("weights", "means", "covariances", "class_counts"):
        value = getattr(clusters, name, None)
        if value is not None:
            sha.update(np.ascontiguousarray(value, dtype=np.float64).tobytes())
    return sha.hexdigest()


# --- report rows -------------------------------------------------------------------------
def report_table(
    reports: Sequence[SpectrumReport | dict], encoder: LatentEncoder | None = None
) -> Table:
    """A table of ``sherpa-latent report`` results, one row per file.

    Parameters
    ----------
    reports : sequence of SpectrumReport or dict
        Results of :func:`~sherpa_latent.report.report_file`; a dict is a failed file
        (``{"file": ..., "error": ...}``).
    encoder : LatentEncoder, optional
        The network used (for the provenance keywords).

    Returns
    -------
    astropy.table.Table
        FILE, OBJECT, OBSID, INSTRUMENT, EXPOSURE, NET_COUNTS, HR_HM/HR_HS/HR_MS with
        ``_LO``/``_HI`` (68% credible intervals), NH_CLASSICAL and GAMMA with ``_LO``/``_HI``
        (68%), NH_LATENT with ``_LO``/``_HI``, CLUSTER, CLUSTER_LABEL, ERROR. Values that
        were not computed are NaN (CLUSTER -1).
    """
    n = len(reports)
    nan = np.nan

    def full() -> np.ndarray:
        return np.full(n, nan)

    text = {k: np.full(n, "", dtype=object) for k in ("FILE", "OBJECT", "OBSID", "INSTRUMENT")}
    error = np.full(n, "", dtype=object)
    label = np.full(n, "", dtype=object)
    notes = np.full(n, "", dtype=object)
    at_limit = {k: np.zeros((n, 2), dtype=bool) for k in ("NH_CLASSICAL", "GAMMA")}
    exposure, net = full(), full()
    triples = {
        k: (full(), full(), full()) for k in ("HR_HM", "HR_HS", "HR_MS", "NH_CLASSICAL", "GAMMA")
    }
    triples["NH_LATENT"] = (full(), full(), full())
    cluster = np.full(n, -1, dtype=np.int16)
    for i, rep in enumerate(reports):
        if isinstance(rep, dict):
            text["FILE"][i], error[i] = rep.get("file", ""), rep.get("error", "")
            continue
        text["FILE"][i], text["OBJECT"][i] = rep.file, rep.object
        text["OBSID"][i], text["INSTRUMENT"][i] = rep.obsid, rep.instrument
        exposure[i], net[i] = rep.exposure, rep.net_counts
        values: dict[str, Sequence[float]] = {
            key.upper(): value for key, value in rep.hardness.to_dict().items()
        }
        said = list(rep.warnings)
        if rep.classical is not None:
            values["NH_CLASSICAL"], values["GAMMA"] = rep.classical.nh, rep.classical.gamma
            at_limit["NH_CLASSICAL"][i] = rep.classical.nh_at_limit
            at_limit["GAMMA"][i] = rep.classical.gamma_at_limit
            said += list(rep.classical.limit_notes)
            said += [rep.classical.note] if rep.classical.note else []
        notes[i] = "; ".join(said)
        if rep.latent is not None:
            values["NH_LATENT"] = rep.latent.nh
            cluster[i], label[i] = rep.latent.cluster, rep.latent.cluster_label
        for key, triple in values.items():
            for column, value in zip(triples[key], triple, strict=True):
                column[i] = value
    table = Table()
    for key, values in text.items():
        table[key] = values.astype(str)
    table["EXPOSURE"] = exposure * u.s
    table["NET_COUNTS"] = net * u.count
    for key, (value, lo, hi) in triples.items():
        unit = NH_UNIT if key.startswith("NH") else None
        for suffix, column in (("", value), ("_LO", lo), ("_HI", hi)):
            table[key + suffix] = column if unit is None else column * unit
    for key, flags in at_limit.items():
        # True where that bound is the parameter's limit, not a measured bound
        table[key + "_LO_AT_LIMIT"] = flags[:, 0]
        table[key + "_HI_AT_LIMIT"] = flags[:, 1]
    table["CLUSTER"] = cluster
    table["CLUSTER_LABEL"] = label.astype(str)
    table["WARNINGS"] = notes.astype(str)
    table["ERROR"] = error.astype(str)
    table.meta.update(provenance(encoder))
    table.meta["HRLEVEL"] = "68% credible intervals (CSC bands 0.5-1.2, 1.2-2, 2-7 keV)"
    table.meta["FITMODEL"] = "wabs * powlaw1d, 68% conf intervals"
    return table


# --- output --------------------------------------------------------------------------------
def fits_ready(table: Table) -> Table:
    """A copy of ``table`` that FITS can hold: text columns percent-encoded where needed.

    A string column with any character outside printable ASCII is written with
    :func:`~sherpa_latent.fileio.escape_fits_text`, and named in the ``PCTENC`` keyword
    (see the module notes). ``table`` itself is not changed.
    """
    out = table.copy(copy_data=False)
    escaped = []
    for name in out.colnames:
        column = out[name]
        if column.dtype.kind not in "UO" or column.ndim != 1:
            continue
        values = [str(v) for v in np.asarray(column).tolist()]
        if any(needs_fits_escape(v) for v in values):
            out[name] = np.array([escape_fits_text(v) for v in values], dtype=str)
            escaped.append(name)
    out.meta.pop(ESCAPED_KEYWORD, None)
    if escaped:
        out.meta[ESCAPED_KEYWORD] = ",".join(escaped)
    return out


def write_table(table: Table, path: str | os.PathLike, *, clobber: bool = False) -> Path:
    """Write a table as FITS atomically; refuse to overwrite without ``clobber``.

    Text that FITS cannot hold is percent-encoded (:func:`fits_ready`); read the file
    with :func:`read_table` to get it back exactly.

    Raises
    ------
    sherpa.utils.err.IOErr
        The file exists and ``clobber`` is not set.
    """
    ready = fits_ready(table)
    with atomic_output(path, clobber=clobber) as tmp:
        ready.write(tmp, format="fits", overwrite=True)
    return path


def read_table(path: str | os.PathLike, **kwargs: Any) -> Table:
    """Read a table written by :func:`write_table`, with its text decoded exactly.

    Parameters
    ----------
    path : path-like
        The FITS file.
    **kwargs
        Passed to ``astropy.table.Table.read`` (for example ``mask_invalid=False``).

    Returns
    -------
    astropy.table.Table
        The columns named in ``PCTENC`` decoded to str (the keyword is dropped); other
        columns as astropy reads them.
    """
    table = Table.read(path, format="fits", **kwargs)
    names = str(table.meta.pop(ESCAPED_KEYWORD, "") or "")
    for name in (n.strip() for n in names.split(",")):
        if name not in table.colnames:
            continue
        column = table[name]
        if hasattr(column, "filled"):
            column = column.filled("")
        values = np.asarray(column)
        if values.dtype.kind == "S":
            values = np.char.decode(values, "ascii")
        table[name] = np.array([unescape_fits_text(str(v)) for v in values.tolist()], dtype=str)
    return table
