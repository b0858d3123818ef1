"""Real ARF/RMF pairs, found beside the spectra in folders that a recipe names."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..grids import INPUT_GRID, MODEL_GRID, EnergyGrid
from ..spectrum import find_named_file, header_file_names, load_spectrum
from .response_library import ResponseLibrary

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------
# Real responses
# ----------------------------------------------------------------------------------------

_SPECTRUM_SUFFIXES = (".pi", ".pha", ".fits", ".fit", ".pi.gz", ".pha.gz", ".fits.gz")
_RESPONSE_STEMS = ("arf", "rmf", "arf3", "rmf3", "rsp", "warf", "wrmf")

SHERPA_DATA_PREFIX = "sherpa:"
"""A folder named ``sherpa:SUBDIR`` is ``SUBDIR`` inside the installed ``sherpa`` package."""


def resolve_folder(name: str | os.PathLike, base: str | os.PathLike = ".") -> Path:
    """A folder a recipe names: ``sherpa:SUBDIR`` inside the installed Sherpa, else a path.

    Parameters
    ----------
    name : str or path-like
        ``sherpa:astro/datastack/tests/data`` (the three real Chandra spectra that ship
        with Sherpa), or a folder, relative to ``base`` unless absolute.
    base : path-like
        Folder that relative paths start from (the recipe's folder).
    """
    text = os.fspath(name)
    if text.startswith(SHERPA_DATA_PREFIX):
        import sherpa

        return Path(sherpa.__file__).resolve().parent / text[len(SHERPA_DATA_PREFIX) :]
    path = Path(text).expanduser()
    return path if path.is_absolute() else Path(base) / path


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
    folders: Iterable[str | os.PathLike],
    *,
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
        Folders to search (not recursively); see :func:`resolve_folder` for names.
    input_grid, model_grid : EnergyGrid
        Grids to project onto.

    Returns
    -------
    ResponseLibrary
        Kind ``"real"``, epoch the DATE-OBS year, name the PHA file name.
    """
    search = [resolve_folder(folder) for folder in folders]
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
        input_grid=input_grid,
        model_grid=model_grid,
        details=tuple(details),
    )



