"""One command from nothing to a trained network: library, simulation, training.

A recipe is a TOML file with three tables::

    [library]    folders (of real spectra), n_synthetic, seed, held_out_real (name
                 fragments), held_out_synthetic
    [simulate]   train, val, test (numbers of spectra), shard_size, seed, real_fraction
    [train]      TrainConfig keys, with a [train.network] table

``sherpa-latent train RECIPE.toml`` runs every step that is not already done (each step is
resumable), writing under the recipe's ``work_dir``; with ``install = true`` it copies the
finished network and cluster model into the package's ``data/`` folder. The responses
held out of training (some real, some synthetic) are the only ones the test set uses.

A recipe with neither a ``[library]`` nor a ``[simulate]`` table whose ``[train]`` table
names a ``data_dir`` trains on shards made before (with their own response library):
no library is built and nothing is simulated.

Under ``torchrun --nproc_per_node=N`` (one process per rank) only the training is
distributed (see :mod:`sherpa_latent.training.train`): the steps before it (library,
simulation) and after it (calibrations, install) run on rank 0 while the other ranks wait
at a barrier, so that no step runs twice at once on the same files.
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

from ..fileio import atomic_output, write_json
from ..grids import FIT_BAND, INPUT_GRID, MODEL_GRID, EnergyGrid
from .real_responses import real_responses, resolve_folder
from .response_library import ResponseLibrary
from .simulate import simulate_shards
from .synthetic_responses import synthetic_responses

__all__ = ["Recipe", "build_library", "prepare_data", "run_recipe"]


def build_library(
    folders: list[str | os.PathLike],
    n_synthetic: int = 512,
    seed: int = 0,
    *,
    base: str | os.PathLike = ".",
    input_grid: EnergyGrid = INPUT_GRID,
    model_grid: EnergyGrid = MODEL_GRID,
) -> ResponseLibrary:
    """The real responses found in ``folders`` followed by ``n_synthetic`` synthetic ones.

    Parameters
    ----------
    folders : list of str or path-like
        Folders of real spectra with their responses (``sherpa:SUBDIR`` names a folder
        inside the installed Sherpa; see :func:`~.real_responses.resolve_folder`).
        Folders that do not exist are passed over with a logged warning.
    n_synthetic : int
        Number of synthetic responses.
    seed : int
        Seed of the synthetic responses.
    base : path-like
        Folder that relative folder names start from (the recipe's folder).
    input_grid, model_grid : EnergyGrid
        Grids to project onto.
    """
    real = real_responses(
        [resolve_folder(f, base) for f in folders], input_grid=input_grid, model_grid=model_grid
    )
    synth = synthetic_responses(
        n_synthetic, rng=np.random.default_rng(seed), input_grid=input_grid, model_grid=model_grid
    )
    return ResponseLibrary.concatenate([real, synth])


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
        _check_ranks(path, data.get("train", {}))
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
        """The response library the recipe builds (``work_dir/library.npz``)."""
        return self.work_dir / "library.npz"

    @property
    def given_shards(self) -> bool:
        """Whether the recipe trains on shards made before (see the module's text)."""
        return "data_dir" in self.train and not self.library and not self.simulate

    def train_folder(self, key: str) -> Path | None:
        """A folder named in ``[train]`` (``data_dir``, ``val_dir``), relative to the recipe."""
        value = self.train.get(key)
        if value is None:
            return None
        folder = Path(value)
        return folder if folder.is_absolute() else (self.path.parent / folder).resolve()

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


def _check_ranks(path: Path, train: dict) -> None:
    """Under torchrun, refuse a batch_size that the ranks cannot share evenly."""
    from .train import TORCHRUN_VARIABLES, TrainConfig, check_world_size

    if any(k not in os.environ for k in TORCHRUN_VARIABLES):
        return
    batch_size = train.get("batch_size", TrainConfig.batch_size)
    try:
        check_world_size(int(batch_size), int(os.environ["WORLD_SIZE"]))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def prepare_data(recipe: Recipe, *, progress: bool = True) -> dict:
    """Build the response library and simulate the train, val and test sets (resumable).

    For a recipe on shards made before (:attr:`Recipe.given_shards`) it only finds them.

    Returns
    -------
    dict
        Paths of the library and of the ``train``, ``val`` and ``test`` shard folders
        (``val`` and ``test`` None when a recipe on given shards names none), and the
        response split (``train``, ``test``: response indices).
    """
    if recipe.given_shards:
        from .shards import find_shards, library_path

        train_dir = recipe.train_folder("data_dir")
        find_shards(train_dir)
        library = library_path(train_dir, recipe.train.get("library"))
        n_responses = len(ResponseLibrary.load(library))
        split = {"train": list(range(n_responses)), "test": [], "held_out_names": []}
        val_dir = recipe.train_folder("val_dir")
        return {
            "library": library,
            "split": split,
            "train": train_dir,
            "val": val_dir,
            "test": None,
        }
    recipe.work_dir.mkdir(parents=True, exist_ok=True)
    lib_cfg = recipe.library
    if recipe.library_file.exists():
        library = ResponseLibrary.load(recipe.library_file)
    else:
        library = build_library(
            list(lib_cfg.get("folders", [])),
            base=recipe.path.parent,
            n_synthetic=int(lib_cfg.get("n_synthetic", 240)),
            seed=int(lib_cfg.get("seed", 1)),
        )
        library.save(recipe.library_file)
    split = _response_split(
        library,
        list(lib_cfg.get("held_out_real", [])),
        int(lib_cfg.get("held_out_synthetic", 40)),
    )
    write_json(recipe.split_file(), json.loads(json.dumps(split, default=_plain)))
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

    Under ``torchrun`` every rank calls it: rank 0 alone prepares the data, calibrates
    and installs (the others wait), and the training is distributed over all ranks.

    Parameters
    ----------
    path : path-like
        The recipe TOML file.
    command_line : str, optional
        Recorded in the network's metadata.
    clobber : bool, optional
        Train again even when the output folder already holds a network.

    Returns
    -------
    tuple of Path
        The network file and the cluster-model file (None without clusters). A network
        already in the output folder is kept unless ``clobber`` is set.
    """
    from .train import TrainConfig, distributed_run, train

    recipe = Recipe.from_toml(path)
    settings = dict(recipe.train)
    with distributed_run(settings.get("device", "auto")) as run:
        data = run.on_main(prepare_data, recipe, progress=True)
        settings.setdefault("data_dir", str(data["train"]))
        if data["val"] is not None:
            settings.setdefault("val_dir", str(data["val"]))
        settings.setdefault("output_dir", str(recipe.work_dir / "network"))
        config = TrainConfig.from_dict(settings, base_dir=recipe.path.parent)
        network_path = Path(config.output_dir) / "network.safetensors"
        clusters_path = Path(config.output_dir) / "clusters.safetensors"
        if run.on_main(lambda: clobber or not network_path.exists()):
            config.clobber = clobber
            command = command_line or f"sherpa-latent train {recipe.path}"
            result = train(config, command_line=command)
            network_path, clusters_path = Path(result.network_path), result.clusters_path
        return run.on_main(_finish, recipe, config, data, network_path, clusters_path)


def _finish(recipe: Recipe, config, data: dict, network_path: Path, clusters_path) -> tuple:
    """Calibrate the trained network and install it when the recipe asks (rank 0)."""
    if clusters_path is not None and not Path(clusters_path).exists():
        clusters_path = None
    if data["val"] is not None:
        calibrate_nh_intervals(network_path, data["val"])
    else:  # given shards without a val_dir: the held-out rows of the training shards
        calibrate_nh_intervals(network_path, data["train"], val_fraction=config.val_fraction)
    calibrate_latent_widths(network_path, data["library"], data["split"]["train"])
    if recipe.install:
        install_network(network_path, clusters_path)
    return network_path, clusters_path


NH_CALIBRATION_EDGES = (300.0, 3000.0)
"""0.5-7 keV count edges of the ranges in which N_H intervals are calibrated."""


def calibrate_nh_intervals(
    network_path, val_dir, *, level: float = 0.68, val_fraction: float = 0.0
) -> dict:
    """Scale the N_H head's sigma so its intervals cover ``level`` on the validation set.

    The scale is measured separately in each count range (below 300, 300-3,000 and above
    3,000 counts in 0.5-7 keV) on validation spectra (training responses) and recorded in
    the network's metadata (the weights are not changed). A network already calibrated is
    left alone. With ``val_fraction`` > 0 only the last ``val_fraction`` of the rows of
    each shard of ``val_dir`` are used (the rows training held out).

    Returns
    -------
    dict
        The calibration, ``{"edges": [...], "scales": [...], "level": ...}``.
    """
    from ..network import encode_batch, read_network, save_network
    from .shards import iter_shards, library_path, split_rows
    from .train import response_bank

    model = read_network(network_path, device="cpu")
    if "nh_calibration" in model.metadata:
        return model.metadata["nh_calibration"]
    parts: dict[str, list[np.ndarray]] = {}
    for shard in iter_shards(val_dir):
        rows = split_rows(len(shard["log_nh"]), "val" if val_fraction > 0 else "all", val_fraction)
        for key, value in shard.items():
            parts.setdefault(key, []).append(np.asarray(value)[rows])
    data = {k: np.concatenate(v) for k, v in parts.items()}
    bank = response_bank(library_path(val_dir))
    keys = ("counts", "background", "exposure", "response_id")
    out = encode_batch(model, {k: data[k] for k in keys}, bank=bank)
    pull = np.abs(out["log_nh"] - data["log_nh"]) / out["log_nh_sigma"]
    counts = INPUT_GRID.band_sum(data["counts"], FIT_BAND)
    ranges = np.searchsorted(NH_CALIBRATION_EDGES, counts, side="right")
    scales = [float(np.quantile(pull[ranges == k], level)) for k in range(3)]
    calibration = {
        "edges": list(NH_CALIBRATION_EDGES),
        "scales": scales,
        "level": level,
        "n_validation": int(len(pull)),
    }
    reserved = ("format", "sha256", "weights_file", "config")
    metadata = {k: v for k, v in model.metadata.items() if k not in reserved}
    metadata["nh_calibration"] = calibration
    save_network(model, network_path, metadata, clobber=True)
    return calibration


def calibrate_latent_widths(
    network_path, library_path, response_ids, *, n_sources: int = 4000, seed: int = 21
) -> dict:
    """Widen the latent spreads where they are too narrow to cover repeat observations.

    Sources drawn from the training priors are observed twice, through two different
    training responses with independent Poisson noise (30 to 100,000 counts). For a
    calibrated posterior, the difference of the two latent means divided by the combined
    spread is a unit normal in each dimension; the scale recorded for a dimension is the
    68th percentile of that pull's absolute value, at least 1 (spreads are widened, never
    narrowed). Recorded in the network's metadata; the weights are not changed.

    Returns
    -------
    dict
        ``{"scales": [...], "pull_quantile_68": [...], "n_pairs": ...}``.
    """
    from ..network import encode_batch, read_network, save_network
    from .response_library import ResponseLibrary
    from .simulate import draw_parameters, fold, intrinsic_flux, normalise_to_counts

    model = read_network(network_path, device="cpu")
    if "latent_calibration" in model.metadata:
        return model.metadata["latent_calibration"]
    library = ResponseLibrary.load(library_path)
    rng = np.random.default_rng(seed)
    ids = np.asarray(response_ids)
    first = rng.choice(ids, n_sources)
    if len(np.unique(ids)) == len(ids):
        # for each r, one of the other ids, uniformly (as rng.choice(ids[ids != r]) in
        # turn, and with numpy's Generator the same numbers), at once: the k-th of the
        # other ids is ids[k] before r's place and ids[k + 1] from it on
        place = {int(v): i for i, v in enumerate(ids)}
        at = np.array([place[int(r)] for r in first])
        k = rng.integers(0, len(ids) - 1, size=n_sources)
        second = ids[k + (k >= at)]
    else:
        second = np.array([rng.choice(ids[ids != r]) for r in first])
    response = np.asarray(library.response)
    area = np.asarray(library.effective_area)
    exposure = 10 ** rng.uniform(np.log10(5e3), np.log10(1.5e5), n_sources)
    target = 10 ** rng.uniform(np.log10(30), 5, n_sources)
    params = normalise_to_counts(
        draw_parameters(n_sources, None, rng), response[first], exposure, target
    )
    flux = intrinsic_flux(params)
    z, width = [], []
    for rids in (first, second):
        batch = {
            "counts": rng.poisson(fold(flux, response[rids], exposure)).astype(np.float32),
            "background": np.zeros((n_sources, response.shape[1]), np.float32),
            "response": response[rids],
            "effective_area": area[rids],
            "exposure": exposure.astype(np.float32),
        }
        out = encode_batch(model, batch, batch_size=512)
        z.append(out["z_mean"])
        width.append(out["z_std"])
    pull = np.abs(z[0] - z[1]) / np.sqrt(width[0] ** 2 + width[1] ** 2)
    quantile = np.quantile(pull, 0.6827, axis=0)
    calibration = {
        "scales": [float(max(q, 1.0)) for q in quantile],
        "pull_quantile_68": [float(q) for q in quantile],
        "n_pairs": int(n_sources),
    }
    reserved = ("format", "sha256", "weights_file", "config")
    metadata = {k: v for k, v in model.metadata.items() if k not in reserved}
    metadata["latent_calibration"] = calibration
    save_network(model, network_path, metadata, clobber=True)
    return calibration


def install_network(network_path, clusters_path) -> Path:
    """Copy a trained network and its cluster model (and JSON sidecars) into the package.

    Files already there with the same content are left alone; others are replaced
    atomically (``install = true`` in a recipe asks for exactly this).
    """
    from ..weightsfile import sidecar_path

    target = Path(__file__).parent / "data"
    target.mkdir(exist_ok=True)
    files = [Path(network_path), sidecar_path(network_path)]
    if clusters_path:
        files += [Path(clusters_path), sidecar_path(clusters_path)]
    for src in files:
        dst = target / src.name
        if dst.exists() and dst.read_bytes() == src.read_bytes():
            continue
        with atomic_output(dst) as tmp:
            shutil.copyfile(src, tmp)
    return target


def _plain(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(type(obj).__name__)
