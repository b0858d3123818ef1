"""The benchmark harness: its data, its diagnoses and one quick run of the whole command.

Speed is never asserted here; these tests check that the harness measures what it says
and writes a page whose numbers are the JSON's.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_default_network

from benchmarks.agreement import explain, needs_explaining, pileup_share, real_spectrum_files
from benchmarks.spectrum_files import write_spectrum_files
from sherpa_latent import load_spectrum

REPO = Path(__file__).resolve().parent.parent


def test_spectrum_files_load_in_sherpa_with_shared_responses(tmp_path: Path) -> None:
    paths = write_spectrum_files(tmp_path, 7, n_sources=2)
    assert len(paths) == 7 and all(p.exists() for p in paths)
    spectra = [load_spectrum(p) for p in paths]
    for spec in spectra:
        assert spec.pha.background_ids, spec.path
        assert spec.net_counts() > 0
    # files of one observation share its response files
    rmfs = {Path(s.pha.get_rmf().name).resolve() for s in spectra}
    assert len(rmfs) == 3
    # a second call reuses what exists, byte for byte
    before = paths[0].read_bytes()
    again = write_spectrum_files(tmp_path, 7, n_sources=2)
    assert again == paths and paths[0].read_bytes() == before


def test_pileup_share_is_the_poisson_fraction() -> None:
    assert pileup_share(0.0) == 0.0
    lam = 0.27
    expected = (1 - math.exp(-lam) - lam * math.exp(-lam)) / (1 - math.exp(-lam))
    assert pileup_share(lam) == pytest.approx(expected, rel=1e-12)
    assert pileup_share(1e-4) < 1e-4 < pileup_share(0.01)


def _row(**kw) -> dict:
    row = {
        "file": "x.pi",
        "net_counts": 5000.0,
        "nh_intervals_overlap": False,
        "background_of": None,
        "counts_per_frame": 0.001,
        "frame_time": 3.2,
        "pileup_share": pileup_share(0.001),
        "classical": {"note": "", "stat": 100.0, "dof": 90},
        "latent_fit": {"statistic": "wstat", "stat": 98.0, "dof": 84},
        "latent": {"anomaly": 0.5},
    }
    row.update(kw)
    return row


def test_disagreements_are_explained_from_the_data() -> None:
    assert not needs_explaining(_row(nh_intervals_overlap=True))
    assert not needs_explaining(_row(net_counts=100.0))
    assert explain(_row()) == ["unexplained: no pile-up, no rejected fit, no anomaly found"]
    piled = explain(_row(counts_per_frame=0.27, pileup_share=pileup_share(0.27), frame_time=0.44))
    assert len(piled) == 1 and piled[0].startswith(
        "pile-up: 0.27 counts per 0.44 s frame in the extraction"
    )
    reasons = explain(
        _row(
            background_of="src.pi",
            classical={"note": "reduced wstat 6.67 > 3", "stat": 280.0, "dof": 42},
            latent_fit={"statistic": "wstat", "stat": 63.0, "dof": 36},
            latent={"anomaly": 8.6},
        )
    )
    assert [r.split(":")[0] for r in reasons] == [
        "background region",
        "classical fit rejected",
        "the decoder fits the spectrum far better than the absorbed power law (wstat 63.0 for "
        "36 dof against 280.0 for 42), so the power law's N_H is not the absorption of this "
        "spectrum",
        "anomaly +8.6 sigma",
    ]


def test_real_spectrum_files_drop_byte_copies() -> None:
    names = [p.name for p in real_spectrum_files(shared=None)]
    assert "3c273.pi" in names and "3c273cp.pi" not in names
    assert len(names) == len(set(names))


def test_quick_run_writes_the_page_from_its_json(tmp_path: Path) -> None:
    require_default_network()
    out, work = tmp_path / "out", tmp_path / "work"
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "--no-gpu"]
    cmd += ["--out-dir", str(out), "--work-dir", str(work)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "benchmarks.json").read_text())
    page = (out / "benchmarks.md").read_text()
    for key in ("machine", "network_only", "end_to_end", "classical", "breakdown"):
        assert key in results
    assert [r["workers"] for r in results["end_to_end"]] == [1, 2]
    assert all(r["n_errors"] == 0 for r in results["end_to_end"])
    assert [r["n_spectra"] for r in results["scaling_shards"]] == [1000, 2000]
    means = [r["mean_log_nh"] for r in results["scaling_shards"]]
    assert all(np.isfinite(means))
    speedup = results["speedup_classical_over_end_to_end"]
    assert f"**{speedup:.0f}x**" in page
    best = max(r["spectra_per_s"] for r in results["network_only"]["rows"])
    assert f"{best:,.0f} spectra/s" in page
    assert results["agreement"][0]["file"] == "3c273.pi"
    assert "3c273.pi" in page and (out / "images" / "benchmarks_scaling.png").stat().st_size > 0
    # an existing page is not overwritten without --clobber
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "--clobber" in again.stderr
