"""Instrument responses on the project's fixed grids, and the response library.

For one spectrum, the projected response R (input grid x model grid, cm^2) is defined so
that the expected source counts on the input grid are::

    exposure * R @ flux

with ``flux`` the photon flux integrated over each model-grid bin (photons/cm^2/s).
Within a model-grid bin the photon flux is taken as uniform in energy when it is shared
out over the RMF's finer energy bins; channels go to the input grid by mid-energy.

The :class:`ResponseLibrary` holds many such matrices for simulation (DESIGN.md,
decision 5): real Chandra ARF/RMF pairs found beside spectra (:func:`real_responses`) and
synthetic ACIS-like responses made from scratch (:func:`synthetic_responses`), both
projected once with :func:`project_response`, so they go through exactly the same path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import ndtr
from sherpa.utils.err import IOErr

from .fileio import save_npz
from .grids import INPUT_GRID, MODEL_GRID, EnergyGrid, channel_bin_index

__all__ = [
    "overlap_matrix",
    "project_response",
    "bin_mean",
    "ResponseLibrary",
    "LIBRARY_FORMAT",
    "sherpa_test_data_dir",
    "shared_chandra_dir",
    "default_real_folders",
    "real_responses",
    "SyntheticChip",
    "draw_synthetic_chip",
    "synthetic_arf",
    "synthetic_rmf",
    "synthetic_response",
    "synthetic_responses",
    "build_library",
    "SYNTHETIC_ENERGY_EDGES",
    "SYNTHETIC_CHANNEL_WIDTH",
    "SYNTHETIC_N_CHANNELS",
]

log = logging.getLogger(__name__)


def overlap_matrix(src_lo: np.ndarray, src_hi: np.ndarray, dst_edges: np.ndarray) -> np.ndarray:
    """Fraction of each destination bin that lies inside each source bin.

    Parameters
    ----------
    src_lo, src_hi : ndarray
        Edges of the source bins (for example the RMF's energy grid), keV.
    dst_edges : ndarray
        Increasing edges of the destination bins (for example the model grid), keV.

    Returns
    -------
    ndarray, shape (len(src_lo), len(dst_edges) - 1)
        ``W[k, j]`` is the fraction of destination bin ``j`` that overlaps source bin ``k``,
        so that ``W @ f`` shares out bin-integrated values ``f`` uniformly in energy.
    """
    src_lo = np.asarray(src_lo, dtype=float)[:, None]
    src_hi = np.asarray(src_hi, dtype=float)[:, None]
    d_lo = np.asarray(dst_edges[:-1], dtype=float)[None, :]
    d_hi = np.asarray(dst_edges[1:], dtype=float)[None, :]
    overlap = np.clip(np.minimum(src_hi, d_hi) - np.maximum(src_lo, d_lo), 0.0, None)
    return overlap / (d_hi - d_lo)


def project_response(
    energ_lo: np.ndarray,
    energ_hi: np.ndarray,
    specresp: np.ndarray,
    matrix: np.ndarray,
    e_min: np.ndarray,
    e_max: np.ndarray,
    input_grid: EnergyGrid,
    model_grid: EnergyGrid,
) -> np.ndarray:
    """Project an ARF and a dense RMF to the matrix R (input grid x model grid).

    Parameters
    ----------
    energ_lo, energ_hi : ndarray, shape (n_energy,)
        The response's energy grid, keV.
    specresp : ndarray, shape (n_energy,)
        Effective area, cm^2 (ones when there is no ARF: the RMF then carries the area).
    matrix : ndarray, shape (n_energy, n_channel)
        Redistribution probabilities (Sherpa's ``rmf_to_matrix(rmf).matrix``).
    e_min, e_max : ndarray, shape (n_channel,)
        Channel energy bounds (EBOUNDS), keV.
    input_grid, model_grid : EnergyGrid
        The grids of the encoder input and of the decoder output.

    Returns
    -------
    ndarray, shape (input_grid.nbins, model_grid.nbins)
        Projected response, cm^2.
    """
    matrix = np.asarray(matrix, dtype=float)
    n_energy, n_channel = matrix.shape
    if len(specresp) != n_energy or len(energ_lo) != n_energy:
        raise ValueError(
            f"ARF has {len(specresp)} energy bins but the RMF has {n_energy}"
        )
    if len(e_min) != n_channel:
        raise ValueError(f"EBOUNDS has {len(e_min)} channels but the matrix has {n_channel}")
    chan_bin = channel_bin_index(e_min, e_max, input_grid.edges)
    inside = chan_bin >= 0
    # Sum the redistribution of each energy into the channels of every input bin.
    one_hot = np.zeros((int(inside.sum()), input_grid.nbins))
    one_hot[np.arange(one_hot.shape[0]), chan_bin[inside]] = 1.0
    to_input = matrix[:, inside] @ one_hot
    weights = overlap_matrix(energ_lo, energ_hi, model_grid.edges)
    return (to_input * np.asarray(specresp, dtype=float)[:, None]).T @ weights


def bin_mean(lo: np.ndarray, hi: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Energy-weighted mean of a binned function over each bin of ``edges``.

    The same average as the effective area of :meth:`sherpa_latent.Spectrum.representation`.

    Parameters
    ----------
    lo, hi : ndarray, shape (n,)
        Edges of the bins ``values`` is given on, keV.
    values : ndarray, shape (n,)
        The function (for example an ARF, cm^2).
    edges : ndarray, shape (m + 1,)
        Increasing edges of the bins to average over, keV.

    Returns
    -------
    ndarray, shape (m,)
        Mean over the covered part of each bin; 0 where nothing covers it.
    """
    weights = overlap_matrix(lo, hi, edges)
    covered = weights.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (np.asarray(values, dtype=float) @ weights) / covered
    return np.where(covered > 0, mean, 0.0)


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


def _grid_dict(grid: EnergyGrid | dict) -> dict:
    """A grid as its plain dict, validated through :class:`EnergyGrid`."""
    if isinstance(grid, EnergyGrid):
        return grid.to_dict()
    try:
        return EnergyGrid(float(grid["emin"]), float(grid["emax"]), int(grid["nbins"])).to_dict()
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not an energy grid: {grid!r} ({exc})") from None


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
    input_grid, model_grid : dict
        The grids (``EnergyGrid.to_dict()``) the matrices are on.
    details : tuple of str
        Free-text provenance per response (file paths, synthetic parameters as JSON).
    """

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    epochs: np.ndarray
    response: np.ndarray
    effective_area: np.ndarray
    input_grid: dict = field(default_factory=INPUT_GRID.to_dict)
    model_grid: dict = field(default_factory=MODEL_GRID.to_dict)
    details: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        n = len(names)
        kinds = tuple(str(k) for k in self.kinds)
        details = tuple(str(d) for d in self.details) if len(self.details) else ("",) * n
        input_grid, model_grid = _grid_dict(self.input_grid), _grid_dict(self.model_grid)
        n_in, n_model = input_grid["nbins"], model_grid["nbins"]
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

    @property
    def input_energy_grid(self) -> EnergyGrid:
        """The input grid as an :class:`EnergyGrid`."""
        return EnergyGrid(**self.input_grid)

    @property
    def model_energy_grid(self) -> EnergyGrid:
        """The model grid as an :class:`EnergyGrid`."""
        return EnergyGrid(**self.model_grid)

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
            "input_grid": self.input_grid,
            "model_grid": self.model_grid,
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

        def grid(g: dict) -> np.ndarray:
            return np.array([g["emin"], g["emax"], g["nbins"]], dtype=np.float64)

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
                    grids.append({"emin": emin, "emax": emax, "nbins": int(nbins)})
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


# ----------------------------------------------------------------------------------------
# Real responses
# ----------------------------------------------------------------------------------------

SHARED_DATA_ENV = "SHERPA_LATENT_CHANDRA_DATA"
"""Environment variable naming an extra folder of real Chandra spectra."""

_SPECTRUM_SUFFIXES = (".pi", ".pha", ".fits", ".fit", ".pi.gz", ".pha.gz", ".fits.gz")
_RESPONSE_STEMS = ("arf", "rmf", "arf3", "rmf3", "rsp", "warf", "wrmf")


def sherpa_test_data_dir() -> Path | None:
    """Folder of the three real Chandra spectra shipped with the installed Sherpa package.

    ``sherpa/astro/datastack/tests/data/``: 3C 273 (with ARF, RMF, background) and two
    Chandra Source Catalog ``pha3`` spectra. None when this Sherpa lacks them.
    """
    import sherpa

    path = Path(sherpa.__file__).resolve().parent / "astro" / "datastack" / "tests" / "data"
    return path if path.is_dir() else None


def shared_chandra_dir() -> Path | None:
    """The project's folder of public Chandra spectra, where it exists.

    ``$SHERPA_LATENT_CHANDRA_DATA`` when set, else ``shared/data/chandra`` beside the
    source checkout (read in place, never copied into the package). None when absent.
    """
    candidates = []
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        candidates.append(Path(env))
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data" / "chandra")
    for cand in candidates:
        if cand.is_dir():
            return cand
    return None


def default_real_folders() -> list[Path]:
    """Folders searched for real responses by default: Sherpa's test data, shared data."""
    return [p for p in (sherpa_test_data_dir(), shared_chandra_dir()) if p is not None]


def _decimal_year(header: dict) -> float:
    """DATE-OBS (or MJD_OBS) of a header as a decimal year; NaN when neither is usable."""
    from astropy.time import Time

    date = header.get("DATE-OBS")
    try:
        if date is not None and str(date).strip():
            return float(Time(str(date).strip(), scale="utc").decimalyear)
        for key in ("MJD_OBS", "MJD-OBS"):
            if header.get(key) is not None:
                return float(Time(float(header[key]), format="mjd", scale="utc").decimalyear)
    except (ValueError, TypeError):
        pass
    return float("nan")


def _looks_like_spectrum(path: Path) -> bool:
    name = path.name.lower()
    suffix = next((s for s in _SPECTRUM_SUFFIXES if name.endswith(s)), None)
    if suffix is None or name.startswith("."):
        return False
    stem = name[: -len(suffix)]
    return not any(stem == s or stem.endswith(("_" + s, "." + s)) for s in _RESPONSE_STEMS)


def real_responses(
    folders: Iterable[str | os.PathLike] | None = None,
    *,
    include_default: bool = True,
    input_grid: EnergyGrid = INPUT_GRID,
    model_grid: EnergyGrid = MODEL_GRID,
) -> ResponseLibrary:
    """Every ARF/RMF pair named by a spectrum in the given folders, projected once.

    Each PHA file whose header names a RESPFILE and an ANCRFILE that exist is loaded with
    :func:`sherpa_latent.load_spectrum` (those that fail are skipped with a logged
    warning) and its :meth:`~sherpa_latent.Spectrum.representation` gives R and the
    effective area. Pairs are counted once, by the (ARF, RMF) files. PHA files that name
    no RESPFILE (backgrounds) are passed over silently.

    Parameters
    ----------
    folders : iterable of path-like, optional
        Folders to search (not recursively).
    include_default : bool
        Search :func:`default_real_folders` too (Sherpa's test data, the shared data).
    input_grid, model_grid : EnergyGrid
        Grids to project onto.

    Returns
    -------
    ResponseLibrary
        Kind ``"real"``, epoch the DATE-OBS year, name the PHA file name.
    """
    from .spectrum import find_named_file, header_file_names, load_spectrum

    search: list[Path] = list(default_real_folders()) if include_default else []
    for folder in folders or ():
        search.append(Path(folder))
    unique: list[Path] = []
    for folder in search:
        if folder.resolve() not in [u.resolve() for u in unique]:
            unique.append(folder)

    seen: set[tuple[str, str]] = set()
    names: list[str] = []
    details: list[str] = []
    epochs: list[float] = []
    matrices: list[np.ndarray] = []
    areas: list[np.ndarray] = []
    for folder in unique:
        if not folder.is_dir():
            log.warning("%s: not a folder; no responses taken from it", folder)
            continue
        for path in sorted(p for p in folder.iterdir() if p.is_file() and _looks_like_spectrum(p)):
            base = str(path.parent)
            try:
                keys = header_file_names(str(path))
            except Exception as exc:  # not FITS, damaged: not a spectrum we can use
                log.debug("%s: not read as FITS (%s)", path, exc)
                continue
            respfile = keys.get("RESPFILE")
            if respfile is None or str(respfile).strip().lower() in ("", "none", "null"):
                continue
            rmf, tried = find_named_file(respfile, base)
            if rmf is None:
                log.warning("%s: RMF named in RESPFILE not found (%s); skipped", path, tried[0])
                continue
            arf, tried = find_named_file(keys.get("ANCRFILE"), base)
            if arf is None:
                where = f" ({tried[0]})" if tried else ""
                log.warning("%s: no ARF named in ANCRFILE found%s; skipped", path, where)
                continue
            key = (os.path.realpath(arf), os.path.realpath(rmf))
            if key in seen:
                continue
            try:
                spec = load_spectrum(path, arf=arf, rmf=rmf)
                rep = spec.representation(input_grid, model_grid)
            except Exception as exc:  # one bad file never stops the others
                log.warning("%s: skipped: %s", path, " ".join(str(exc).split()))
                continue
            seen.add(key)
            epoch = _decimal_year(spec.pha.header)
            if not np.isfinite(epoch):
                log.warning("%s: no usable DATE-OBS; epoch unknown (NaN)", path)
            names.append(path.name)
            details.append(f"pha={path}; arf={arf}; rmf={rmf}; instrument={spec.instrument}")
            epochs.append(epoch)
            matrices.append(rep.response)
            areas.append(rep.effective_area)
    n_in, n_model = input_grid.nbins, model_grid.nbins
    return ResponseLibrary(
        names=tuple(names),
        kinds=("real",) * len(names),
        epochs=np.array(epochs, dtype=float),
        response=np.array(matrices).reshape(len(names), n_in, n_model),
        effective_area=np.array(areas).reshape(len(names), n_in),
        input_grid=input_grid.to_dict(),
        model_grid=model_grid.to_dict(),
        details=tuple(details),
    )


# ----------------------------------------------------------------------------------------
# Synthetic ACIS-like responses
# ----------------------------------------------------------------------------------------

SYNTHETIC_ENERGY_EDGES: np.ndarray = np.linspace(0.2, 11.0, 1081)
"""Energy grid of synthetic ARFs and RMFs, keV (10 eV bins, like ACIS responses)."""

SYNTHETIC_CHANNEL_WIDTH = 0.0146
"""Width of an ACIS PI channel, keV."""

SYNTHETIC_N_CHANNELS = 1024
"""Number of PI channels of a synthetic RMF."""

_SI_DENSITY = 2.33  # g/cm^3
_AL_DENSITY = 2.70
_POLYIMIDE_DENSITY = 1.42
_POLYIMIDE = {"C": 0.691, "N": 0.073, "O": 0.209}  # mass fractions of C22H10N2O5 (H left out)
_SIO2 = {"Si": 0.467, "O": 0.533}
_SIO2_DENSITY = 2.2
_SI3N4 = {"Si": 0.6, "N": 0.4}
_SI3N4_DENSITY = 3.17
_SI_ESCAPE_KEV = 1.74
_CONTAMINATION_START = 1999.6  # decimal year: launch
_CONTAMINATION_REF_KEV = 0.67


@dataclass(frozen=True)
class _Edge:
    """A K-shell absorber: mu = mu_ref (E / e_ref)^-slope above the edge, / jump below."""

    edge: float  # keV
    mu_ref: float  # cm^2/g at e_ref (above the edge)
    e_ref: float  # keV
    jump: float
    slope: float


# Approximate mass attenuation coefficients (NIST XCOM values at the reference energies;
# power laws between), good to ~10-20%: enough for the shape of an ACIS-like response.
_ELEMENTS: dict[str, _Edge] = {
    "C": _Edge(0.2842, 2211.0, 1.0, 20.0, 2.6),
    "N": _Edge(0.4099, 3311.0, 1.0, 18.0, 2.65),
    "O": _Edge(0.5431, 4590.0, 1.0, 17.0, 2.7),
    "F": _Edge(0.6967, 5615.0, 1.0, 16.0, 2.7),
    "Al": _Edge(1.5596, 2263.0, 2.0, 10.6, 2.6),
    "Si": _Edge(1.8389, 2777.0, 2.0, 10.5, 2.65),
}


def _mass_attenuation(composition: dict[str, float], energy: np.ndarray) -> np.ndarray:
    """Mass attenuation coefficient (cm^2/g) of a mixture given by mass fractions."""
    energy = np.asarray(energy, dtype=float)
    mu = np.zeros_like(energy)
    for element, fraction in composition.items():
        e = _ELEMENTS[element]
        value = e.mu_ref * (energy / e.e_ref) ** (-e.slope)
        mu += fraction * np.where(energy >= e.edge, value, value / e.jump)
    return mu


def _transmission(composition: dict[str, float], density: float, microns: float, energy):
    """Transmission of a layer (thickness in micron, density in g/cm^3)."""
    return np.exp(-_mass_attenuation(composition, energy) * density * microns * 1e-4)


# HRMA on-axis effective area, cm^2: log-log interpolation between these knots, with the
# iridium M-edge drops near 2.04 and 2.12 keV (and a smaller one at 2.55 keV).
_HRMA_KNOTS = np.array(
    [
        [0.20, 800.0],
        [0.50, 815.0],
        [1.00, 810.0],
        [1.50, 790.0],
        [1.80, 720.0],
        [2.039, 690.0],
        [2.041, 430.0],
        [2.119, 400.0],
        [2.121, 385.0],
        [2.30, 405.0],
        [2.549, 425.0],
        [2.551, 412.0],
        [3.00, 425.0],
        [4.00, 430.0],
        [5.00, 378.0],
        [6.00, 265.0],
        [7.00, 155.0],
        [8.00, 78.0],
        [9.00, 44.0],
        [10.0, 24.0],
        [11.0, 13.0],
    ]
)


def _hrma_area(energy: np.ndarray) -> np.ndarray:
    """Template HRMA on-axis effective area, cm^2."""
    return np.exp(
        np.interp(np.log(energy), np.log(_HRMA_KNOTS[:, 0]), np.log(_HRMA_KNOTS[:, 1]))
    )


@dataclass(frozen=True)
class SyntheticChip:
    """Parameters of one synthetic ACIS-like response.

    Parameters
    ----------
    chip : str
        ``"FI"`` (front-illuminated, like ACIS-I3) or ``"BI"`` (back-illuminated, ACIS-S3).
    epoch : float
        Decimal year; sets the low-energy contamination.
    vignetting : float
        Off-axis vignetting factor at 1.5 keV (0.6-1.0); it deepens with energy.
    hrma_scale : float
        Scale of the mirror area template.
    depletion_um : float
        Depletion depth, micron (FI ~ 76, BI ~ 45): QE roll-off above 5 keV.
    dead_layer_um : float
        Silicon in the gate structure (FI) or the back-surface dead layer (BI), micron.
    oxide_um, nitride_um : float
        SiO2 and Si3N4 in the gate structure or dead layer, micron.
    filter_al_nm, filter_polyimide_nm : float
        Optical blocking filter, nm.
    contamination_rate : float
        Optical depth of the contaminant at 0.67 keV gained per year.
    contamination_mix : tuple of float
        Mass fractions of C, N, O, F in the contaminant.
    fwhm0_kev, fwhm6_kev : float
        Energy resolution FWHM at 0 and 6 keV, keV (FWHM^2 rises linearly with E).
    shelf_fraction : float
        Fraction of events redistributed flat from 0 to E (incomplete charge collection).
    escape_fraction : float
        Fraction of events above the Si K edge in the Si escape peak (E - 1.74 keV).
    wiggle : tuple of float
        Smooth multiplicative distortion of the area: 1 + a1 x + a2 (x^2 - 1/3) with
        x in [-1, 1] over log E.
    """

    chip: str
    epoch: float
    vignetting: float
    hrma_scale: float
    depletion_um: float
    dead_layer_um: float
    oxide_um: float
    nitride_um: float
    filter_al_nm: float
    filter_polyimide_nm: float
    contamination_rate: float
    contamination_mix: tuple[float, float, float, float]
    fwhm0_kev: float
    fwhm6_kev: float
    shelf_fraction: float
    escape_fraction: float
    wiggle: tuple[float, float]

    def to_json(self) -> str:
        """The parameters as a one-line JSON string."""
        return json.dumps({k: v for k, v in asdict(self).items()}, separators=(",", ":"))


def draw_synthetic_chip(
    rng: np.random.Generator,
    *,
    chip: str | None = None,
    epoch_range: tuple[float, float] = (2000.0, 2025.0),
) -> SyntheticChip:
    """Draw the parameters of one synthetic response.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random numbers.
    chip : {"FI", "BI"}, optional
        Chip type; drawn with equal odds when not given.
    epoch_range : tuple of float
        Range of the contamination epoch, decimal years.
    """
    if chip is None:
        chip = "FI" if rng.random() < 0.5 else "BI"
    if chip not in ("FI", "BI"):
        raise ValueError(f"chip must be 'FI' or 'BI', got {chip!r}")
    fi = chip == "FI"
    mix = np.array([0.80, 0.03, 0.10, 0.07]) * rng.uniform(0.7, 1.3, 4)
    mix /= mix.sum()
    return SyntheticChip(
        chip=chip,
        epoch=float(rng.uniform(*epoch_range)),
        vignetting=float(rng.uniform(0.6, 1.0)),
        hrma_scale=float(rng.uniform(0.95, 1.05)),
        depletion_um=float(rng.uniform(68.0, 80.0) if fi else rng.uniform(40.0, 48.0)),
        dead_layer_um=float(rng.uniform(0.3, 0.4) if fi else rng.uniform(0.03, 0.08)),
        oxide_um=float(rng.uniform(0.09, 0.15) if fi else rng.uniform(0.005, 0.02)),
        nitride_um=float(rng.uniform(0.06, 0.10) if fi else 0.0),
        filter_al_nm=float((120.0 if fi else 100.0) * rng.uniform(0.92, 1.08)),
        filter_polyimide_nm=float(200.0 * rng.uniform(0.92, 1.08)),
        contamination_rate=float(rng.uniform(0.05, 0.10)),
        contamination_mix=tuple(float(v) for v in mix),
        fwhm0_kev=float(rng.uniform(0.045, 0.065) if fi else rng.uniform(0.06, 0.08)),
        fwhm6_kev=float(rng.uniform(0.13, 0.19) if fi else rng.uniform(0.14, 0.20)),
        shelf_fraction=float(rng.uniform(0.01, 0.03) if fi else rng.uniform(0.02, 0.05)),
        escape_fraction=float(rng.uniform(0.002, 0.008)),
        wiggle=(float(rng.normal(0.0, 0.02)), float(rng.normal(0.0, 0.02))),
    )


def _contamination_tau(chip: SyntheticChip, energy: np.ndarray) -> np.ndarray:
    """Optical depth of the ACIS contaminant at the chip's epoch."""
    mix = dict(zip(("C", "N", "O", "F"), chip.contamination_mix, strict=True))
    shape = _mass_attenuation(mix, energy) / _mass_attenuation(
        mix, np.array([_CONTAMINATION_REF_KEV])
    )
    years = max(chip.epoch - _CONTAMINATION_START, 0.0)
    return chip.contamination_rate * years * shape


def synthetic_arf(chip: SyntheticChip, energ_lo: np.ndarray, energ_hi: np.ndarray) -> np.ndarray:
    """Effective area (cm^2) of a synthetic response on the given energy bins (keV).

    HRMA area x filter transmission x contamination x CCD quantum efficiency x
    vignetting x a smooth distortion, all evaluated at the bin centres.
    """
    e = 0.5 * (np.asarray(energ_lo, dtype=float) + np.asarray(energ_hi, dtype=float))
    mirror = chip.hrma_scale * _hrma_area(e)
    filt = _transmission(_POLYIMIDE, _POLYIMIDE_DENSITY, chip.filter_polyimide_nm * 1e-3, e)
    filt *= _transmission({"Al": 1.0}, _AL_DENSITY, chip.filter_al_nm * 1e-3, e)
    contam = np.exp(-_contamination_tau(chip, e))
    dead = _transmission({"Si": 1.0}, _SI_DENSITY, chip.dead_layer_um, e)
    dead *= _transmission(_SIO2, _SIO2_DENSITY, chip.oxide_um, e)
    dead *= _transmission(_SI3N4, _SI3N4_DENSITY, chip.nitride_um, e)
    absorbed = 1.0 - _transmission({"Si": 1.0}, _SI_DENSITY, chip.depletion_um, e)
    vignetting = chip.vignetting ** (0.85 + 0.1 * e)
    x = np.clip(2.0 * np.log(e / 0.2) / np.log(11.0 / 0.2) - 1.0, -1.0, 1.0)
    wiggle = 1.0 + chip.wiggle[0] * x + chip.wiggle[1] * (x * x - 1.0 / 3.0)
    return mirror * filt * contam * dead * absorbed * vignetting * np.clip(wiggle, 0.5, 1.5)


def synthetic_rmf(
    chip: SyntheticChip,
    energ_lo: np.ndarray,
    energ_hi: np.ndarray,
    e_min: np.ndarray,
    e_max: np.ndarray,
) -> np.ndarray:
    """Redistribution matrix (n_energy, n_channel) of a synthetic response.

    A Gaussian of energy-dependent width (FWHM^2 linear in E), a flat shelf from 0 to E
    and, above the Si K edge, a Si escape peak; each row sums to 1 over channels that
    cover the energy range.
    """
    e = 0.5 * (np.asarray(energ_lo, dtype=float) + np.asarray(energ_hi, dtype=float))
    e_min = np.asarray(e_min, dtype=float)
    e_max = np.asarray(e_max, dtype=float)
    edges = np.append(e_min, e_max[-1])
    fwhm = np.sqrt(chip.fwhm0_kev**2 + (chip.fwhm6_kev**2 - chip.fwhm0_kev**2) * e / 6.0)
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))

    n_chan = e_min.size
    min_width = float(np.min(e_max - e_min))

    def gauss(centre: np.ndarray, width: np.ndarray) -> np.ndarray:
        # Only the channels within 8 sigma of the centre are evaluated (a band matrix).
        span = int(np.ceil(16.0 * width.max() / min_width)) + 2
        first = np.searchsorted(e_max, centre - 8.0 * width, side="right")
        chan = first[:, None] + np.arange(span)[None, :]
        valid = chan < n_chan
        chan = np.minimum(chan, n_chan - 1)
        prob = ndtr((edges[chan + 1] - centre[:, None]) / width[:, None]) - ndtr(
            (edges[chan] - centre[:, None]) / width[:, None]
        )
        out = np.zeros((centre.size, n_chan))
        rows = np.broadcast_to(np.arange(centre.size)[:, None], chan.shape)
        out[rows[valid], chan[valid]] = prob[valid]
        return out

    escape = np.where(e > _ELEMENTS["Si"].edge, chip.escape_fraction, 0.0)
    escape[e - _SI_ESCAPE_KEV <= 0] = 0.0
    shelf = np.clip(np.minimum(e_max[None, :], e[:, None]) - e_min[None, :], 0.0, None)
    shelf /= e[:, None]
    matrix = (1.0 - chip.shelf_fraction - escape)[:, None] * gauss(e, sigma)
    matrix += chip.shelf_fraction * shelf
    escaped = escape > 0
    if np.any(escaped):
        peak = gauss(e[escaped] - _SI_ESCAPE_KEV, sigma[escaped])
        matrix[escaped] += escape[escaped, None] * peak
    return matrix


def synthetic_response(
    chip: SyntheticChip,
    input_grid: EnergyGrid = INPUT_GRID,
    model_grid: EnergyGrid = MODEL_GRID,
) -> tuple[np.ndarray, np.ndarray]:
    """Build a synthetic ARF and RMF and project them exactly as real ones are.

    Returns
    -------
    response : ndarray, shape (n_input, n_model)
        Projected response R, cm^2.
    effective_area : ndarray, shape (n_input,)
        Mean ARF over each input-grid bin, cm^2.
    """
    lo, hi = SYNTHETIC_ENERGY_EDGES[:-1], SYNTHETIC_ENERGY_EDGES[1:]
    e_min = np.arange(SYNTHETIC_N_CHANNELS) * SYNTHETIC_CHANNEL_WIDTH
    e_max = e_min + SYNTHETIC_CHANNEL_WIDTH
    specresp = synthetic_arf(chip, lo, hi)
    matrix = synthetic_rmf(chip, lo, hi, e_min, e_max)
    response = project_response(lo, hi, specresp, matrix, e_min, e_max, input_grid, model_grid)
    return response, bin_mean(lo, hi, specresp, input_grid.edges)


def synthetic_responses(
    n: int,
    *,
    rng: np.random.Generator | int | None = None,
    input_grid: EnergyGrid = INPUT_GRID,
    model_grid: EnergyGrid = MODEL_GRID,
    epoch_range: tuple[float, float] = (2000.0, 2025.0),
) -> ResponseLibrary:
    """``n`` synthetic ACIS-like responses (half FI, half BI on average).

    Parameters
    ----------
    n : int
        Number of responses.
    rng : numpy.random.Generator or int, optional
        Random numbers (or a seed).
    input_grid, model_grid : EnergyGrid
        Grids to project onto.
    epoch_range : tuple of float
        Range of the contamination epochs, decimal years.

    Returns
    -------
    ResponseLibrary
        Kind ``"synthetic"``, epoch the contamination epoch, details the
        :class:`SyntheticChip` parameters as JSON.
    """
    rng = np.random.default_rng(rng)
    n = int(n)
    if n < 0:
        raise ValueError(f"number of synthetic responses must be >= 0, got {n}")
    chips = [draw_synthetic_chip(rng, epoch_range=epoch_range) for _ in range(n)]
    response = np.zeros((n, input_grid.nbins, model_grid.nbins), dtype=np.float32)
    area = np.zeros((n, input_grid.nbins), dtype=np.float32)
    for i, chip in enumerate(chips):
        response[i], area[i] = synthetic_response(chip, input_grid, model_grid)
    return ResponseLibrary(
        names=tuple(f"synthetic-{i:04d}-{c.chip}" for i, c in enumerate(chips)),
        kinds=("synthetic",) * n,
        epochs=np.array([c.epoch for c in chips], dtype=float),
        response=response,
        effective_area=area,
        input_grid=input_grid.to_dict(),
        model_grid=model_grid.to_dict(),
        details=tuple(c.to_json() for c in chips),
    )


def build_library(
    folders: Iterable[str | os.PathLike] | None = None,
    n_synthetic: int = 512,
    seed: int = 0,
    *,
    include_default: bool = True,
    input_grid: EnergyGrid = INPUT_GRID,
    model_grid: EnergyGrid = MODEL_GRID,
) -> ResponseLibrary:
    """Real responses (see :func:`real_responses`) followed by synthetic ones.

    Parameters
    ----------
    folders : iterable of path-like, optional
        Extra folders of real spectra.
    n_synthetic : int
        Number of synthetic responses.
    seed : int
        Seed of the synthetic responses.
    include_default : bool
        Search the default real folders as well.
    input_grid, model_grid : EnergyGrid
        Grids to project onto.
    """
    real = real_responses(
        folders, include_default=include_default, input_grid=input_grid, model_grid=model_grid
    )
    synth = synthetic_responses(
        n_synthetic, rng=np.random.default_rng(seed), input_grid=input_grid, model_grid=model_grid
    )
    return ResponseLibrary.concatenate([real, synth])
