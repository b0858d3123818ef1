"""The one-command recipe (library, simulation, training) and the evaluation, in miniature."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sherpa_latent.cli import main as cli_main
from sherpa_latent.network import read_network
from sherpa_latent.training.evaluate import evaluate
from sherpa_latent.training.recipe import Recipe

REPO = Path(__file__).resolve().parents[1]

TINY_RECIPE = """
work_dir = "work"
install = false

[library]
folders = ["sherpa:astro/datastack/tests/data"]
n_synthetic = 4
seed = 3
held_out_real = ["acisf04938"]
held_out_synthetic = 2

[simulate]
train = 300
val = 100
test = 120
shard_size = 300
seed = 5
real_fraction = 0.25

[train]
epochs = 1
batch_size = 64
max_steps = 4
num_threads = 1
n_clusters = 2
device = "cpu"
progress = false
max_val_spectra = 100

[train.network]
d_model = 16
n_layers = 1
n_heads = 2
ff_dim = 32
decoder_widths = [32]
"""


def test_shipped_recipe_parses() -> None:
    recipe = Recipe.from_toml(REPO / "recipes" / "default.toml")
    assert recipe.install is True
    assert recipe.simulate["test"] >= 20_000
    assert recipe.library["held_out_real"] and recipe.library["held_out_synthetic"] > 0


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("recipe")
    (folder / "tiny.toml").write_text(TINY_RECIPE)
    assert cli_main(["train", str(folder / "tiny.toml")]) == 0
    return folder


def test_one_command_makes_a_network_with_its_recipe(tiny_run: Path) -> None:
    work = tiny_run / "work"
    split = json.loads((work / "response_split.json").read_text())
    assert set(split["train"]).isdisjoint(split["test"])
    assert any("acisf04938" in name for name in split["held_out_names"])
    model = read_network(work / "network", device="cpu")
    meta = model.metadata
    assert "sherpa-latent train" in json.dumps(meta)
    assert (work / "network" / "clusters.safetensors").exists()
    # Running the same command again finds everything done and does not start over.
    assert cli_main(["train", str(tiny_run / "tiny.toml")]) == 0
    assert read_network(work / "network", device="cpu").metadata["sha256"] == meta["sha256"]


def test_evaluation_writes_every_number(tiny_run: Path, tmp_path: Path) -> None:
    work = tiny_run / "work"
    results = evaluate(
        work / "network",
        work / "test",
        tmp_path,
        n_classical=3,
        n_cluster=12,
        n_pairs=10,
        n_components=2,
        n_splits=3,
        device="cpu",
    )
    assert (tmp_path / "evaluation.json").exists() and (tmp_path / "evaluation.md").exists()
    assert json.loads((tmp_path / "evaluation.json").read_text()) == results
    for key in ("all", "<300", "300-3000", ">3000"):
        assert key in results["nh_coverage_68"]
    nh = results["nh_vs_classical"]
    assert nh["median_abs_error_classical_dex"] >= 0 and nh["ratio"] >= 0
    assert set(results["reconstruction_cstat_dof"]["by_class"]) >= {"AGN", "CV"}
    acc = results["clusters_balanced_accuracy"]
    assert 0 <= acc["latent"] <= 1 and 0 <= acc["pca8"] <= 1
    # accuracies are means over the splits, and margins are paired differences
    per = acc["per_split"]
    assert len(per["latent"]) == acc["n_splits"] == 3
    assert acc["latent"] == pytest.approx(np.mean(per["latent"]))
    assert acc["margin_over_hardness"] == pytest.approx(
        np.mean(np.subtract(per["latent"], per["hardness_plus_classical"]))
    )
    assert results["network"]["sha256"]
    assert 0 <= results["response_awareness"]["fraction_closer"] <= 1
    # The held-out responses are the only ones in the test set.
    split = json.loads((work / "response_split.json").read_text())
    assert set(results["held_out_responses"]) <= set(split["test"])
    # Classical fits are cached: a second run reads them back.
    cache = json.loads((tmp_path / "classical_fits.json").read_text())
    assert len(cache) >= nh["n"]
