"""``docs/benchmarks.md``, ``docs/benchmarks.json`` and the plots, from one run's numbers."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from sherpa_latent.fileio import atomic_output, write_json

from .classical_start import section as classical_start_section
from .classical_start import summary_rows as classical_start_rows
from .scaling_dask import section as dask_section
from .scaling_dask import summary_rows as dask_rows
from .scaling_ddp import section as ddp_section
from .scaling_ddp import summary_rows as ddp_rows


def _fmt(value: float | None, spec: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def _nh(values, at_limit=(False, False)) -> str:
    """``value [lo, hi]``; a bound that is a parameter limit, not a measurement, says so."""
    value, lo, hi = values
    if lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)):
        return f"{value:.3g} (none)"
    mark = [" (limit)" if hit else "" for hit in at_limit]
    return f"{value:.3g} [{lo:.3g}{mark[0]}, {hi:.3g}{mark[1]}]"


def _classical(fit: dict, name: str) -> str:
    """A classical fit's parameter (``"nh"`` or ``"gamma"``) with its limits marked."""
    return _nh(fit[name], fit.get(f"{name}_at_limit", (False, False)))


def _save(fig, ax, path: Path, xlabel: str, ylabel: str, title: str) -> str:
    """Label a figure, write it as PNG atomically, close it, and return the file's name."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_output(path, clobber=True) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path.name


def _plots(results: dict, image_dir: Path) -> list[str]:
    """Throughput against batch size and time per spectrum against data size (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image_dir.mkdir(parents=True, exist_ok=True)
    names = []
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    rows = results["network_only"]["rows"]
    ax.loglog(
        [r["batch_size"] for r in rows], [r["spectra_per_s"] for r in rows], "o-", label="CPU"
    )
    if results.get("gpu"):
        g = results["gpu"]["network_only"]
        ax.loglog([r["batch_size"] for r in g], [r["spectra_per_s"] for r in g], "s-", label="GPU")
    ax.axhline(2000, color="grey", ls=":", label="2,000 spectra/s")
    title = "Network only: encoder, N_H head, decoded fit, clusters"
    path = image_dir / "benchmarks_throughput.png"
    names.append(_save(fig, ax, path, "batch size (spectra)", "spectra per second", title))

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    files, shards = results["scaling_files"], results["scaling_shards"]
    ax.loglog(
        [r["n_files"] for r in files],
        [1e3 * r["seconds_per_spectrum"] for r in files],
        "o-",
        label="files end to end (one process)",
    )
    ax.loglog(
        [r["n_spectra"] for r in shards],
        [1e3 * r["seconds_per_spectrum"] for r in shards],
        "s-",
        label="shards through the network",
    )
    path = image_dir / "benchmarks_scaling.png"
    names.append(_save(fig, ax, path, "spectra", "ms per spectrum", "Scaling: time per spectrum"))
    return names


def markdown(results: dict, images: list[str]) -> str:
    """The page, every number taken from ``results``."""
    m, marks = results["machine"], results["marks"]
    v = m["versions"]
    lines = [
        "# Benchmarks",
        "",
        "Made by `python -m benchmarks --clobber` (see `benchmarks/`) on "
        f"{m['date']}, commit `{m['git_commit']}`, in {results['total_seconds'] / 60:.1f} min.",
        "Every number below comes from that run, except the science numbers at the end, "
        "copied from `docs/evaluation.json`.",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {_fmt(m['memory_gib'], '.0f')} GiB memory, "
        f"{m['platform']}; GPU: {m['gpu'] or 'none'}.",
        f"- Versions: sherpa_latent {v['sherpa_latent']}, Sherpa {v['sherpa']}, torch "
        f"{v['torch']} ({m['torch_threads']} threads), numpy {v['numpy']}, astropy "
        f"{v['astropy']}, scikit-learn {v['scikit-learn']}, Python {m['python']}.",
        f"- Network: the shipped `{results['network']['file']}`, SHA-256 "
        f"`{results['network']['sha256'][:16]}...`.",
        "",
        "## Summary",
        "",
        "| what | measured | mark | met |",
        "|---|---|---|---|",
        f"| classical fit-plus-errors time / end-to-end time, per spectrum (one process) | "
        f"{marks['speedup']:.0f}x | >= 20x | {'yes' if marks['speedup_ok'] else 'no'} |",
        f"| network-only throughput on CPU, best batch size | "
        f"{marks['network_best_spectra_per_s']:,.0f} spectra/s | >= 2,000 | "
        f"{'yes' if marks['network_ok'] else 'no'} |",
    ]
    files, shards = results["scaling_files"], results["scaling_shards"]
    for label, rows, nkey, key in (
        ("files end to end, time per spectrum", files, "n_files", "files_time_change"),
        ("files end to end, peak memory with workers", files, "n_files", "files_memory_change"),
        (
            "shards through the network, time per spectrum",
            shards,
            "n_spectra",
            "shards_time_change",
        ),
        ("shards through the network, peak memory", shards, "n_spectra", "shards_memory_change"),
    ):
        lines.append(
            f"| {label}: change from {rows[0][nkey]:,} to {rows[-1][nkey]:,} | "
            f"{100 * marks[key]:.1f}% | < 25% | {'yes' if marks[key] < 0.25 else 'no'} |"
        )
    bright = [r for r in results["agreement"] if "error" not in r and r["net_counts"] >= 500]
    if bright:
        agree = sum(1 for r in bright if r["nh_intervals_overlap"] and not r["classical"]["note"])
        explained = all(r["nh_intervals_overlap"] or r["exceptions"] for r in bright)
        lines.append(
            f"| real spectra with >= 500 net counts whose N_H intervals overlap | "
            f"{agree} of {len(bright)} | all, or each exception explained | "
            f"{'yes' if explained else 'no'} (see below) |"
        )

    lines += classical_start_rows(results.get("classical_start"), results.get("report_command"))
    lines += ddp_rows(results.get("ddp"))
    lines += dask_rows(results.get("dask"))

    # --- speed -------------------------------------------------------------------------
    net = results["network_only"]
    lines += [
        "",
        "## Speed",
        "",
        "### Network only",
        "",
        f"Simulated spectra already on the network's grids go through the encoder, the N_H "
        f"head, the decoder with its C-statistic and anomaly score, and the cluster model "
        f"({net['device'].upper()}, {net['threads']} threads). Median of "
        f"{net['rows'][0]['repeats']} repeats, each of whole batches lasting at least half "
        "a second.",
        "",
        "| batch size | spectra/s (median) | min | max |",
        "|---:|---:|---:|---:|",
    ]
    for r in net["rows"]:
        lines.append(
            f"| {r['batch_size']:,} | {r['spectra_per_s']:,.0f} | {r['min_spectra_per_s']:,.0f} | "
            f"{r['max_spectra_per_s']:,.0f} |"
        )
    if images:
        lines += ["", f"![throughput](images/{images[0]})"]

    lines += [
        "",
        "### End to end, and the classical loop on the same files",
        "",
        f"Simulated absorbed power laws written as PHA files with their own background files, "
        f"sharing the ARF and RMF of three real observations (the 3C 273 and two Chandra Source "
        f"Catalog spectra in the `sherpa` package), as the spectra of one observation do. End "
        f"to end is `sherpa-latent encode`'s path, `encode_files` then `write_table`: the "
        f"reader turns each PHA and its background into Sherpa objects (ARF and RMF read "
        f"once per observation), the response is projected once per ARF/RMF "
        f"content, the network runs in batches of 256, and a FITS table is written. Each "
        f"run is a fresh process. The classical loop on the first "
        f"{results['classical']['n_files']} of the same files: `load_spectrum` reads the "
        "spectrum, Sherpa fits `wabs * powlaw1d` with W-stat from four starting N_H values, "
        "and runs `conf` on N_H and the photon index.",
        "",
        "| way | files | s per spectrum | spectra/s | peak memory, all processes (MiB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results["end_to_end"]:
        lines.append(
            f"| end to end, {r['workers']} worker{'s' if r['workers'] > 1 else ''} | "
            f"{r['n_files']:,} | {r['seconds_per_spectrum']:.4f} | {r['spectra_per_s']:.1f} | "
            f"{r['peak_tree_mib']:.0f} |"
        )
    c = results["classical"]
    lines += [
        f"| classical fit + conf (median; range {c['min_seconds']:.1f}-{c['max_seconds']:.1f} s) "
        f"| {c['n_files']} | {c['median_seconds_per_spectrum']:.2f} | "
        f"{1 / c['median_seconds_per_spectrum']:.2f} | - |",
        "",
        f"Classical over end to end (one process, the default), per spectrum: "
        f"**{results['speedup_classical_over_end_to_end']:.0f}x**.",
    ]
    b = results["breakdown"]
    lines += [
        "",
        f"Where the end-to-end time goes, one process, {b['n_files']} files "
        f"({b['projections_computed']} response projections computed, the rest reused):",
        "",
        "| step | ms per spectrum | share |",
        "|---|---:|---:|",
        f"| reading (`load_spectrum`: the reader's spectrum and background with the checks; "
        f"ARF/RMF objects reused) | {b['read_ms_per_spectrum']:.1f} | "
        f"{100 * b['read_fraction']:.0f}% |",
        f"| projecting (counts onto the input grid; response projected once per content) | "
        f"{b['project_ms_per_spectrum']:.1f} | {100 * b['project_fraction']:.0f}% |",
        f"| the network (`LatentEncoder.encode`, per-spectrum results and clusters) | "
        f"{b['network_ms_per_spectrum']:.1f} | {100 * b['network_fraction']:.0f}% |",
    ]
    lines += _reading_section(results.get("reading"))

    # --- scaling -----------------------------------------------------------------------
    lines += [
        "",
        "## Scaling",
        "",
        "Each size runs in a fresh process. Peak memory: the process's own high-water mark "
        "(`VmHWM`), and for files also the peak of the process and any worker processes "
        "together (resident memory of the process tree, sampled every 50 ms).",
        "",
        "| files end to end (one process) | seconds | ms per spectrum | peak memory (MiB) | "
        "with workers (MiB) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in files:
        lines.append(
            f"| {r['n_files']:,} | {r['seconds']:.1f} | {1e3 * r['seconds_per_spectrum']:.2f} | "
            f"{r['peak_rss_mib']:.0f} | {r['peak_tree_mib']:.0f} |"
        )
    lines += [
        "",
        f"| spectra from shards (batch {shards[0]['batch_size']}) | seconds | ms per spectrum | "
        "spectra/s | peak memory (MiB) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in shards:
        lines.append(
            f"| {r['n_spectra']:,} | {r['seconds']:.1f} | {1e3 * r['seconds_per_spectrum']:.3f} "
            f"| {r['spectra_per_s']:,.0f} | {r['peak_rss_mib']:.0f} |"
        )
    if len(images) > 1:
        lines += ["", f"![scaling](images/{images[1]})"]

    # --- GPU ---------------------------------------------------------------------------
    lines += ["", "## GPU", ""]
    gpu = results.get("gpu")
    if gpu:
        lines += [
            f"On {gpu['device']} (bf16 autocast):",
            "",
            "| batch size | spectra/s (median) |",
            "|---:|---:|",
        ]
        lines += [
            f"| {r['batch_size']:,} | {r['spectra_per_s']:,.0f} |" for r in gpu["network_only"]
        ]
        e, s = gpu["end_to_end"], gpu["shards"]
        lines += [
            "",
            f"End to end, 2 workers, {e['n_files']:,} files: {e['seconds_per_spectrum']:.4f} s "
            f"per spectrum. Shards, {s['n_spectra']:,} spectra at batch {s['batch_size']}: "
            f"{s['spectra_per_s']:,.0f} spectra/s.",
        ]
    else:
        lines.append("No GPU on this machine; the figures above are CPU only.")
    lines += ddp_section(results.get("ddp"))
    lines += dask_section(results.get("dask"))

    lines += classical_start_section(results.get("classical_start"), results.get("report_command"))

    # --- agreement ---------------------------------------------------------------------
    lines += _agreement_section(results["agreement"])
    lines += _science_section(results.get("science"), results["network"]["sha256"])
    return "\n".join(lines) + "\n"


def _reading_section(reading: dict | None) -> list[str]:
    """Reading time per spectrum: the reader beside Sherpa's ``read_pha``, same files."""
    if not reading:
        return []
    first = next(iter(reading.values()))
    lines = [
        "",
        "### Reading a spectrum with its background",
        "",
        "The same files read three ways in the same run, interleaved file by file: the "
        "project's reader (`sherpa_latent.reader.read_spectrum`: PHA and background into "
        "Sherpa's `DataPHA`, ARF and RMF objects handed out again by its response cache); "
        "Sherpa's `read_pha` of the spectrum and its background with ARF and RMF objects "
        "read before and attached (what the catalogue did before the reader); and Sherpa's "
        "`read_pha` as `load_pha` runs it, reading the ARF and RMF too. Median over "
        f"{first['repeats']} or more reads of every file (25th-75th percentile in brackets), "
        "after one untimed read of each.",
        "",
        "| files | reader (ms) | Sherpa `read_pha`, ARF/RMF reused (ms) | Sherpa `read_pha`, "
        "all files (ms) | reader faster by |",
        "|---|---:|---:|---:|---:|",
    ]
    labels = {
        "simulated": "simulated spectra with their own background",
        "sherpa_package": "3C 273 and the two CSC `pha3` spectra of the sherpa package",
    }

    def cell(row: dict, way: str) -> str:
        lo, hi = row[f"{way}_ms_quartiles"]
        return f"{row[f'{way}_ms_per_spectrum']:.2f} ({lo:.2f}-{hi:.2f})"

    for key, row in reading.items():
        lines.append(
            f"| {labels.get(key, key)} ({row['n_files']}) | {cell(row, 'reader')} | "
            f"{cell(row, 'sherpa_reusing')} | {cell(row, 'sherpa')} | "
            f"{row['speedup_over_sherpa_reusing']:.1f}x / {row['speedup_over_sherpa']:.1f}x |"
        )
    return lines


def _agreement_section(rows: list[dict]) -> list[str]:
    if not rows:
        return ["", "## Agreement on real spectra", "", "Not run (quick mode)."]
    lines = [
        "",
        "## Agreement with classical fits on real spectra",
        "",
        "Every real spectrum at hand: the three in the `sherpa` package and those in "
        "`../shared/data/chandra/` (when present). Classical: `wabs * powlaw1d`, W-stat "
        "(C-stat without a background), 0.5-7 keV, 68% `conf` intervals. Latent: the N_H "
        "head's 68% interval, the cluster, the anomaly score, and a fit of the decoder as a "
        "Sherpa model (`latent` component, started at the encoder's output) with the same "
        "statistic over the same band. N_H in 10^22 cm^-2.",
        "",
        "| file | target | net counts | classical N_H | photon index | latent N_H | overlap | "
        "stat: latent fit / classical (dof) | cluster | anomaly |",
        "|---|---|---:|---|---|---|---|---|---|---:|",
    ]
    skipped = []
    for r in rows:
        if "error" in r:
            skipped.append(r)
            continue
        c, lat, lf = r["classical"], r["latent"], r["latent_fit"]
        nh, gamma = _classical(c, "nh"), _classical(c, "gamma")
        lines.append(
            f"| {r['file']} | {r['object']} | {r['net_counts']:,.0f} | {nh} | "
            f"{gamma} | {_nh(lat['nh'])} | "
            f"{'yes' if r['nh_intervals_overlap'] else 'no'} | {lf['stat']:.1f} ({lf['dof']}) / "
            f"{c['stat']:.1f} ({c['dof']}) | {lat['cluster_label']} | {lat['anomaly']:+.1f} |"
        )
    if skipped:
        lines += ["", "Files that are not spectra with a response (skipped):", ""]
        lines += [f"- {r['error']}" for r in skipped]
    quasar = [r for r in rows if "error" not in r and r["object"].replace(" ", "") == "4C19.44"]
    if not quasar:
        quasar = [r for r in rows if r["file"].startswith("obs") and "error" not in r]
    if quasar:
        lines += [
            "",
            "### 4C 19.44, four observations side by side",
            "",
            "| observation | ObsID | net counts | classical N_H | latent N_H | cluster |",
            "|---|---|---:|---|---|---|",
        ]
        lines += [
            f"| {r['file']} | {r['obsid']} | {r['net_counts']:,.0f} | "
            f"{_classical(r['classical'], 'nh')} "
            f"| {_nh(r['latent']['nh'])} | {r['latent']['cluster_label']} |"
            for r in quasar
        ]
    exceptions = [r for r in rows if r.get("exceptions")]
    lines += ["", "### Spectra with >= 500 net counts whose intervals do not agree", ""]
    if not exceptions:
        lines.append("None: every such spectrum's two N_H intervals overlap.")
    for r in exceptions:
        lines.append(f"**{r['file']}** ({r['object']}, {r['net_counts']:,.0f} net counts):")
        lines.append("")
        lines += [f"- {reason}" for reason in r["exceptions"]]
        lines.append("")
    return lines


def _science_section(science: dict | None, sha256: str) -> list[str]:
    lines = ["", "## How good: the science numbers", ""]
    if science is None:
        return lines + ["`docs/evaluation.json` is absent; run `sherpa-latent evaluate`."]
    same = science.get("network", {}).get("sha256", "") == sha256
    nh = science["nh_vs_classical"]
    cov = science["nh_coverage_68"]
    rec = science["reconstruction_cstat_dof"]
    acc = science["clusters_balanced_accuracy"]
    aware = science["response_awareness"]
    lines += [
        f"Copied from `docs/evaluation.json` (`sherpa-latent evaluate`, {science['n_test']:,} "
        "simulated test spectra through responses never used in training; network "
        f"{'the same as above' if same else 'NOT the one benchmarked above'}).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| N_H median abs. error, network / classical (dex, {nh['n']} spectra) | "
        f"{nh['median_abs_error_network_dex']:.3f} / {nh['median_abs_error_classical_dex']:.3f}"
        f" (ratio {nh['ratio']:.2f}) |",
        "| N_H 68% interval coverage: all / <300 / 300-3000 / >3000 counts | "
        + " / ".join(f"{cov[k]:.3f}" for k in cov)
        + " |",
        f"| median C-stat/dof of the decoded spectrum | {rec['median_all']:.3f} |",
        f"| cluster balanced accuracy: latent / PCA-8 / hardness + classical | "
        f"{acc['latent']:.3f} / {acc['pca8']:.3f} / {acc['hardness_plus_classical']:.3f} |",
        f"| response awareness (pairs closer across responses than across classes) | "
        f"{aware['fraction_closer']:.3f} |",
    ]
    return lines


def _plain(obj):
    """JSON-safe copy: NaN and infinities become None."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_outputs(results: dict, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``benchmarks.json``, ``benchmarks.md`` and the plots into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = _plots(results, out_dir / "images")
    json_path = write_json(out_dir / "benchmarks.json", _plain(json.loads(json.dumps(results))))
    page = out_dir / "benchmarks.md"
    with atomic_output(page, clobber=True) as tmp:
        tmp.write_text(markdown(results, images), encoding="utf-8")
    return page, json_path
