"""Tests of sherpa_latent.network: shapes, normalisation, likelihood, files, devices."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sherpa_latent.errors import NetworkFileError
from sherpa_latent.grids import INPUT_GRID, MODEL_GRID
from sherpa_latent.network import (
    LatentAutoencoder,
    NetworkConfig,
    autoencoder_loss,
    batch_to_tensors,
    cstat,
    cstat_expectation,
    encode_batch,
    read_network,
    resolve_device,
    save_network,
    sidecar_path,
    stack_representations,
)

N_IN, N_MODEL = INPUT_GRID.nbins, MODEL_GRID.nbins


def tiny_config(**kw) -> NetworkConfig:
    base = dict(d_model=32, n_layers=1, n_heads=2, ff_dim=64, decoder_widths=(64,))
    base.update(kw)
    return NetworkConfig(**base)


def fake_batch(n: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    resp = rng.uniform(0.0, 1.0, (n, N_IN, N_MODEL)) * (rng.uniform(size=(n, N_IN, N_MODEL)) < 0.1)
    resp = (resp * 50.0).astype(np.float32)
    return {
        "counts": rng.poisson(5.0, (n, N_IN)).astype(np.float32),
        "background": rng.uniform(0.0, 0.2, (n, N_IN)).astype(np.float32),
        "effective_area": resp.sum(-1) / 10.0,
        "response": resp,
        "exposure": rng.uniform(1e3, 1e4, n).astype(np.float32),
        "log_nh": rng.uniform(19.0, 24.5, n).astype(np.float32),
        "class_id": rng.integers(0, 8, n),
    }


@pytest.fixture
def model() -> LatentAutoencoder:
    torch.manual_seed(1)
    return LatentAutoencoder(tiny_config()).eval()


def test_forward_shapes(model):
    batch = batch_to_tensors(fake_batch(5), torch.device("cpu"))
    out = model(batch, sample=True)
    assert out["z_mean"].shape == (5, 8)
    assert out["z_logvar"].shape == (5, 8)
    assert out["z"].shape == (5, 8)
    for key in ("log_norm_mean", "log_norm_logvar", "log_norm", "log_nh_mean", "log_nh_log_sigma"):
        assert out[key].shape == (5,)
    assert out["flux"].shape == (5, N_MODEL)
    assert torch.all(out["flux"] > 0)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_default_config_builds_with_patched_tokens():
    cfg = NetworkConfig()
    m = LatentAutoencoder(cfg)
    assert m.n_tokens == N_IN // cfg.patch_size
    with pytest.raises(ValueError):
        NetworkConfig(patch_size=5)
    with pytest.raises(ValueError):
        NetworkConfig(d_model=30, n_heads=4)


def test_decoder_band_flux_equals_norm(model):
    torch.manual_seed(3)
    z = 2.0 * torch.randn(7, 8)
    log_norm = torch.linspace(-6.0, -1.0, 7)
    with torch.no_grad():
        flux = model.decode(z, log_norm)
    lo, hi = MODEL_GRID.lo, MODEL_GRID.hi
    frac = np.clip(np.minimum(hi, 7.0) - np.maximum(lo, 0.5), 0, None) / (hi - lo)
    band = flux.double().numpy() @ frac
    np.testing.assert_allclose(band, 10.0 ** log_norm.double().numpy(), rtol=1e-5)
    # brightness lives only in log_norm: the shape does not depend on it
    with torch.no_grad():
        shape_a = model.decode(z, torch.full((7,), -3.0))
        shape_b = model.decode(z, torch.full((7,), -5.0))
    torch.testing.assert_close(shape_a / 100.0, shape_b, rtol=1e-5, atol=0)


def test_decode_numpy_matches(model):
    z = np.linspace(-1, 1, 8)
    out = model.decode_numpy(z, -4.0)
    assert out.shape == (N_MODEL,) and out.dtype == np.float64
    with torch.no_grad():
        ref = model.decode(torch.tensor(z[None], dtype=torch.float32), torch.tensor([-4.0]))
    np.testing.assert_allclose(out, ref[0].double().numpy(), rtol=1e-6)


def test_decode_in_the_module_dtype(model):
    """One decoder: a float64 copy runs the same decode() in double precision (the Sherpa
    model's path), the float32 network stays float32 (training and encoding)."""
    import copy

    double = copy.deepcopy(model).to(torch.float64)
    assert model.decoder_dtype == torch.float32 and double.decoder_dtype == torch.float64
    z = torch.linspace(-2.0, 2.0, 16, dtype=torch.float64).reshape(2, 8)
    log_norm = torch.tensor([-4.0, -2.5], dtype=torch.float64)
    with torch.no_grad():
        single, exact = model.decode(z, log_norm), double.decode(z, log_norm)
    assert single.dtype == torch.float32 and exact.dtype == torch.float64
    torch.testing.assert_close(single.double(), exact, rtol=2e-5, atol=0)
    # the numpy wrapper goes through the same method, in the module's dtype
    out = double.decode_numpy(z.numpy(), log_norm.numpy())
    np.testing.assert_array_equal(out, exact.numpy())
    assert double.decode_numpy(z[0].numpy(), -4.0).shape == (N_MODEL,)
    # band flux 10**log_norm to double precision
    frac = MODEL_GRID.band_weights((0.5, 7.0)).astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(out @ frac, 10.0 ** log_norm.numpy(), rtol=1e-13)


def test_cstat_definition():
    n = torch.tensor([0.0, 1.0, 5.0, 100.0])
    assert torch.allclose(cstat(n, n.clamp_min(1e-10)), torch.zeros(4), atol=1e-6)
    mu = torch.tensor([0.5, 2.0, 4.0, 90.0])
    expected = 2 * (mu - n + torch.where(n > 0, n * torch.log(n / mu), torch.zeros(4)))
    torch.testing.assert_close(cstat(n, mu), expected)


def test_cstat_expectation_matches_simulation():
    rng = np.random.default_rng(0)
    for mu in (0.05, 1.0, 3.0, 30.0, 500.0):
        n = rng.poisson(mu, 200_000).astype(float)
        c = cstat(torch.tensor(n), torch.tensor(np.full_like(n, mu))).numpy()
        e, v = cstat_expectation(np.array([mu]))
        assert e[0] == pytest.approx(c.mean(), rel=0.02, abs=2e-3)
        assert v[0] == pytest.approx(c.var(), rel=0.05, abs=2e-3)
    e, v = cstat_expectation(np.array([1e6]))
    assert e[0] == pytest.approx(1.0) and v[0] == pytest.approx(2.0)


def test_loss_components(model):
    batch = batch_to_tensors(fake_batch(4), torch.device("cpu"))
    model.train()
    out = model(batch)
    loss, comps = autoencoder_loss(out, batch, beta=0.5, nh_weight=2.0)
    assert set(comps) == {"loss", "cstat", "cstat_dof", "kl_z", "kl_norm", "nh_nll"}
    assert torch.isfinite(loss)
    manual = 0.5 * comps["cstat"] + 0.5 * (comps["kl_z"] + comps["kl_norm"]) + 2 * comps["nh_nll"]
    torch.testing.assert_close(loss.detach(), manual, rtol=1e-5, atol=1e-4)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    # without a target the N_H term is left out
    batch.pop("log_nh")
    _, comps = autoencoder_loss(model(batch), batch)
    assert "nh_nll" not in comps


def test_encode_batch(model):
    batch = fake_batch(10)
    res = encode_batch(model, batch, "cpu", batch_size=3, return_flux=True)
    for key in ("z_mean", "z_std"):
        assert res[key].shape == (10, 8)
    for key in (
        "log_norm",
        "log_norm_std",
        "log_nh",
        "log_nh_sigma",
        "cstat",
        "dof",
        "cstat_dof",
        "anomaly",
    ):
        assert res[key].shape == (10,)
        assert np.all(np.isfinite(res[key]))
    assert res["flux"].shape == (10, N_MODEL)
    assert np.all(res["z_std"] > 0) and np.all(res["log_nh_sigma"] > 0)
    one_pass = encode_batch(model, batch, "cpu", batch_size=64)
    np.testing.assert_allclose(one_pass["z_mean"], res["z_mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one_pass["cstat"], res["cstat"], rtol=1e-5)


def test_encode_batch_with_bank(model):
    batch = fake_batch(4)
    bank = {
        "response": torch.tensor(batch["response"]),
        "effective_area": torch.tensor(batch["effective_area"]),
    }
    by_id = {k: v for k, v in batch.items() if k not in ("response", "effective_area")}
    by_id["response_id"] = np.arange(4)
    a = encode_batch(model, by_id, "cpu", bank=bank)
    b = encode_batch(model, batch, "cpu")
    np.testing.assert_allclose(a["cstat"], b["cstat"], rtol=1e-6)


def test_stack_representations():
    from sherpa_latent.spectrum import ResponseRepresentation

    b = fake_batch(2)
    reps = [
        ResponseRepresentation(
            counts=b["counts"][i].astype(float),
            background=b["background"][i].astype(float),
            effective_area=b["effective_area"][i].astype(float),
            response=b["response"][i].astype(float),
            exposure=float(b["exposure"][i]),
        )
        for i in range(2)
    ]
    stacked = stack_representations(reps)
    assert stacked["response"].shape == (2, N_IN, N_MODEL)
    assert stacked["exposure"].dtype == np.float32


def test_save_load_roundtrip(model, tmp_path):
    path = save_network(model, tmp_path / "net", {"metrics": {"cstat_dof_median": 1.02}})
    assert path.name == "net.safetensors" and sidecar_path(path).is_file()
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["class_names"][2] == "HMXB" and len(meta["sha256"]) == 64
    assert meta["model_grid"] == MODEL_GRID.to_dict()
    loaded = read_network(path, device="cpu")
    assert loaded.metadata["metrics"]["cstat_dof_median"] == 1.02
    batch = fake_batch(5)
    a = encode_batch(model, batch, "cpu")
    b = encode_batch(loaded, batch, "cpu")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    # the folder and the JSON file name it too
    save_network(model, tmp_path, None)
    assert read_network(tmp_path, "cpu").config == model.config
    assert read_network(sidecar_path(path), "cpu").sha256 == meta["sha256"]


def test_changed_byte_is_refused(model, tmp_path):
    path = save_network(model, tmp_path / "net.safetensors")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(NetworkFileError) as err:
        read_network(path, "cpu")
    msg = str(err.value)
    assert "net.safetensors" in msg and "SHA-256" in msg and "\n" not in msg


def test_missing_or_bad_metadata(model, tmp_path):
    with pytest.raises(NetworkFileError, match="not found"):
        read_network(tmp_path / "nothing.safetensors", "cpu")
    path = save_network(model, tmp_path / "net.safetensors")
    sidecar_path(path).write_text("{not json")
    with pytest.raises(NetworkFileError, match="JSON"):
        read_network(path, "cpu")


def test_refuses_overwrite_without_clobber(model, tmp_path):
    path = save_network(model, tmp_path / "net.safetensors")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="clobber"):
        save_network(model, path)
    assert path.read_bytes() == before
    with torch.no_grad():
        model.decoder[-1].bias.add_(1.0)
    save_network(model, path, clobber=True)
    assert path.read_bytes() != before
    read_network(path, "cpu")  # checksum updated with the weights
    assert not list(tmp_path.glob("*.tmp"))


def test_reserved_metadata_keys(model, tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        save_network(model, tmp_path / "x", {"sha256": "0" * 64})


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == auto
    with pytest.raises(ValueError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_encode_on_cuda_matches_cpu(model):  # pragma: no cover - GPU machines only
    batch = fake_batch(8)
    cpu = encode_batch(model, batch, "cpu")
    gpu = encode_batch(model, batch, "cuda")
    np.testing.assert_allclose(cpu["z_mean"], gpu["z_mean"], atol=0.05)
    np.testing.assert_allclose(cpu["log_norm"], gpu["log_norm"], atol=0.02)


# --- no pickle anywhere in the package -----------------------------------------------------
_PICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve"}


def _unsafe_calls(source: str) -> list[str]:
    """Imports of pickling modules, torch.load without weights_only=True, allow_pickle=True."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            problems += [a.name for a in node.names if a.name.split(".")[0] in _PICKLERS]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in _PICKLERS:
            problems.append(node.module)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
            kws = {k.arg: k.value for k in node.keywords}
            if name == "load" and owner == "torch":
                ok = (
                    isinstance(kws.get("weights_only"), ast.Constant)
                    and kws["weights_only"].value is True
                )
                if not ok:
                    problems.append(f"torch.load without weights_only=True (line {node.lineno})")
            flag = kws.get("allow_pickle")
            if isinstance(flag, ast.Constant) and flag.value is True:
                problems.append(f"allow_pickle=True (line {node.lineno})")
    return problems


def test_no_pickle_in_package():
    pkg = Path(__file__).resolve().parents[1] / "sherpa_latent"
    found = {}
    for path in sorted(pkg.rglob("*.py")):
        problems = _unsafe_calls(path.read_text(encoding="utf-8"))
        if problems:
            found[str(path.relative_to(pkg))] = problems
    assert not found, f"unsafe deserialisation: {found}"


def test_pickle_checker_catches_examples():
    assert _unsafe_calls("import pickle")
    assert _unsafe_calls("import torch\ntorch.load('x')")
    assert _unsafe_calls("import torch\ntorch.load('x', weights_only=False)")
    assert not _unsafe_calls("import torch\ntorch.load('x', weights_only=True)")
    assert _unsafe_calls("import numpy as np\nnp.load('x', allow_pickle=True)")


def test_cstat_gradient_finite_with_zero_counts():
    n = torch.tensor([0.0, 0.0, 3.0])
    mu = torch.tensor([0.5, 1e-12, 2.0], requires_grad=True)
    cstat(n, mu).sum().backward()
    assert torch.isfinite(mu.grad).all()
    # below the floor mu is a constant: no gradient
    torch.testing.assert_close(mu.grad, torch.tensor([2.0, 0.0, 2.0 * (1 - 3.0 / 2.0)]))


def test_training_step_gradients_finite(model):
    batch = fake_batch(6)
    batch["counts"][:, :10] = 0.0
    tb = batch_to_tensors(batch, torch.device("cpu"))
    model.train()
    loss, _ = autoencoder_loss(model(tb), tb)
    loss.backward()
    for name, p in model.named_parameters():
        assert torch.isfinite(p.grad).all(), name
