"""DS9 region files of encoded spectra: a circle at each target, coloured by cluster.

Made with the ``regions`` package, so they read back with
``regions.Regions.read(path, format="ds9")`` as well as in DS9 itself. Each spectrum with
a position (the RA and DEC columns of an ``encode`` or ``report`` table, which come from
the RA/DEC keywords of the PHA file, else RA_TARG/DEC_TARG) gets one ``CircleSkyRegion``
in ICRS, labelled with its OBJECT, its file name and its cluster
(``3C 273, 3c273.pi, cluster 3``) and tagged ``cluster N``. The file is UTF-8, so a label
such as ``3c 273 ü.pi`` reads back as it is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

from .fileio import atomic_output

__all__ = [
    "CLUSTER_COLORS",
    "NO_CLUSTER_COLOR",
    "cluster_color",
    "region_label",
    "catalogue_regions",
    "write_regions",
]

CLUSTER_COLORS: tuple[str, ...] = (
    "#e6194b",  # red
    "#3cb44b",  # green
    "#4363d8",  # blue
    "#f58231",  # orange
    "#911eb4",  # purple
    "#42d4f4",  # cyan
    "#f032e6",  # magenta
    "#9a6324",  # brown
    "#808000",  # olive
    "#000075",  # navy
    "#bfef45",  # lime
    "#469990",  # teal
    "#800000",  # maroon
    "#ffd700",  # gold
    "#a9a9a9",  # grey
    "#fabed4",  # pink
)
"""Colours of clusters 0, 1, 2, ... in region files and plots alike: 16 clearly distinct
colours (Trubetskoy's list of 20 distinct colours, without its pale shades and black), no two
shades of one hue. Beyond 16 clusters they repeat."""

NO_CLUSTER_COLOR = "white"
"""Colour of a spectrum with a position but no cluster (for example a failed encoding)."""

DEFAULT_RADIUS = 5.0 * u.arcsec


def cluster_color(cluster: int) -> str:
    """DS9 colour of a cluster (``NO_CLUSTER_COLOR`` for a negative cluster number)."""
    cluster = int(cluster)
    return NO_CLUSTER_COLOR if cluster < 0 else CLUSTER_COLORS[cluster % len(CLUSTER_COLORS)]


def _label(name: str) -> str:
    """A DS9 text label: braces would end the text field, so they become parentheses.

    A name that is not valid UTF-8 (a file name's undecodable bytes) gets U+FFFD for
    those bytes, so that the file stays UTF-8.
    """
    text = str(name).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return " ".join(text.replace("{", "(").replace("}", ")").split())


def _text_column(table: Table, name: str) -> list[str]:
    """A text column as str (masked entries, empty strings read back from FITS, as "")."""
    if name not in table.colnames:
        return [""] * len(table)
    column = table[name]
    if hasattr(column, "filled"):
        column = column.filled("")
    values = np.asarray(column)
    if values.dtype.kind == "S":
        values = np.char.decode(values, "utf-8", "replace")
    return [str(v) for v in values.tolist()]


def region_label(name: str, file: str, cluster: int) -> str:
    """The text of a spectrum's region: OBJECT, the file's base name and the cluster.

    Parts that are empty are left out (no OBJECT; no cluster for a negative number), as
    is an OBJECT equal to the file's base name: ``region_label("3C 273",
    "data/3c273.pi", 3)`` is ``"3C 273, 3c273.pi, cluster 3"``.
    """
    name, base = str(name).strip(), os.path.basename(str(file).rstrip("/"))
    parts = [name] if name else []
    if base and base != name:
        parts.append(base)
    if int(cluster) >= 0:
        parts.append(f"cluster {int(cluster)}")
    return _label(", ".join(parts))


def catalogue_regions(
    table: Table,
    *,
    radius: u.Quantity = DEFAULT_RADIUS,
    colors: Sequence[str] = CLUSTER_COLORS,
):
    """One circle per row with a finite position, coloured by cluster.

    Parameters
    ----------
    table : astropy.table.Table
        Rows with RA and DEC (degrees) and, when present, OBJECT, FILE and CLUSTER
        (the table ``sherpa-latent encode`` writes).
    radius : astropy.units.Quantity, optional
        Circle radius (default 5 arcsec).
    colors : sequence of str, optional
        Colours of clusters 0, 1, 2, ...

    Returns
    -------
    regions.Regions
    """
    from regions import CircleSkyRegion, Regions

    ra = np.asarray(u.Quantity(table["RA"], u.deg).value, dtype=float)
    dec = np.asarray(u.Quantity(table["DEC"], u.deg).value, dtype=float)
    n = len(table)
    names, files = (_text_column(table, key) for key in ("OBJECT", "FILE"))
    clusters = table["CLUSTER"] if "CLUSTER" in table.colnames else [-1] * n
    out = []
    for i in np.flatnonzero(np.isfinite(ra) & np.isfinite(dec)):
        cluster = int(clusters[i])
        color = NO_CLUSTER_COLOR if cluster < 0 else colors[cluster % len(colors)]
        meta = {"text": region_label(names[i], files[i], cluster) or f"row {i}"}
        if cluster >= 0:
            meta["tag"] = [f"cluster {cluster}"]
        out.append(
            CircleSkyRegion(
                center=SkyCoord(ra[i], dec[i], unit="deg", frame="icrs"),
                radius=radius,
                meta=meta,
                visual={"color": color},
            )
        )
    return Regions(out)


def write_regions(
    table: Table,
    path: str | os.PathLike,
    *,
    clobber: bool = False,
    radius: u.Quantity = DEFAULT_RADIUS,
) -> int:
    """Write the DS9 region file of a table atomically; refuse to overwrite without clobber.

    Parameters
    ----------
    table : astropy.table.Table
        See :func:`catalogue_regions`.
    path : path-like
        The region file.
    clobber : bool, optional
        Overwrite an existing file.
    radius : astropy.units.Quantity, optional
        Circle radius.

    Returns
    -------
    int
        Number of regions written.

    Raises
    ------
    sherpa.utils.err.IOErr
        The file exists and ``clobber`` is not set.
    """
    regions = catalogue_regions(table, radius=radius)
    if len(regions):
        text = regions.serialize(format="ds9")
    else:  # regions writes nothing for an empty list; keep a valid, empty file
        text = "# Region file format: DS9 astropy/regions\nicrs\n"
    with atomic_output(path, clobber=clobber) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return len(regions)
