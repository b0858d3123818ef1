"""Instrument responses projected onto the project's fixed energy grids.

For one spectrum, the projected response R (input grid x model grid, cm^2) is defined so
that the expected source counts on the input grid are::

    exposure * R @ flux

with ``flux`` the photon flux integrated over each model-grid bin (photons/cm^2/s).
Within a model-grid bin the photon flux is taken as uniform in energy when it is shared
out over the RMF's finer energy bins; channels go to the input grid by mid-energy.
These are pure functions of arrays: reading the files is :mod:`sherpa_latent.spectrum`'s job.
"""

from __future__ import annotations

import numpy as np

from .grids import EnergyGrid, channel_bin_index

__all__ = ["overlap_matrix", "project_response", "bin_mean"]


def overlap_matrix(src_lo: np.ndarray, src_hi: np.ndarray, dst_edges: np.ndarray) -> np.ndarray:
    """Fraction of each destination bin that lies inside each source bin.

    Parameters
    ----------
    src_lo, src_hi : ndarray
        Edges of the source bins (for example the RMF's energy grid), keV.
    dst_edges : ndarray
        Increasing edges of the destination bins (for example the model grid), keV.

    Returns
    -------
    ndarray, shape (len(src_lo), len(dst_edges) - 1)
        ``W[k, j]`` is the fraction of destination bin ``j`` that overlaps source bin ``k``,
        so that ``W @ f`` shares out bin-integrated values ``f`` uniformly in energy.
    """
    src_lo = np.asarray(src_lo, dtype=float)[:, None]
    src_hi = np.asarray(src_hi, dtype=float)[:, None]
    d_lo = np.asarray(dst_edges[:-1], dtype=float)[None, :]
    d_hi = np.asarray(dst_edges[1:], dtype=float)[None, :]
    overlap = np.clip(np.minimum(src_hi, d_hi) - np.maximum(src_lo, d_lo), 0.0, None)
    return overlap / (d_hi - d_lo)


def project_response(
    energ_lo: np.ndarray,
    energ_hi: np.ndarray,
    specresp: np.ndarray,
    matrix: np.ndarray,
    e_min: np.ndarray,
    e_max: np.ndarray,
    input_grid: EnergyGrid,
    model_grid: EnergyGrid,
) -> np.ndarray:
    """Project an ARF and a dense RMF to the matrix R (input grid x model grid).

    Parameters
    ----------
    energ_lo, energ_hi : ndarray, shape (n_energy,)
        The response's energy grid, keV.
    specresp : ndarray, shape (n_energy,)
        Effective area, cm^2 (ones when there is no ARF: the RMF then carries the area).
    matrix : ndarray, shape (n_energy, n_channel)
        Redistribution probabilities (Sherpa's ``rmf_to_matrix(rmf).matrix``).
    e_min, e_max : ndarray, shape (n_channel,)
        Channel energy bounds (EBOUNDS), keV.
    input_grid, model_grid : EnergyGrid
        The grids of the encoder input and of the decoder output.

    Returns
    -------
    ndarray, shape (input_grid.nbins, model_grid.nbins)
        Projected response, cm^2.
    """
    matrix = np.asarray(matrix, dtype=float)
    n_energy, n_channel = matrix.shape
    if len(specresp) != n_energy or len(energ_lo) != n_energy:
        raise ValueError(
            f"ARF has {len(specresp)} energy bins but the RMF has {n_energy}"
        )
    if len(e_min) != n_channel:
        raise ValueError(f"EBOUNDS has {len(e_min)} channels but the matrix has {n_channel}")
    chan_bin = channel_bin_index(e_min, e_max, input_grid.edges)
    inside = chan_bin >= 0
    # Sum the redistribution of each energy into the channels of every input bin.
    one_hot = np.zeros((int(inside.sum()), input_grid.nbins))
    one_hot[np.arange(one_hot.shape[0]), chan_bin[inside]] = 1.0
    to_input = matrix[:, inside] @ one_hot
    weights = overlap_matrix(energ_lo, energ_hi, model_grid.edges)
    return (to_input * np.asarray(specresp, dtype=float)[:, None]).T @ weights


def bin_mean(lo: np.ndarray, hi: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Energy-weighted mean of a binned function over each bin of ``edges``.

    The same average as the effective area of :meth:`sherpa_latent.Spectrum.representation`.

    Parameters
    ----------
    lo, hi : ndarray, shape (n,)
        Edges of the bins ``values`` is given on, keV.
    values : ndarray, shape (n,)
        The function (for example an ARF, cm^2).
    edges : ndarray, shape (m + 1,)
        Increasing edges of the bins to average over, keV.

    Returns
    -------
    ndarray, shape (m,)
        Mean over the covered part of each bin; 0 where nothing covers it.
    """
    weights = overlap_matrix(lo, hi, edges)
    covered = weights.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (np.asarray(values, dtype=float) @ weights) / covered
    return np.where(covered > 0, mean, 0.0)
