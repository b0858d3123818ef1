"""How good is a network? The numbers of the network issue, measured on held-out responses.

``sherpa-latent evaluate`` reads a test set (shards simulated only through responses the
network never saw in training), encodes it, and measures:

* N_H: the head's median absolute error in log10 N_H against a classical ``wabs *
  powlaw1d`` C-stat fit of the same spectra (absorbed power-law classes, >= 200 counts,
  true N_H >= 3e21 cm^-2), and the coverage of its 68% intervals, overall and in three
  count ranges;
* reconstruction: the median C-stat per degree of freedom of the decoded spectrum, by class
  and count range;
* clusters: balanced accuracy of Gaussian-mixture clusters mapped to their majority class,
  for the latents, an 8-component PCA of the normalised input, and the CSC hardness ratios
  plus the classical N_H and photon index;
* response awareness: the same source through two responses against a source of another
  class.

Results are written as JSON and Markdown. Classical fits are cached per test spectrum, so an
interrupted evaluation does not redo them.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..classes import ABSORBED_POWERLAW_CLASSES, CLASS_NAMES
from ..clusters import ClusterModel
from ..executors import make_executor
from ..fileio import atomic_output, write_json
from ..grids import CSC_BANDS, FIT_BAND, INPUT_GRID
from ..hardness import hardness_ratios_from_counts
from ..network import encode_batch, read_network
from ..spectrum import ResponseRepresentation
from .folding import fit_absorbed_powerlaw_projected
from .response_library import ResponseLibrary
from .shards import iter_shards
from .shards import library_path as shard_library_path
from .simulate import draw_parameters, fold, intrinsic_flux, normalise_to_counts
from .train import response_bank

__all__ = [
    "COUNT_RANGES",
    "load_shards",
    "classical_fits",
    "hardness_features",
    "evaluate",
]

COUNT_RANGES: tuple[tuple[str, float, float], ...] = (
    ("<300", 0.0, 300.0),
    ("300-3000", 300.0, 3000.0),
    (">3000", 3000.0, np.inf),
)
"""Count ranges (0.5-7 keV counts) in which calibration and reconstruction are reported."""

NH_MEASURABLE = 21.0 + np.log10(3.0)
"""log10 N_H (cm^-2) above which N_H is compared with the classical fit."""


def load_shards(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """Concatenate every shard of a folder into one dict of arrays."""

    parts: dict[str, list[np.ndarray]] = {}
    for shard in iter_shards(folder):
        for key, value in shard.items():
            parts.setdefault(key, []).append(np.asarray(value))
    return {k: np.concatenate(v) for k, v in parts.items()}


def _representation(data: dict, library, i: int):

    rid = int(data["response_id"][i])
    return ResponseRepresentation(
        counts=np.asarray(data["counts"][i], dtype=float),
        background=np.asarray(data["background"][i], dtype=float),
        effective_area=np.asarray(library.effective_area[rid], dtype=float),
        response=np.asarray(library.response[rid], dtype=float),
        exposure=float(data["exposure"][i]),
        input_grid=library.input_grid,
        model_grid=library.model_grid,
    )


_TEST_SET: dict = {}
_TEST_SET_LOCK = threading.Lock()


def _test_set_stamp(test_dir: str, library_path: str) -> list:
    """What identifies a test set's files: names, sizes and modification times."""
    files = sorted(Path(test_dir).glob("*.npz")) + [Path(library_path)]
    return [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def _test_set(test_dir: str, library_path: str) -> tuple[dict, ResponseLibrary]:
    """The test shards and their library, read once per process while they are unchanged.

    On a Dask worker this is the worker's copy, kept between tasks (one test set at a
    time).
    """
    stamp = _test_set_stamp(test_dir, library_path)
    with _TEST_SET_LOCK:
        if _TEST_SET.get("stamp") != stamp:
            _TEST_SET.clear()
            _TEST_SET.update(
                stamp=stamp,
                data=load_shards(test_dir),
                library=ResponseLibrary.load(library_path),
            )
        return _TEST_SET["data"], _TEST_SET["library"]


def _fit_rows(
    rows: Sequence[int], *, test_dir: str, library_path: str
) -> list[tuple[int, float, float, float]]:
    """One task: classical fits of rows of the test set (row, N_H, photon index, C-stat)."""
    import warnings

    from sherpa.utils.logging import SherpaVerbosity

    data, library = _test_set(test_dir, library_path)
    out = []
    for i in rows:
        rep = _representation(data, library, int(i))
        with warnings.catch_warnings(), SherpaVerbosity("ERROR"):
            warnings.simplefilter("ignore")
            res = fit_absorbed_powerlaw_projected(rep)
        out.append((int(i), float(res["nh"]), float(res["gamma"]), float(res["stat"])))
    return out


FITS_PER_TASK = 8
"""Classical fits per task (in this process or on a Dask worker)."""


def classical_fits(
    test_dir: str | os.PathLike,
    library_path: str | os.PathLike,
    indices: Sequence[int],
    cache_path: str | os.PathLike,
    *,
    workers: int = 1,
    scheduler: str | os.PathLike | None = None,
) -> dict[int, tuple[float, float, float]]:
    """Classical ``wabs * powlaw1d`` C-stat fits of test spectra, cached on disk.

    Parameters
    ----------
    test_dir, library_path : path-like
        The test shards and their response library.
    indices : sequence of int
        Rows of the test set to fit.
    cache_path : path-like
        JSON file of finished fits (row -> [N_H 1e22 cm^-2, photon index, C-stat]),
        written by this process as fits finish.
    workers : int, optional
        1: the fits run in this process; N > 1: on a local Dask cluster of N worker
        processes (:mod:`sherpa_latent.executors`).
    scheduler : str or path-like, optional
        Address or scheduler file of a running Dask scheduler whose workers run the fits
        (each reads the test set once; it must be on a file system they see).

    Returns
    -------
    dict
        Row -> (N_H, photon index, C-stat).
    """
    cache_path = Path(cache_path)
    done: dict[int, tuple[float, float, float]] = {}
    if cache_path.exists():
        done = {int(k): tuple(v) for k, v in json.loads(cache_path.read_text()).items()}
    todo = [int(i) for i in indices if int(i) not in done]
    if todo:
        bar = tqdm(total=len(todo), desc="classical fits", unit="fit")

        def save() -> None:
            write_json(cache_path, {str(k): list(v) for k, v in done.items()})

        tasks = [todo[s : s + FITS_PER_TASK] for s in range(0, len(todo), FITS_PER_TASK)]
        source = {
            "test_dir": os.path.abspath(test_dir),
            "library_path": os.path.abspath(library_path),
        }
        with make_executor(workers, scheduler) as executor:
            finished = executor.map_unordered(_fit_rows, tasks, name="classical-fit", **source)
            for n, (_, rows) in enumerate(finished):
                for i, nh, gamma, stat in rows:
                    done[i] = (nh, gamma, stat)
                bar.update(len(rows))
                if n % 6 == 0:
                    save()
        save()
        bar.close()
    return {int(i): done[int(i)] for i in indices}


def hardness_features(data: dict, indices: Sequence[int]) -> np.ndarray:
    """CSC hardness-ratio modes (HR_hm, HR_hs, HR_ms) of simulated spectra.

    Bands are made of whole input-grid bins (by centre), and the background-region counts
    are the scaled background divided by its scale.
    """

    out = np.zeros((len(indices), 3))
    for row, i in enumerate(indices):
        scale = float(data["bkg_scale"][i])
        src, bkg = {}, {}
        for name in ("soft", "medium", "hard"):
            src[name] = int(round(float(INPUT_GRID.band_sum(data["counts"][i], CSC_BANDS[name]))))
            b = float(INPUT_GRID.band_sum(data["background"][i], CSC_BANDS[name]))
            bkg[name] = int(round(b / scale)) if scale > 0 else 0
        hr = hardness_ratios_from_counts(src, bkg, scale, n_samples=4000, rng=int(i))
        out[row] = (hr.hr_hm.mode, hr.hr_hs.mode, hr.hr_ms.mode)
    return out


def _cluster_accuracy(features: np.ndarray, labels: np.ndarray, n_components: int, seed: int):
    """Fit a Gaussian mixture on one half, map clusters to majority class, score the other."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.mixture import GaussianMixture
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    half = len(order) // 2
    fit_rows, test_rows = order[:half], order[half:]
    scaler = StandardScaler().fit(features[fit_rows])
    gmm = GaussianMixture(n_components, covariance_type="full", random_state=seed, n_init=3)
    gmm.fit(scaler.transform(features[fit_rows]))
    assigned = gmm.predict(scaler.transform(features[fit_rows]))
    mapping = np.zeros(n_components, dtype=int)
    for k in range(n_components):
        members = labels[fit_rows][assigned == k]
        mapping[k] = (
            np.bincount(members, minlength=len(CLASS_NAMES)).argmax() if len(members) else 0
        )
    predicted = mapping[gmm.predict(scaler.transform(features[test_rows]))]
    return float(balanced_accuracy_score(labels[test_rows], predicted))


def evaluate(
    network: str | os.PathLike | None,
    test_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    n_classical: int = 500,
    n_cluster: int = 2000,
    n_pairs: int = 1000,
    n_components: int = 16,
    n_splits: int = 10,
    workers: int = 1,
    scheduler: str | os.PathLike | None = None,
    seed: int = 0,
    device: str = "auto",
) -> dict:
    """Measure a network on a held-out-response test set; write JSON and Markdown.

    Parameters
    ----------
    network : path-like or None
        Network file or folder (None: the shipped default).
    test_dir : path-like
        Test shards (and their ``responses.npz`` library).
    out_dir : path-like
        Where ``evaluation.json``, ``evaluation.md`` and the classical-fit cache go.
    n_classical : int
        Spectra in the N_H comparison with classical fits.
    n_cluster : int
        Spectra (>= 500 counts) in the cluster comparison (half fit, half scored).
    n_pairs : int
        Source pairs in the response-awareness test.
    n_components : int
        Gaussian-mixture components for every feature set.
    n_splits : int
        Random half-splits of the cluster subset; accuracies are averaged over them.
    workers : int
        1: the classical fits run in this process; N > 1: on a local Dask cluster of N
        worker processes.
    scheduler : str or path-like, optional
        Address or scheduler file of a running Dask scheduler whose workers run the
        classical fits (docs/scaling.md).
    seed : int
        Seed of the subsets.
    device : str
        Where the network runs.

    Returns
    -------
    dict
        Every number written to the JSON file.
    """

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    test_dir = Path(test_dir)
    library_path = shard_library_path(test_dir)
    library = ResponseLibrary.load(library_path)
    data = load_shards(test_dir)
    n = len(data["counts"])
    model = read_network(network, device=device)
    clusters_path = None if network is None else _clusters_beside(network)
    clusters = ClusterModel.load(clusters_path)
    rng = np.random.default_rng(seed)

    bank = response_bank(library, model.device)
    batch = {k: data[k] for k in ("counts", "background", "exposure", "response_id") if k in data}
    enc = encode_batch(model, batch, bank=bank, batch_size=1024)
    counts = INPUT_GRID.band_sum(data["counts"], FIT_BAND)
    classes = data["class_id"].astype(int)
    truth = data["log_nh"].astype(float)
    results: dict = {
        "network": {
            "file": str(getattr(model, "source_path", "")),
            "sha256": str(getattr(model, "metadata", {}).get("sha256", "")),
        },
        "n_test": int(n),
        "held_out_responses": sorted(set(map(int, data["response_id"]))),
    }
    results["held_out_response_names"] = [library.names[i] for i in results["held_out_responses"]]

    # --- N_H calibration -------------------------------------------------------------
    z = np.abs(enc["log_nh"] - truth) / enc["log_nh_sigma"]
    inside = z <= 1.0
    results["nh_coverage_68"] = {"all": float(inside.mean())}
    for name, lo, hi in COUNT_RANGES:
        sel = (counts >= lo) & (counts < hi)
        results["nh_coverage_68"][name] = float(inside[sel].mean())
    results["nh_coverage_count_n"] = {
        name: int(((counts >= lo) & (counts < hi)).sum()) for name, lo, hi in COUNT_RANGES
    }

    # --- N_H against classical fits ----------------------------------------------------
    eligible = np.flatnonzero(
        np.isin(classes, ABSORBED_POWERLAW_CLASSES) & (counts >= 200) & (truth >= NH_MEASURABLE)
    )
    chosen = np.sort(rng.choice(eligible, size=min(n_classical, len(eligible)), replace=False))
    # Cluster subset (>= 500 counts) shares the classical-fit cache.
    bright = np.flatnonzero(counts >= 500)
    cluster_rows = np.sort(rng.choice(bright, size=min(n_cluster, len(bright)), replace=False))
    fits = classical_fits(
        test_dir,
        library_path,
        np.union1d(chosen, cluster_rows),
        out_dir / "classical_fits.json",
        workers=workers,
        scheduler=scheduler,
    )
    nh_classical = np.array([fits[int(i)][0] for i in chosen])
    log_nh_classical = np.log10(np.clip(nh_classical, 1e-3, None) * 1e22)
    err_net = np.abs(enc["log_nh"][chosen] - truth[chosen])
    err_cls = np.abs(log_nh_classical - truth[chosen])
    results["nh_vs_classical"] = {
        "n": int(len(chosen)),
        "n_eligible": int(len(eligible)),
        "median_abs_error_network_dex": float(np.median(err_net)),
        "median_abs_error_classical_dex": float(np.median(err_cls)),
        "ratio": float(np.median(err_net) / np.median(err_cls)),
        "classical_floor_1e19_fraction": float(np.mean(nh_classical < 1e-3)),
    }

    # --- reconstruction ----------------------------------------------------------------
    cdof = enc["cstat_dof"]
    recon = {"median_all": float(np.median(cdof)), "by_class": {}, "by_counts": {}}
    for k, name in enumerate(CLASS_NAMES):
        recon["by_class"][name] = float(np.median(cdof[classes == k]))
    for name, lo, hi in COUNT_RANGES:
        sel = (counts >= lo) & (counts < hi)
        recon["by_counts"][name] = float(np.median(cdof[sel]))
    recon["median_anomaly"] = float(np.median(enc["anomaly"]))
    results["reconstruction_cstat_dof"] = recon

    # --- clusters ----------------------------------------------------------------------
    labels = classes[cluster_rows]
    latents = enc["z_mean"][cluster_rows]
    shape = data["counts"][cluster_rows] / data["counts"][cluster_rows].sum(1, keepdims=True)
    from sklearn.decomposition import PCA

    train_like = data["counts"] / np.clip(data["counts"].sum(1, keepdims=True), 1, None)
    pca = PCA(8, random_state=seed).fit(np.sqrt(train_like))
    pca_features = pca.transform(np.sqrt(shape))
    hr = hardness_features(data, cluster_rows)
    fit_feats = np.array(
        [[np.log10(max(fits[int(i)][0], 1e-3)), fits[int(i)][1]] for i in cluster_rows]
    )
    hr_features = np.column_stack([hr, fit_feats])
    # Each feature set is scored on the same n_splits random half-splits; the split-to-split
    # scatter (a few hundredths) is larger than the differences being measured, so the
    # means and the paired margins are reported, with their standard deviations.
    features = {"latent": latents, "pca8": pca_features, "hardness_plus_classical": hr_features}
    scores = {
        name: np.array(
            [_cluster_accuracy(f, labels, n_components, seed + k) for k in range(n_splits)]
        )
        for name, f in features.items()
    }
    acc = {
        "n": int(len(cluster_rows)),
        "n_components": n_components,
        "n_splits": n_splits,
        **{name: float(v.mean()) for name, v in scores.items()},
        **{
            f"{name}_sd": float(v.std(ddof=1)) if n_splits > 1 else 0.0
            for name, v in scores.items()
        },
        "per_split": {name: v.tolist() for name, v in scores.items()},
        "shipped_cluster_model": float(clusters.balanced_accuracy(latents, labels)),
    }
    for base, key in (
        ("pca8", "margin_over_pca8"),
        ("hardness_plus_classical", "margin_over_hardness"),
    ):
        diff = scores["latent"] - scores[base]
        acc[key] = float(diff.mean())
        acc[f"{key}_sd"] = float(diff.std(ddof=1)) if n_splits > 1 else 0.0
    results["clusters_balanced_accuracy"] = acc

    # --- response awareness --------------------------------------------------------------
    results["response_awareness"] = response_awareness(
        model, library, results["held_out_responses"], n_pairs=n_pairs, seed=seed
    )
    _write_outputs(out_dir, results)
    return results


def _clusters_beside(network: str | os.PathLike) -> Path | None:
    path = Path(network)
    folder = path if path.is_dir() else path.parent
    candidate = folder / "clusters.safetensors"
    return candidate if candidate.exists() else None


def response_awareness(
    model, library, response_ids: Sequence[int], *, n_pairs: int = 1000, seed: int = 0
) -> dict:
    """The same source through two responses, against a source of another class.

    Each source is drawn, normalised to 1,000-30,000 expected counts (0.5-7 keV) through a
    first held-out response with a 50 ks exposure, and observed through that response and
    a second one; a source of another class, normalised to the same counts, is observed
    through the first. A pair passes when the latents of the same source are closer to
    each other than the first is to the other-class source. Only pairs whose two spectra
    both have at least 1,000 counts are scored.
    """

    rng = np.random.default_rng(seed + 7)
    ids = np.asarray(response_ids)
    n_cls = len(CLASS_NAMES)
    classes = rng.integers(0, n_cls, n_pairs)
    other = (classes + rng.integers(1, n_cls, n_pairs)) % n_cls
    resp1 = rng.choice(ids, n_pairs)
    resp2 = np.array([rng.choice(ids[ids != r]) for r in resp1])
    r1 = np.asarray(library.response)[resp1]
    r2 = np.asarray(library.response)[resp2]
    exposure = np.full(n_pairs, 5e4)
    target = 10 ** rng.uniform(3.0, np.log10(3e4), n_pairs)
    params_a = normalise_to_counts(draw_parameters(n_pairs, classes, rng), r1, exposure, target)
    params_b = normalise_to_counts(draw_parameters(n_pairs, other, rng), r1, exposure, target)
    flux_a, flux_b = intrinsic_flux(params_a), intrinsic_flux(params_b)
    observed = [
        rng.poisson(fold(flux, resp, exposure)).astype(np.float32)
        for flux, resp in ((flux_a, r1), (flux_a, r2), (flux_b, r1))
    ]
    rids = (resp1, resp2, resp1)
    batch = {
        "counts": np.concatenate(observed),
        "background": np.zeros((3 * n_pairs, library.input_grid.nbins), np.float32),
        "response": np.concatenate([np.asarray(library.response)[r] for r in rids]),
        "effective_area": np.concatenate([np.asarray(library.effective_area)[r] for r in rids]),
        "exposure": np.tile(exposure, 3).astype(np.float32),
    }
    z = encode_batch(model, batch, batch_size=512)["z_mean"].reshape(3, n_pairs, -1)
    in_band = [INPUT_GRID.band_sum(o, FIT_BAND) for o in observed]
    scored = (in_band[0] >= 1000) & (in_band[1] >= 1000)
    same = np.linalg.norm(z[0] - z[1], axis=1)[scored]
    diff = np.linalg.norm(z[0] - z[2], axis=1)[scored]
    return {
        "n_pairs": int(scored.sum()),
        "fraction_closer": float(np.mean(same < diff)),
        "median_same_source_distance": float(np.median(same)),
        "median_other_class_distance": float(np.median(diff)),
    }


def _write_outputs(out_dir: Path, results: dict) -> None:
    write_json(out_dir / "evaluation.json", results, strict=True)
    with atomic_output(out_dir / "evaluation.md") as tmp:
        tmp.write_text(markdown_summary(results))


def markdown_summary(results: dict) -> str:
    """The evaluation as Markdown tables."""
    nh = results["nh_vs_classical"]
    cov = results["nh_coverage_68"]
    rec = results["reconstruction_cstat_dof"]
    acc = results["clusters_balanced_accuracy"]
    ra = results["response_awareness"]
    lines = [
        f"Test set: {results['n_test']} simulated spectra through "
        f"{len(results['held_out_responses'])} responses never used in training.",
        "",
        "| N_H (absorbed power laws, >= 200 counts, N_H >= 3e21) | value |",
        "|---|---|",
        f"| spectra compared | {nh['n']} (of {nh['n_eligible']}) |",
        f"| median abs. error, network (dex) | {nh['median_abs_error_network_dex']:.3f} |",
        f"| median abs. error, classical fit (dex) | {nh['median_abs_error_classical_dex']:.3f} |",
        f"| ratio network / classical | {nh['ratio']:.2f} |",
        "",
        "| 68% interval coverage of N_H | all | <300 | 300-3000 | >3000 |",
        "|---|---|---|---|---|",
        f"| fraction containing the truth | {cov['all']:.3f} | {cov['<300']:.3f} | "
        f"{cov['300-3000']:.3f} | {cov['>3000']:.3f} |",
        "",
        "| reconstruction: median C-stat/dof | value |",
        "|---|---|",
        f"| all | {rec['median_all']:.3f} |",
    ]
    lines += [f"| {k} counts | {v:.3f} |" for k, v in rec["by_counts"].items()]
    lines += [f"| {k} | {v:.3f} |" for k, v in rec["by_class"].items()]
    lines += [
        "",
        f"| clusters: balanced accuracy (8 classes, {acc['n']} spectra >= 500 counts, "
        f"{acc['n_components']} components fitted on one half, scored on the other; mean "
        f"and sd over {acc.get('n_splits', 1)} random half-splits) | value |",
        "|---|---|",
        f"| latent (8 dims) | {acc['latent']:.3f} +- {acc.get('latent_sd', 0):.3f} |",
        f"| PCA, 8 components of the normalised input | {acc['pca8']:.3f} +- "
        f"{acc.get('pca8_sd', 0):.3f} |",
        f"| CSC hardness ratios + classical N_H and photon index | "
        f"{acc['hardness_plus_classical']:.3f} +- {acc.get('hardness_plus_classical_sd', 0):.3f} |",
        f"| margin of the latents over PCA-8 (paired by split) | {acc['margin_over_pca8']:+.3f} "
        f"+- {acc.get('margin_over_pca8_sd', 0):.3f} |",
        f"| margin of the latents over hardness + classical (paired by split) | "
        f"{acc['margin_over_hardness']:+.3f} +- {acc.get('margin_over_hardness_sd', 0):.3f} |",
        f"| shipped cluster model (fitted on training latents) | "
        f"{acc['shipped_cluster_model']:.3f} |",
        "",
        f"Response awareness: in {ra['fraction_closer']:.1%} of {ra['n_pairs']} pairs (both "
        "spectra >= 1,000 counts) the latents of one source through two held-out responses "
        "are closer to each other than to a source of another class.",
        "",
    ]
    return "\n".join(lines)
