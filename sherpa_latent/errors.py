"""Exceptions raised by sherpa_latent.

Each is a subclass of the Sherpa exception that Sherpa itself would raise for the same
kind of problem, so code that already catches ``sherpa.utils.err.DataErr`` or ``IOErr``
keeps working. Every message is one line that names the file (when there is one) and the
problem.
"""

from __future__ import annotations

from sherpa.utils.err import DataErr, IOErr, ModelErr

__all__ = ["SpectrumFileError", "SpectrumError", "NetworkFileError", "LatentModelError"]


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
