"""Output files written atomically, with CIAO's clobber rule, and SHA-256 of files.

Every file the project writes (tables, region files, shards, libraries, networks,
manifests) goes through :func:`atomic_output`: the content is written to a temporary file
in the same folder, flushed to disk, and moved over the target in one ``os.replace``, so
a reader never sees half a file and an interrupted run leaves the old file intact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sherpa.utils.err import IOErr

__all__ = ["atomic_output", "write_json", "save_npz", "sha256_file"]


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


def write_json(path: str | os.PathLike, payload: dict, *, clobber: bool = True) -> Path:
    """Write JSON atomically (indented, with a final newline)."""
    with atomic_output(path, clobber=clobber) as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return Path(path)


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
