"""Where per-file work runs: in this process, on local Dask workers, or on a Dask cluster.

One engine for every per-file job (``encode``, ``report``, the classical fits of
``evaluate``, the shards of ``simulate``). :func:`make_executor` picks the place:

* no ``scheduler`` and ``workers`` 1 (the default): the work runs in the calling process,
  one task after the other. Nothing is started and Dask is not even imported.
* ``workers=N`` (N > 1): a ``dask.distributed.LocalCluster`` of N worker processes with one
  thread each, on 127.0.0.1, started for the run and closed after it.
* ``scheduler=ADDRESS``: the workers of an existing Dask scheduler, as
  ``dask.distributed.Client`` takes it (``tcp://host:8786``), or the JSON file that
  ``dask scheduler --scheduler-file FILE`` writes. Starting the scheduler and its workers
  (by hand, with ``dask-jobqueue`` on SLURM or PBS, on Kubernetes) is the user's; see
  ``docs/scaling.md``.

Work goes out as tasks, one batch of files each; :meth:`Executor.map_unordered` yields
``(index, result)`` as tasks finish. Dask runs a task again on another worker when its
worker dies, and a task's result arrives once, so a caller that keys what it gets by the
index records every task exactly once. Files are read where the tasks run, so on a cluster
the spectra, their responses and the network must be on a file system every worker sees,
at the same path: a task runs in the calling process's working folder (the worker changes
to it for the task), so relative names resolve, and errors read, as in the calling process.

What a worker should set up once rather than once per task (the response cache, a loaded
network, a test set) lives in :func:`process_state`: one object per process and key, made
on first use. In this process it is made once per process too.
"""

from __future__ import annotations

import abc
import contextlib
import itertools
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = [
    "Executor",
    "InProcessExecutor",
    "DaskExecutor",
    "SchedulerError",
    "make_executor",
    "process_state",
    "check_workers",
    "dask_setup",
]

_STATE: dict[str, Any] = {}
_STATE_LOCK = threading.Lock()

CONNECT_TIMEOUT_S = 30.0
"""Seconds to wait for an existing Dask scheduler to answer."""


class SchedulerError(ConnectionError):
    """The Dask scheduler cannot be reached or used (one line naming its address)."""


def process_state(key: str, factory: Callable[[], Any]) -> Any:
    """The object of this process stored under ``key``, made with ``factory()`` on first use.

    On a Dask worker this is a per-worker cache: every task the worker runs gets the same
    object. Thread-safe: two threads asking at once get one object.

    Parameters
    ----------
    key : str
        Name of the object (prefix it with the module's name).
    factory : callable
        Makes the object; called once per process and key.
    """
    found = _STATE.get(key)
    if found is None:
        with _STATE_LOCK:
            found = _STATE.get(key)
            if found is None:
                found = factory()
                _STATE[key] = found
    return found


def check_workers(workers: int, scheduler: str | os.PathLike | None) -> None:
    """Refuse a bad combination of ``workers`` and ``scheduler`` with one line.

    Raises
    ------
    ValueError
        ``workers`` below 1, or ``workers`` above 1 together with a scheduler (the
        scheduler's workers do the work; start more of them instead).
    """
    if int(workers) < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if scheduler not in (None, "") and int(workers) > 1:
        raise ValueError(
            f"give workers or scheduler, not both: the workers of the scheduler {scheduler} "
            "do the work (start more of them to go faster)"
        )


class Executor(abc.ABC):
    """Runs a function over tasks and hands back the results as tasks finish.

    Use as a context manager (or call :meth:`close`): a local cluster stops at the end.

    Attributes
    ----------
    in_process : bool
        The tasks run in this process (nothing started).
    description : str
        Where the tasks run, for a log line.
    """

    in_process = True
    description = "in this process"

    @property
    def n_workers(self) -> int:
        """Workers that run tasks at the same time (1 in this process)."""
        return 1

    @abc.abstractmethod
    def map_unordered(
        self,
        fn: Callable[..., Any],
        tasks: Sequence[Any],
        *,
        name: str = "task",
        **constants: Any,
    ) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, fn(tasks[index], **constants))`` for every task, as each finishes.

        Parameters
        ----------
        fn : callable
            A function defined at the top level of a module (Dask workers import it).
        tasks : sequence
            One argument per task (a batch of files, say).
        name : str
            Label of the tasks (in Dask's keys and dashboard).
        **constants
            Keyword arguments passed to every call.

        Raises
        ------
        Exception
            Whatever a task raised (the remaining tasks are cancelled).
        """

    def close(self) -> None:  # noqa: B027 - nothing to stop unless a subclass started it
        """Stop what this executor started (nothing in this process)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class InProcessExecutor(Executor):
    """Tasks run one after the other in the calling process; nothing is started."""

    def map_unordered(
        self,
        fn: Callable[..., Any],
        tasks: Sequence[Any],
        *,
        name: str = "task",
        **constants: Any,
    ) -> Iterator[tuple[int, Any]]:
        for index, task in enumerate(tasks):
            yield index, fn(task, **constants)


def _quiet_process() -> None:
    """Keep Sherpa's and astropy's chatter off a worker's log (once per process)."""
    import warnings

    warnings.simplefilter("ignore")
    for name in ("sherpa", "astropy"):
        logging.getLogger(name).setLevel(logging.ERROR)


_FOLDER_LOCK = threading.RLock()


@contextlib.contextmanager
def _in_folder(folder: str) -> Iterator[None]:
    """Run in the caller's folder (relative file names resolve as they did there).

    The working folder belongs to the whole process, so tasks of one worker that need it
    take turns (a worker with one thread, as docs/scaling.md starts them, never waits).
    """
    with _FOLDER_LOCK:
        before = os.getcwd()
        if folder != before:
            try:
                os.chdir(folder)
            except OSError as exc:
                raise FileNotFoundError(
                    f"the run's folder {folder} is not on the Dask worker at "
                    f"{socket.gethostname()} ({exc.strerror}): the files must be on a file "
                    "system that every worker sees, at the same path"
                ) from None
        try:
            yield
        finally:
            if folder != before:
                os.chdir(before)


def dask_setup(worker: Any = None) -> None:
    """Set up a Dask worker process for this package (Dask calls it when preloading).

    Local clusters started here preload this module into their workers: the libraries'
    chatter is kept quiet, and Ctrl-C, which the terminal sends to every process of the
    command, is left to the command (it stops the cluster), so that workers do not print
    tracebacks of their own. Workers of a scheduler started by hand may preload it too
    (``dask worker ADDRESS --preload sherpa_latent.executors``); they work without it.
    """
    _quiet_process()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_on_worker(fn: Callable[..., Any], task: Any, folder: str, **constants: Any) -> Any:
    """A task on a Dask worker: libraries quiet, in the run's folder, ``fn(task, ...)``."""
    process_state("sherpa_latent.executors.quiet", lambda: _quiet_process() or True)
    with _in_folder(folder):
        return fn(task, **constants)


class DaskExecutor(Executor):
    """Tasks run on Dask workers: a local cluster started here, or an existing scheduler.

    Parameters
    ----------
    scheduler : str or path-like, optional
        Address of a running scheduler (``tcp://host:8786``, as ``dask.distributed.Client``
        takes it) or a scheduler file (JSON) written by ``dask scheduler
        --scheduler-file``.
    workers : int, optional
        Without a scheduler: processes of the ``LocalCluster`` started for this executor
        (one thread each, listening on 127.0.0.1 only).
    timeout : float, optional
        Seconds to wait for the scheduler to answer.
    log : callable, optional
        Told (one line) when the scheduler has no workers yet; tasks wait for workers
        (on a batch system they may start minutes after the scheduler).

    Raises
    ------
    SchedulerError
        The scheduler does not answer within ``timeout``.
    """

    in_process = False

    def __init__(
        self,
        scheduler: str | os.PathLike | None = None,
        *,
        workers: int = 1,
        timeout: float = CONNECT_TIMEOUT_S,
        log: Callable[[str], None] | None = None,
    ) -> None:
        from distributed import Client, LocalCluster

        self._cluster = None
        self._token = uuid.uuid4().hex[:12]
        if scheduler in (None, ""):
            self._cluster = LocalCluster(
                n_workers=int(workers),
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.ERROR,
                preload=["sherpa_latent.executors"],  # dask_setup: Ctrl-C left to the command
            )
            try:
                self.client = Client(self._cluster, set_as_default=False)
            except BaseException:
                self._cluster.close()
                raise
            self.address = self._cluster.scheduler_address
            self.description = f"{int(workers)} local Dask workers"
            return
        scheduler = os.fspath(scheduler)
        where = (
            {"scheduler_file": scheduler} if os.path.isfile(scheduler) else {"address": scheduler}
        )
        try:
            self.client = Client(**where, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise SchedulerError(
                f"cannot reach the Dask scheduler at {scheduler} ({reason}); start it first "
                "(see docs/scaling.md) or leave out scheduler="
            ) from None
        self.address = self.client.scheduler.address
        self.description = f"the Dask scheduler at {scheduler}"
        if log is not None and not self.client.scheduler_info(n_workers=-1).get("workers"):
            log(
                f"the Dask scheduler at {scheduler} has no workers yet: the run goes on when "
                f"they connect (start them with: dask worker {self.address} --nthreads 1)"
            )

    @property
    def n_workers(self) -> int:
        """Worker threads the scheduler knows now (each runs one task at a time)."""
        workers = self.client.scheduler_info(n_workers=-1).get("workers", {})
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))

    def map_unordered(
        self,
        fn: Callable[..., Any],
        tasks: Sequence[Any],
        *,
        name: str = "task",
        **constants: Any,
    ) -> Iterator[tuple[int, Any]]:
        from distributed import as_completed

        if not tasks:
            return
        run = f"sherpa-latent-{name}-{self._token}-{next(_SERIAL)}"
        keys = [f"{run}-{k}" for k in range(len(tasks))]
        futures = self.client.map(
            _run_on_worker,
            [fn] * len(tasks),
            list(tasks),
            [os.getcwd()] * len(tasks),
            key=keys,
            pure=False,
            **constants,
        )
        index = {future.key: k for k, future in enumerate(futures)}
        pending = set(futures)
        try:
            for future in as_completed(futures, loop=self.client.loop):
                result = future.result()  # raises what the task raised
                pending.discard(future)
                future.release()
                yield index[future.key], result
        finally:
            if pending:
                self.client.cancel(list(pending), force=True)

    def run_on_workers(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        """``fn(*args)`` on every worker (outside the task queue): worker address -> result."""
        return self.client.run(fn, *args)

    def close(self) -> None:
        """Disconnect; a local cluster started here stops."""
        client, cluster = getattr(self, "client", None), self._cluster
        self._cluster = None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


_SERIAL = itertools.count()


def make_executor(
    workers: int = 1,
    scheduler: str | os.PathLike | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> Executor:
    """The executor for a run: in this process, a local Dask cluster, or a scheduler's workers.

    Parameters
    ----------
    workers : int
        1: in this process (nothing started, Dask not imported); N > 1: a local Dask cluster
        of N worker processes.
    scheduler : str or path-like, optional
        Address (``tcp://host:8786``) or scheduler file of a running Dask scheduler.
    log : callable, optional
        Told (one line) when the scheduler has no workers yet.

    Raises
    ------
    ValueError
        See :func:`check_workers`.
    SchedulerError
        The scheduler cannot be reached.
    """
    check_workers(workers, scheduler)
    if scheduler not in (None, ""):
        return DaskExecutor(scheduler, log=log)
    if int(workers) > 1:
        return DaskExecutor(workers=int(workers))
    return InProcessExecutor()
