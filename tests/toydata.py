"""A toy training set in the shard format, for the tests of training (not physics)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy.special import ndtr

from sherpa_latent.grids import FIT_BAND, INPUT_GRID, MODEL_GRID, EnergyGrid
from sherpa_latent.training.response_library import ResponseLibrary
from sherpa_latent.training.shards import LIBRARY_FILE


def write_toy_dataset(
    directory: str | os.PathLike,
    n_spectra: int = 1024,
    n_shards: int = 2,
    n_responses: int = 8,
    seed: int = 0,
    input_grid: EnergyGrid = INPUT_GRID,
    model_grid: EnergyGrid = MODEL_GRID,
    log_flux_range: tuple[float, float] = (-5.0, -3.0),
) -> Path:
    """Write a small synthetic training set in the shard format (for tests and timing).

    Responses are smooth effective-area curves with Gaussian energy redistribution;
    sources are absorbed power laws and blackbodies of three toy classes; counts are
    Poisson with a flat background. The physics is deliberately crude.

    Parameters
    ----------
    directory : path-like
        Folder to write ``responses.npz`` and ``shard_00000.npz``, ... into (the layout
        of :mod:`sherpa_latent.training.shards`, without a manifest).
    n_spectra, n_shards, n_responses : int
    seed : int
    input_grid, model_grid : EnergyGrid
    log_flux_range : tuple of float
        Range of log10 0.5-7 keV photon flux, photons/cm^2/s.

    Returns
    -------
    Path
        The folder.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    e = model_grid.mid
    lo_in, hi_in = input_grid.lo, input_grid.hi
    resp = np.empty((n_responses, input_grid.nbins, model_grid.nbins), np.float32)
    for r in range(n_responses):
        peak = rng.uniform(1.0, 2.0)
        a0 = rng.uniform(150.0, 600.0)
        cut = rng.uniform(0.3, 0.6)
        area = a0 * np.exp(-0.5 * (np.log(e / peak) / 0.9) ** 2) * (1 - np.exp(-((e / cut) ** 3)))
        sig = 0.04 + 0.05 * np.sqrt(e)
        prob = ndtr((hi_in[:, None] - e[None, :]) / sig) - ndtr((lo_in[:, None] - e[None, :]) / sig)
        resp[r] = (prob * area[None, :]).astype(np.float32)
    # effective area per input bin: the ARF at the bin centre (no redistribution)
    e_in = input_grid.mid
    area_in = np.stack([np.interp(e_in, e, resp[r].sum(0)) for r in range(n_responses)])
    ResponseLibrary(
        names=tuple(f"toy-{r:04d}" for r in range(n_responses)),
        kinds=("synthetic",) * n_responses,
        epochs=np.full(n_responses, 2010.0),
        response=resp,
        effective_area=area_in,
        input_grid=input_grid,
        model_grid=model_grid,
        details=("toy response (tests/toydata.py)",) * n_responses,
    ).save(directory / LIBRARY_FILE, clobber=True)

    band = model_grid.band_weights(FIT_BAND)
    cls = rng.integers(0, 3, n_spectra)
    log_nh = np.where(
        cls == 1, rng.uniform(22.0, 23.0, n_spectra), rng.uniform(20.0, 22.0, n_spectra)
    )
    param = np.where(
        cls == 0,
        rng.uniform(1.5, 2.3, n_spectra),
        np.where(cls == 1, rng.uniform(0.5, 1.5, n_spectra), rng.uniform(0.1, 0.5, n_spectra)),
    )
    log_flux = rng.uniform(*log_flux_range, n_spectra)
    exposure = np.exp(rng.uniform(np.log(5e3), np.log(1e5), n_spectra))
    rid = rng.integers(0, n_responses, n_spectra)
    sigma_abs = 2.0e-22 * e ** (-8.0 / 3.0)
    shape = np.where(
        cls[:, None] == 2,
        e[None, :] ** 2 / np.expm1(np.clip(e[None, :] / param[:, None], None, 500)),
        e[None, :] ** (-param[:, None]),
    )
    shape = shape * np.exp(-(10.0 ** log_nh[:, None]) * sigma_abs[None, :]) * model_grid.width
    flux = shape / (shape @ band)[:, None] * (10.0**log_flux)[:, None]
    src = exposure[:, None] * np.einsum("nij,nj->ni", resp[rid], flux)
    bkg_scale = np.full(n_spectra, 0.1)
    bkg_rate = rng.uniform(0.0, 2e-5, n_spectra)[:, None] * area_in[rid] / 300.0
    bkg_true = bkg_rate * exposure[:, None]
    bkg_region = rng.poisson(bkg_true / bkg_scale[:, None])
    background = bkg_scale[:, None] * bkg_region
    counts = rng.poisson(src + bkg_true)
    net = counts.sum(1) - background.sum(1)
    for s, rows in enumerate(np.array_split(np.arange(n_spectra), n_shards)):
        np.savez(
            directory / f"shard_{s:05d}.npz",
            counts=counts[rows].astype(np.float32),
            background=background[rows].astype(np.float32),
            exposure=exposure[rows].astype(np.float32),
            response_id=rid[rows].astype(np.int32),
            class_id=cls[rows].astype(np.int16),
            log_nh=log_nh[rows].astype(np.float32),
            param=param[rows].astype(np.float32),
            log_flux=log_flux[rows].astype(np.float32),
            net_counts=net[rows].astype(np.float32),
            bkg_scale=bkg_scale[rows].astype(np.float32),
        )
    return directory
