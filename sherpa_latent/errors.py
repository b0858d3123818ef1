"""Exceptions raised by sherpa_latent.

Each is a subclass of the Sherpa exception that Sherpa itself would raise for the same
kind of problem, so code that already catches ``sherpa.utils.err.DataErr`` or ``IOErr``
keeps working. Every message is one line that names the file (when there is one) and the
problem.
"""

from __future__ import annotations

import os

from sherpa.utils.err import DataErr, IOErr, ModelErr

__all__ = [
    "SpectrumFileError",
    "SpectrumError",
    "NetworkFileError",
    "LatentModelError",
    "ProgressMismatch",
    "OutputError",
    "OutputLocked",
    "StackFileError",
    "ShardError",
    "CiaoUnavailable",
    "CiaoToolError",
]

NEEDS_CIAO = (
    "this command needs CIAO: ciao_contrib.runtool (part of CIAO, not on PyPI) cannot be "
    "imported; run it from a CIAO installation (https://cxc.cfa.harvard.edu/ciao/)"
)


def _one_line(path: str | None, problem: str) -> str:
    problem = " ".join(str(problem).split())
    return f"{path}: {problem}" if path else problem


class SpectrumFileError(IOErr):
    """A file could not be read: missing, truncated, not FITS, or missing its HDU.

    Parameters
    ----------
    path : str
        The file that failed.
    problem : str
        What is wrong with it.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = str(path)
        self.problem = str(problem)
        # SherpaErr uses the first argument as the message when it is not a known key.
        super().__init__(_one_line(self.path, self.problem))


class SpectrumError(DataErr):
    """A spectrum was read but cannot be used (wrong instrument, bad values, mismatch).

    Parameters
    ----------
    path : str or None
        The file the spectrum came from.
    problem : str
        What is wrong with it.
    """

    def __init__(self, path: str | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = str(problem)
        super().__init__(_one_line(self.path, self.problem))


class NetworkFileError(IOErr):
    """A network file is missing, malformed or does not match its recorded SHA-256."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = str(path)
        self.problem = str(problem)
        super().__init__(_one_line(self.path, self.problem))


class LatentModelError(ModelErr):
    """The latent model component was used in a way it does not support."""

    def __init__(self, problem: str) -> None:
        self.problem = str(problem)
        super().__init__(_one_line(None, self.problem))


class ProgressMismatch(IOErr, ValueError):
    """An ``encode`` progress file was made by another kind of run (network, grids, batch).

    Also a ``ValueError``, as it was before it moved here from ``catalogue``.

    Parameters
    ----------
    path : path-like
        The progress file.
    problem : str
        What differs and what to do.
    """

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = str(problem)
        super().__init__(_one_line(self.path, self.problem))


class OutputError(IOErr):
    """An output cannot be written: missing or read-only folder, clobber not set, a folder.

    Parameters
    ----------
    path : path-like
        The output file or folder.
    problem : str
        What is wrong and, where it helps, what to do.
    """

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = str(problem)
        super().__init__(_one_line(self.path, self.problem))


class OutputLocked(OutputError):
    """Another run holds the lock of an output (``OUTPUT.lock``) and is still writing it."""


class StackFileError(IOErr):
    """An ``@file.lis`` stack cannot be used: unreadable, empty, or including itself.

    Parameters
    ----------
    stack : str
        The stack file.
    message : str
        The whole message, naming the stack (``no files in @x.lis``).
    """

    def __init__(self, stack: str, message: str) -> None:
        self.path = str(stack)
        self.problem = " ".join(str(message).split())
        super().__init__(self.problem)


class ShardError(IOErr):
    """A shard or shard folder is missing, damaged or inconsistent (one-line message)."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = str(problem)
        super().__init__(_one_line(self.path, self.problem))


class CiaoUnavailable(ImportError):
    """CIAO's contributed Python package (``ciao_contrib.runtool``) is not importable."""

    def __init__(self, message: str = NEEDS_CIAO) -> None:
        super().__init__(message)


class CiaoToolError(IOErr):
    """A CIAO tool failed; the message is one line naming the tool and the problem."""

    def __init__(self, tool: str, problem: str) -> None:
        self.tool = tool
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{tool}: {self.problem}")
