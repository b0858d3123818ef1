"""What names one spectrum to read: the PHA file and, optionally, its responses and background.

A :class:`SpectrumInput` is what the command line, stack files and batch runs hand to the
loaders: the PHA file, and the ARF, RMF and background files to use instead of those its
header names (ANCRFILE, RESPFILE, BACKFILE). Plain strings are accepted wherever a
:class:`SpectrumInput` is, through :func:`as_input`.

Stack files
-----------
:func:`expand_stacks` expands ``@file.lis`` stacks as CIAO tools do. A stack names one
spectrum per line: blank lines and lines starting with ``#`` are skipped, a line
``@other.lis`` includes another stack (named as on the command line), and any other line
holds one to four whitespace-separated columns::

    # pha                 arf             rmf             bkg
    obs1/src.pi           obs1/src.arf    obs1/src.rmf    obs1/bkg.pi
    obs2/src.pi           -               obs2/new.rmf
    obs3/src.pi

``-`` or ``none`` in a column means "the file the PHA header names" (ANCRFILE, RESPFILE,
BACKFILE); missing columns mean the same. A name with spaces is quoted (``"my src.pi"``) in
a line with more than one column; a line that is the name of an existing file is taken as
that one name, quoted or not. Relative names are relative to the stack file's folder
(``@-file.lis``: to the current folder).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import StackFileError

__all__ = ["SpectrumInput", "as_input", "expand_stacks", "STACK_COLUMNS"]

STACK_COLUMNS = ("pha", "arf", "rmf", "bkg")
"""The columns of a stack line, in order (the last three optional)."""

_HEADER = {"-", "none"}
"""Column values meaning "the file the PHA header names"."""

_MAX_STACK_DEPTH = 64


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

    def __str__(self) -> str:
        return self.pha


def as_input(item: str | os.PathLike | SpectrumInput) -> SpectrumInput:
    """A :class:`SpectrumInput` for a file name (header responses) or an input as it is."""
    if isinstance(item, SpectrumInput):
        return item
    return SpectrumInput(os.fspath(item))


def expand_stacks(
    items: Sequence[str | os.PathLike | SpectrumInput],
) -> list[SpectrumInput]:
    """Expand ``@file.lis`` stacks into the spectra they name.

    Parameters
    ----------
    items : sequence of str, path-like or SpectrumInput
        File names, some of which may be stacks (a str starting with ``@``; ``@-`` keeps
        the names in the stack relative to the current folder). A stack may name further
        stacks; its lines hold ``pha [arf [rmf [bkg]]]`` (see the module notes).

    Returns
    -------
    list of SpectrumInput
        In the order given, stacks replaced by what they name.

    Raises
    ------
    sherpa_latent.errors.StackFileError
        A stack cannot be read, names no files, includes itself (directly or through
        other stacks), or has a line that is not one to four columns. The message is one
        line naming the stack (and the line).
    """
    entries: list[tuple[str | SpectrumInput, str]] = []
    for item in items:
        if isinstance(item, str) and item.startswith("@"):
            entries.append((item, ""))
        else:
            entries.append((as_input(item), ""))
    return _expand(entries, ())


def _expand(
    items: Sequence[tuple[str | SpectrumInput, str]], within: tuple[tuple[str, str], ...]
) -> list[SpectrumInput]:
    """Expand (item, where it was written) pairs; ``within`` holds the stacks being read."""
    out: list[SpectrumInput] = []
    for item, where in items:
        if isinstance(item, SpectrumInput):
            out.append(item)
            continue
        relative_to_cwd = item.startswith("@-")
        stack = item[2:] if relative_to_cwd else item[1:]
        key = os.path.realpath(stack)
        keys = [k for k, _ in within]
        if key in keys:
            loop = " -> ".join(shown for _, shown in within[keys.index(key) :])
            raise StackFileError(
                stack, f"{item}{where} includes itself ({loop} -> {item}): remove that line"
            )
        if len(within) >= _MAX_STACK_DEPTH:
            deep = f"{item}{where}: stacks nested over {_MAX_STACK_DEPTH} deep"
            raise StackFileError(stack, deep)
        try:
            with open(stack, encoding="utf-8") as handle:
                lines = [ln.strip() for ln in handle]
        except OSError as exc:
            raise StackFileError(
                stack, f"{stack}: cannot read stack file ({exc.strerror})"
            ) from None
        except UnicodeDecodeError:
            raise StackFileError(stack, f"{stack}: stack file is not UTF-8 text") from None
        base = "" if relative_to_cwd else os.path.dirname(stack)
        entries: list[tuple[str | SpectrumInput, str]] = []
        for number, line in enumerate(lines, 1):
            if not line or line.startswith("#"):
                continue
            where_here = f" (line {number} of {stack})"
            if line.startswith("@"):  # a nested stack, named as on the command line
                entries.append((line, where_here))
                continue
            entries.append((_stack_line(line, base, stack, number), where_here))
        if not entries:
            raise StackFileError(stack, f"no files in {item} (only blank lines and comments)")
        out.extend(_expand(entries, (*within, (key, item))))
    return out


def _stack_line(line: str, base: str, stack: str, number: int) -> SpectrumInput:
    """One line of a stack (not a comment, not a nested stack) as a SpectrumInput."""

    def resolve(name: str) -> str:
        return name if not base or os.path.isabs(name) else os.path.join(base, name)

    if os.path.isfile(resolve(line)):
        return SpectrumInput(resolve(line))  # a name with spaces, written without quotes
    try:
        columns = shlex.split(line)
    except ValueError as exc:  # an unclosed quote
        raise StackFileError(stack, f"{stack}: line {number}: {exc}") from None
    if not 1 <= len(columns) <= len(STACK_COLUMNS):
        raise StackFileError(
            stack,
            f"{stack}: line {number} has {len(columns)} columns; a stack line holds 1 to "
            f"{len(STACK_COLUMNS)} ({' '.join(STACK_COLUMNS)}); quote names with spaces",
        )
    if columns[0].lower() in _HEADER:
        raise StackFileError(stack, f"{stack}: line {number}: the first column names the PHA file")
    names = [None if c.lower() in _HEADER else resolve(c) for c in columns]
    names += [None] * (len(STACK_COLUMNS) - len(names))
    return SpectrumInput(names[0], arf=names[1], rmf=names[2], background=names[3])
