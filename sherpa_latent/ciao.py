"""Glue to CIAO: make a spectrum from an event file with CIAO's ``specextract``.

``ciao_contrib`` (CIAO's contributed scripts, which hold ``ciao_contrib.runtool``) is part
of a CIAO installation and is not on PyPI. Inside CIAO, :func:`extract_spectrum` runs
``specextract`` through ``ciao_contrib.runtool`` to make the PHA, ARF and RMF (and a
background spectrum when a background region is given); elsewhere it raises
:class:`CiaoUnavailable`, whose message says so in one line.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .errors import CiaoToolError, CiaoUnavailable

__all__ = ["CiaoUnavailable", "CiaoToolError", "have_ciao", "runtool", "extract_spectrum"]

def runtool():
    """The ``ciao_contrib.runtool`` module.

    Raises
    ------
    CiaoUnavailable
        Outside CIAO.
    """
    try:
        from ciao_contrib import runtool as module
    except ImportError:
        raise CiaoUnavailable() from None
    return module


def have_ciao() -> bool:
    """Whether ``ciao_contrib.runtool`` imports (that is, whether this runs inside CIAO)."""
    try:
        runtool()
    except CiaoUnavailable:
        return False
    return True


def _region_filter(evt2: str, region: str) -> str:
    """A Data Model filter selecting the events in a region file or region expression."""
    region = str(region).strip()
    if os.path.isfile(region):
        return f"{evt2}[sky=region({region})]"
    return f"{evt2}[sky={region}]"


def extract_spectrum(
    evt2: str | os.PathLike,
    region: str,
    outroot: str | os.PathLike,
    *,
    background: str | None = None,
    extended: bool = False,
    clobber: bool = False,
    verbose: int = 0,
) -> Path:
    """Run ``specextract`` to make a PHA file with its ARF, RMF and background.

    Parameters
    ----------
    evt2 : path-like
        Level 2 event file.
    region : str
        Source region: a region file (CIAO or DS9 format, sky coordinates) or a region
        expression such as ``circle(4096.5,4096.5,10)``.
    outroot : path-like
        Root of the output names (``ROOT.pi``, ``ROOT.arf``, ``ROOT.rmf``, ``ROOT_bkg.pi``).
    background : str, optional
        Background region, in the same forms as ``region``.
    extended : bool, optional
        An extended source: responses weighted by the counts in the region
        (``weight=yes``). Otherwise a point source: unweighted responses with the ARF
        corrected for the PSF outside the aperture (``weight=no correctpsf=yes``).
    clobber : bool, optional
        Overwrite existing outputs.
    verbose : int, optional
        ``specextract`` verbosity.

    Returns
    -------
    pathlib.Path
        The ungrouped source spectrum (its header names the ARF, RMF and background).

    Raises
    ------
    CiaoUnavailable
        Outside CIAO.
    CiaoToolError
        ``specextract`` failed or made no spectrum.
    """
    rt = runtool()
    evt2 = os.fspath(evt2)
    if not os.path.isfile(evt2):
        raise CiaoToolError("specextract", f"{evt2}: event file not found")
    outroot = os.fspath(outroot)
    params = {
        "infile": _region_filter(evt2, region),
        "outroot": outroot,
        "bkgfile": "" if background is None else _region_filter(evt2, background),
        "weight": bool(extended),
        "weight_rmf": bool(extended),
        "correctpsf": not extended,
        "grouptype": "NONE",
        "bkg_grouptype": "NONE",
        "clobber": bool(clobber),
        "verbose": int(verbose),
    }
    # A private parameter-file folder keeps parallel runs from sharing specextract.par.
    private = getattr(rt, "new_pfiles_environment", None)
    context = private(ardlib=True) if private is not None else contextlib.nullcontext()
    try:
        with context:
            tool = rt.specextract
            tool.punlearn()
            tool(**params)
    except (OSError, RuntimeError, ValueError) as exc:
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        raise CiaoToolError("specextract", lines[-1] if lines else type(exc).__name__) from None
    pha = Path(outroot + ".pi")
    if not pha.is_file():
        raise CiaoToolError("specextract", f"made no spectrum {pha}")
    return pha
