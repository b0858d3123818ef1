"""Peak memory of a process and of the processes it starts (Linux ``/proc``), MiB.

``getrusage``'s ``ru_maxrss`` is no use here: Linux carries the parent's high-water mark
across ``fork`` and ``exec``, so a fresh Python process started from a large one reports
the large one's peak. ``VmHWM`` in ``/proc/self/status`` belongs to the process's own
memory map, and :class:`TreeMemory` samples the resident memory of the whole process tree
(the worker processes included) while a piece of work runs.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def _status_kib(pid: int | str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def peak_rss_mib() -> float:
    """This process's own peak resident memory (``VmHWM``), MiB."""
    return _status_kib("self", "VmHWM") / 1024.0


def _children(pid: int) -> list[int]:
    out = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        tasks = list(task_dir.iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def tree_rss_mib(pid: int | None = None) -> float:
    """Resident memory of a process and all its descendants now, MiB."""
    todo, total = [os.getpid() if pid is None else pid], 0
    while todo:
        p = todo.pop()
        total += _status_kib(p, "VmRSS")
        todo += _children(p)
    return total / 1024.0


class TreeMemory:
    """Sample the process tree's resident memory in a thread; ``peak_mib`` is the largest.

    Use as a context manager around the work to be measured.
    """

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mib = max(self.peak_mib, tree_rss_mib())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> TreeMemory:
        self.peak_mib = tree_rss_mib()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mib = max(self.peak_mib, tree_rss_mib())
