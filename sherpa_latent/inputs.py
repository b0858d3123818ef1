"""What names one spectrum to read: the PHA file and, optionally, its responses and background.

A :class:`SpectrumInput` is what the command line, stack files and batch runs hand to the
loaders: the PHA file, and the ARF, RMF and background files to use instead of those its
header names (ANCRFILE, RESPFILE, BACKFILE). Plain strings are accepted wherever a
:class:`SpectrumInput` is, through :func:`as_input`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["SpectrumInput", "as_input"]


@dataclass(frozen=True)
class SpectrumInput:
    """One spectrum to read.

    Parameters
    ----------
    pha : str
        The PHA (type I) file.
    arf, rmf, background : str or None
        Files to use instead of those named by the PHA header (None: use the header).
    """

    pha: str
    arf: str | None = None
    rmf: str | None = None
    background: str | None = None

    def __post_init__(self) -> None:
        for name in ("pha", "arf", "rmf", "background"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
            elif not isinstance(value, str):
                raise TypeError(f"{name} must be a file name, not {type(value).__name__}")
            if not getattr(self, name):
                raise ValueError(f"{name} is an empty file name")

    def __str__(self) -> str:
        return self.pha


def as_input(item: str | os.PathLike | SpectrumInput) -> SpectrumInput:
    """A :class:`SpectrumInput` for a file name (header responses) or an input as it is."""
    if isinstance(item, SpectrumInput):
        return item
    return SpectrumInput(os.fspath(item))
