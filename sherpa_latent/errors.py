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


class _FileProblem:
    """The one constructor of the errors about a file: ``path`` (or None) and ``problem``.

    Mixed in before a Sherpa exception class; the message is :func:`_one_line`'s.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str) -> None:
        if path is not None:
            path = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
        self.path = path
        self.problem = str(problem)
        super().__init__(_one_line(self.path, self.problem))


class SpectrumFileError(_FileProblem, IOErr):
    """A file could not be read: missing, truncated, not FITS, or missing its HDU.

    Parameters
    ----------
    path : str
        The file that failed.
    problem : str
        What is wrong with it.
    """


class SpectrumError(_FileProblem, DataErr):
    """A spectrum was read but cannot be used (wrong instrument, bad values, mismatch).

    Parameters
    ----------
    path : str or None
        The file the spectrum came from.
    problem : str
        What is wrong with it.
    """


class NetworkFileError(_FileProblem, IOErr):
    """A network file is missing, malformed or does not match its recorded SHA-256."""


class LatentModelError(ModelErr):
    """The latent model component was used in a way it does not support."""

    def __init__(self, problem: str) -> None:
        self.problem = str(problem)
        super().__init__(_one_line(None, self.problem))


class ProgressMismatch(_FileProblem, IOErr, ValueError):
    """An ``encode`` progress file was made by another kind of run (network, grids, batch).

    Also a ``ValueError``, as it was before it moved here from ``catalogue``.

    Parameters
    ----------
    path : path-like
        The progress file.
    problem : str
        What differs and what to do.
    """


class OutputError(_FileProblem, IOErr):
    """An output cannot be written: missing or read-only folder, clobber not set, a folder.

    Parameters
    ----------
    path : path-like
        The output file or folder.
    problem : str
        What is wrong and, where it helps, what to do.
    """


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


class ShardError(_FileProblem, IOErr):
    """A shard or shard folder is missing, damaged or inconsistent (one-line message)."""


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
