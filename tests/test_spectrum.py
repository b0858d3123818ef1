"""Loading real Chandra spectra, the response-aware representation, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SHERPA_SPECTRA, write_modified_pha
from sherpa.astro.instrument import Response1D
from sherpa.models.basic import PowLaw1D
from sherpa.utils.err import DataErr, IOErr

from sherpa_latent import load_spectrum
from sherpa_latent.errors import SpectrumError, SpectrumFileError
from sherpa_latent.grids import INPUT_GRID, channel_bin_index


def _input_grid_counts_match(spec) -> None:
    rep = spec.representation()
    e_min, e_max = spec.channel_energies
    idx = channel_bin_index(e_min, e_max, INPUT_GRID.edges)
    # Per bin, and in total over the same energy range of the PHA.
    expected = np.array([spec.counts[idx == i].sum() for i in range(INPUT_GRID.nbins)])
    np.testing.assert_array_equal(rep.counts, expected)
    mid = 0.5 * (e_min + e_max)
    in_range = (mid >= INPUT_GRID.emin) & (mid < INPUT_GRID.emax)
    assert rep.counts.sum() == spec.counts[in_range].sum()
    assert rep.counts.sum() > 0


@pytest.mark.parametrize("name", SHERPA_SPECTRA)
def test_loads_sherpa_package_spectra(sherpa_data: Path, name: str) -> None:
    spec = load_spectrum(sherpa_data / name)
    assert spec.pha.get_rmf() is not None and spec.pha.get_arf() is not None
    assert spec.pha.background_ids, "all three ship with a background"
    assert spec.exposure > 1e3
    assert spec.net_counts() > 50
    _input_grid_counts_match(spec)


def test_loads_every_shared_spectrum(shared_chandra: Path) -> None:
    # The source spectra of the folder; the *_bg.pi and background.pi files are
    # backgrounds with no response of their own, which are refused with a clear error.
    sources = sorted(
        p
        for p in shared_chandra.glob("*.pi")
        if not (p.stem.endswith("_bg") or p.stem == "background")
    )
    assert len(sources) >= 8
    for path in sources:
        spec = load_spectrum(path)
        _input_grid_counts_match(spec)
    missing_bkg = load_spectrum(shared_chandra / "12845.pi")
    assert any("12845_bkg.pi" in w for w in missing_bkg.warnings)
    with pytest.raises(SpectrumError, match="background.pi: .*RESPFILE"):
        load_spectrum(shared_chandra / "background.pi")


def test_finds_gzipped_responses_the_header_does_not_name(sherpa_data: Path, tmp_path: Path):
    import gzip
    import shutil

    for name in ("acisf07867_000N001_r0002_arf3.fits", "acisf07867_000N001_r0002_rmf3.fits"):
        with open(sherpa_data / name, "rb") as src:
            with gzip.open(tmp_path / (name + ".gz"), "wb") as dst:
                shutil.copyfileobj(src, dst)
    pha = "acisf07867_000N001_r0002_pha3.fits"
    shutil.copy(sherpa_data / pha, tmp_path / pha)
    assert not (tmp_path / "acisf07867_000N001_r0002_rmf3.fits").exists()
    spec = load_spectrum(tmp_path / pha)
    original = load_spectrum(sherpa_data / pha)
    np.testing.assert_allclose(spec.representation().response, original.representation().response)


def test_finds_uncompressed_responses_the_header_names_gzipped(sherpa_data: Path, tmp_path):
    import shutil

    for name in ("3c273.arf", "3c273.rmf", "3c273_bg.pi"):
        shutil.copy(sherpa_data / name, tmp_path / name)
    header = {"RESPFILE": "3c273.rmf.gz", "ANCRFILE": "3c273.arf.gz", "BACKFILE": "3c273_bg.pi.gz"}
    path = write_modified_pha(tmp_path / "src.pi", sherpa_data / "3c273.pi", header=header)
    spec = load_spectrum(path)
    assert spec.pha.get_arf() is not None and spec.pha.background_ids
    assert not spec.warnings


def _powerlaw():
    model = PowLaw1D("pl")
    model.gamma = 1.8
    model.ampl = 2e-3
    return model


def _absorbed_thermal():
    from sherpa_latent.physics import Plasma, WAbs

    absorber, plasma = WAbs("abs"), Plasma("th")
    absorber.nh = 0.5
    plasma.kt = 3.0
    plasma.norm = 2e-2
    return absorber * plasma


@pytest.mark.parametrize(
    "make_model", [_powerlaw, _absorbed_thermal], ids=["powlaw", "wabs*plasma"]
)
@pytest.mark.parametrize("name", SHERPA_SPECTRA[:2])
def test_projected_response_reproduces_sherpa_folding(sherpa_data: Path, name: str, make_model):
    """exposure x R @ flux agrees with Sherpa's own folding through the full ARF and RMF."""
    spec = load_spectrum(sherpa_data / name)
    rep = spec.representation()
    model = make_model()
    ours = rep.expected_counts(model(rep.model_grid.lo, rep.model_grid.hi))

    pha = spec.pha
    pha.ungroup()
    pha.notice()
    sherpa_counts = pha.eval_model_to_fit(Response1D(pha)(model))
    e_min, e_max = spec.channel_energies
    idx = channel_bin_index(e_min, e_max, rep.input_grid.edges)
    reference = np.bincount(idx[idx >= 0], sherpa_counts[idx >= 0], rep.input_grid.nbins)

    big = reference > 100
    assert big.sum() >= 10, "the test needs bins with more than 100 expected counts"
    rel = np.abs(ours[big] / reference[big] - 1)
    assert rel.max() < 0.01, f"worst bin off by {rel.max():.2%}"


# --- bad input: one line, naming the file, in Sherpa's own exception classes -------------
def _one_line(exc: Exception, path: Path) -> str:
    text = str(exc)
    assert "\n" not in text
    assert str(path) in text
    return text


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.pi"
    with pytest.raises(IOErr) as info:
        load_spectrum(path)
    assert "not found" in _one_line(info.value, path)


def test_truncated_fits(tmp_path: Path, pha_3c273: Path) -> None:
    path = tmp_path / "truncated.pi"
    data = pha_3c273.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SpectrumFileError) as info:
        load_spectrum(path)
    assert "truncated" in _one_line(info.value, path)


def test_missing_respfile(tmp_path: Path, pha_3c273: Path) -> None:
    path = write_modified_pha(tmp_path / "alone.pi", pha_3c273, absolute_files=False)
    with pytest.raises(DataErr) as info:
        load_spectrum(path)
    assert "RESPFILE not found" in _one_line(info.value, path)


def test_rmf_channel_mismatch(tmp_path: Path, pha_3c273: Path) -> None:
    path = write_modified_pha(
        tmp_path / "half.pi", pha_3c273, nrows=512, header={"BACKFILE": "none"}
    )
    with pytest.raises(SpectrumError) as info:
        load_spectrum(path)
    assert "RMF 3c273.rmf has 1024 channels but the spectrum has 512" in _one_line(info.value, path)


def test_background_channel_mismatch(tmp_path: Path, pha_3c273: Path) -> None:
    bkg = write_modified_pha(tmp_path / "bkg.pi", pha_3c273.parent / "3c273_bg.pi", nrows=512)
    path = write_modified_pha(tmp_path / "src.pi", pha_3c273, header={"BACKFILE": str(bkg)})
    with pytest.raises(SpectrumError) as info:
        load_spectrum(path)
    assert "background bkg.pi has 512 channels" in _one_line(info.value, path)


@pytest.mark.parametrize(
    "header, counts, message",
    [
        ({"TG_M": 1, "TG_PART": 1}, None, "grating spectrum"),
        ({"INSTRUME": "HRC"}, None, "HRC spectrum"),
        (None, np.zeros(1024, dtype=np.int32), "no counts in 0.5-7.0 keV"),
        (None, np.where(np.arange(1024) == 300, np.nan, 2.0), "NaN"),
    ],
    ids=["grating", "hrc", "zero-counts", "nan"],
)
def test_unusable_spectra(tmp_path: Path, pha_3c273: Path, header, counts, message) -> None:
    path = write_modified_pha(tmp_path / "bad.pi", pha_3c273, header=header, counts=counts)
    with pytest.raises(SpectrumError) as info:
        load_spectrum(path)
    assert message in _one_line(info.value, path)


def test_grating_by_channel_count(tmp_path: Path, pha_3c273: Path) -> None:
    from astropy.io import fits

    path = tmp_path / "pha2.pi"
    nchan = 8192
    cols = [
        fits.Column(name="CHANNEL", format="J", array=np.arange(1, nchan + 1)),
        fits.Column(name="COUNTS", format="J", array=np.ones(nchan, dtype=np.int32)),
    ]
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.header.update(
        EXTNAME="SPECTRUM", HDUCLASS="OGIP", HDUCLAS1="SPECTRUM", HDUCLAS3="COUNT",
        DETCHANS=nchan, EXPOSURE=1e4, INSTRUME="ACIS", TELESCOP="CHANDRA", BACKSCAL=1.0,
        AREASCAL=1.0, CORRSCAL=0.0, POISSERR=True, CHANTYPE="PI",
    )
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    with pytest.raises(SpectrumError) as info:
        load_spectrum(path)
    assert "8192 channels" in _one_line(info.value, path)


def test_wavelength_analysis_is_refused(pha_3c273: Path) -> None:
    from sherpa_latent import spectrum_from_pha

    spec = load_spectrum(pha_3c273)
    spec.pha.set_analysis("wavelength")
    with pytest.raises(SpectrumError, match="wavelength"):
        spectrum_from_pha(spec.pha, str(pha_3c273))
