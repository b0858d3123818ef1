"""Agreement with classical fits on every real Chandra spectrum at hand.

For each spectrum: the classical ``wabs * powlaw1d`` fit (W-stat with a background, C-stat
without, 0.5-7 keV, four starting N_H values, 68% ``conf`` intervals), the network's N_H
with its 68% interval, cluster and anomaly score, and a fit of the decoder as a Sherpa
model (the ``latent`` component started at the encoder's output) with the same statistic
over the same band, so that the two statistics compare directly.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from pathlib import Path

import numpy as np
from sherpa.astro.instrument import Response1D
from sherpa.fit import Fit
from sherpa.optmethods import LevMar
from sherpa.stats import CStat, WStat

from sherpa_latent.classical import fit_absorbed_powerlaw, fitting_band
from sherpa_latent.errors import SpectrumError, SpectrumFileError
from sherpa_latent.grids import FIT_BAND
from sherpa_latent.inference import LatentEncoder
from sherpa_latent.models import LatentSpectrum, init_from_result
from sherpa_latent.spectrum import Spectrum, load_spectrum

from .spectrum_files import SHERPA_DATA

SHARED_CHANDRA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "chandra"
"""Real spectra beside the checkout (absent on a fresh clone)."""


def real_spectrum_files(shared: Path | None = SHARED_CHANDRA) -> list[Path]:
    """PHA files of the sherpa package and of ``shared`` (when present), duplicates dropped.

    Files whose bytes repeat an earlier file (``3c273cp.pi`` is a copy of ``3c273.pi``)
    are left out; background-only files are kept and later skipped for want of a response.
    """
    candidates = sorted(SHERPA_DATA.glob("*.pi")) + sorted(SHERPA_DATA.glob("*pha3.fits"))
    if shared is not None and shared.is_dir():
        candidates += sorted(shared.glob("*.pi"))
    seen, out = set(), []
    for path in candidates:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            out.append(path)
    return out


def pileup_share(counts_per_frame: float) -> float:
    """Share of detected events in frames with two or more photons (Poisson, whole region).

    A rough pile-up indicator: photons landing in the same frame of the extraction region
    (not of one 3x3 event island), so an upper-side estimate for a point source.
    """
    lam = float(counts_per_frame)
    if not np.isfinite(lam) or lam <= 0:
        return 0.0
    at_least_one = -np.expm1(-lam)
    return float((at_least_one - lam * np.exp(-lam)) / at_least_one)


def latent_fit(spectrum: Spectrum, result, encoder: LatentEncoder, band=FIT_BAND) -> dict:
    """Fit the decoder (``latent`` component) with the classical fit's statistic and band."""
    with fitting_band(spectrum.pha, band) as pha:
        component = LatentSpectrum("latent")
        component.set_network(encoder)
        init_from_result(component, result)
        stat = WStat() if pha.background_ids else CStat()
        fit = Fit(pha, Response1D(pha)(component), stat=stat, method=LevMar())
        start_stat = float(fit.calc_stat())
        outcome = fit.fit()
    return {
        "statistic": stat.name,
        "stat_at_encoder": start_stat,
        "stat": float(outcome.statval),
        "dof": int(outcome.dof),
    }


def agreement_row(path: Path, encoder: LatentEncoder) -> dict:
    """Everything the agreement table says about one spectrum file."""
    row: dict = {"file": path.name, "path": os.fspath(path)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            spectrum = load_spectrum(path)
        except (SpectrumFileError, SpectrumError, OSError) as exc:
            row["error"] = str(exc).splitlines()[0]
            return row
        pha = spectrum.pha
        frame_time = float((pha.header or {}).get("TIMEDEL") or np.nan)
        per_frame = float(np.sum(pha.counts)) / spectrum.exposure * frame_time
        row.update(
            object=spectrum.object,
            obsid=spectrum.obsid,
            net_counts=float(spectrum.net_counts(*FIT_BAND)),
            background_files=[
                os.path.realpath(pha.get_background(b).name) for b in pha.background_ids
            ],
            frame_time=frame_time,
            counts_per_frame=per_frame,
            pileup_share=pileup_share(per_frame),
        )
        result = encoder.encode([spectrum])[0]
        row["latent"] = {
            "nh": list(result.nh),
            "cluster": result.cluster,
            "cluster_label": result.cluster_label,
            "anomaly": result.anomaly,
            "cstat_dof_encoder": result.cstat / max(result.dof, 1),
        }
        start = time.perf_counter()
        classical = fit_absorbed_powerlaw(spectrum, errors=True)
        row["classical_seconds"] = time.perf_counter() - start
        row["classical"] = classical.to_dict()
        start = time.perf_counter()
        row["latent_fit"] = latent_fit(spectrum, result, encoder)
        row["latent_fit_seconds"] = time.perf_counter() - start
    lat_lo, lat_hi = row["latent"]["nh"][1], row["latent"]["nh"][2]
    cls_lo, cls_hi = classical.nh[1], classical.nh[2]
    row["nh_intervals_overlap"] = bool(lat_lo <= cls_hi and cls_lo <= lat_hi)
    return row


PILEUP_SHARE_LIMIT = 0.05
"""Pile-up indicator above which a spectrum is flagged as piled up."""

MIN_COUNTS = 500.0
"""Net 0.5-7 keV counts from which the two N_H intervals are expected to overlap."""


def agreement_table(encoder: LatentEncoder, files: list[Path] | None = None) -> list[dict]:
    """One row per real spectrum file (files that cannot be used say why).

    Each row with at least :data:`MIN_COUNTS` net counts whose intervals do not overlap, or
    that has no classical interval, gets ``exceptions``: the reasons found in the data.
    """
    files = real_spectrum_files() if files is None else files
    rows = [agreement_row(path, encoder) for path in files]
    background_of = {}
    for row in rows:
        for bkg in row.get("background_files", []):
            background_of[bkg] = row["file"]
    for row in rows:
        if "error" in row:
            continue
        row["background_of"] = background_of.get(os.path.realpath(row["path"]))
        row["exceptions"] = explain(row) if needs_explaining(row) else []
    return rows


def needs_explaining(row: dict) -> bool:
    """A bright spectrum whose intervals do not overlap or that has no classical interval."""
    no_interval = bool(row["classical"].get("note"))
    return row["net_counts"] >= MIN_COUNTS and (no_interval or not row["nh_intervals_overlap"])


def explain(row: dict) -> list[str]:
    """Reasons, found in the data, why a spectrum's two N_H intervals may disagree."""
    reasons = []
    if row.get("background_of"):
        reasons.append(
            f"background region: it is the background file of {row['background_of']}, so it "
            "holds mostly particle background, which neither model describes"
        )
    if row["pileup_share"] > PILEUP_SHARE_LIMIT:
        reasons.append(
            f"pile-up: {row['counts_per_frame']:.2f} counts per {row['frame_time']:.2f} s "
            f"frame in the extraction region, so up to {100 * row['pileup_share']:.0f}% of "
            "events share a frame with another photon (less if the counts are spread over "
            "an extended source); piled events are read as one harder event, which distorts "
            "the spectrum that both fits see"
        )
    if row["classical"].get("note"):
        reasons.append(f"classical fit rejected: {row['classical']['note']}")
    lat, cls = row["latent_fit"], row["classical"]
    if lat["stat"] < cls["stat"] - 10:
        reasons.append(
            f"the decoder fits the spectrum far better than the absorbed power law "
            f"({lat['statistic']} {lat['stat']:.1f} for {lat['dof']} dof against "
            f"{cls['stat']:.1f} for {cls['dof']}), so the power law's N_H is not the "
            "absorption of this spectrum"
        )
    if row["latent"]["anomaly"] > 5:
        reasons.append(
            f"anomaly {row['latent']['anomaly']:+.1f} sigma: the encoder's own decoded "
            "spectrum misses the counts, so the spectrum lies outside what the network "
            "was trained on and its N_H interval is not to be trusted"
        )
    if not reasons:
        reasons.append("unexplained: no pile-up, no rejected fit, no anomaly found")
    return reasons
