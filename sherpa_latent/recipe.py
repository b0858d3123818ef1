"""One command from nothing to a trained network: library, simulation, training.

A recipe is a TOML file with three tables::

    [library]    n_synthetic, seed, held_out_real (name fragments), held_out_synthetic
    [simulate]   train, val, test (numbers of spectra), shard_size, seed, real_fraction
    [train]      TrainConfig keys, with a [train.network] table

``sherpa-latent train RECIPE.toml`` runs every step that is not already done (each step is
resumable), writing under the recipe's ``work_dir``; with ``install = true`` it copies the
finished network and cluster model into the package's ``data/`` folder. The responses
held out of training (some real, some synthetic) are the only ones the test set uses.
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Recipe", "prepare_data", "run_recipe"]


@dataclass
class Recipe:
    """A parsed recipe; paths are absolute.

    Parameters
    ----------
    path : Path
        The TOML file.
    work_dir : Path
        Where the library, shards and training output go.
    library, simulate, train : dict
        The recipe's tables.
    install : bool
        Copy the finished network into ``sherpa_latent/data``.
    """

    path: Path
    work_dir: Path
    library: dict[str, Any] = field(default_factory=dict)
    simulate: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    install: bool = False

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> Recipe:
        """Read a recipe file."""
        path = Path(path).resolve()
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
        unknown = set(data) - {"work_dir", "install", "library", "simulate", "train"}
        if unknown:
            raise ValueError(f"{path}: unknown recipe keys: {', '.join(sorted(unknown))}")
        work = Path(data.get("work_dir", "runs/default"))
        if not work.is_absolute():
            work = (path.parent / work).resolve()
        return cls(
            path=path,
            work_dir=work,
            library=dict(data.get("library", {})),
            simulate=dict(data.get("simulate", {})),
            train=dict(data.get("train", {})),
            install=bool(data.get("install", False)),
        )

    @property
    def library_file(self) -> Path:
        return self.work_dir / "library.npz"

    def split_file(self) -> Path:
        return self.work_dir / "response_split.json"


def _response_split(library, held_out_real: list[str], n_held_synthetic: int) -> dict:
    real = [i for i, k in enumerate(library.kinds) if k == "real"]
    synth = [i for i, k in enumerate(library.kinds) if k == "synthetic"]
    held_real = [i for i in real if any(s in library.names[i] for s in held_out_real)]
    held = held_real + (synth[-n_held_synthetic:] if n_held_synthetic else [])
    train = [i for i in range(len(library)) if i not in set(held)]
    return {
        "train": train,
        "test": held,
        "held_out_names": [library.names[i] for i in held],
    }


def prepare_data(recipe: Recipe, *, progress: bool = True) -> dict:
    """Build the response library and simulate the train, val and test sets (resumable).

    Returns
    -------
    dict
        Paths of the library and of the three shard folders, and the response split.
    """
    from .responses import ResponseLibrary, build_library
    from .simulate import simulate_shards

    recipe.work_dir.mkdir(parents=True, exist_ok=True)
    lib_cfg = recipe.library
    if recipe.library_file.exists():
        library = ResponseLibrary.load(recipe.library_file)
    else:
        library = build_library(
            [Path(p) for p in lib_cfg.get("folders", [])],
            n_synthetic=int(lib_cfg.get("n_synthetic", 240)),
            seed=int(lib_cfg.get("seed", 1)),
        )
        library.save(recipe.library_file)
    split = _response_split(
        library,
        list(lib_cfg.get("held_out_real", [])),
        int(lib_cfg.get("held_out_synthetic", 40)),
    )
    _write_json(recipe.split_file(), split)
    sim = recipe.simulate
    shard_size = int(sim.get("shard_size", 50_000))
    base_seed = int(sim.get("seed", 11))
    folders = {}
    for offset, (name, ids) in enumerate(
        (("train", split["train"]), ("val", split["train"]), ("test", split["test"]))
    ):
        n = int(sim.get(name, {"train": 400_000, "val": 20_000, "test": 20_000}[name]))
        out = recipe.work_dir / name
        simulate_shards(
            out,
            n,
            recipe.library_file,
            shard_size=min(shard_size, n),
            seed=base_seed + offset,
            response_ids=ids,
            real_fraction=sim.get("real_fraction", 0.25),
            progress=progress,
        )
        folders[name] = out
    return {"library": recipe.library_file, "split": split, **folders}


def run_recipe(path: str | os.PathLike, *, command_line: str | None = None, clobber=False):
    """Run a recipe from the start or from wherever an earlier run stopped.

    Parameters
    ----------
    path : path-like
        The recipe TOML file.
    command_line : str, optional
        Recorded in the network's metadata.
    clobber : bool, optional
        Overwrite an installed network in the package.

    Returns
    -------
    tuple of Path
        The network file and the cluster-model file (None without clusters). A network
        already in the output folder is kept unless ``clobber`` is set.
    """
    from .train import TrainConfig, train

    recipe = Recipe.from_toml(path)
    data = prepare_data(recipe, progress=True)
    settings = dict(recipe.train)
    settings.setdefault("data_dir", str(data["train"]))
    settings.setdefault("val_dir", str(data["val"]))
    settings.setdefault("output_dir", str(recipe.work_dir / "network"))
    config = TrainConfig.from_dict(settings, base_dir=recipe.path.parent)
    network_path = Path(config.output_dir) / "network.safetensors"
    clusters_path = Path(config.output_dir) / "clusters.safetensors"
    if clobber or not network_path.exists():
        config.clobber = clobber
        result = train(config, command_line=command_line or f"sherpa-latent train {recipe.path}")
        network_path, clusters_path = Path(result.network_path), result.clusters_path
    if clusters_path is not None and not Path(clusters_path).exists():
        clusters_path = None
    if recipe.install:
        install_network(network_path, clusters_path, clobber=clobber)
    return network_path, clusters_path


def install_network(network_path, clusters_path, *, clobber: bool = False) -> Path:
    """Copy a trained network and its cluster model (and JSON sidecars) into the package."""
    from .network import sidecar_path

    target = Path(__file__).parent / "data"
    target.mkdir(exist_ok=True)
    files = [Path(network_path), sidecar_path(network_path)]
    if clusters_path:
        files += [Path(clusters_path), sidecar_path(clusters_path)]
    for src in files:
        dst = target / src.name
        if dst.exists() and not clobber:
            raise FileExistsError(f"{dst} exists and clobber is not set")
        tmp = dst.with_suffix(dst.suffix + ".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    return target


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_plain))
    os.replace(tmp, path)


def _plain(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(type(obj).__name__)
