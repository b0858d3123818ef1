"""Network and cluster files: any change to the arrays or to the JSON metadata is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from sherpa_latent.clusters import ClusterModel
from sherpa_latent.errors import NetworkFileError
from sherpa_latent.fileio import sha256_file
from sherpa_latent.weightsfile import DATA_DIR, metadata_sha256, read_json_sidecar


def _edit(side: Path, change, *, reseal: bool = False) -> None:
    meta = json.loads(side.read_text(encoding="utf-8"))
    change(meta)
    if reseal:
        meta["metadata_sha256"] = metadata_sha256(meta)
    side.write_text(json.dumps(meta, indent=2), encoding="utf-8")


@pytest.fixture
def network_copy(small_network: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "net"
    folder.mkdir()
    for name in ("network", "clusters"):
        for suffix in (".safetensors", ".json"):
            (folder / (name + suffix)).write_bytes((small_network / (name + suffix)).read_bytes())
    return folder


def test_shipped_files_are_sealed() -> None:
    formats = {"network": "sherpa_latent-network-1", "clusters": "sherpa_latent-clusters-1"}
    for name, fmt in formats.items():
        weights, meta = read_json_sidecar(DATA_DIR / f"{name}.safetensors", fmt)
        assert meta["metadata_sha256"] == metadata_sha256(meta)
        assert meta["sha256"] == sha256_file(weights)


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m["input_grid"].__setitem__("emax", 9.0),
        lambda m: m["config"].__setitem__("n_heads", 0),
        lambda m: m.__setitem__("nh_calibration", {"edges": [1.0], "scales": [2.0, 1.0]}),
        lambda m: m.pop("class_names"),
    ],
    ids=["grid", "config", "added key", "removed key"],
)
def test_any_edit_to_the_network_metadata_is_refused(network_copy: Path, change) -> None:
    from sherpa_latent.network import read_network

    side = network_copy / "network.json"
    _edit(side, change)
    with pytest.raises(NetworkFileError) as err:
        read_network(network_copy, device="cpu")
    message = str(err.value)
    assert str(side) in message and "metadata_sha256" in message and "\n" not in message


def test_metadata_without_checksum_and_nan_are_refused(network_copy: Path) -> None:
    side = network_copy / "clusters.json"
    _edit(side, lambda m: m.pop("metadata_sha256"))
    with pytest.raises(NetworkFileError, match="no metadata_sha256"):
        ClusterModel.load(network_copy / "clusters.safetensors")
    side.write_text(side.read_text().replace('"full"', "NaN"), encoding="utf-8")
    with pytest.raises(NetworkFileError, match="not valid JSON"):
        ClusterModel.load(network_copy / "clusters.safetensors")


def test_nan_cluster_arrays_are_refused_even_with_fresh_checksums(network_copy: Path) -> None:
    weights = network_copy / "clusters.safetensors"
    arrays = load_file(str(weights))
    arrays["means"] = np.full_like(arrays["means"], np.nan)
    save_file(arrays, str(weights), metadata={"format": "sherpa_latent-clusters-1"})
    side = network_copy / "clusters.json"
    _edit(side, lambda m: m.__setitem__("sha256", sha256_file(weights)), reseal=True)
    with pytest.raises(NetworkFileError) as err:
        ClusterModel.load(weights)
    assert str(weights) in str(err.value) and "NaN" in str(err.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [("n_heads", 0), ("latent_dim", "eight"), ("d_model", -4), ("dropout", 2.0)],
)
def test_nonsense_configs_are_refused_even_with_fresh_checksums(
    network_copy: Path, key: str, value
) -> None:
    from sherpa_latent.network import read_network

    side = network_copy / "network.json"
    _edit(side, lambda m: m["config"].__setitem__(key, value), reseal=True)
    with pytest.raises(NetworkFileError) as err:
        read_network(network_copy, device="cpu")
    assert str(side) in str(err.value) and key in str(err.value)


def test_nan_weights_are_refused(tmp_path: Path) -> None:
    import torch

    from sherpa_latent.network import LatentAutoencoder, NetworkConfig, read_network, save_network

    model = LatentAutoencoder(NetworkConfig(d_model=16, n_layers=1, n_heads=2, ff_dim=32))
    with torch.no_grad():
        model.decoder[-1].weight[0, 0] = float("nan")
    path = save_network(model, tmp_path / "net")
    with pytest.raises(NetworkFileError, match="NaN") as err:
        read_network(path, device="cpu")
    assert str(path) in str(err.value)
