"""The response library: many projected responses, for simulation and training.

A :class:`ResponseLibrary` holds projected matrices R (see :mod:`sherpa_latent.projection`)
of real Chandra ARF/RMF pairs found beside spectra in folders a recipe names
(:func:`real_responses`) and of synthetic ACIS-like responses
(:mod:`sherpa_latent.training.synthetic_responses`), both projected by the same code. This
module owns the library's file format (``.npz``, read without pickle).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sherpa.utils.err import IOErr

from ..fileio import save_npz
from ..grids import INPUT_GRID, MODEL_GRID, EnergyGrid

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------
# The response library
# ----------------------------------------------------------------------------------------

LIBRARY_FORMAT = "sherpa_latent.response_library"
"""Value of the ``format`` entry of a saved library."""

_LIBRARY_VERSION = 1
_KINDS = ("real", "synthetic")
_LIBRARY_KEYS = (
    "format",
    "version",
    "names",
    "kinds",
    "details",
    "epochs",
    "response",
    "effective_area",
    "input_grid",
    "model_grid",
)


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class ResponseLibrary:
    """A set of projected instrument responses for simulation.

    Arrays are copied to float32 on creation and made read-only.

    Parameters
    ----------
    names : tuple of str
        One name per response (the PHA file of a real one, ``synthetic-0007-BI`` ...).
    kinds : tuple of str
        ``"real"`` or ``"synthetic"`` per response.
    epochs : ndarray, shape (n_resp,)
        Epoch of each response, decimal year: the DATE-OBS of a real spectrum (NaN when
        unknown), the contamination epoch of a synthetic one.
    response : ndarray, shape (n_resp, n_input, n_model)
        Projected responses R, cm^2: expected counts = exposure * R @ flux, with flux in
        photons/cm^2/s per model-grid bin.
    effective_area : ndarray, shape (n_resp, n_input)
        Mean ARF over each input-grid bin, cm^2.
    input_grid, model_grid : EnergyGrid
        The grids the matrices are on (dicts from ``EnergyGrid.to_dict()`` are accepted).
    details : tuple of str
        Free-text provenance per response (file paths, synthetic parameters as JSON).
    """

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    epochs: np.ndarray
    response: np.ndarray
    effective_area: np.ndarray
    input_grid: EnergyGrid = INPUT_GRID
    model_grid: EnergyGrid = MODEL_GRID
    details: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        n = len(names)
        kinds = tuple(str(k) for k in self.kinds)
        details = tuple(str(d) for d in self.details) if len(self.details) else ("",) * n
        input_grid = EnergyGrid.from_dict(self.input_grid)
        model_grid = EnergyGrid.from_dict(self.model_grid)
        n_in, n_model = input_grid.nbins, model_grid.nbins
        epochs = np.array(self.epochs, dtype=np.float64).reshape(-1)
        response = np.array(self.response, dtype=np.float32, order="C")
        area = np.array(self.effective_area, dtype=np.float32, order="C")
        if len(kinds) != n or len(details) != n or epochs.shape != (n,):
            raise ValueError(
                f"response library: {n} names but {len(kinds)} kinds, {len(details)} details "
                f"and {epochs.size} epochs"
            )
        bad = sorted(set(kinds) - set(_KINDS))
        if bad:
            raise ValueError(f"response library: unknown kind(s) {bad}; use 'real' or 'synthetic'")
        if response.shape != (n, n_in, n_model):
            raise ValueError(
                f"response library: response has shape {response.shape}, expected "
                f"({n}, {n_in}, {n_model})"
            )
        if area.shape != (n, n_in):
            raise ValueError(
                f"response library: effective_area has shape {area.shape}, expected ({n}, {n_in})"
            )
        for name, arr in (("response", response), ("effective_area", area)):
            if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise ValueError(f"response library: {name} must be finite and non-negative")
        setter = object.__setattr__
        setter(self, "names", names)
        setter(self, "kinds", kinds)
        setter(self, "details", details)
        setter(self, "epochs", _read_only(epochs))
        setter(self, "response", _read_only(response))
        setter(self, "effective_area", _read_only(area))
        setter(self, "input_grid", input_grid)
        setter(self, "model_grid", model_grid)

    # --- basics -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        n_real = sum(k == "real" for k in self.kinds)
        return (
            f"ResponseLibrary({len(self)} responses: {n_real} real, {len(self) - n_real} "
            f"synthetic; R {self.response.shape[1]} x {self.response.shape[2]})"
        )

    def indices(self, kind: str | None = None) -> np.ndarray:
        """Indices of the responses of one kind (``"real"``, ``"synthetic"``) or of all."""
        if kind is None:
            return np.arange(len(self))
        if kind not in _KINDS:
            raise ValueError(f"unknown kind {kind!r}; use 'real' or 'synthetic'")
        return np.flatnonzero(np.array([k == kind for k in self.kinds], dtype=bool))

    def subset(self, indices: Sequence[int] | np.ndarray | slice) -> ResponseLibrary:
        """A new library holding the responses picked by ``indices`` (ints, mask or slice)."""
        idx = np.arange(len(self))[indices]
        idx = np.atleast_1d(idx)
        return ResponseLibrary(
            names=tuple(self.names[i] for i in idx),
            kinds=tuple(self.kinds[i] for i in idx),
            epochs=self.epochs[idx],
            response=self.response[idx],
            effective_area=self.effective_area[idx],
            input_grid=self.input_grid,
            model_grid=self.model_grid,
            details=tuple(self.details[i] for i in idx),
        )

    @classmethod
    def concatenate(cls, libraries: Iterable[ResponseLibrary]) -> ResponseLibrary:
        """Join libraries on the same grids, in order."""
        libs = list(libraries)
        if not libs:
            raise ValueError("no libraries to concatenate")
        first = libs[0]
        for lib in libs[1:]:
            if lib.input_grid != first.input_grid or lib.model_grid != first.model_grid:
                raise ValueError("cannot concatenate response libraries on different grids")
        return cls(
            names=sum((lib.names for lib in libs), ()),
            kinds=sum((lib.kinds for lib in libs), ()),
            epochs=np.concatenate([lib.epochs for lib in libs]),
            response=np.concatenate([lib.response for lib in libs]),
            effective_area=np.concatenate([lib.effective_area for lib in libs]),
            input_grid=first.input_grid,
            model_grid=first.model_grid,
            details=sum((lib.details for lib in libs), ()),
        )

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the library's content, independent of how it is stored."""
        h = hashlib.sha256()
        meta = {
            "names": self.names,
            "kinds": self.kinds,
            "details": self.details,
            "input_grid": self.input_grid.to_dict(),
            "model_grid": self.model_grid.to_dict(),
        }
        h.update(json.dumps(meta, sort_keys=True).encode())
        for arr in (self.epochs, self.response, self.effective_area):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()

    # --- files ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, clobber: bool = False) -> Path:
        """Write the library to an ``.npz`` file (no pickle), atomically.

        Parameters
        ----------
        path : str or path-like
            Output file (written exactly as named).
        clobber : bool
            Overwrite an existing file; without it an existing file is an error.

        Returns
        -------
        Path
            The file written.

        Raises
        ------
        sherpa.utils.err.IOErr
            The file exists and ``clobber`` is not set.
        """
        path = Path(path)

        def text(values: tuple[str, ...]) -> np.ndarray:
            return np.array(values, dtype=str) if values else np.zeros(0, dtype="<U1")

        def grid(g: EnergyGrid) -> np.ndarray:
            return np.array([g.emin, g.emax, g.nbins], dtype=np.float64)

        save_npz(
            path,
            {
                "format": np.array(LIBRARY_FORMAT),
                "version": np.array(_LIBRARY_VERSION, dtype=np.int64),
                "names": text(self.names),
                "kinds": text(self.kinds),
                "details": text(self.details),
                "epochs": self.epochs,
                "response": self.response,
                "effective_area": self.effective_area,
                "input_grid": grid(self.input_grid),
                "model_grid": grid(self.model_grid),
            },
            clobber=clobber,
        )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ResponseLibrary:
        """Read a library written by :meth:`save` (``np.load`` with ``allow_pickle=False``).

        Raises
        ------
        sherpa.utils.err.IOErr
            The file is missing, unreadable or not a response library.
        """
        path = Path(path)
        if not path.is_file():
            raise IOErr("filenotfound", str(path))
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in _LIBRARY_KEYS if k not in data.files]
                if missing or str(data["format"]) != LIBRARY_FORMAT:
                    raise IOErr(f"{path}: not a sherpa_latent response library")
                version = int(data["version"])
                if version > _LIBRARY_VERSION:
                    raise IOErr(
                        f"{path}: response library format {version} is newer than this "
                        f"sherpa_latent reads ({_LIBRARY_VERSION})"
                    )
                grids = []
                for key in ("input_grid", "model_grid"):
                    emin, emax, nbins = (float(v) for v in data[key])
                    grids.append(EnergyGrid(emin, emax, int(nbins)))
                return cls(
                    names=tuple(str(v) for v in data["names"]),
                    kinds=tuple(str(v) for v in data["kinds"]),
                    epochs=data["epochs"],
                    response=data["response"],
                    effective_area=data["effective_area"],
                    input_grid=grids[0],
                    model_grid=grids[1],
                    details=tuple(str(v) for v in data["details"]),
                )
        except IOErr:
            raise
        except Exception as exc:  # a damaged zip, a bad array: one line naming the file
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise IOErr(f"{path}: not a readable response library ({first})") from None
