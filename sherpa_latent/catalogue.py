"""Encode many spectrum files into one table, one row per file, failures included.

:func:`encode_files` loads each file, encodes the good ones in batches and returns an
astropy ``Table`` with units; a file that cannot be used gets a row whose ``ERROR``
column says why. :func:`write_table` writes it as FITS atomically, with provenance
keywords, and refuses to overwrite without ``clobber``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import Table

from .classes import CLASS_NAMES
from .grids import INPUT_GRID, MODEL_GRID
from .inference import LatentEncoder, LatentResult
from .report import error_message
from .spectrum import Spectrum, load_spectrum

__all__ = ["encode_files", "results_table", "write_table"]


def encode_files(
    paths: Sequence[str | os.PathLike],
    encoder: LatentEncoder,
    *,
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
) -> Table:
    """Load and encode files; every file gets a row, bad ones with an error.

    Parameters
    ----------
    paths : sequence of path-like
        PHA files.
    encoder : LatentEncoder
        The network.
    batch_size : int, optional
        Files loaded before each batched pass through the network.
    progress : callable, optional
        Called with the number of files just finished (for a progress bar).
    """
    rows: list[tuple[str, Spectrum | None, LatentResult | None, str]] = []
    for start in range(0, len(paths), batch_size):
        chunk = [os.fspath(p) for p in paths[start : start + batch_size]]
        loaded: list[tuple[str, Spectrum | None, str]] = []
        for path in chunk:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    loaded.append((path, load_spectrum(path), ""))
            except Exception as exc:  # noqa: BLE001 - one bad file never stops the others
                loaded.append((path, None, error_message(path, exc)))
        good = [spec for _, spec, _ in loaded if spec is not None]
        results = iter(encoder.encode(good)) if good else iter(())
        for path, spec, err in loaded:
            rows.append((path, spec, next(results) if spec is not None else None, err))
        if progress is not None:
            progress(len(chunk))
    return results_table(rows, encoder)


def results_table(rows, encoder: LatentEncoder) -> Table:
    """Build the output table from (path, spectrum, result, error) rows."""
    n = len(rows)
    dim = encoder.model.config.latent_dim
    nan = np.nan
    z = np.full((n, dim), nan)
    z_err = np.full((n, dim), nan)
    cols: dict[str, np.ndarray] = {
        name: np.full(n, nan)
        for name in ("LOG_NORM", "LOG_NORM_ERR", "NH", "NH_LO", "NH_HI", "ANOMALY", "CSTAT")
    }
    dof = np.zeros(n, dtype=np.int32)
    cluster = np.full(n, -1, dtype=np.int16)
    fractions = np.zeros((n, len(CLASS_NAMES)))
    label = np.full(n, "", dtype=object)
    obj, obsid, error = (np.full(n, "", dtype=object) for _ in range(3))
    ra, dec = np.full(n, nan), np.full(n, nan)
    for i, (_, spec, res, err) in enumerate(rows):
        error[i] = err
        if spec is not None:
            obj[i], obsid[i] = spec.object, spec.obsid
            if spec.position is not None:
                ra[i], dec[i] = spec.position
        if res is None:
            continue
        z[i], z_err[i] = res.z, res.z_err
        cols["LOG_NORM"][i], cols["LOG_NORM_ERR"][i] = res.log_norm, res.log_norm_err
        cols["NH"][i], cols["NH_LO"][i], cols["NH_HI"][i] = res.nh
        cols["ANOMALY"][i], cols["CSTAT"][i], dof[i] = res.anomaly, res.cstat, res.dof
        cluster[i], label[i] = res.cluster, res.cluster_label
        fractions[i] = [res.cluster_classes.get(c, 0.0) for c in CLASS_NAMES]
    table = Table()
    table["FILE"] = [r[0] for r in rows]
    table["OBJECT"] = obj.astype(str)
    table["OBSID"] = obsid.astype(str)
    table["RA"] = ra * u.deg
    table["DEC"] = dec * u.deg
    table["Z"] = z
    table["Z_ERR"] = z_err
    table["LOG_NORM"] = cols["LOG_NORM"] * u.dex(u.ph / u.cm**2 / u.s)
    table["LOG_NORM_ERR"] = cols["LOG_NORM_ERR"] * u.dex
    for key in ("NH", "NH_LO", "NH_HI"):
        table[key] = cols[key] * (1e22 * u.cm**-2)
    table["CLUSTER"] = cluster
    table["CLUSTER_LABEL"] = label.astype(str)
    table["CLUSTER_CLASSES"] = fractions
    table["ANOMALY"] = cols["ANOMALY"]
    table["CSTAT"] = cols["CSTAT"]
    table["DOF"] = dof
    table["ERROR"] = error.astype(str)
    table.meta.update(provenance(encoder))
    return table


def provenance(encoder: LatentEncoder) -> dict:
    """FITS keywords saying which package, network and grids made a table."""
    from . import __version__

    return {
        "CREATOR": f"sherpa_latent {__version__}",
        "DATE": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "NETWORK": encoder.name,
        "NETSHA": encoder.sha256,
        "INGRID": f"{INPUT_GRID.emin}-{INPUT_GRID.emax} keV log x {INPUT_GRID.nbins}",
        "MODGRID": f"{MODEL_GRID.emin}-{MODEL_GRID.emax} keV log x {MODEL_GRID.nbins}",
        "CLASSES": ",".join(CLASS_NAMES),
        "NHUNIT": "1e22 cm^-2, median and 68% interval",
        "NORMBAND": "log10 photon flux 0.5-7 keV",
    }


def write_table(table: Table, path: str | os.PathLike, *, clobber: bool = False) -> Path:
    """Write a table as FITS atomically; refuse to overwrite without ``clobber``.

    Raises
    ------
    sherpa.utils.err.IOErr
        The file exists and ``clobber`` is not set.
    """
    from sherpa.utils.err import IOErr

    path = Path(path)
    if path.exists() and not clobber:
        raise IOErr("filefound", str(path))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        table.write(tmp, format="fits", overwrite=True)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
