"""DS9 region files of an encode table: one circle per spectrum with a position (issue 4,
point 6), coloured by cluster, labelled, written atomically under the clobber rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table
from regions import CircleSkyRegion, Regions
from sherpa.utils.err import IOErr

from sherpa_latent.regionfile import (
    CLUSTER_COLORS,
    NO_CLUSTER_COLOR,
    catalogue_regions,
    cluster_color,
    region_label,
    write_regions,
)


def _table() -> Table:
    table = Table()
    table["FILE"] = ["a/src1.pi", "b/src2.pi", "c/bad.pi", "d/src4.pi", "e/src5.pi"]
    table["OBJECT"] = ["3C 273", "", "", "odd {name}", "M 87"]
    table["RA"] = [187.2779, 10.5, np.nan, 359.99, 187.7059] * u.deg
    table["DEC"] = [2.0524, -89.9, np.nan, 0.0, 12.3911] * u.deg
    table["CLUSTER"] = np.array([3, 0, -1, -1, 19], dtype=np.int16)
    return table


def test_one_circle_per_row_with_a_position(tmp_path: Path) -> None:
    path = tmp_path / "latents.reg"
    assert write_regions(_table(), path) == 4
    parsed = Regions.read(str(path), format="ds9")
    assert len(parsed) == 4
    assert all(isinstance(r, CircleSkyRegion) for r in parsed)
    assert all(r.center.frame.name == "icrs" for r in parsed)
    centres = [(r.center.ra.deg, r.center.dec.deg) for r in parsed]
    want = [(187.2779, 2.0524), (10.5, -89.9), (359.99, 0.0), (187.7059, 12.3911)]
    np.testing.assert_allclose(centres, want, atol=1e-8)
    np.testing.assert_allclose([r.radius.to_value(u.arcsec) for r in parsed], 5.0, rtol=1e-5)
    # OBJECT, the file's base name and the cluster; braces (which end a DS9 text field)
    # are replaced.
    assert [r.meta["text"] for r in parsed] == [
        "3C 273, src1.pi, cluster 3",
        "src2.pi, cluster 0",
        "odd (name), src4.pi",
        "M 87, src5.pi, cluster 19",
    ]
    colours = [r.visual.get("edgecolor", r.visual.get("color")) for r in parsed]
    assert colours == [CLUSTER_COLORS[3], CLUSTER_COLORS[0], NO_CLUSTER_COLOR, CLUSTER_COLORS[3]]
    assert "cluster 19" in path.read_text()  # the tag keeps the cluster when colours repeat


def test_colours_by_cluster() -> None:
    assert cluster_color(-1) == NO_CLUSTER_COLOR
    assert cluster_color(0) == CLUSTER_COLORS[0]
    assert cluster_color(len(CLUSTER_COLORS) + 2) == CLUSTER_COLORS[2]
    regions = catalogue_regions(_table(), radius=2 * u.arcsec, colors=("red", "green"))
    assert [r.visual["color"] for r in regions] == ["green", "red", "white", "green"]
    assert regions[0].radius == 2 * u.arcsec


def test_clobber_rules_and_an_empty_table(tmp_path: Path) -> None:
    path = tmp_path / "latents.reg"
    path.write_text("keep me\n")
    with pytest.raises(IOErr, match="latents.reg"):
        write_regions(_table(), path)
    assert path.read_text() == "keep me\n"
    assert write_regions(_table()[2:3], path, clobber=True) == 0  # no row with a position
    assert len(Regions.read(str(path), format="ds9")) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["latents.reg"]  # no temporary left


def test_non_ascii_labels_read_back(tmp_path: Path) -> None:
    """Issue 12: a file name with a space and a non-ASCII letter labels its circle as it is."""
    table = _table()[:2]
    table["OBJECT"] = ["", ""]
    table["FILE"] = ["data/3c 273 ü.pi", "data/bad\udcff.pi"]  # the second is not UTF-8
    path = tmp_path / "latents.reg"
    assert write_regions(table, path) == 2
    text = path.read_bytes().decode("utf-8")  # the file is UTF-8
    assert "3c 273 ü.pi" in text
    parsed = Regions.read(str(path), format="ds9")
    assert [r.meta["text"] for r in parsed] == ["3c 273 ü.pi, cluster 3", "bad\ufffd.pi, cluster 0"]


def test_labels_name_the_file_and_the_cluster() -> None:
    """Issue 13: a label says which file the circle is and which cluster it is in."""
    assert region_label("3C 273", "/data/obs/3c273.pi", 3) == "3C 273, 3c273.pi, cluster 3"
    assert region_label("", "src.pi", 0) == "src.pi, cluster 0"
    assert region_label("src.pi", "a/src.pi", -1) == "src.pi"  # OBJECT equal to the name
    assert region_label("", "", -1) == ""


def test_a_table_read_back_from_fits_labels_by_file(tmp_path: Path) -> None:
    """Empty OBJECT strings read back from FITS as masked entries: the file names the circle."""
    from sherpa_latent.catalogue import read_table, write_table

    table = _table()
    table["OBJECT"] = ["", "", "", "", "M 87"]
    write_table(table, tmp_path / "t.fits")
    back = read_table(tmp_path / "t.fits")
    texts = [r.meta["text"] for r in catalogue_regions(back)]
    assert texts == [
        "src1.pi, cluster 3",
        "src2.pi, cluster 0",
        "src4.pi",
        "M 87, src5.pi, cluster 19",
    ]
