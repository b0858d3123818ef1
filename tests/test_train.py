"""Tests of training (sherpa_latent.training.train) and of the cluster model (clusters)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture
from toydata import write_toy_dataset

from sherpa_latent.clusters import ClusterModel, fit_clusters
from sherpa_latent.errors import NetworkFileError
from sherpa_latent.grids import MODEL_GRID
from sherpa_latent.network import (
    LatentAutoencoder,
    NetworkConfig,
    autoencoder_loss,
    batch_to_tensors,
    read_network,
    sidecar_path,
)
from sherpa_latent.training.shards import find_shards, shard_batches
from sherpa_latent.training.train import (
    TrainConfig,
    beta_at,
    learning_rate_at,
    response_bank,
    train,
)

TINY_NET = dict(d_model=32, n_layers=1, n_heads=2, ff_dim=64, decoder_widths=(64,))


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory) -> Path:
    return write_toy_dataset(
        tmp_path_factory.mktemp("toy"), n_spectra=600, n_shards=3, n_responses=4, seed=2
    )


def tiny_train_config(toy_dir: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        data_dir=str(toy_dir),
        output_dir=str(out),
        epochs=2,
        batch_size=64,
        learning_rate=3e-3,
        val_fraction=0.1,
        n_clusters=3,
        device="cpu",
        num_threads=1,
        progress=False,
        max_val_spectra=200,
        seed=5,
        network=NetworkConfig(**TINY_NET),
    )
    base.update(kw)
    return TrainConfig(**base)


# --- data ------------------------------------------------------------------------------
def test_toy_dataset_format(toy_dir):
    shards = find_shards(toy_dir)
    assert len(shards) == 3
    with np.load(shards[0], allow_pickle=False) as npz:
        for key in (
            "counts",
            "background",
            "exposure",
            "response_id",
            "class_id",
            "log_nh",
            "param",
            "log_flux",
            "net_counts",
            "bkg_scale",
        ):
            assert key in npz.files
        assert npz["counts"].shape[1] == 48
    bank = response_bank(toy_dir / "responses.npz")
    assert bank["response"].shape == (4, 48, MODEL_GRID.nbins) and bank["effective_area"].shape == (
        4,
        48,
    )


def test_batches_order_split_and_skip(toy_dir):
    shards = find_shards(toy_dir)

    def ids(**kw):
        return [b["log_nh"].copy() for b in shard_batches(shards, 64, **kw)]

    a = ids(split="train", val_fraction=0.1, seed=1, epoch=0)
    assert all(
        np.array_equal(x, y)
        for x, y in zip(a, ids(split="train", val_fraction=0.1, seed=1, epoch=0), strict=True)
    )
    other = ids(split="train", val_fraction=0.1, seed=1, epoch=1)
    assert not np.array_equal(np.concatenate(a), np.concatenate(other))
    skipped = ids(split="train", val_fraction=0.1, seed=1, epoch=0, skip_batches=3)
    assert len(skipped) == len(a) - 3
    assert all(np.array_equal(x, y) for x, y in zip(a[3:], skipped, strict=True))
    train_rows = np.concatenate(a)
    val_rows = np.concatenate(ids(split="val", val_fraction=0.1, shuffle=False))
    all_rows = np.concatenate(ids(split="all", shuffle=False))
    assert len(train_rows) + len(val_rows) == len(all_rows) == 600
    assert sorted(np.concatenate([train_rows, val_rows]).tolist()) == sorted(all_rows.tolist())
    assert len(ids(split="train", val_fraction=0.1, drop_last=True)) == 540 // 64
    assert sum(len(b) for b in ids(split="all", shuffle=False, limit=130)) == 192


def test_schedules():
    cfg = TrainConfig(
        learning_rate=1e-3,
        warmup_fraction=0.1,
        min_lr_fraction=0.01,
        beta_start=0.0,
        beta_max=1.0,
        beta_warmup_fraction=0.5,
    )
    lrs = [learning_rate_at(s, 100, cfg) for s in range(100)]
    assert lrs[0] < 1e-3 / 10 and max(lrs) == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-5)
    assert beta_at(0, 100, cfg) == 0 and beta_at(25, 100, cfg) == 0.5 and beta_at(80, 100, cfg) == 1


def test_toml_recipe(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        'data_dir = "sims"\noutput_dir = "out"\nepochs = 3\nbeta_max = 0.5\n'
        "[network]\nd_model = 32\nn_heads = 2\ndecoder_widths = [64, 128]\n"
    )
    cfg = TrainConfig.from_toml(recipe)
    assert cfg.epochs == 3 and cfg.beta_max == 0.5
    assert Path(cfg.data_dir) == tmp_path / "sims"
    assert cfg.network.d_model == 32 and cfg.network.decoder_widths == (64, 128)
    recipe.write_text("learning_rat = 1e-3\n")
    with pytest.raises(ValueError, match="learning_rat"):
        TrainConfig.from_toml(recipe)


# --- the loop ----------------------------------------------------------------------------
def test_loss_falls_on_toy_data(toy_dir):
    torch.manual_seed(0)
    model = LatentAutoencoder(NetworkConfig(**TINY_NET))
    bank = response_bank(toy_dir / "responses.npz")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    shards = find_shards(toy_dir)
    losses = []
    for epoch in range(10):
        for batch in shard_batches(shards, 64, seed=0, epoch=epoch, drop_last=True):
            tb = batch_to_tensors(batch, torch.device("cpu"), bank)
            loss, comps = autoencoder_loss(model(tb, sample=True), tb, beta=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(comps["cstat_dof"]))
            if len(losses) == 50:
                break
        if len(losses) == 50:
            break
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])


def test_train_resume_matches_uninterrupted(toy_dir, tmp_path):
    full = train(tiny_train_config(toy_dir, tmp_path / "full"), command_line="test run")
    assert full.finished and full.epochs_completed == 2 and full.steps == 2 * (540 // 64)
    lines = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    rec = json.loads(lines[-1])
    for key in ("cstat_dof_median", "nh_mae", "nh_coverage68", "kl_z", "cstat"):
        assert key in rec["val"]
    for key in ("loss", "cstat", "kl_z", "kl_norm", "nh_nll"):
        assert key in rec["train"]

    # stop inside the first epoch, then inside the second, then finish
    cfg = tiny_train_config(toy_dir, tmp_path / "split")
    part = train(cfg, stop_after_steps=5)
    assert not part.finished and part.steps == 5 and part.network_path is None
    part = train(cfg, stop_after_steps=11)
    assert not part.finished and part.steps == 11 and part.epochs_completed == 1
    done = train(cfg, command_line="test run")
    assert done.finished and done.steps == full.steps

    a = read_network(full.network_path, "cpu").state_dict()
    b = read_network(done.network_path, "cpu").state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert (tmp_path / "split" / "metrics.jsonl").read_text().count("\n") == 2

    meta = json.loads(sidecar_path(done.network_path).read_text())
    assert meta["training"]["recipe"]["batch_size"] == 64
    assert meta["training"]["command_line"] == "test run"
    assert meta["data"]["n_train"] == 540 and meta["data"]["n_val"] == 60
    assert meta["clusters"]["sha256"]
    assert "cstat_dof_median" in meta["metrics"]

    clusters = ClusterModel.load(done.clusters_path)
    assert clusters.n_components == 3
    assert clusters.describe(0).startswith("cluster 0:")

    # a finished network is not overwritten without clobber
    with pytest.raises(FileExistsError, match="clobber"):
        train(cfg)


def test_resume_refuses_other_network(toy_dir, tmp_path):
    cfg = tiny_train_config(toy_dir, tmp_path / "run", epochs=1)
    train(cfg, stop_after_steps=2)
    other = tiny_train_config(
        toy_dir, tmp_path / "run", epochs=1, network=NetworkConfig(**{**TINY_NET, "d_model": 64})
    )
    with pytest.raises(ValueError, match="different network"):
        train(other)
    with pytest.raises(ValueError, match="beta_max"):
        train(tiny_train_config(toy_dir, tmp_path / "run", epochs=1, beta_max=0.5))


def test_clobber_trains_a_finished_run_again(toy_dir, tmp_path):
    cfg = tiny_train_config(toy_dir, tmp_path / "run", epochs=1)
    first = train(cfg)
    before = read_network(first.network_path, "cpu").state_dict()
    # A new KL weight with clobber: trained again from step 0, not resumed from the end.
    again = train(
        tiny_train_config(toy_dir, tmp_path / "run", epochs=1, beta_max=0.5, clobber=True)
    )
    assert again.finished and again.steps == first.steps
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["step"] == first.steps
    after = read_network(again.network_path, "cpu").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    meta = json.loads(sidecar_path(again.network_path).read_text())
    assert meta["training"]["recipe"]["beta_max"] == 0.5


# --- clusters ----------------------------------------------------------------------------
def _blobs(seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (3, 8))
    cls = rng.integers(0, 3, 900)
    z = centres[cls] + rng.normal(0, 1, (900, 8))
    return z, cls


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_cluster_model_predicts_as_scikit_learn(covariance_type):
    """The numpy-only prediction gives scikit-learn's answers for every covariance type."""
    z, _ = _blobs()
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(z)
    model = ClusterModel.from_mixture(gm)
    probe = np.random.default_rng(1).normal(0, 4, (200, 8))
    np.testing.assert_array_equal(model.predict(probe), gm.predict(probe))
    np.testing.assert_allclose(model.predict_proba(probe), gm.predict_proba(probe), atol=1e-10)


def test_cluster_model_rebuilt_from_arrays_predicts_the_same(tmp_path):
    z, cls = _blobs()
    gm = GaussianMixture(3, covariance_type="full", random_state=0).fit(z)
    rebuilt = ClusterModel(
        **{
            k: v
            for k, v in ClusterModel.from_mixture(gm).to_arrays().items()
            if k != "class_counts"
        }
    )
    probe = np.random.default_rng(1).normal(0, 4, (200, 8))
    np.testing.assert_array_equal(rebuilt.predict(probe), gm.predict(probe))
    np.testing.assert_allclose(rebuilt.predict_proba(probe), gm.predict_proba(probe), atol=1e-12)

    model = fit_clusters(z, cls, 3, seed=0)
    path = model.save(tmp_path / "clusters")
    loaded = ClusterModel.load(path)
    np.testing.assert_array_equal(loaded.predict(probe), model.predict(probe))
    np.testing.assert_allclose(loaded.class_fractions, model.class_fractions)
    text = loaded.describe(int(loaded.predict(z[:1])[0]))
    assert text.startswith("cluster ") and "%" in text
    assert loaded.balanced_accuracy(z, cls) > 0.9
    with pytest.raises(FileExistsError):
        model.save(path)
    with pytest.raises(IndexError):
        loaded.describe(7)


def test_cluster_describe_format():
    counts = np.zeros((2, 8))
    counts[0, [2, 3, 0]] = [71, 20, 9]
    cm = ClusterModel(
        np.array([0.5, 0.5]),
        np.zeros((2, 2)),
        np.stack([np.eye(2)] * 2),
        np.stack([np.eye(2)] * 2),
        "full",
        counts,
    )
    assert cm.describe(0) == "cluster 0: 71% HMXB, 20% LMXB, 9% AGN"
    assert cm.describe(1) == "cluster 1: no training spectra"


def test_cluster_file_checksum(tmp_path):
    z, cls = _blobs()
    path = fit_clusters(z, cls, 2, seed=0).save(tmp_path / "c.safetensors")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(NetworkFileError, match="SHA-256"):
        ClusterModel.load(path)


def test_cluster_model_from_folder_and_missing(tmp_path):
    z, cls = _blobs()
    fit_clusters(z, cls, 2, seed=0).save(tmp_path / "clusters.safetensors")
    assert ClusterModel.load(tmp_path).n_components == 2
    with pytest.raises(NetworkFileError, match="not found"):
        ClusterModel.load(tmp_path / "other.safetensors")
