"""Shared fixtures: the real Chandra spectra that ship inside the installed sherpa package,
the optional larger set in ../shared/data/chandra, and damaged copies made on the fly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sherpa
from astropy.io import fits

SHERPA_DATA = Path(sherpa.__file__).parent / "astro" / "datastack" / "tests" / "data"
SHARED_CHANDRA = Path(__file__).resolve().parents[2] / "shared" / "data" / "chandra"

SHERPA_SPECTRA = (
    "3c273.pi",
    "acisf04938_000N002_r0043_pha3.fits",
    "acisf07867_000N001_r0002_pha3.fits",
)


def make_small_network(folder: Path, seed: int = 0) -> Path:
    """An untrained, tiny network and a cluster model on random latents (a second or so).

    Fits made with it are poor, but every code path runs.
    """
    import torch

    from sherpa_latent.clusters import fit_clusters
    from sherpa_latent.network import LatentAutoencoder, NetworkConfig, save_network

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = NetworkConfig(d_model=16, n_layers=1, n_heads=2, ff_dim=32, decoder_widths=(32, 64))
    model = LatentAutoencoder(config)
    with torch.no_grad():  # give the decoder some shape to exercise
        model.decoder[-1].weight.mul_(20.0)
    save_network(model, folder, clobber=True)
    rng = np.random.default_rng(seed)
    latents = rng.normal(size=(400, config.latent_dim))
    classes = rng.integers(0, config.n_classes, 400)
    fit_clusters(latents, classes, 4, seed).save(folder / "clusters.safetensors", clobber=True)
    return folder


def require_default_network() -> None:
    """The shipped network is part of the package: its absence is a failure."""
    from sherpa_latent.network import default_network_path

    if not default_network_path().is_file():
        pytest.fail(f"no default network installed at {default_network_path()}")


@pytest.fixture(scope="session")
def small_network(tmp_path_factory) -> Path:
    """A small untrained network (with clusters) for tests of the bookkeeping around it."""
    return make_small_network(tmp_path_factory.mktemp("net") / "small")


@pytest.fixture
def session(small_network: Path):
    """A clean Sherpa session using the small network; cleaned again afterwards."""
    from sherpa.astro import ui

    import sherpa_latent.ui as slui

    ui.clean()
    slui.load_network(small_network, device="cpu")
    yield
    ui.clean()


@pytest.fixture(scope="session")
def sherpa_data() -> Path:
    """Folder of the Chandra spectra in the installed sherpa package."""
    if not (SHERPA_DATA / "3c273.pi").exists():
        pytest.fail(f"the installed sherpa package has no test data at {SHERPA_DATA}")
    return SHERPA_DATA


@pytest.fixture(scope="session")
def pha_3c273(sherpa_data: Path) -> Path:
    return sherpa_data / "3c273.pi"


@pytest.fixture(scope="session")
def shared_chandra() -> Path:
    """The optional folder of real spectra beside the repository; skip when absent."""
    if not SHARED_CHANDRA.is_dir():
        pytest.skip(f"{SHARED_CHANDRA} is not here")
    return SHARED_CHANDRA


def write_modified_pha(
    path: Path,
    source: Path,
    *,
    header: dict | None = None,
    counts=None,
    nrows: int | None = None,
    absolute_files: bool = True,
) -> Path:
    """Copy a PHA file with changes: header keywords, counts column, fewer rows.

    Response and background keywords are made absolute (pointing at the originals) unless
    ``absolute_files`` is False or the caller overrides them in ``header``.
    """
    with fits.open(source) as hdus:
        spec = hdus[1]
        table = spec.data
        cols = []
        for col in spec.columns:
            data = table[col.name][:nrows] if nrows else table[col.name]
            fmt = col.format
            if col.name == "COUNTS" and counts is not None:
                data = np.asarray(counts)
                fmt = "D" if data.dtype.kind == "f" else "J"
            cols.append(fits.Column(name=col.name, format=fmt, unit=col.unit, array=data))
        new = fits.BinTableHDU.from_columns(cols, header=spec.header.copy())
        if absolute_files:
            for key in ("RESPFILE", "ANCRFILE", "BACKFILE"):
                value = str(new.header.get(key, "none")).strip()
                if value.lower() != "none":
                    new.header[key] = os.fspath(source.parent / value)
        for key, value in (header or {}).items():
            if value is None:
                new.header.remove(key, ignore_missing=True)
            else:
                new.header[key] = value
        if nrows:
            new.header["DETCHANS"] = nrows
            new.header["TLMAX1"] = nrows
        fits.HDUList([fits.PrimaryHDU(), new]).writeto(path)
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run ``sherpa-latent`` (as ``python -m sherpa_latent.cli``) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "sherpa_latent.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def complete_batches(progress: Path) -> int:
    """Whole batches in an ``encode`` progress file (a line being written is not counted)."""
    if not progress.exists():
        return 0
    lines = progress.read_bytes().split(b"\n")[:-1]
    return max(0, len(lines) - 1)  # the first line is the header


def kill_after_batches(
    run: subprocess.Popen, progress: Path, batches: int, *, timeout: float, group: bool = True
) -> None:
    """SIGKILL a running ``encode`` once its progress file holds ``batches`` whole batches.

    ``group`` kills the run's whole process group (it was started in a session of its own),
    otherwise only the process itself. Fails when the run ends first or nothing is recorded
    within ``timeout`` seconds; the run is reaped either way.
    """
    try:
        deadline = time.monotonic() + timeout
        while complete_batches(progress) < batches and run.poll() is None:
            assert time.monotonic() < deadline, f"no batches recorded in {timeout:.0f} s"
            time.sleep(0.02)
        assert run.poll() is None, "the run ended before it could be interrupted"
    finally:
        if run.poll() is None:
            if group:
                os.killpg(run.pid, signal.SIGKILL)
            else:
                os.kill(run.pid, signal.SIGKILL)
        run.communicate(timeout=60)
    assert run.returncode == -signal.SIGKILL
