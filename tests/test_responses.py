"""The response library: real ARF/RMF pairs, synthetic ACIS-like responses, save/load."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
from sherpa.utils.err import IOErr

from sherpa_latent import load_spectrum
from sherpa_latent.grids import INPUT_GRID, MODEL_GRID
from sherpa_latent.training.real_responses import real_responses, resolve_folder
from sherpa_latent.training.recipe import build_library
from sherpa_latent.training.response_library import ResponseLibrary
from sherpa_latent.training.synthetic_responses import (
    SYNTHETIC_CHANNEL_WIDTH,
    SYNTHETIC_ENERGY_EDGES,
    SYNTHETIC_N_CHANNELS,
    draw_synthetic_chip,
    synthetic_arf,
    synthetic_responses,
    synthetic_rmf,
)


@pytest.fixture(scope="module")
def synth() -> ResponseLibrary:
    return synthetic_responses(12, rng=np.random.default_rng(7))


@pytest.fixture(scope="module")
def sherpa_library() -> ResponseLibrary:
    return real_responses(["sherpa:astro/datastack/tests/data"])


def _chip(kind: str, **changes):
    chip = draw_synthetic_chip(np.random.default_rng(1), chip=kind)
    base = {"vignetting": 1.0, "hrma_scale": 1.0, "wiggle": (0.0, 0.0), "epoch": 2005.0}
    return dataclasses.replace(chip, **{**base, **changes})


def _area_at(chip, energy: float) -> float:
    return float(synthetic_arf(chip, np.array([energy * 0.999]), np.array([energy * 1.001]))[0])


# --- the library object -------------------------------------------------------------------
def test_round_trip(tmp_path: Path, synth: ResponseLibrary) -> None:
    path = synth.save(tmp_path / "lib.npz")
    back = ResponseLibrary.load(path)
    assert len(back) == len(synth) == 12
    assert back.names == synth.names and back.kinds == synth.kinds
    assert back.details == synth.details
    assert back.input_grid == INPUT_GRID and back.model_grid == MODEL_GRID
    np.testing.assert_array_equal(back.response, synth.response)
    np.testing.assert_array_equal(back.effective_area, synth.effective_area)
    np.testing.assert_array_equal(back.epochs, synth.epochs)
    assert back.response.dtype == np.float32 and back.effective_area.dtype == np.float32
    assert back.fingerprint() == synth.fingerprint()
    # No temporary files left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib.npz"]
    with np.load(path, allow_pickle=False) as data:  # plain arrays, no pickle needed
        assert data["names"].dtype.kind == "U"


def test_refuses_to_overwrite(tmp_path: Path, synth: ResponseLibrary) -> None:
    path = synth.save(tmp_path / "lib.npz")
    before = path.read_bytes()
    small = synth.subset([0, 1])
    with pytest.raises(IOErr, match="exists and clobber is not set"):
        small.save(path)
    assert path.read_bytes() == before
    small.save(path, clobber=True)
    assert len(ResponseLibrary.load(path)) == 2


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(IOErr, match="not found"):
        ResponseLibrary.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(IOErr, match="bad.npz"):
        ResponseLibrary.load(bad)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(IOErr, match="not a sherpa_latent response library"):
        ResponseLibrary.load(other)


def test_subset_concatenate_and_validation(synth: ResponseLibrary) -> None:
    sub = synth.subset([3, 1])
    assert sub.names == (synth.names[3], synth.names[1])
    np.testing.assert_array_equal(sub.response[0], synth.response[3])
    assert len(synth.subset(slice(0, 5))) == 5
    both = ResponseLibrary.concatenate([sub, synth])
    assert len(both) == 14 and both.names[2:] == synth.names
    assert not synth.response.flags.writeable
    with pytest.raises(ValueError, match="kind"):
        ResponseLibrary(("a",), ("fake",), [2000.0], synth.response[:1], synth.effective_area[:1])
    with pytest.raises(ValueError, match="shape"):
        ResponseLibrary(("a",), ("real",), [2000.0], synth.response[:1, :, :10],
                        synth.effective_area[:1])  # fmt: skip
    with pytest.raises(ValueError, match="non-negative"):
        ResponseLibrary(("a",), ("real",), [2000.0], -synth.response[:1],
                        synth.effective_area[:1])  # fmt: skip


# --- synthetic responses ------------------------------------------------------------------
def test_synthetic_positive_and_plausible(synth: ResponseLibrary) -> None:
    assert set(synth.kinds) == {"synthetic"}
    assert np.all(np.isfinite(synth.response)) and np.all(synth.response >= 0)
    assert np.all(synth.effective_area > 0)
    assert np.all(synth.response.sum(axis=(1, 2)) > 0)
    peak = synth.effective_area.max(axis=1)
    assert np.all((peak > 250) & (peak < 900)), peak
    e_peak = INPUT_GRID.mid[synth.effective_area.argmax(axis=1)]
    assert np.all((e_peak > 0.9) & (e_peak < 2.2)), e_peak
    assert np.all((synth.epochs >= 2000) & (synth.epochs <= 2025))
    # The diagonal of R carries most of the counts (redistribution is modest).
    assert {n.rsplit("-", 1)[1] for n in synth.names} <= {"FI", "BI"}


def test_mirror_area_template() -> None:
    chip = _chip("BI", epoch=2000.0)
    assert 650 < _area_at(chip, 1.5) < 800
    assert 250 < _area_at(chip, 5.0) < 420
    assert 20 < _area_at(chip, 8.0) < 90
    # Iridium M edge: a sharp drop just above 2.04 keV.
    assert _area_at(chip, 2.1) < 0.75 * _area_at(chip, 2.0)


def test_fi_bi_ordering() -> None:
    fi, bi = _chip("FI"), _chip("BI")
    assert _area_at(fi, 0.5) < 0.6 * _area_at(bi, 0.5)
    assert _area_at(bi, 8.0) < _area_at(fi, 8.0)


def test_contamination_grows_with_epoch() -> None:
    areas = [_area_at(_chip("BI", epoch=year), 0.5) for year in (2000.5, 2005, 2012, 2024)]
    assert all(a > b for a, b in zip(areas, areas[1:], strict=False)), areas
    assert areas[-1] < 0.3 * areas[0]
    hard = [_area_at(_chip("BI", epoch=year), 4.0) for year in (2000.5, 2024)]
    assert hard[1] == pytest.approx(hard[0], rel=0.03)


def test_synthetic_redistribution() -> None:
    lo, hi = SYNTHETIC_ENERGY_EDGES[:-1], SYNTHETIC_ENERGY_EDGES[1:]
    e_min = np.arange(SYNTHETIC_N_CHANNELS) * SYNTHETIC_CHANNEL_WIDTH
    e_max = e_min + SYNTHETIC_CHANNEL_WIDTH
    mid = 0.5 * (e_min + e_max)
    for kind in ("FI", "BI"):
        chip = _chip(kind)
        matrix = synthetic_rmf(chip, lo, hi, e_min, e_max)
        np.testing.assert_allclose(matrix.sum(axis=1)[lo > 0.4], 1.0, atol=1e-4)
        fwhm = []
        for energy in (1.0, 6.0):
            row = matrix[np.searchsorted(lo, energy) - 1]
            above = mid[row > row.max() / 2]
            fwhm.append(above.max() - above.min() + SYNTHETIC_CHANNEL_WIDTH)
            assert abs(mid[row.argmax()] - energy) < 0.02
            assert row[np.abs(mid - energy) < 0.4].sum() > 0.9  # the shelf and escape are small
        assert 0.04 < fwhm[0] < fwhm[1] < 0.25, fwhm


# --- real responses -----------------------------------------------------------------------
def test_real_responses_from_sherpa(sherpa_library: ResponseLibrary, sherpa_data: Path) -> None:
    lib = sherpa_library
    # 3c273.pi and 3c273cp.pi share one ARF/RMF pair: counted once.
    assert len(lib) == 3
    assert lib.names == (
        "3c273.pi",
        "acisf04938_000N002_r0043_pha3.fits",
        "acisf07867_000N001_r0002_pha3.fits",
    )
    assert set(lib.kinds) == {"real"}
    np.testing.assert_allclose(lib.epochs, [2000.03, 2005.34, 2007.75], atol=0.01)
    for i, name in enumerate(lib.names):
        rep = load_spectrum(sherpa_data / name).representation()
        np.testing.assert_allclose(lib.response[i], rep.response, rtol=1e-6,
                                   atol=1e-6 * rep.response.max())  # fmt: skip
        np.testing.assert_allclose(lib.effective_area[i], rep.effective_area, rtol=1e-6)


def test_resolve_folder(tmp_path: Path) -> None:
    path = resolve_folder("sherpa:astro/datastack/tests/data")
    assert (path / "3c273.pi").is_file()
    assert resolve_folder("spectra", base=tmp_path) == tmp_path / "spectra"
    assert resolve_folder(tmp_path) == tmp_path


def test_real_responses_skip_bad_files(
    tmp_path: Path, pha_3c273: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from conftest import write_modified_pha

    (tmp_path / "garbage.pi").write_bytes(b"SIMPLE  = nonsense")
    write_modified_pha(tmp_path / "good.pi", pha_3c273)
    write_modified_pha(tmp_path / "norsp.pi", pha_3c273, header={"RESPFILE": "missing.rmf"})
    # Sorted first, fails to load (no counts); its response pair is then taken from good.pi.
    write_modified_pha(tmp_path / "empty.pi", pha_3c273, counts=np.zeros(1024, dtype=np.int32))
    with caplog.at_level(logging.WARNING, logger="sherpa_latent.training.real_responses"):
        lib = real_responses([tmp_path])
    assert lib.names == ("good.pi",)
    text = caplog.text
    assert "norsp.pi" in text and "empty.pi" in text and "garbage.pi" not in text


def test_real_responses_shared(shared_chandra: Path) -> None:
    lib = real_responses([shared_chandra])
    assert {"obs1.pi", "obs2.pi", "q1127_src1.pi", "12845.pi", "source_bin10.pi"} <= set(
        lib.names
    )
    assert np.all((lib.epochs > 2000) & (lib.epochs < 2012))
    assert np.all(lib.effective_area.max(axis=1) > 10)


def test_build_library(sherpa_data: Path) -> None:
    lib = build_library([sherpa_data], n_synthetic=4, seed=3)
    assert lib.kinds == ("real",) * 3 + ("synthetic",) * 4
    again = build_library([sherpa_data], n_synthetic=4, seed=3)
    assert again.fingerprint() == lib.fingerprint()
    np.testing.assert_array_equal(lib.indices("real"), [0, 1, 2])
