"""Dataset shards: the one module that reads and lays out simulated training data.

A shard folder holds ``shard_00000.npz``, ... (uncompressed ``.npz``, read with
``allow_pickle=False``), a ``manifest.json`` with the settings that made them, and the
response library the ``response_id`` column points into. The simulator writes shards
(:func:`sherpa_latent.training.simulate.simulate_shards`); training, evaluation and the
benchmarks read them with :func:`read_shard`, :func:`iter_shards` and :func:`shard_batches`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import ShardError

__all__ = [
    "SHARD_KEYS",
    "TRAINING_KEYS",
    "MANIFEST",
    "LIBRARY_FILE",
    "ShardError",
    "read_shard",
    "read_manifest",
    "shard_paths",
    "find_shards",
    "iter_shards",
    "shard_sizes",
    "library_path",
    "shard_batches",
    "rank_range",
    "split_rows",
    "ShardSet",
]

log = logging.getLogger(__name__)

SHARD_KEYS: dict[str, tuple[str, int]] = {
    "counts": ("float32", 2),
    "background": ("float32", 2),
    "bkg_scale": ("float32", 1),
    "response_id": ("int32", 1),
    "exposure": ("float32", 1),
    "class_id": ("int16", 1),
    "log_nh": ("float32", 1),
    "param": ("float32", 1),
    "log_flux": ("float32", 1),
    "net_counts": ("float32", 1),
}
"""Arrays of every shard: dtype and number of dimensions (optional ``flux``: float32, 2)."""

TRAINING_KEYS = ("counts", "background", "exposure", "response_id", "class_id", "log_nh")
"""Shard arrays that training reads."""

MANIFEST = "manifest.json"
LIBRARY_FILE = "responses.npz"
SHARD_FORMAT = "sherpa_latent.shards"
_SHARD_RE = re.compile(r"^shard_(\d{5,})\.npz$")


def shard_name(index: int) -> str:
    """File name of shard number ``index``."""
    return f"shard_{index:05d}.npz"


def read_shard(path: str | os.PathLike, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Read one shard (``np.load`` with ``allow_pickle=False``) and check it.

    Parameters
    ----------
    path : path-like
        The shard file.
    keys : sequence of str, optional
        Read only these arrays (default: all of :data:`SHARD_KEYS`, and ``flux`` when
        present).

    Returns
    -------
    dict of str to ndarray

    Raises
    ------
    ShardError
        Missing file, damaged file, missing array, wrong dtype or inconsistent shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise ShardError(path, "shard not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
            missing = [k for k in SHARD_KEYS if k not in files]
            if missing:
                raise ShardError(path, f"not a complete shard: missing {', '.join(missing)}")
            wanted = list(SHARD_KEYS) + (["flux"] if "flux" in files else [])
            if keys is not None:
                unknown = [k for k in keys if k not in wanted]
                if unknown:
                    raise ShardError(path, f"shard has no array {', '.join(unknown)}")
                wanted = list(keys)
            out = {k: data[k] for k in wanted}
    except ShardError:
        raise
    except Exception as exc:  # damaged zip or array: one line naming the file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ShardError(path, f"unreadable shard ({first})") from None
    n = None
    for key, arr in out.items():
        dtype, ndim = SHARD_KEYS.get(key, ("float32", 2))
        if arr.dtype != np.dtype(dtype) or arr.ndim != ndim:
            raise ShardError(
                path, f"{key} is {arr.dtype} with {arr.ndim} dimensions, expected {dtype}, {ndim}"
            )
        if n is None:
            n = arr.shape[0]
        elif arr.shape[0] != n:
            raise ShardError(path, f"{key} has {arr.shape[0]} rows, expected {n}")
    if "counts" in out and "background" in out and out["counts"].shape != out["background"].shape:
        raise ShardError(path, "counts and background differ in shape")
    return out


def manifest_path(out_dir: Path) -> Path:
    """The manifest file of a shard folder."""
    return out_dir / MANIFEST


def read_manifest(out_dir: Path) -> dict | None:
    """A shard folder's manifest, or None when it has none."""
    path = manifest_path(out_dir)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ShardError(path, f"unreadable manifest ({exc})") from None


def shard_paths(out_dir: str | os.PathLike) -> list[Path]:
    """The shard files of a folder, in order (from its manifest, else by name)."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    if manifest is not None:
        return [out_dir / s["file"] for s in manifest["shards"]]
    found = [p for p in out_dir.iterdir() if _SHARD_RE.match(p.name)] if out_dir.is_dir() else []
    return sorted(found, key=lambda p: int(_SHARD_RE.match(p.name).group(1)))


def iter_shards(
    out_dir: str | os.PathLike, keys: Sequence[str] | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Yield the shards of a folder one at a time (see :func:`read_shard`)."""
    for path in shard_paths(out_dir):
        yield read_shard(path, keys)


def shard_complete(path: Path, n_rows: int, keep_flux: bool, n_input: int) -> bool:
    """Whether a shard file exists, reads, and has the expected rows and arrays."""
    if not path.is_file():
        return False
    try:
        data = read_shard(path)
    except ShardError as exc:
        log.warning("%s; simulating it again", exc)
        return False
    return data["counts"].shape == (n_rows, n_input) and ("flux" in data) == keep_flux


def find_shards(directory: str | os.PathLike) -> list[Path]:
    """Shard files of a folder, in order (its manifest's, else by shard number)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: shard folder not found")
    paths = shard_paths(directory)
    if not paths:
        raise FileNotFoundError(f"{directory}: no shard files (shard_00000.npz, ...)")
    return paths


def library_path(data_dir: str | os.PathLike, library: str | os.PathLike | None = None) -> Path:
    """The response library of a shard folder.

    ``library`` if given (relative to ``data_dir``), else the file the folder's manifest
    names, else ``responses.npz`` in the folder.
    """
    data_dir = Path(data_dir)
    if library is not None:
        path = Path(library)
        return path if path.is_absolute() else data_dir / path
    manifest = data_dir / MANIFEST
    if manifest.is_file():
        try:
            name = json.loads(manifest.read_text(encoding="utf-8"))["library"]["file"]
            path = Path(name)
            return path if path.is_absolute() else data_dir / path
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return data_dir / LIBRARY_FILE


def shard_sizes(paths: Sequence[Path]) -> list[int]:
    """Number of spectra in each shard."""
    return [int(len(read_shard(p, ["exposure"])["exposure"])) for p in paths]


def split_rows(n: int, split: str, val_fraction: float) -> np.ndarray:
    """Row indices of one shard in a split: the last ``val_fraction`` rows are validation."""
    n_val = int(math.ceil(n * val_fraction)) if val_fraction > 0 else 0
    if split == "train":
        return np.arange(n - n_val)
    if split == "val":
        return np.arange(n - n_val, n)
    return np.arange(n)


def rank_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """The rows ``[start, stop)`` of a batch of ``n`` that belong to one rank.

    Contiguous slices, in rank order, that cover the batch and differ in size by at most
    one (equal when ``world_size`` divides ``n``).
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not one of {world_size} ranks")
    return rank * n // world_size, (rank + 1) * n // world_size


def shard_batches(
    paths: Sequence[Path],
    batch_size: int,
    *,
    split: str = "all",
    val_fraction: float = 0.0,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    skip_batches: int = 0,
    drop_last: bool = False,
    keys: Sequence[str] = TRAINING_KEYS,
    cache: dict | None = None,
    limit: int | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield batches of spectra from shards, one shard in memory at a time.

    The order depends only on ``(seed, epoch)``: shards are visited in a shuffled order
    and their rows shuffled, with the remainder of one shard carried into the next.

    With ``world_size`` > 1 (one rank of a distributed run) every batch is cut into
    ``world_size`` slices (:func:`rank_range`) and this rank gets slice ``rank``: a
    ``DistributedSampler``-like split of each batch, deterministic per epoch and needing
    no communication. The ranks together take exactly the batches that one process takes,
    in the same order, so that training on N ranks with a global batch of ``batch_size``
    sees the same data, step by step, as one process with that batch.

    Parameters
    ----------
    paths : sequence of Path
        Shard files.
    batch_size : int
        Spectra per batch, over all ranks.
    split : {"all", "train", "val"}
        Rows to use (see ``val_fraction``).
    val_fraction : float
        Fraction of each shard's rows (the last ones) that form the validation split.
    shuffle : bool
        Shuffle shards and rows (otherwise file order).
    seed, epoch : int
        Define the order.
    skip_batches : int
        Batches to pass over without yielding (to resume inside an epoch).
    drop_last : bool
        Drop a final short batch.
    keys : sequence of str
        Columns to read.
    cache : dict, optional
        Shards already read, keyed by path; filled as shards are read.
    limit : int, optional
        Stop after the batch that reaches this many spectra (over all ranks).
    rank, world_size : int
        This process's rank and the number of ranks (see above).

    Yields
    ------
    dict of ndarray
        The columns of ``batch_size`` spectra, or of this rank's slice of them
        (``response_id`` points into the library).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not one of {world_size} ranks")
    rng = np.random.default_rng([int(seed), int(epoch)])
    order = rng.permutation(len(paths)) if shuffle else np.arange(len(paths))

    def pieces() -> Iterator[dict[str, np.ndarray]]:
        for idx in order:
            path = paths[int(idx)]
            if cache is not None and path in cache:
                data = cache[path]
            else:
                data = read_shard(path, list(keys))
                if cache is not None:
                    cache[path] = data
            rows = split_rows(len(data[keys[0]]), split, val_fraction)
            if shuffle:
                rows = rng.permutation(rows)
            if len(rows):
                yield {k: data[k][rows] for k in keys}

    for batch in _batched(pieces(), batch_size, keys, skip_batches, drop_last, limit):
        if world_size == 1:
            yield batch
        else:
            lo, hi = rank_range(len(batch[keys[0]]), rank, world_size)
            yield {k: v[lo:hi] for k, v in batch.items()}


def _batched(
    pieces: Iterator[dict[str, np.ndarray]],
    batch_size: int,
    keys: Sequence[str],
    skip_batches: int,
    drop_last: bool,
    limit: int | None,
) -> Iterator[dict[str, np.ndarray]]:
    """Regroup a stream of row blocks into batches (the remainder carried over)."""
    pending: list[dict[str, np.ndarray]] = []
    n_pending = 0
    produced = 0
    emitted = 0

    def take(n: int) -> dict[str, np.ndarray]:
        nonlocal n_pending
        parts: list[dict[str, np.ndarray]] = []
        need = n
        while need > 0:
            head = pending[0]
            m = len(head[keys[0]])
            if m <= need:
                parts.append(pending.pop(0))
                need -= m
            else:
                parts.append({k: v[:need] for k, v in head.items()})
                pending[0] = {k: v[need:] for k, v in head.items()}
                need = 0
        n_pending -= n
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in keys}

    for piece in pieces:
        pending.append(piece)
        n_pending += len(piece[keys[0]])
        while n_pending >= batch_size:
            if limit is not None and produced >= limit:
                return
            batch = take(batch_size)
            produced += batch_size
            emitted += 1
            if emitted > skip_batches:
                yield batch
    if n_pending > 0 and not drop_last and (limit is None or produced < limit):
        emitted += 1
        if emitted > skip_batches:
            yield take(n_pending)


class ShardSet:
    """The shards of a folder, streamed as mini-batches without loading them all.

    Parameters
    ----------
    out_dir : path-like
        Folder written by :func:`simulate_shards`.
    shards : sequence of int, optional
        Which shards to use (for example to hold some out for validation); default all.
    """

    def __init__(self, out_dir: str | os.PathLike, shards: Sequence[int] | None = None) -> None:
        self.out_dir = Path(out_dir)
        paths = shard_paths(self.out_dir)
        if not paths:
            raise ShardError(self.out_dir, "no shards here")
        manifest = read_manifest(self.out_dir)
        self.manifest = manifest
        if manifest is not None:
            sizes = [int(s["n"]) for s in manifest["shards"]]
        else:
            sizes = [read_shard(p, ["class_id"])["class_id"].size for p in paths]
        picked = range(len(paths)) if shards is None else [int(i) for i in shards]
        self.paths = [paths[i] for i in picked]
        self.sizes = [sizes[i] for i in picked]

    def __len__(self) -> int:
        return int(sum(self.sizes))

    @property
    def n_shards(self) -> int:
        """Number of shards."""
        return len(self.paths)

    def __repr__(self) -> str:
        return f"ShardSet({str(self.out_dir)!r}: {len(self)} spectra in {self.n_shards} shards)"

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        keys: Sequence[str] | None = None,
        drop_last: bool = False,
    ) -> Iterator[dict[str, np.ndarray]]:
        """Mini-batches of numpy arrays across the shards.

        The same batches as :func:`shard_batches` gives for these shards.

        Parameters
        ----------
        batch_size : int
            Rows per batch.
        shuffle : bool
            Shuffle shards and rows.
        seed, epoch : int
            Seed of the shuffle; vary ``epoch`` for a new order each pass.
        keys : sequence of str, optional
            Arrays to read (default all).
        drop_last : bool
            Leave out a last batch smaller than ``batch_size``.
        """
        return shard_batches(
            self.paths,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            epoch=epoch,
            keys=list(SHARD_KEYS) if keys is None else list(keys),
            drop_last=drop_last,
        )
