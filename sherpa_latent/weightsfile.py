"""Safetensors arrays with a JSON sidecar that records their SHA-256.

The file format of networks and cluster models: ``NAME.safetensors`` (weights or arrays,
never a pickle) and ``NAME.json`` beside it (format, configuration, provenance, the SHA-256
of the ``.safetensors`` file in ``sha256``, and the SHA-256 of all the rest of the JSON in
``metadata_sha256``). Reading checks the format and both checksums before anything is used,
so an edit to the arrays or to any metadata (a grid, a calibration) is refused. This
module needs neither torch nor scikit-learn.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import NetworkFileError
from .fileio import atomic_output, sha256_file

__all__ = [
    "sidecar_path",
    "write_safetensors_pair",
    "read_json_sidecar",
    "metadata_sha256",
    "jsonable",
    "DATA_DIR",
]

DATA_DIR = Path(__file__).resolve().parent / "data"
"""Folder of the network and cluster model shipped inside the package."""


def sidecar_path(weights_path: str | os.PathLike) -> Path:
    """The JSON metadata file beside a weights file (same stem, ``.json``)."""
    return Path(weights_path).with_suffix(".json")


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def metadata_sha256(meta: Mapping[str, Any]) -> str:
    """SHA-256 of a sidecar's metadata (all keys but ``metadata_sha256``), canonical JSON."""
    body = {k: v for k, v in meta.items() if k != "metadata_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_safetensors_pair(
    path: str | os.PathLike, data: bytes, metadata: Mapping[str, Any], clobber: bool = False
) -> Path:
    """Write serialised safetensors bytes and a JSON sidecar holding their SHA-256.

    Parameters
    ----------
    path : path-like
        The weights file (``.safetensors``); the JSON goes beside it.
    data : bytes
        Serialised safetensors content.
    metadata : mapping
        JSON-able metadata; ``weights_file``, ``sha256`` and ``metadata_sha256`` are
        added.
    clobber : bool
        Overwrite existing files (otherwise ``FileExistsError``).

    Returns
    -------
    Path
        The weights file.
    """
    path = Path(path)
    side = sidecar_path(path)
    if not clobber:
        for p in (path, side):
            if p.exists():
                raise FileExistsError(f"{p}: file exists; use clobber=True to overwrite")
    meta = dict(metadata)
    meta["weights_file"] = path.name
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    meta = jsonable(meta)
    meta["metadata_sha256"] = metadata_sha256(meta)
    text = json.dumps(meta, indent=2, sort_keys=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    with atomic_output(side) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def read_json_sidecar(
    path: str | os.PathLike, expected_format: str
) -> tuple[Path, dict[str, Any]]:
    """Find and check a weights file and its JSON sidecar.

    Parameters
    ----------
    path : path-like
        The weights file or its ``.json`` sidecar.
    expected_format : str
        Required value of the metadata's ``format``.

    Returns
    -------
    weights : Path
        The weights file, whose SHA-256 matches the recorded one.
    metadata : dict

    Raises
    ------
    NetworkFileError
        Missing file, malformed JSON, wrong format, or checksum mismatch.
    """
    path = Path(path)
    side = path if path.suffix == ".json" else sidecar_path(path)
    if not side.is_file():
        raise NetworkFileError(str(side), "metadata file not found")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise NetworkFileError(str(side), f"metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != expected_format:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise NetworkFileError(str(side), f"not a {expected_format} file (format {found!r})")
    if path.suffix == ".json":
        default_name = path.with_suffix(".safetensors").name
        weights = side.parent / str(meta.get("weights_file", default_name))
    else:
        weights = path
    if not weights.is_file():
        raise NetworkFileError(str(weights), "weights file not found")
    recorded = meta.get("metadata_sha256")
    if recorded is None:
        raise NetworkFileError(str(side), "metadata carries no metadata_sha256 checksum")
    if metadata_sha256(meta) != recorded:
        raise NetworkFileError(
            str(side),
            "metadata do not match their recorded SHA-256 (metadata_sha256): the file was "
            "edited or is corrupt",
        )
    expected = str(meta.get("sha256", ""))
    actual = sha256_file(weights)
    if actual != expected:
        raise NetworkFileError(
            str(weights),
            f"SHA-256 {actual[:16]}... does not match the recorded {expected[:16]}... "
            "(file corrupt or modified)",
        )
    return weights, meta


def jsonable(obj: Any) -> Any:
    """Turn tuples, numpy scalars and arrays, and paths into JSON-able values."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
