"""Output files written atomically, with CIAO's clobber rule, and SHA-256 of files.

Every file the project writes (tables, region files, shards, libraries, networks,
manifests) goes through :func:`atomic_output`: the content is written to a temporary file
in the same folder, flushed to disk, and moved over the target in one ``os.replace``, so
a reader never sees half a file and an interrupted run leaves the old file intact.

Before a long run, :func:`check_output` and :func:`check_output_folder` say in one line
what stops an output from being written (missing or read-only folder, clobber not set),
and :func:`output_lock` keeps a second run off an output that one run is writing.
:func:`strict_json` writes JSON that strict parsers accept (NaN and infinities become
null). :func:`escape_fits_text` makes any text fit a FITS string column (printable ASCII)
and :func:`unescape_fits_text` gives it back exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sherpa.utils.err import IOErr

from .errors import OutputError, OutputLocked

try:  # POSIX: an advisory lock that the kernel releases when its holder dies
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = [
    "atomic_output",
    "check_output",
    "check_output_folder",
    "output_lock",
    "lock_path",
    "json_safe",
    "strict_json",
    "write_json",
    "escape_fits_text",
    "unescape_fits_text",
    "needs_fits_escape",
    "save_npz",
    "sha256_file",
]

LOCK_SUFFIX = ".lock"
"""Added to an output's name to make the lock file of the run writing it."""


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, clobber: bool = True) -> Iterator[Path]:
    """Give a temporary path to write; on success it replaces ``path`` atomically.

    Parameters
    ----------
    path : path-like
        The file to (over)write.
    clobber : bool, optional
        Whether an existing ``path`` may be replaced.

    Yields
    ------
    Path
        A temporary file beside ``path`` (it exists, empty, when the block starts).

    Raises
    ------
    sherpa.utils.err.IOErr
        ``path`` exists and ``clobber`` is not set.
    """
    path = Path(path)
    if path.exists() and not clobber:
        raise IOErr("filefound", str(path))
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def json_safe(value: Any) -> Any:
    """A copy of ``value`` that strict JSON can hold: NaN and infinities become None.

    numpy scalars and arrays become Python numbers and lists, tuples become lists.
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return json_safe(value.tolist())  # numpy array or scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def strict_json(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`json_safe` (value) with ``allow_nan=False``: no bare NaN."""
    return json.dumps(json_safe(value), allow_nan=False, **kwargs)


def write_json(
    path: str | os.PathLike, payload: dict, *, clobber: bool = True, strict: bool = False
) -> Path:
    """Write JSON atomically (indented, with a final newline).

    Parameters
    ----------
    path : path-like
        The file.
    payload : dict
        What to write.
    clobber : bool, optional
        Whether an existing file may be replaced.
    strict : bool, optional
        Write NaN and infinities as null (:func:`strict_json`), for files other programs
        read; otherwise as Python's bare ``NaN``, which reads back as NaN.
    """
    text = strict_json(payload, indent=1) if strict else json.dumps(payload, indent=1)
    with atomic_output(path, clobber=clobber) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return Path(path)


# --- text in FITS string columns ------------------------------------------------------
_FITS_SAFE = frozenset(chr(c) for c in range(0x20, 0x7F)) - {"%"}


def escape_fits_text(text: str) -> str:
    """Text as printable ASCII for a FITS string column, reversibly.

    Every character outside printable ASCII (0x20-0x7E), and ``%`` itself, becomes the
    ``%XX`` escapes of its UTF-8 bytes (percent-encoding as in RFC 3986): ``3c 273 ü.pi``
    becomes ``3c 273 %C3%BC.pi``. File names that are not valid UTF-8 (surrogate escapes)
    keep their bytes. :func:`unescape_fits_text` undoes it.
    """
    if all(ch in _FITS_SAFE for ch in text):
        return text
    return urllib.parse.quote(
        text.encode("utf-8", "surrogateescape"), safe="".join(sorted(_FITS_SAFE))
    )


def unescape_fits_text(text: str) -> str:
    """The text that :func:`escape_fits_text` escaped."""
    if "%" not in text:
        return text
    return urllib.parse.unquote(text, encoding="utf-8", errors="surrogateescape")


def needs_fits_escape(text: str) -> bool:
    """Whether ``text`` holds anything outside printable ASCII (which FITS cannot hold)."""
    return not all(" " <= ch <= "~" for ch in text)


# --- checks before a run ----------------------------------------------------------------
def _probe_folder(folder: Path) -> str | None:
    """None when a file can be made in ``folder``, else why not (root included)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".sherpa_latent.", suffix=".probe", dir=folder)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return None


def check_output(path: str | os.PathLike, *, clobber: bool = False) -> Path:
    """Refuse, in one line, an output file that could not be written.

    Parameters
    ----------
    path : path-like
        The output file.
    clobber : bool, optional
        Whether an existing file may be replaced.

    Returns
    -------
    Path

    Raises
    ------
    sherpa_latent.errors.OutputError
        ``path`` is a folder, its folder is missing or not writable, or it exists and
        ``clobber`` is not set.
    """
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise OutputError(path, "is a folder; give a file name")
    if not folder.exists():
        raise OutputError(path, f"folder {folder} does not exist")
    if not folder.is_dir():
        raise OutputError(path, f"{folder} is not a folder")
    if path.exists() and not clobber:
        raise OutputError(path, "exists and clobber is not set")
    problem = _probe_folder(folder)
    if problem:
        raise OutputError(path, f"cannot write in folder {folder} ({problem})")
    return path


def check_output_folder(path: str | os.PathLike) -> Path:
    """Refuse, in one line, an output folder that could not be made or written in.

    A folder that does not exist yet is fine when the nearest folder above it that does
    exist is writable (it is made later, with its parents).

    Raises
    ------
    sherpa_latent.errors.OutputError
        ``path`` is a file, or the folder (or the one it would be made in) is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(path, "exists and is not a folder")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(path, f"{existing} is not a folder")
    problem = _probe_folder(existing)
    if problem:
        raise OutputError(path, f"cannot write in folder {existing} ({problem})")
    return path


# --- one run per output -----------------------------------------------------------------
def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of the run writing ``output``: ``OUTPUT.lock`` beside it."""
    output = Path(output)
    return output.with_name(output.name + LOCK_SUFFIX)


@contextlib.contextmanager
def output_lock(output: str | os.PathLike) -> Iterator[Path]:
    """Hold the lock of an output for a run; a second run refuses at once.

    On POSIX the lock is an ``fcntl.flock`` on ``OUTPUT.lock``: the kernel releases it
    when the process ends, however it ends, so a lock file left by a killed run never
    blocks the next one. The file is removed when the run ends normally. Without
    ``fcntl`` the lock is the file itself, made with ``O_EXCL`` and removed at the end (a
    file left by a killed run must then be removed by hand; the message says so).

    Parameters
    ----------
    output : path-like
        The output file.

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    sherpa_latent.errors.OutputLocked
        Another run holds the lock.
    """
    lock = lock_path(output)
    if fcntl is None:  # pragma: no cover - exercised through _exclusive_lock on POSIX
        with _exclusive_lock(output, lock):
            yield lock
        return
    fd = _flock(output, lock)
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError):
            if os.path.samestat(os.stat(lock), os.fstat(fd)):
                os.unlink(lock)  # still ours: nobody can hold it while we do
        os.close(fd)  # releases the lock


def _busy(output: str | os.PathLike, lock: Path, hint: str = "") -> OutputLocked:
    hint = hint or "wait for that run to finish or choose another output"
    return OutputLocked(output, f"another run is writing it (lock {lock} is held); {hint}")


def _flock(output: str | os.PathLike, lock: Path) -> int:
    """Open and lock ``lock``; the descriptor holds the lock until it is closed."""
    for _ in range(10):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise OutputError(lock, f"cannot make the lock file ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise _busy(output, lock) from None
        try:
            same = os.path.samestat(os.stat(lock), os.fstat(fd))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)  # the file was removed by the run that just ended: lock the new one
    raise _busy(output, lock)


@contextlib.contextmanager
def _exclusive_lock(output: str | os.PathLike, lock: Path) -> Iterator[None]:
    """The lock without ``fcntl``: a file made with ``O_EXCL``, removed at the end."""
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        hint = "wait for that run to finish, or remove the lock file if no run is going"
        raise _busy(output, lock, hint) from None
    except OSError as exc:
        raise OutputError(lock, f"cannot make the lock file ({exc.strerror})") from None
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)


def save_npz(path: str | os.PathLike, arrays: dict, *, clobber: bool = True) -> Path:
    """Write arrays as an uncompressed ``.npz`` atomically (read back with allow_pickle=False)."""
    import numpy as np

    with atomic_output(path, clobber=clobber) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    return Path(path)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
