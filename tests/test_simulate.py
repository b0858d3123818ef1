"""The simulator: priors, intrinsic spectra, folding, noise, shards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sherpa_latent import load_spectrum
from sherpa_latent.classes import CLASS_NAMES
from sherpa_latent.grids import FIT_BAND, INPUT_GRID, MODEL_GRID
from sherpa_latent.training.real_responses import real_responses
from sherpa_latent.training.response_library import ResponseLibrary
from sherpa_latent.training.shards import SHARD_KEYS, ShardError, ShardSet, iter_shards, read_shard
from sherpa_latent.training.simulate import (
    PARAMETER_KEYS,
    PRIORS,
    draw_parameters,
    fold,
    fold_library,
    intrinsic_flux,
    normalise_to_counts,
    simulate_batch,
    simulate_shards,
    simulate_source,
)
from sherpa_latent.training.synthetic_responses import synthetic_responses

BAND = INPUT_GRID.band_mask(FIT_BAND)


@pytest.fixture(scope="module")
def library(sherpa_data: Path) -> ResponseLibrary:
    real = real_responses([sherpa_data])
    return ResponseLibrary.concatenate([real, synthetic_responses(5, rng=11)])


@pytest.fixture(scope="module")
def batch(library: ResponseLibrary) -> dict[str, np.ndarray]:
    return simulate_batch(4000, library, np.random.default_rng(5), keep_flux=True)


def test_priors_table_matches_classes() -> None:
    assert tuple(PRIORS) == CLASS_NAMES
    for prior in PRIORS.values():
        assert prior.param_name in prior.params
        assert prior.expression.startswith("wabs")


def test_shapes_and_dtypes(batch: dict, library: ResponseLibrary) -> None:
    n, n_in, n_model = 4000, INPUT_GRID.nbins, MODEL_GRID.nbins
    assert set(batch) == set(SHARD_KEYS) | {"flux"}
    for key, (dtype, ndim) in SHARD_KEYS.items():
        assert batch[key].dtype == np.dtype(dtype), key
        assert batch[key].ndim == ndim and batch[key].shape[0] == n, key
    assert batch["counts"].shape == batch["background"].shape == (n, n_in)
    assert batch["flux"].shape == (n, n_model) and batch["flux"].dtype == np.float32
    assert np.all(batch["counts"] == np.round(batch["counts"])) and np.all(batch["counts"] >= 0)
    assert np.all(batch["counts"][:, BAND].sum(axis=1) > 0)
    assert np.all(batch["background"] >= 0)
    assert np.all((batch["bkg_scale"] >= 0.02) & (batch["bkg_scale"] <= 0.5))
    assert np.all((batch["exposure"] >= 5e3) & (batch["exposure"] <= 1.5e5))
    assert set(np.unique(batch["response_id"])) == set(range(len(library)))
    assert set(np.unique(batch["class_id"])) == set(range(len(CLASS_NAMES)))
    assert np.all(np.isfinite(batch["log_flux"]))


def test_counts_span_requested_range(batch: dict) -> None:
    net = batch["net_counts"]
    assert net.min() >= 30 and net.max() <= 1e5
    assert net.min() < 60 and net.max() > 3e4
    # Log-uniform: about half of the draws below the geometric midpoint (~1,732).
    assert 0.45 < np.mean(net < np.sqrt(30 * 1e5)) < 0.55
    observed = batch["counts"][:, BAND].sum(axis=1)
    assert observed.min() < 100 and observed.max() > 3e4


def test_net_counts_match_target(batch: dict, library: ResponseLibrary) -> None:
    # The expected source counts of the stored flux hit the target exactly ...
    expected = fold_library(batch["flux"], library, batch["response_id"], batch["exposure"])
    np.testing.assert_allclose(expected[:, BAND].sum(axis=1), batch["net_counts"], rtol=1e-4)
    # ... and the observed, background-subtracted counts agree on average.
    net = (batch["counts"] - batch["background"])[:, BAND].sum(axis=1)
    assert net.sum() / batch["net_counts"].sum() == pytest.approx(1.0, abs=0.01)
    bright = batch["net_counts"] > 3000
    assert np.median(net[bright] / batch["net_counts"][bright]) == pytest.approx(1.0, abs=0.02)
    # log_flux is the 0.5-7 keV photon flux of the stored spectrum.
    weights = MODEL_GRID.band_weights(FIT_BAND)
    np.testing.assert_allclose(
        batch["log_flux"], np.log10(batch["flux"].astype(float) @ weights), atol=1e-5
    )


def test_parameter_ranges_per_class() -> None:
    params = draw_parameters(16_000, None, np.random.default_rng(1))
    assert set(params) == set(PARAMETER_KEYS)
    for cid, prior in enumerate(PRIORS.values()):
        rows = params["class_id"] == cid
        assert rows.sum() > 1500
        log_nh = params["log_nh"][rows]
        lo, hi = np.log10(prior.nh.lo), np.log10(prior.nh.hi)
        assert log_nh.min() >= lo and log_nh.max() <= hi
        assert log_nh.min() < lo + 0.1 and log_nh.max() > hi - 0.1
        for name, rng_prior in prior.params.items():
            values = params[name][rows]
            assert values.min() >= rng_prior.lo and values.max() <= rng_prior.hi, name
        np.testing.assert_array_equal(params["param"][rows], params[prior.param_name][rows])
        line = params["line_ew"][rows] > 0
        expected = 0.0 if prior.line is None else prior.line.probability
        assert line.mean() == pytest.approx(expected, abs=0.04), prior.name
        if prior.line is not None:
            assert np.all(params["line_e"][rows][line] == prior.line.energy)
    # Spot checks of the table against the ranges documented in docs/network.md.
    agn = params["class_id"] == 0
    assert 1.5 <= params["gamma"][agn].min() and params["gamma"][agn].max() <= 2.3
    cv = params["class_id"] == 4
    assert 5 <= params["kt"][cv].min() and params["kt"][cv].max() <= 30
    coronal = params["class_id"] == 6
    two = np.isfinite(params["kt2"][coronal])
    assert 0.3 < two.mean() < 0.5
    assert np.all(params["kt2"][coronal][two] > params["kt"][coronal][two])


def test_fixed_classes_and_batch_classes(library: ResponseLibrary) -> None:
    data = simulate_batch(300, library, 3, class_ids=2)
    assert np.all(data["class_id"] == 2)
    assert np.all((data["param"] >= 0.5) & (data["param"] <= 1.5))
    assert np.all((data["log_nh"] >= 22) & (data["log_nh"] <= 23))
    ids = np.repeat(np.arange(3), 100)
    data = simulate_batch(300, library, 3, class_ids=ids, response_ids=[1])
    np.testing.assert_array_equal(data["class_id"], ids)
    assert np.all(data["response_id"] == 1)


def test_same_seed_same_data(library: ResponseLibrary) -> None:
    a = simulate_batch(500, library, 42)
    b = simulate_batch(500, library, 42)
    c = simulate_batch(500, library, 43)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["counts"], c["counts"])


def test_tables_match_kernels() -> None:
    params = draw_parameters(800, None, np.random.default_rng(9))
    fast = intrinsic_flux(params)
    exact = intrinsic_flux(params, exact=True)
    floor = 1e-6 * exact.max(axis=1, keepdims=True)
    assert np.max(np.abs(fast - exact) / np.maximum(exact, floor)) < 2e-4


def test_spectral_shapes_are_physical() -> None:
    def hardness(cid: int) -> np.ndarray:
        params = draw_parameters(400, cid, np.random.default_rng(cid))
        flux = intrinsic_flux(params)
        soft = flux @ MODEL_GRID.band_weights((0.5, 2.0))
        hard = flux @ MODEL_GRID.band_weights((2.0, 7.0))
        return np.median(hard / soft)

    # Obscured AGN and HMXB are hard; coronal stars and neutron stars are soft.
    assert hardness(1) > hardness(0) > hardness(6)
    assert hardness(2) > hardness(0)
    assert hardness(6) < 0.05
    # Unit norm: the unabsorbed continuum has 1 photon/cm^2/s in the class's band.
    params = draw_parameters(50, 0, np.random.default_rng(0))
    params["line_ew"][:] = 0.0
    unabsorbed = intrinsic_flux(params, absorbed=False)
    np.testing.assert_allclose(unabsorbed @ MODEL_GRID.band_weights(FIT_BAND), 1.0)


def test_fold_matches_spectrum_representation(
    library: ResponseLibrary, pha_3c273: Path
) -> None:
    rep = load_spectrum(pha_3c273).representation()
    rid = library.names.index("3c273.pi")
    params = draw_parameters(64, None, np.random.default_rng(4))
    flux = intrinsic_flux(params) * 1e-3
    ids = np.full(64, rid)
    mixed = np.where(np.arange(64) % 2 == 0, rid, (rid + 1) % len(library))  # grouped folding
    batch = fold_library(flux, library, ids, rep.exposure)
    reference = rep.expected_counts(flux)
    np.testing.assert_allclose(batch, reference, rtol=1e-5, atol=1e-5 * reference.max())
    grouped = fold_library(flux, library, mixed, rep.exposure)
    np.testing.assert_allclose(grouped[::2], reference[::2], rtol=1e-5,
                               atol=1e-5 * reference.max())  # fmt: skip
    np.testing.assert_allclose(fold(flux, rep.response, rep.exposure), reference, rtol=1e-12)


def test_same_source_through_two_responses(library: ResponseLibrary) -> None:
    params = draw_parameters(20, 0, np.random.default_rng(2))
    r0, r1 = library.response[0], library.response[3]
    params = normalise_to_counts(params, r1, 2e4, 500.0)
    a = simulate_source(params, r0, 2e4, np.random.default_rng(0))
    b = simulate_source(params, r1, 2e4, np.random.default_rng(0))
    np.testing.assert_array_equal(a["flux"], b["flux"])
    np.testing.assert_allclose(b["expected"][:, BAND].sum(axis=1), 500.0, rtol=1e-9)
    assert not np.allclose(a["expected"], b["expected"])
    bkg = np.full((20, INPUT_GRID.nbins), 0.5)
    c = simulate_source(params, r1, 2e4, 1, background=bkg, bkg_scale=0.1)
    assert np.allclose(c["background"] / 0.1, np.round(c["background"] / 0.1))
    assert c["counts"].sum() > b["counts"].sum()


# --- shards ---------------------------------------------------------------------------------
def test_shards_resume_and_read(tmp_path: Path, library: ResponseLibrary) -> None:
    out = tmp_path / "set"
    manifest = simulate_shards(out, 1200, library, shard_size=500, seed=8, progress=False)
    names = ["shard_00000.npz", "shard_00001.npz", "shard_00002.npz"]
    assert [s["file"] for s in manifest["shards"]] == names
    assert [s["n"] for s in manifest["shards"]] == [500, 500, 200]
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["complete"] and on_disk["n"] == 1200 and on_disk["seed"] == 8
    assert on_disk["class_names"] == list(CLASS_NAMES)
    assert on_disk["library"]["file"] == "responses.npz"
    assert len(on_disk["library"]["sha256"]) == 64
    assert on_disk["model_grid"] == MODEL_GRID.to_dict()
    assert ResponseLibrary.load(out / "responses.npz").fingerprint() == library.fingerprint()

    first = [read_shard(out / n) for n in names]
    mtimes = {n: (out / n).stat().st_mtime_ns for n in names}
    (out / names[1]).unlink()
    simulate_shards(out, 1200, library, shard_size=500, seed=8, progress=False)
    assert (out / names[0]).stat().st_mtime_ns == mtimes[names[0]]
    assert (out / names[2]).stat().st_mtime_ns == mtimes[names[2]]
    again = read_shard(out / names[1])
    for key in first[1]:
        np.testing.assert_array_equal(again[key], first[1][key])
    # A damaged shard is simulated again; other settings are refused.
    (out / names[2]).write_bytes(b"truncated")
    simulate_shards(out, 1200, library, shard_size=500, seed=8, progress=False)
    np.testing.assert_array_equal(read_shard(out / names[2])["counts"], first[2]["counts"])
    with pytest.raises(ShardError, match="other settings"):
        simulate_shards(out, 1200, library, shard_size=500, seed=9, progress=False)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]

    streamed = list(iter_shards(out, keys=["class_id", "counts"]))
    assert [len(s["class_id"]) for s in streamed] == [500, 500, 200]
    assert set(streamed[0]) == {"class_id", "counts"}


def test_shards_from_library_file(tmp_path: Path, library: ResponseLibrary) -> None:
    path = library.save(tmp_path / "lib.npz")
    out = tmp_path / "set"
    manifest = simulate_shards(
        out, 300, path, shard_size=300, seed=1, progress=False, keep_flux=True, response_ids=[0]
    )
    assert manifest["library"]["name"] == "lib.npz"
    data = read_shard(out / "shard_00000.npz")
    assert data["flux"].shape == (300, MODEL_GRID.nbins)
    assert np.all(data["response_id"] == 0)


def test_read_shard_errors(tmp_path: Path) -> None:
    with pytest.raises(ShardError, match="not found"):
        read_shard(tmp_path / "shard_00000.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(ShardError, match="unreadable"):
        read_shard(bad)
    partial = tmp_path / "partial.npz"
    np.savez(partial, counts=np.zeros((3, 48), np.float32))
    with pytest.raises(ShardError, match="missing"):
        read_shard(partial)


def test_shardset_batches(tmp_path: Path, library: ResponseLibrary) -> None:
    out = tmp_path / "set"
    simulate_shards(out, 1000, library, shard_size=300, seed=2, progress=False)
    shards = ShardSet(out)
    assert len(shards) == 1000 and shards.n_shards == 4
    batches = list(shards.batches(128, seed=1, keys=["class_id", "net_counts"]))
    assert [len(b["class_id"]) for b in batches] == [128] * 7 + [104]
    assert set(batches[0]) == {"class_id", "net_counts"}
    every = np.sort(np.concatenate([b["net_counts"] for b in batches]))
    original = np.sort(np.concatenate([s["net_counts"] for s in iter_shards(out)]))
    np.testing.assert_array_equal(every, original)
    same = list(shards.batches(128, seed=1, keys=["net_counts"]))
    np.testing.assert_array_equal(same[0]["net_counts"], batches[0]["net_counts"])
    other = next(shards.batches(128, seed=1, epoch=1, keys=["net_counts"]))
    assert not np.array_equal(other["net_counts"], batches[0]["net_counts"])
    in_order = next(shards.batches(300, shuffle=False, keys=["net_counts"]))
    first = read_shard(out / "shard_00000.npz")["net_counts"]
    np.testing.assert_array_equal(in_order["net_counts"], first)
    assert len(list(shards.batches(128, drop_last=True))) == 7
    assert len(ShardSet(out, shards=[0, 1])) == 600
