"""One start from the network against four: does the classical fit reach the same optimum?

The report starts the classical ``wabs * powlaw1d`` fit from the network's N_H and the photon
index of its decoded spectrum, once, and tries the grid of starting N_H only when that fit is
poor (:func:`sherpa_latent.classical.fit_absorbed_powerlaw`). This benchmark simulates spectra
with Sherpa's ``fake_pha`` through the real responses and backgrounds that ship inside the
installed ``sherpa`` package (3C 273 and two Chandra Source Catalog sources): mostly absorbed
power laws with N_H, photon index and counts drawn over wide ranges, and a few other shapes
(absorbed blackbody, disk blackbody, bremsstrahlung, power law plus blackbody) on which an
absorbed power law is the wrong model. For every spectrum it compares the statistic of the
report's fit with that of the classical fit as it was before, Sherpa's ``NelderMead`` from
four starting N_H (0.01, 0.1, 1 and 10 x 10^22 cm^-2): the mark is the one-start fit within
0.01 of it (or below) on at least 99% of the spectra. It also times the ``sherpa-latent
report`` command on 3C 273, start-up included, five times.

    python -m benchmarks.classical_start --n 40          # a quick check
    python -m benchmarks.classical_start --n 500 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sherpa.astro.data import DataPHA
from sherpa.astro.fake import fake_pha
from sherpa.astro.instrument import Response1D
from sherpa.models.basic import PowLaw1D
from sherpa.utils.logging import SherpaVerbosity

from sherpa_latent.classical import fit_absorbed_powerlaw
from sherpa_latent.physics import BBodyRad, Bremss, DiskBB, WAbs
from sherpa_latent.report import latent_start
from sherpa_latent.spectrum import Spectrum, load_spectrum, spectrum_from_pha

from .spectrum_files import SHERPA_DATA, TEMPLATES

TOLERANCE = 0.01
"""The one-start fit may exceed the four-start statistic by at most this."""

MARK = 0.99
"""Fraction of spectra that must meet the tolerance."""

OTHER_SHAPES = ("bbodyrad", "diskbb", "bremss", "powlaw+bbodyrad")
"""Shapes other than the absorbed power law, about one spectrum in ten."""


def _templates() -> list[Spectrum]:
    with SherpaVerbosity("ERROR"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [load_spectrum(SHERPA_DATA / name) for name in TEMPLATES]


def _source(shape: str, rng: np.random.Generator) -> tuple[object, dict]:
    """A source model with drawn parameters (norm 1) and the parameters drawn."""
    absorber = WAbs("gal")
    absorber.nH = 10 ** rng.uniform(-2.0, 1.3)
    truth: dict = {"shape": shape, "nh": float(absorber.nH.val)}
    if shape == "powlaw":
        component = PowLaw1D("pl")
        component.gamma = rng.uniform(0.8, 3.2)
        truth["gamma"] = float(component.gamma.val)
    elif shape == "bbodyrad":
        component = BBodyRad("bb")
        component.kT = rng.uniform(0.2, 2.0)
        truth["kt"] = float(component.kT.val)
    elif shape == "diskbb":
        component = DiskBB("disk")
        component.Tin = rng.uniform(0.3, 2.0)
        truth["kt"] = float(component.Tin.val)
    elif shape == "bremss":
        component = Bremss("br")
        component.kT = rng.uniform(1.0, 20.0)
        truth["kt"] = float(component.kT.val)
    else:
        pl, bb = PowLaw1D("pl"), BBodyRad("bb")
        pl.gamma = rng.uniform(1.5, 2.5)
        bb.kT = rng.uniform(0.1, 0.5)
        bb.norm = 10 ** rng.uniform(2.0, 4.0)  # a soft excess beside the power law
        component = pl + bb
        truth |= {"gamma": float(pl.gamma.val), "kt": float(bb.kT.val)}
    return absorber * component, truth


def simulate_spectra(n: int, seed: int = 7) -> tuple[list[Spectrum], list[dict]]:
    """``n`` simulated spectra through the sherpa package's responses, and their truths.

    Each spectrum is ungrouped, carries its template's real background, and has Poisson
    counts (Sherpa's ``fake_pha``) of the source model plus that background scaled to the
    source aperture; source counts in 0.5-7 keV are drawn log-uniformly in 30-20,000.
    """
    rng = np.random.default_rng(seed)
    templates = _templates()
    spectra, truths = [], []
    for k in range(n):
        template = templates[k % len(templates)].pha
        shape = "powlaw" if rng.uniform() >= 0.1 else OTHER_SHAPES[k % len(OTHER_SHAPES)]
        source, truth = _source(shape, rng)
        pha = DataPHA(
            f"sim{k:04d}",
            np.asarray(template.channel, float),
            np.zeros_like(np.asarray(template.counts, float)),
            exposure=template.exposure,
            backscal=template.backscal,
            areascal=template.areascal,
            header=dict(template.header),
        )
        pha.set_arf(template.get_arf())
        pha.set_rmf(template.get_rmf())
        pha.set_background(template.get_background())
        pha.set_analysis("energy")
        folded = Response1D(pha)(source)
        pha.notice(0.5, 7.0)
        per_unit = float(np.sum(pha.eval_model_to_fit(folded)))
        pha.notice()
        counts = 10 ** rng.uniform(np.log10(30.0), np.log10(20_000.0))
        model = (counts / per_unit) * folded
        with SherpaVerbosity("ERROR"):
            fake_pha(pha, model, include_bkg_data=True, rng=rng)
        truth["source_counts"] = float(counts)
        truth["template"] = TEMPLATES[k % len(TEMPLATES)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spectra.append(spectrum_from_pha(pha, pha.name))
        truths.append(truth)
    return spectra, truths


def start_agreement(encoder, n: int, seed: int = 7) -> dict:
    """The one-start fit from the network against the four-start NelderMead fit.

    Returns
    -------
    dict
        ``rows`` (one per spectrum: truth, both statistics, the difference, the start and
        the times) and the summary: ``fraction_within``, ``n_fallback``, median times.
    """
    spectra, truths = simulate_spectra(n, seed)
    results = encoder.encode(spectra)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for spectrum, truth, result in zip(spectra, truths, results, strict=True):
            start = latent_start(encoder, result)
            t0 = time.perf_counter()
            one = fit_absorbed_powerlaw(spectrum, start=start, errors=False)
            t1 = time.perf_counter()
            four = fit_absorbed_powerlaw(spectrum, errors=False, method="neldermead")
            t2 = time.perf_counter()
            rows.append(
                {
                    **truth,
                    "name": spectrum.path,
                    "start": None if start is None else list(start),
                    "how": one.start,
                    "fallback": "starting N_H" in one.start,
                    "stat_one": one.stat,
                    "stat_four": four.stat,
                    "difference": one.stat - four.stat,
                    "nh_one": one.nh[0],
                    "nh_four": four.nh[0],
                    "gamma_one": one.gamma[0],
                    "gamma_four": four.gamma[0],
                    "seconds_one": t1 - t0,
                    "seconds_four": t2 - t1,
                }
            )
    within = [r["difference"] <= TOLERANCE for r in rows]
    powlaw = [r for r in rows if r["shape"] == "powlaw"]
    return {
        "n_spectra": len(rows),
        "seed": seed,
        "tolerance": TOLERANCE,
        "mark": MARK,
        "fraction_within": float(np.mean(within)),
        "fraction_within_powlaw": float(np.mean([r["difference"] <= TOLERANCE for r in powlaw]))
        if powlaw
        else None,
        "n_powlaw": len(powlaw),
        "n_fallback": int(sum(r["fallback"] for r in rows)),
        "n_better": int(sum(r["difference"] < -TOLERANCE for r in rows)),
        "median_seconds_one": float(np.median([r["seconds_one"] for r in rows])),
        "median_seconds_four": float(np.median([r["seconds_four"] for r in rows])),
        "worst": sorted(rows, key=lambda r: -r["difference"])[:5],
        "rows": rows,
    }


def _command() -> list[str]:
    script = Path(sys.executable).with_name("sherpa-latent")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "sherpa_latent.cli"]


def report_command_time(path: str | os.PathLike | None = None, repeats: int = 5) -> dict:
    """Wall time of ``sherpa-latent report FILE`` (start-up included), ``repeats`` runs.

    One untimed run first, so that every timed run finds the files in the page cache.
    """
    path = Path(path) if path is not None else SHERPA_DATA / "3c273.pi"
    command = [*_command(), "report", str(path)]
    subprocess.run(command, capture_output=True, check=True)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return {
        "file": path.name,
        "command": " ".join(["sherpa-latent", "report", path.name]),
        "repeats": repeats,
        "seconds": times,
        "median_seconds": float(np.median(times)),
        "mark_seconds": 4.0,
    }


def summary_rows(start: dict | None, command: dict | None) -> list[str]:
    """Rows of the benchmark page's summary table."""
    rows = []
    if start:
        ok = start["fraction_within"] >= start["mark"]
        rows.append(
            f"| classical fit from the network's start within {start['tolerance']:g} of the "
            f"4-start statistic ({start['n_spectra']} simulated spectra) | "
            f"{100 * start['fraction_within']:.1f}% | >= {100 * start['mark']:.0f}% | "
            f"{'yes' if ok else 'no'} |"
        )
    if command:
        ok = command["median_seconds"] <= command["mark_seconds"]
        rows.append(
            f"| `{command['command']}`, start-up included (median of {command['repeats']}) | "
            f"{command['median_seconds']:.2f} s | <= {command['mark_seconds']:g} s | "
            f"{'yes' if ok else 'no'} |"
        )
    return rows


def section(start: dict | None, command: dict | None) -> list[str]:
    """The page's section on the classical fit's start and the report's time."""
    if not start and not command:
        return []
    lines = ["", "## The classical fit from the network's start", ""]
    if command:
        times = ", ".join(f"{t:.2f}" for t in command["seconds"])
        lines += [
            f"`{command['command']}` (the spectrum in the `sherpa` package), start-up, network, "
            f"classical fit with `conf`, flux draws and Galactic N_H included: median "
            f"{command['median_seconds']:.2f} s over {command['repeats']} runs ({times} s).",
            "",
        ]
    if start:
        shapes = ", ".join(OTHER_SHAPES)
        lines += [
            f"{start['n_spectra']} spectra simulated with Sherpa's `fake_pha` through the "
            "responses and backgrounds of the `sherpa` package (ungrouped, 30-20,000 source "
            "counts, N_H 0.01-20 x 10^22 cm^-2, photon index 0.8-3.2; about one in ten of "
            f"another shape: {shapes}). The report's fit (`LevMar` from the network's N_H "
            "and the index of its decoded spectrum, the grid of four starting N_H only when "
            "that fit is poor) against the fit as it was before (`NelderMead` from N_H "
            "0.01, 0.1, 1 and 10 x 10^22 cm^-2), both without `conf`:",
            "",
            "| | measured |",
            "|---|---:|",
            f"| within {start['tolerance']:g} of the 4-start statistic, or below | "
            f"{100 * start['fraction_within']:.1f}% |",
            f"| the same, absorbed power laws only ({start['n_powlaw']}) | "
            + (
                f"{100 * start['fraction_within_powlaw']:.1f}% |"
                if start["fraction_within_powlaw"] is not None
                else "- |"
            ),
            f"| poor first fit, grid of starts tried as well | {start['n_fallback']} |",
            f"| lower than the 4-start statistic by more than {start['tolerance']:g} | "
            f"{start['n_better']} |",
            f"| median time, one start (ms) | {1e3 * start['median_seconds_one']:.0f} |",
            f"| median time, 4 starts with NelderMead (ms) | "
            f"{1e3 * start['median_seconds_four']:.0f} |",
            "",
            "Largest differences (one start less four starts):",
            "",
            "| spectrum | shape | counts | true N_H | difference | how the fit started |",
            "|---|---|---:|---:|---:|---|",
        ]
        for row in start["worst"]:
            lines.append(
                f"| {row['name']} | {row['shape']} | {row['source_counts']:.0f} | "
                f"{row['nh']:.3g} | {row['difference']:+.4f} | {row['how']} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.classical_start", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--n", type=int, default=500, help="simulated spectra (default 500)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5, help="timed report runs (0: none)")
    parser.add_argument("--json", type=Path, help="write every number here")
    args = parser.parse_args(argv)

    from sherpa_latent.inference import load_encoder

    encoder = load_encoder(device="cpu")
    start = start_agreement(encoder, args.n, args.seed)
    command = report_command_time(repeats=args.repeats) if args.repeats > 0 else None
    print("\n".join(summary_rows(start, command)))
    print("\n".join(section(start, command)))
    if args.json:
        args.json.write_text(json.dumps({"start": start, "command": command}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
