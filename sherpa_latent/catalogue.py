"""Encode many spectrum files into one table, one row per file, failures included.

:func:`encode_files` loads and encodes the files in batches and returns an astropy
``Table`` with units; a file that cannot be used gets a row whose ``ERROR`` column says
why. With a progress file (:func:`progress_path`) every finished batch is recorded as it
completes, so that a run that was interrupted goes on from where it stopped.
:func:`report_files` reports on many spectra (what ``sherpa-latent report`` runs).
Both run their batches in the calling process by default, or as tasks on Dask workers
(``workers=N`` for a local cluster, ``scheduler=ADDRESS`` for a running one; see
:mod:`sherpa_latent.executors`): each worker reads a response file and loads the network
once, and the calling process keeps the rows, the progress file and the output.
:func:`write_table` writes a table as FITS atomically, with provenance keywords, and
refuses to overwrite without ``clobber``; :func:`read_table` reads one back.
:func:`report_table` turns ``sherpa-latent report`` results into a table.

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
import os
import shlex
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.table import Table

from .classes import CLASS_NAMES
from .columns import (
    ENCODE_COLUMNS,
    REPORT_COLUMNS,
    json_values,
    latent_values,
    make_table,
    report_values,
)
from .errors import ProgressMismatch
from .executors import check_workers, make_executor, process_state
from .fileio import (
    atomic_output,
    escape_fits_text,
    needs_fits_escape,
    sha256_file,
    unescape_fits_text,
)
from .grids import INPUT_GRID, MODEL_GRID, EnergyGrid
from .inference import LatentEncoder, LatentResult
from .inputs import SpectrumInput, as_input
from .reader import ResponseFileCache, file_key, using_cache
from .report import error_message
from .spectrum import ResponseRepresentation, Spectrum, load_spectrum

if TYPE_CHECKING:
    from .report import SpectrumReport

__all__ = [
    "LoadedSpectrum",
    "ResponseCache",
    "ProgressFile",
    "ProgressMismatch",
    "encode_files",
    "load_for_encoding",
    "report_files",
    "report_one",
    "write_report_plot",
    "report_batch_size",
    "ReportOutcome",
    "worker_counts",
    "progress_path",
    "results_table",
    "table_from_records",
    "report_table",
    "provenance",
    "history",
    "package_versions",
    "fits_ready",
    "read_table",
    "write_table",
    "ENCODE_EXTNAME",
    "REPORT_EXTNAME",
]

PROGRESS_SUFFIX = ".partial.jsonl"
"""Added to the output's name to make the progress file of an ``encode`` run."""

_PROGRESS_FORMAT = "sherpa_latent encode progress"
_PROGRESS_VERSION = 2  # 2: rows keyed by the column names of sherpa_latent.columns

ESCAPED_KEYWORD = "PCTENC"
"""Table keyword listing the string columns written percent-encoded (see the module notes)."""

ENCODE_EXTNAME = "LATENT"
"""EXTNAME of the ``encode`` table."""

REPORT_EXTNAME = "REPORT"
"""EXTNAME of the ``report --output`` table."""


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
    object, obsid, instrument : str
        OBJECT, OBS_ID and INSTRUME (with DETNAM) from the header ("" when unknown).
    position : tuple of float or None
        (RA, DEC) of :attr:`Spectrum.position <sherpa_latent.spectrum.Spectrum.position>`
        (RA/DEC keywords, else RA_TARG/DEC_TARG), degrees.
    error : str
        One line naming the file and the problem ("" for a good file).
    warnings : tuple of str
        What did not stop the spectrum being used (``Spectrum.warnings``).
    """

    path: str
    representation: ResponseRepresentation | None = None
    object: str = ""
    obsid: str = ""
    position: tuple[float, float] | None = None
    error: str = ""
    instrument: str = ""
    warnings: tuple[str, ...] = ()


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
    path: str | os.PathLike | SpectrumInput,
    cache: ResponseCache | None = None,
    input_grid: EnergyGrid = INPUT_GRID,
    model_grid: EnergyGrid = MODEL_GRID,
) -> LoadedSpectrum:
    """Load one file and make its representation; never raises for a bad file.

    Parameters
    ----------
    path : str, path-like or SpectrumInput
        PHA file, or a :class:`~sherpa_latent.inputs.SpectrumInput` naming its ARF, RMF
        and background too (the result's ``path`` is the PHA file).
    cache : ResponseCache, optional
        Shared responses (a fresh cache when None).
    input_grid, model_grid : EnergyGrid
        The network's grids.
    """
    cache = ResponseCache() if cache is None else cache
    item = as_input(path)
    path = item.pha
    facts: dict[str, Any] = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec = load_spectrum(
                item.pha,
                arf=item.arf,
                rmf=item.rmf,
                background=item.background,
                cache=cache.files,
            )
            facts = {
                "object": spec.object,
                "obsid": spec.obsid,
                "position": spec.position,
                "instrument": spec.detector,
                "warnings": tuple(spec.warnings),
            }
            rep = cache.representation(spec, input_grid, model_grid)
        return LoadedSpectrum(path, rep, **facts)
    except Exception as exc:  # noqa: BLE001 - one bad file never stops the others
        return LoadedSpectrum(path, None, error=error_message(path, exc), **facts)


# --- where the work runs ------------------------------------------------------------------
# Every per-file job goes through sherpa_latent.executors: in this process by default, on
# Dask workers with workers=N or scheduler=ADDRESS. A task is one batch of files; what a
# worker keeps between tasks (its response cache, the loaded network) is per process.

_CACHE_KEY = "sherpa_latent.catalogue.responses"
_COUNTS_KEY = "sherpa_latent.catalogue.counts"


def _process_cache() -> ResponseCache:
    """The response cache of this process (on a Dask worker: of that worker)."""
    return process_state(_CACHE_KEY, ResponseCache)


def _count(name: str, n: int = 1) -> None:
    counts = process_state(_COUNTS_KEY, dict)
    counts[name] = counts.get(name, 0) + n


def worker_counts() -> dict[str, int]:
    """What this process has done for per-file jobs: files loaded, response files read.

    Run on every Dask worker with ``client.run(worker_counts)``, it shows that each worker
    reads a response file once, not once per spectrum. Keys: ``files`` (spectra loaded for
    ``encode``), ``report_files`` (spectra reported), ``response_reads`` (ARF and RMF files
    read by the shared cache), ``projections`` (responses projected onto the grids).
    """
    cache = _process_cache()
    counts = dict(process_state(_COUNTS_KEY, dict))
    counts.update(response_reads=cache.files.misses, projections=cache.misses)
    counts.setdefault("files", 0)
    counts.setdefault("report_files", 0)
    return counts


@dataclass(frozen=True)
class _NetworkOnWorker:
    """What a Dask worker needs to load the driver's network itself (once per worker).

    ``network`` is the weights file as the driver read it (None: the network shipped in
    the package, wherever the worker's installation keeps it); the worker checks the
    SHA-256 against ``sha256``. The cluster model travels with the task (a few KiB).
    """

    network: str | None
    sha256: str
    clusters: Any
    device: str


def _network_on_worker(encoder: LatentEncoder) -> _NetworkOnWorker:
    """How Dask workers load ``encoder``: from the file it was read from."""
    from .network import default_network_path

    source = getattr(encoder.model, "source_path", None)
    if source is None or not os.path.isfile(source):
        raise ValueError(
            "the network was not read from a file, so Dask workers cannot load it: save "
            "it with save_network and load it with load_encoder"
        )
    default = default_network_path()
    shipped = default.is_file() and os.path.samefile(source, default)
    device = "cpu" if encoder.model.device.type == "cpu" else "auto"
    return _NetworkOnWorker(
        None if shipped else os.path.abspath(source), encoder.sha256, encoder.clusters, device
    )


def _worker_encoder(network: LatentEncoder | _NetworkOnWorker | None) -> LatentEncoder | None:
    """The encoder itself (in this process), or the worker's copy, loaded once per worker."""
    if network is None or isinstance(network, LatentEncoder):
        return network
    key = "sherpa_latent.catalogue.encoder:" + json.dumps(
        [network.network, network.sha256, network.device, _cluster_fingerprint(network.clusters)]
    )

    def load() -> LatentEncoder:
        from .errors import NetworkFileError
        from .network import read_network

        model = read_network(network.network, device=network.device)
        found = str(getattr(model, "metadata", {}).get("sha256", ""))
        if found != network.sha256:
            where = network.network or "the shipped network"
            raise NetworkFileError(
                str(getattr(model, "source_path", where)),
                f"on a Dask worker this network has SHA-256 {found[:16]}..., the run's has "
                f"{network.sha256[:16]}...: every worker must see the same network file",
            )
        return LatentEncoder(model, network.clusters)

    return process_state(key, load)


def _encode_batch(
    batch: Sequence[str | SpectrumInput],
    *,
    encoder: LatentEncoder | _NetworkOnWorker,
    grids: tuple[EnergyGrid, EnergyGrid],
    on_file: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """One task of ``encode``: load a batch of files, encode the good ones, make their rows."""
    network = _worker_encoder(encoder)
    cache = _process_cache()
    loaded = []
    for item in batch:
        loaded.append(load_for_encoding(item, cache, *grids))
        if on_file is not None:
            on_file(1)
    _count("files", len(loaded))
    good = [item for item in loaded if item.representation is not None]
    results = iter(
        network.encode([g.representation for g in good], names=[g.path for g in good])
        if good
        else ()
    )
    return [
        _record(
            item.path,
            item,
            next(results) if item.representation is not None else None,
            item.error,
        )
        for item in loaded
    ]


def _encode_batches(
    todo: Sequence[tuple[int, Sequence[str | SpectrumInput]]],
    encoder: LatentEncoder,
    grids: tuple[EnergyGrid, EnergyGrid],
    *,
    workers: int,
    scheduler: str | os.PathLike | None,
    progress: Callable[[int], None] | None,
    log: Callable[[str], None] | None = None,
) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """Yield (batch number, rows) as batches finish, wherever they run."""
    if not todo:
        return
    if len(todo) == 1:
        workers = 1  # one batch: a local cluster would only add its start
    with make_executor(workers, scheduler, log=log) as executor:
        if executor.in_process:
            constants = {"encoder": encoder, "grids": grids, "on_file": progress}
        else:
            constants = {"encoder": _network_on_worker(encoder), "grids": grids}
        tasks = [list(batch) for _, batch in todo]
        for index, records in executor.map_unordered(
            _encode_batch, tasks, name="encode", **constants
        ):
            if not executor.in_process and progress is not None:
                progress(len(records))
            yield todo[index][0], records


# --- rows ----------------------------------------------------------------------------------
def _record(
    path: str,
    facts: LoadedSpectrum | Spectrum | None,
    result: LatentResult | None,
    error: str,
) -> dict[str, Any]:
    """One row of the ``encode`` table as JSON-ready values, keyed by column name.

    The keys are :data:`~sherpa_latent.columns.ENCODE_COLUMNS`; a value that was not
    computed is None. The same dict is recorded in the progress file, streamed by
    ``encode --json`` and turned into a table row by :func:`table_from_records`, so that a
    row reads the same whether fresh or read back.
    """
    position = getattr(facts, "position", None)
    representation = getattr(facts, "representation", None)
    exposure = getattr(facts, "exposure", None)
    if exposure is None and representation is not None:
        exposure = representation.exposure
    rec: dict[str, Any] = dict.fromkeys(ENCODE_COLUMNS)
    rec |= {
        "FILE": str(path),
        "OBJECT": str(getattr(facts, "object", "") or ""),
        "OBSID": str(getattr(facts, "obsid", "") or ""),
        "INSTRUMENT": str(getattr(facts, "instrument", "") or ""),
        "RA": None if position is None else float(position[0]),
        "DEC": None if position is None else float(position[1]),
        "EXPOSURE": None if exposure is None else float(exposure),
    }
    if result is not None:
        rec |= latent_values(result)
    rec["WARNINGS"] = "; ".join(getattr(facts, "warnings", None) or ())
    rec["ERROR"] = str(error)
    return json_values(rec)


def table_from_records(
    records: Sequence[dict[str, Any]], encoder: LatentEncoder, *, latent_dim: int | None = None
) -> Table:
    """Build the ``encode`` table (EXTNAME ``LATENT``) from row records.

    Parameters
    ----------
    records : sequence of dict
        One per file, in output order, as :func:`encode_files` makes them (keys: the
        column names; None where nothing was computed).
    encoder : LatentEncoder
        The network (for the latent size and the provenance keywords).
    latent_dim : int, optional
        Number of latents (default: the encoder's).

    Returns
    -------
    astropy.table.Table
        The columns :data:`~sherpa_latent.columns.ENCODE_COLUMNS` with their units
        (docs/columns.md).
    """
    dim = encoder.model.config.latent_dim if latent_dim is None else int(latent_dim)
    table = make_table(records, ENCODE_COLUMNS, sizes={"Z": dim, "Z_ERR": dim})
    table.meta.update(provenance(encoder))
    table.meta["EXTNAME"] = ENCODE_EXTNAME
    return table


def results_table(rows, encoder: LatentEncoder) -> Table:
    """Build the ``encode`` table from (path, spectrum, result, error) rows."""
    return table_from_records([_record(p, s, r, e) for p, s, r, e in rows], encoder)


def provenance(encoder: LatentEncoder | None) -> dict:
    """FITS keywords saying which package, network and grids made a table.

    CREATOR (``sherpa_latent <version>``), DATE (UTC), and with a network NETWORK, NETSHA
    (its SHA-256), INGRID, MODGRID and CLASSES.
    """
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
    }


def package_versions() -> dict[str, str]:
    """Versions of sherpa_latent, sherpa, numpy, astropy and torch ("absent" when not installed).

    Read from the installed distributions' metadata, so torch is not imported.
    """
    from importlib import metadata

    from . import __version__

    out = {"sherpa_latent": str(__version__)}
    for name in ("sherpa", "numpy", "astropy", "torch"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


MAX_LISTED_INPUTS = 20
"""Input files named one by one in HISTORY; beyond this only their number is."""


def history(
    *,
    command: Sequence[str] | str | None = None,
    inputs: Sequence[Any] | None = None,
    stacks: Sequence[str | os.PathLike] | None = None,
    network: str | None = None,
    netsha: str | None = None,
) -> list[str]:
    """The HISTORY lines of a FITS output: how it was made.

    Parameters
    ----------
    command : sequence of str or str, optional
        The command line (``sys.argv``), quoted as a shell would need it.
    inputs : sequence, optional
        Input files (str, path-like or :class:`~sherpa_latent.inputs.SpectrumInput`):
        named when there are at most :data:`MAX_LISTED_INPUTS`, counted otherwise.
    stacks : sequence of path-like, optional
        Stack files (``@file.lis``) the inputs came from.
    network, netsha : str, optional
        The network's name and SHA-256.

    Returns
    -------
    list of str
        Plain text lines (non-ASCII characters percent-encoded, as in ``PCTENC`` columns):
        ``package NAME VERSION`` for each of :func:`package_versions`, ``command: ...``,
        ``stack file: ...``, ``input files: N`` and ``input: ...``, ``network: NAME`` and
        ``sha256 HEX``. FITS cuts a line longer than 72 characters over several cards.
    """
    lines = [f"package {name} {version}" for name, version in package_versions().items()]
    if command is not None:
        words = [command] if isinstance(command, str) else [os.fspath(w) for w in command]
        if words and not isinstance(command, str):
            words[0] = os.path.basename(words[0])
        lines.append("command: " + " ".join(shlex.quote(w) for w in words))
    for stack in stacks or ():
        name = os.fspath(stack)
        lines.append("stack file: " + name.removeprefix("@-").removeprefix("@"))
    if inputs is not None:
        items = list(inputs)
        lines.append(f"input files: {len(items)}")
        if len(items) <= MAX_LISTED_INPUTS:
            lines += [f"input: {_input_text(item)}" for item in items]
    if network is not None:
        lines.append(f"network: {network}")
    if netsha is not None:
        lines.append(f"sha256 {netsha}")  # 71 characters: one HISTORY card
    return [escape_fits_text(line) if needs_fits_escape(line) else line for line in lines]


def _input_text(item: Any) -> str:
    """An input as text: the PHA file, with any ARF, RMF and background named by hand."""
    if not isinstance(item, SpectrumInput):
        return os.fspath(item)
    parts = [os.fspath(item.pha)]
    for key in ("arf", "rmf", "background"):
        value = getattr(item, key)
        if value is not None:
            parts.append(f"{key}={os.fspath(value)}")
    return " ".join(parts)


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
    line holds the rows of one batch (dicts keyed by column name, FILE and ERROR among
    them), keyed by the file name as given. A line cut short
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
                            done[rec["FILE"]] = rec
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
        if not (isinstance(rec, dict) and isinstance(rec.get("FILE"), str)):
            return None
        if not isinstance(rec.get("ERROR"), str):
            return None
    return rows


# --- the run ---------------------------------------------------------------------------------
def encode_files(
    paths: Sequence[str | os.PathLike | SpectrumInput],
    encoder: LatentEncoder,
    *,
    batch_size: int = 256,
    workers: int = 1,
    scheduler: str | os.PathLike | None = None,
    progress: Callable[[int], None] | None = None,
    progress_file: str | os.PathLike | None = None,
    restart: bool = False,
    log: Callable[[str], None] | None = None,
    on_records: Callable[[list[dict[str, Any]]], None] | None = None,
) -> Table:
    """Load and encode files; every file gets a row, bad ones with an error.

    Parameters
    ----------
    paths : sequence of path-like or SpectrumInput
        PHA files, or :class:`~sherpa_latent.inputs.SpectrumInput` items that also name
        the ARF, RMF and background to use; the table's rows are in this order, and its
        FILE column holds the PHA file. Rows are keyed by the PHA file (in the progress
        file too), so one PHA file gets one row.
    encoder : LatentEncoder
        The network.
    batch_size : int, optional
        Files per batched pass through the network (and per record in the progress
        file). Batches are fixed slices of ``paths``, so a resumed run passes the same
        spectra together through the network as an uninterrupted one.
    workers : int, optional
        1 (the default): the files are read and encoded in this process, and nothing is
        started. N > 1: a local Dask cluster of N worker processes
        (:mod:`sherpa_latent.executors`) reads and encodes the batches side by side.
    scheduler : str or path-like, optional
        Address (``tcp://host:8786``) or scheduler file of a running Dask scheduler, whose
        workers read and encode the batches (one task per batch; the files and the network
        must be on a file system the workers see). Each worker reads a response file once
        and loads the network once. The rows, the progress file and the output are this
        process's, as without Dask; a batch whose worker dies is run again elsewhere and
        recorded once.
    progress : callable, optional
        Called with the number of files just done (for a progress bar: per file in this
        process, per batch on Dask workers); on a resumed run first with the number
        already done.
    progress_file : path-like, optional
        Where finished batches are recorded; rows found there are not done again (rows
        with an error are retried). The caller removes it once the output is safe. Only
        one run may use a progress file at a time: ``sherpa-latent encode`` holds
        :func:`~sherpa_latent.fileio.output_lock` on its output for the whole run.
    restart : bool, optional
        Discard a progress file made by another kind of run instead of refusing.
    log : callable, optional
        Receives one-line notes (for instance how many files a resumed run skips).
    on_records : callable, optional
        Called with the row records of each batch as soon as it is encoded (on a resumed
        run, first with those found done); :func:`table_from_records` turns them into
        table rows.

    Returns
    -------
    astropy.table.Table
        EXTNAME ``LATENT``, the columns
        :data:`~sherpa_latent.columns.ENCODE_COLUMNS` (docs/columns.md): FILE, OBJECT,
        OBSID, INSTRUMENT, RA, DEC, EXPOSURE, the latent model's columns (Z, Z_ERR,
        NORM_LATENT, NH_LATENT with ``_LO``/``_HI``, CLUSTER, P_<CLASS>, ANOMALY, its
        statistic, ...), WARNINGS and ERROR.

    Raises
    ------
    ProgressMismatch
        The progress file belongs to another kind of run and ``restart`` is not set.
    ValueError
        ``workers`` below 1, or above 1 together with ``scheduler``.
    sherpa_latent.executors.SchedulerError
        The Dask scheduler cannot be reached.
    """
    check_workers(workers, scheduler)
    items = [as_input(p) for p in paths]
    paths = [item.pha for item in items]
    batch_size = max(1, int(batch_size))
    grids = (encoder.model.config.input_grid, encoder.model.config.model_grid)
    recorder = None
    done: dict[str, dict[str, Any]] = {}
    if progress_file is not None:
        recorder = ProgressFile(progress_file, _identity(encoder, batch_size))
        recorded = recorder.read(restart=restart, log=log)
        done = {k: v for k, v in recorded.items() if not v["ERROR"]}
        if done:
            n_done = sum(1 for p in paths if p in done)
            if log is not None:
                log(
                    f"resuming from {recorder.path}: {n_done} of {len(paths)} files done, "
                    f"{len(paths) - n_done} to go"
                )
            if progress is not None and n_done:
                progress(n_done)
            if on_records is not None and n_done:
                on_records([done[p] for p in paths if p in done])
    starts = range(0, len(paths), batch_size)
    todo = [
        (k, [i for i in items[s : s + batch_size] if i.pha not in done])
        for k, s in enumerate(starts)
    ]
    todo = [(k, batch) for k, batch in todo if batch]
    finished = _encode_batches(
        todo, encoder, grids, workers=workers, scheduler=scheduler, progress=progress, log=log
    )
    try:
        for k, records in finished:
            for rec in records:
                done[rec["FILE"]] = rec
            if recorder is not None:
                recorder.append(k, records)
            if on_records is not None:
                on_records(records)
    finally:
        finished.close()
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
    """A table of ``sherpa-latent report`` results (EXTNAME ``REPORT``), one row per file.

    Parameters
    ----------
    reports : sequence of SpectrumReport or dict
        Results of :func:`~sherpa_latent.report.report_file`; a dict is a failed file
        (``{"FILE": ..., "ERROR": ...}``; the lower-case keys ``report_file`` gives are
        read too).
    encoder : LatentEncoder, optional
        The network used (for the provenance keywords).

    Returns
    -------
    astropy.table.Table
        The columns :data:`~sherpa_latent.columns.REPORT_COLUMNS` with their units (listed
        in docs/columns.md): the spectrum, hardness ratios, Galactic N_H, the classical
        fit with fluxes, the latent model, WARNINGS and ERROR. Values that were not
        computed are NaN (-1 for whole numbers, False for flags, "" for text). The
        values are those of ``SpectrumReport.to_dict()``.
    """
    rows = []
    for rep in reports:
        if isinstance(rep, dict):
            rows.append(
                {
                    "FILE": str(rep.get("FILE", rep.get("file", ""))),
                    "ERROR": str(rep.get("ERROR", rep.get("error", ""))),
                }
            )
        else:
            rows.append(report_values(rep))
    table = make_table(rows, REPORT_COLUMNS)
    table.meta.update(provenance(encoder))
    table.meta["EXTNAME"] = REPORT_EXTNAME
    table.meta["HRLEVEL"] = "68% credible intervals (CSC bands 0.5-1.2, 1.2-2, 2-7 keV)"
    table.meta["FITMODEL"] = "wabs * powlaw1d, 68% conf intervals"
    return table


# --- report runs ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportOutcome:
    """What :func:`report_files` hands back for one spectrum.

    Parameters
    ----------
    index : int
        Position of the spectrum in the run's list.
    file : str
        The PHA file.
    report : SpectrumReport or dict
        The report, or ``{"file": ..., "error": ...}`` for a file that could not be used.
    plot_error : str
        One line when its PNG could not be written ("" otherwise, or without plots).
    seconds : dict
        Time spent reading (``read``), reporting (``report``) and plotting (``plot``), s.
    """

    index: int
    file: str
    report: SpectrumReport | dict
    plot_error: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """The file could not be used, or its plot could not be written."""
        return isinstance(self.report, dict) or bool(self.plot_error)


def report_one(
    item: str | os.PathLike | SpectrumInput,
    *,
    classical: bool = True,
    encoder: LatentEncoder | None = None,
    cache: ResponseFileCache | None = None,
    quiet: bool = True,
    seconds: dict[str, float] | None = None,
) -> tuple[Spectrum | None, SpectrumReport | dict]:
    """Load and report one spectrum; never raises for a bad file.

    Parameters
    ----------
    item : path-like or SpectrumInput
        The PHA file, or a :class:`~sherpa_latent.inputs.SpectrumInput` naming its ARF,
        RMF and background too.
    classical : bool
        Run the classical fit.
    encoder : LatentEncoder, optional
        Network to encode the spectrum with.
    cache : ResponseFileCache, optional
        ARF and RMF objects shared with other spectra (never with a classical fit, which
        notices channels on the response objects themselves).
    quiet : bool
        Keep Python warnings of the libraries quiet while reading and reporting.
    seconds : dict, optional
        Receives the seconds spent reading (``read``) and reporting (``report``).

    Returns
    -------
    tuple
        (spectrum, report), or (spectrum or None, ``{"file": ..., "error": ...}``).
    """
    from .report import report_spectrum

    item = as_input(item)
    seconds = {} if seconds is None else seconds
    spectrum = None
    start = time.monotonic()
    try:
        with warnings.catch_warnings():
            if quiet:
                warnings.simplefilter("ignore")
            spectrum = load_spectrum(
                item.pha,
                arf=item.arf,
                rmf=item.rmf,
                background=item.background,
                cache=None if classical else cache,
            )
            seconds["read"] = time.monotonic() - start
            report = report_spectrum(spectrum, classical=classical, encoder=encoder)
            seconds["report"] = time.monotonic() - start - seconds["read"]
            return spectrum, report
    except Exception as exc:  # noqa: BLE001 - a batch goes on past any bad file
        return spectrum, {"file": item.pha, "error": error_message(item.pha, exc)}


def write_report_plot(
    spectrum: Spectrum, report: SpectrumReport, encoder: LatentEncoder, out: str | os.PathLike
) -> None:
    """One PNG (overwritten): the data with both folded models, beside latent space."""
    from matplotlib.figure import Figure

    from . import plotting

    fig = Figure(figsize=(19.0, 8.5), layout="constrained")
    fit_fig, latent_fig = fig.subfigures(1, 2, width_ratios=[1.0, 1.25])
    plotting.plot_latent_fit(
        spectrum, report.latent, encoder, classical=report.classical, figure=fit_fig
    )
    plotting.plot_latent_space([report.latent], encoder.clusters, figure=latent_fig)
    with atomic_output(out, clobber=True) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _report_batch(
    rows: Sequence[tuple[int, str | SpectrumInput, str | None]],
    *,
    classical: bool,
    encoder: LatentEncoder | _NetworkOnWorker | None,
    quiet: bool = True,
) -> list[ReportOutcome]:
    """One task of ``report``: (index, spectrum, PNG or None) rows reported in turn."""
    network = _worker_encoder(encoder)
    cache = _process_cache()
    out = []
    for index, item, png in rows:
        seconds: dict[str, float] = {}
        spectrum, result = report_one(
            item,
            classical=classical,
            encoder=network,
            cache=cache.files,
            quiet=quiet,
            seconds=seconds,
        )
        _count("report_files")
        plot_error = ""
        if png and not isinstance(result, dict):
            start = time.monotonic()
            try:
                write_report_plot(spectrum, result, network, png)
            except Exception as exc:  # noqa: BLE001 - one failed plot never stops the batch
                text = " ".join(str(exc).split()) or type(exc).__name__
                plot_error = f"{as_input(item).pha}: plot failed: {text}"
            seconds["plot"] = time.monotonic() - start
        out.append(ReportOutcome(index, as_input(item).pha, result, plot_error, seconds))
    return out


def report_batch_size(n_files: int, n_workers: int, classical: bool) -> int:
    """Files per task of a report run on Dask: small enough that every worker keeps busy.

    A classical fit takes 0.3-4 s, against a few milliseconds of the scheduler's per task,
    so with fits each spectrum is a task of its own (the uneven fit times then even out
    across workers). Without fits a task holds up to 32 files, and at least four tasks
    go to each worker.
    """
    if classical:
        return 1
    return max(1, min(32, -(-int(n_files) // (4 * max(1, int(n_workers))))))


def report_files(
    items: Sequence[str | os.PathLike | SpectrumInput],
    *,
    classical: bool = True,
    encoder: LatentEncoder | None = None,
    workers: int = 1,
    scheduler: str | os.PathLike | None = None,
    batch_size: int | None = None,
    plots: Mapping[int, str | os.PathLike] | None = None,
    clobber: bool = False,
    quiet: bool = True,
    on_outcome: Callable[[ReportOutcome], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[ReportOutcome]:
    """Report on many spectra, in this process or on Dask workers; one outcome per spectrum.

    What ``sherpa-latent report`` runs. Each spectrum is loaded, its hardness ratios
    computed, the classical fit run (``classical``) and the network asked (``encoder``)
    exactly as :func:`~sherpa_latent.report.report_spectrum` does it; a file that cannot
    be used gets an outcome whose report is ``{"file": ..., "error": ...}``.

    Parameters
    ----------
    items : sequence of path-like or SpectrumInput
        The spectra (a :class:`~sherpa_latent.inputs.SpectrumInput` names its ARF, RMF and
        background too).
    classical : bool, optional
        Run the classical fit (0.3-4 s per spectrum).
    encoder : LatentEncoder, optional
        The network (None: no latent results). On Dask workers each worker loads it from
        the same file, once, and checks its SHA-256.
    workers : int, optional
        1 (the default): in this process, nothing started. N > 1: a local Dask cluster of
        N worker processes.
    scheduler : str or path-like, optional
        Address (``tcp://host:8786``) or scheduler file of a running Dask scheduler whose
        workers do the work; the files must be on a file system they see.
    batch_size : int, optional
        Spectra per task (default: 1 in this process, :func:`report_batch_size` on Dask).
    plots : mapping of int to path-like, optional
        PNG file for the spectrum at each index (:func:`write_report_plot`; needs
        ``encoder``), written where the task runs.
    clobber : bool, optional
        Overwrite PNG files that exist; without it an existing one is refused before any
        work starts.
    quiet : bool, optional
        Keep the libraries' Python warnings quiet (in this process they can be shown).
    on_outcome : callable, optional
        Called with each outcome in the order of ``items``, as soon as it and those before
        it are done (to print results as they come).
    log : callable, optional
        Told (one line) when the scheduler has no workers yet.

    Returns
    -------
    list of ReportOutcome
        In the order of ``items``.

    Raises
    ------
    sherpa_latent.errors.OutputError
        A PNG file exists and ``clobber`` is not set.
    ValueError
        ``workers`` below 1, or above 1 together with ``scheduler``.
    sherpa_latent.executors.SchedulerError
        The Dask scheduler cannot be reached.
    """
    from .errors import OutputError

    check_workers(workers, scheduler)
    items = [as_input(item) for item in items]
    plots = {int(k): os.fspath(v) for k, v in (plots or {}).items()}
    if plots and encoder is None:
        raise ValueError("plots of reports need the network (encoder)")
    existing = sorted(png for png in plots.values() if os.path.lexists(png))
    if existing and not clobber:
        raise OutputError(existing[0], "exists and clobber is not set")
    outcomes: list[ReportOutcome | None] = [None] * len(items)
    if not items:
        return []
    shown = 0
    if len(items) == 1:
        workers = 1  # one spectrum: a local cluster would only add its start
    with make_executor(workers, scheduler, log=log) as executor:
        if executor.in_process:
            size = 1 if batch_size is None else int(batch_size)
            network: LatentEncoder | _NetworkOnWorker | None = encoder
        else:
            size = batch_size or report_batch_size(len(items), executor.n_workers, classical)
            network = None if encoder is None else _network_on_worker(encoder)
            quiet = True
        size = max(1, int(size))
        tasks = [
            [(i, items[i], plots.get(i)) for i in range(s, min(s + size, len(items)))]
            for s in range(0, len(items), size)
        ]
        for _, done in executor.map_unordered(
            _report_batch, tasks, name="report", classical=classical, encoder=network,
            quiet=quiet,
        ):  # fmt: skip
            for outcome in done:
                outcomes[outcome.index] = outcome
            while shown < len(items) and outcomes[shown] is not None:
                if on_outcome is not None:
                    on_outcome(outcomes[shown])
                shown += 1
    return [outcome for outcome in outcomes if outcome is not None]


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


def write_table(
    table: Table,
    path: str | os.PathLike,
    *,
    clobber: bool = False,
    command: Sequence[str] | str | None = None,
    inputs: Sequence[Any] | None = None,
    stacks: Sequence[str | os.PathLike] | None = None,
    extname: str | None = None,
) -> Path:
    """Write a table as FITS atomically, with its provenance; refuse to overwrite without
    ``clobber``.

    Text that FITS cannot hold is percent-encoded (:func:`fits_ready`); read the file
    with :func:`read_table` to get it back exactly.

    Parameters
    ----------
    table : astropy.table.Table
        What to write (not changed). Its ``meta`` become header keywords.
    path : path-like
        The FITS file.
    clobber : bool, optional
        Replace an existing file.
    command : sequence of str or str, optional
        The command line that made the table (the CLI passes ``sys.argv``).
    inputs : sequence, optional
        The input files (str, path-like or SpectrumInput).
    stacks : sequence of path-like, optional
        Stack files the inputs were listed in.
    extname : str, optional
        EXTNAME of the table's HDU (default: the table's own EXTNAME keyword, else
        ``TABLE``).

    Notes
    -----
    The HDU gets EXTNAME, CREATOR and DATE (from :func:`provenance` when the table lacks
    them) and HISTORY cards (:func:`history`: package versions, command line, stack
    files, input files or their number, the network's name and SHA-256) after any
    HISTORY the table already had. A unit that FITS cannot hold is an error, never
    dropped.

    Raises
    ------
    sherpa.utils.err.IOErr
        The file exists and ``clobber`` is not set.
    ValueError
        A column's unit cannot be written to FITS.
    """
    for name in table.colnames:
        unit = getattr(table[name], "unit", None)
        if unit is not None:
            try:
                unit.to_string("fits")
            except ValueError as exc:
                raise ValueError(
                    f"{path}: the unit {unit} of column {name} cannot be saved in FITS "
                    f"({' '.join(str(exc).split())})"
                ) from None
    ready = fits_ready(table)
    meta = ready.meta
    for key, value in provenance(None).items():
        meta.setdefault(key, value)
    meta["EXTNAME"] = str(extname or meta.get("EXTNAME") or "TABLE")
    old = meta.pop("HISTORY", None) or []
    old = [str(old)] if isinstance(old, str) else [str(line) for line in old]
    meta["HISTORY"] = old + history(
        command=command,
        inputs=inputs,
        stacks=stacks,
        network=meta.get("NETWORK"),
        netsha=meta.get("NETSHA"),
    )
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
