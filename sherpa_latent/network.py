"""The response-aware transformer autoencoder, its loss, and its files.

The encoder is a small pre-norm transformer over the energy tokens of the input grid
(one token per ``patch_size`` adjacent input bins, default 2, embedding their per-bin
features and the log energy, plus a summary token carrying global quantities: log total
counts, log exposure, log mean area, background). From the pooled tokens come

* the 8 shape latents, variational: a mean and a log-variance per dimension;
* the log-normalisation ``log_norm`` = log10 of the 0.5-7 keV photon flux
  (photons/cm^2/s), also variational, so that brightness never occupies a shape dimension;
* a Gaussian posterior for log10 N_H (cm^-2): a mean and a log sigma.

The decoder is a pure function of ``z`` and ``log_norm``: an MLP turns ``z`` into a
normalised spectral shape on the model grid whose 0.5-7 keV photon flux is exactly 1, and
the shape is multiplied by ``10**log_norm``. Folded through a spectrum's projected response
R it predicts the counts, ``mu = exposure * R @ flux + background`` (DESIGN.md, decision 2),
and the training loss is the Poisson likelihood of the observed counts (the C-statistic).

Loss weighting (:func:`autoencoder_loss`), per spectrum, averaged over a batch::

    C / 2  +  beta * (KL_z + KL_norm)  +  nh_weight * NLL(log10 N_H)

``C / 2`` is the Poisson negative log-likelihood in nats (C = 2 sum(mu - n + n log(n/mu))),
so with ``beta = 1`` the first two terms are the exact negative ELBO: a latent dimension
costs a few nats of KL, a visible misfit of a bright spectrum hundreds, so the
reconstruction wins wherever the counts constrain the shape and faint spectra get broad,
honest posteriors. Training warms beta up from 0 (no posterior collapse early on).
The N_H term (default weight 2, in nats per spectrum) is small beside C / 2 and mainly
trains its own head; it shapes the shared encoder only mildly.

Anomaly score (:func:`anomaly_score`): the C-stat of the decoded posterior mean against
its expectation for a correct model, ``(C - E_fit) / sqrt(V)``, with the per-bin mean and
variance of the C-stat computed exactly from the Poisson distribution at each bin's
predicted counts (so it is fair at any number of counts, where C/dof is not), and the
mean reduced by the fraction of fitted parameters (latent_dim + 1). About 0 for a
spectrum the decoder reproduces, several sigma for one it cannot. ``cstat_dof`` (C over
used bins minus latent_dim + 1) is reported beside it.

Files hold no pickle: weights go in a safetensors file and the metadata (config, grids,
class names, training recipe, version, metrics and the weights' SHA-256) in a JSON file
beside it. :func:`read_network` checks the checksum and raises
:class:`~sherpa_latent.errors.NetworkFileError` on any mismatch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file as _st_load_file
from safetensors.torch import save as _st_save
from torch import Tensor, nn

from .classes import CLASS_NAMES
from .errors import NetworkFileError
from .grids import FIT_BAND, INPUT_GRID, MODEL_GRID, EnergyGrid
from .weightsfile import DATA_DIR, read_json_sidecar, sidecar_path, write_safetensors_pair

__all__ = [
    "NETWORK_FORMAT",
    "NetworkConfig",
    "LatentAutoencoder",
    "autoencoder_loss",
    "cstat",
    "cstat_expectation",
    "resolve_device",
    "autocast_context",
    "batch_to_tensors",
    "stack_representations",
    "encode_batch",
    "save_network",
    "read_network",
    "default_network_path",
]

NETWORK_FORMAT = "sherpa_latent-network-1"
"""Format tag written in every network metadata file."""

_LN10 = math.log(10.0)
_MU_FLOOR = 1e-10
"""Smallest expected count per bin used in the likelihood (counts)."""


# --------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------
@dataclass
class NetworkConfig:
    """Architecture of :class:`LatentAutoencoder`.

    Parameters
    ----------
    d_model : int
        Width of the transformer tokens.
    n_layers : int
        Number of transformer encoder layers.
    n_heads : int
        Attention heads per layer (must divide ``d_model``).
    ff_dim : int
        Width of the transformer feed-forward block.
    dropout : float
        Dropout in the transformer (0 keeps training deterministic).
    latent_dim : int
        Number of shape latents (8, as in the reference work).
    decoder_widths : tuple of int
        Hidden widths of the decoder MLP.
    n_energy_features : int
        Number of sine/cosine frequency pairs of the log-energy embedding.
    patch_size : int
        Adjacent input bins per energy token (must divide the input grid's bin count);
        2 halves the sequence, and so the cost, with no information lost.
    input_grid, model_grid : EnergyGrid
        The grids of the encoder input and decoder output (dicts as written by
        ``EnergyGrid.to_dict()`` are accepted).
    norm_band : tuple of float
        Band of the normalisation, keV (photon flux in this band is ``10**log_norm``).
    log_norm_prior : tuple of float
        Mean and standard deviation of the Gaussian prior of ``log_norm``
        (log10 photons/cm^2/s) used in the KL term.
    n_classes : int
        Number of source classes of the training set.
    class_names : tuple of str
        Their names, in class-id order.
    version : str
        Version string of the network.
    """

    d_model: int = 64
    n_layers: int = 3
    n_heads: int = 4
    ff_dim: int = 128
    dropout: float = 0.0
    latent_dim: int = 8
    decoder_widths: tuple[int, ...] = (128, 256)
    n_energy_features: int = 8
    patch_size: int = 2
    input_grid: EnergyGrid = INPUT_GRID
    model_grid: EnergyGrid = MODEL_GRID
    norm_band: tuple[float, float] = FIT_BAND
    log_norm_prior: tuple[float, float] = (-4.0, 2.5)
    n_classes: int = len(CLASS_NAMES)
    class_names: tuple[str, ...] = CLASS_NAMES
    version: str = "0.1.0"

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "ff_dim", "latent_dim",
                     "n_energy_features", "patch_size", "n_classes"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        if not self.decoder_widths or any(
            isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in self.decoder_widths
        ):
            raise ValueError(
                f"decoder_widths must be whole numbers >= 1, got {self.decoder_widths!r}"
            )
        self.decoder_widths = tuple(int(w) for w in self.decoder_widths)
        self.norm_band = (float(self.norm_band[0]), float(self.norm_band[1]))
        self.log_norm_prior = (float(self.log_norm_prior[0]), float(self.log_norm_prior[1]))
        self.class_names = tuple(str(c) for c in self.class_names)
        self.input_grid = EnergyGrid.from_dict(self.input_grid)
        self.model_grid = EnergyGrid.from_dict(self.model_grid)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        if self.input_grid.nbins % self.patch_size:
            raise ValueError(
                f"patch_size {self.patch_size} does not divide {self.input_grid.nbins} bins"
            )
        if len(self.class_names) != self.n_classes:
            raise ValueError(
                f"{len(self.class_names)} class names given for n_classes={self.n_classes}"
            )

    def to_dict(self) -> dict:
        """Plain JSON-able dictionary."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
            elif isinstance(value, EnergyGrid):
                out[key] = value.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown network config keys: {', '.join(sorted(unknown))}")
        return cls(**dict(data))


# --------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------
N_TOKEN_FEATURES = 6
"""Per-bin features of each energy token (see :meth:`LatentAutoencoder.token_features`)."""
N_GLOBAL_FEATURES = 6
"""Global features of the summary token (see :meth:`LatentAutoencoder.global_features`)."""


class LatentAutoencoder(nn.Module):
    """Transformer encoder over energy tokens + MLP decoder to an intrinsic photon spectrum.

    Parameters
    ----------
    config : NetworkConfig
        Architecture; the default is the shipped size.

    Notes
    -----
    Inputs (tensors, float32, on the model's device):

    ``counts`` (B, n_in)
        observed counts per input bin;
    ``background`` (B, n_in)
        background counts expected in the source region;
    ``effective_area`` (B, n_in)
        mean effective area per input bin, cm^2;
    ``exposure`` (B,)
        exposure time, s;
    ``response`` (B, n_in, n_model)
        projected response, cm^2 (only for the folded prediction and the loss).
    """

    def __init__(self, config: NetworkConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or NetworkConfig()
        in_grid, model_grid = config.input_grid, config.model_grid
        self.n_in, self.n_model = in_grid.nbins, model_grid.nbins
        d = config.d_model

        # log-energy embedding of each token (a patch of adjacent input bins): sines and
        # cosines of the patch centre's position on the log-energy axis
        self.patch = config.patch_size
        self.n_tokens = self.n_in // self.patch
        u = (np.log(in_grid.mid) - np.log(in_grid.emin)) / np.log(in_grid.emax / in_grid.emin)
        u = u.reshape(self.n_tokens, self.patch).mean(1)
        k = np.arange(1, config.n_energy_features + 1)
        ang = np.pi * u[:, None] * k[None, :]
        energy_feats = np.concatenate([np.sin(ang), np.cos(ang)], axis=1)
        self.register_buffer("energy_features", torch.tensor(energy_feats, dtype=torch.float32))
        self.register_buffer(
            "input_band_weights",
            torch.tensor(in_grid.band_weights(config.norm_band), dtype=torch.float32),
        )
        self.register_buffer(
            "band_weights",
            torch.tensor(model_grid.band_weights(config.norm_band), dtype=torch.float32),
        )

        self.token_embed = nn.Linear(
            self.patch * N_TOKEN_FEATURES + 2 * config.n_energy_features, d
        )
        self.bin_embed = nn.Parameter(torch.zeros(self.n_tokens, d))
        self.summary_embed = nn.Linear(N_GLOBAL_FEATURES, d)
        self.summary_token = nn.Parameter(torch.zeros(d))
        layer = nn.TransformerEncoderLayer(
            d_model=d,
            nhead=config.n_heads,
            dim_feedforward=config.ff_dim,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(
            layer, num_layers=config.n_layers, enable_nested_tensor=False
        )
        self.final_norm = nn.LayerNorm(d)
        self.trunk = nn.Sequential(nn.Linear(2 * d, 2 * d), nn.GELU())
        self.latent_head = nn.Linear(2 * d, 2 * config.latent_dim)
        self.norm_head = nn.Linear(2 * d, 2)
        self.nh_head = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, 2))

        layers: list[nn.Module] = []
        width = config.latent_dim
        for w in config.decoder_widths:
            layers += [nn.Linear(width, w), nn.GELU()]
            width = w
        out = nn.Linear(width, self.n_model)
        layers.append(out)
        self.decoder = nn.Sequential(*layers)
        self._init_weights(model_grid)

    def _init_weights(self, model_grid: EnergyGrid) -> None:
        nn.init.normal_(self.bin_embed, std=0.02)
        nn.init.normal_(self.summary_token, std=0.02)
        with torch.no_grad():
            # start the decoder near a Gamma = 2 power law, the log-variances small
            out: nn.Linear = self.decoder[-1]  # type: ignore[assignment]
            out.weight.mul_(0.1)
            lo, hi = model_grid.lo, model_grid.hi
            out.bias.copy_(torch.tensor(np.log(1.0 / lo - 1.0 / hi), dtype=torch.float32))
            self.latent_head.weight.mul_(0.1)
            self.latent_head.bias.zero_()
            self.latent_head.bias[self.config.latent_dim :] = -2.0
            self.norm_head.weight.mul_(0.1)
            self.norm_head.bias.copy_(torch.tensor([0.0, -4.0]))
            last: nn.Linear = self.nh_head[-1]  # type: ignore[assignment]
            last.weight.mul_(0.1)
            last.bias.copy_(torch.tensor([0.0, 0.0]))

    # --- features -------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return self.bin_embed.device

    def token_features(
        self, counts: Tensor, background: Tensor, effective_area: Tensor, exposure: Tensor
    ) -> Tensor:
        """Per-bin features, (B, n_in, 6), each scaled to order unity.

        log1p(counts), counts/total x n_in (the shape), log1p(background),
        log10(area x exposure + 1) (cm^2 s), log10 of (counts + 0.5) / (area x exposure + 1)
        (a rough unfolded photon flux density) and asinh of the per-bin significance of the
        net counts.
        """
        total = counts.sum(-1, keepdim=True).clamp_min(1.0)
        area_time = effective_area * exposure[:, None]
        log_at = torch.log10(area_time + 1.0)
        signif = (counts - background) / torch.sqrt(counts + background + 1.0)
        feats = [
            torch.log1p(counts) / 5.0,
            counts / total * self.n_in / 5.0,
            torch.log1p(background) / 5.0,
            log_at / 8.0,
            (torch.log10(counts + 0.5) - log_at + 5.0) / 3.0,
            torch.asinh(signif) / 3.0,
        ]
        return torch.stack(feats, dim=-1)

    def global_features(
        self, counts: Tensor, background: Tensor, effective_area: Tensor, exposure: Tensor
    ) -> Tensor:
        """Features of the summary token, (B, 6), scaled to order unity.

        log10 total counts, log10 exposure (s), log10 mean effective area (cm^2),
        log10 total background, background fraction, and :meth:`rough_log_norm`.
        """
        total = counts.sum(-1)
        bkg = background.sum(-1)
        mean_area = effective_area.mean(-1)
        feats = [
            torch.log10(total + 1.0) / 5.0,
            torch.log10(exposure.clamp_min(1.0)) / 5.0,
            torch.log10(mean_area + 1.0) / 3.0,
            torch.log10(bkg + 1.0) / 5.0,
            (bkg / (total + 1.0)).clamp(0.0, 10.0),
            (self.rough_log_norm(counts, background, effective_area, exposure) + 4.0) / 2.0,
        ]
        return torch.stack(feats, dim=-1)

    def rough_log_norm(
        self, counts: Tensor, background: Tensor, effective_area: Tensor, exposure: Tensor
    ) -> Tensor:
        """Crude log10 0.5-7 keV photon flux: net band counts / (exposure x mean band area).

        The normalisation head predicts a correction to this, log10 photons/cm^2/s.
        """
        w = self.input_band_weights
        net = ((counts - background) * w).sum(-1).clamp_min(1.0)
        area = ((effective_area * w).sum(-1) / w.sum()).clamp_min(1.0)
        return torch.log10(net / (exposure.clamp_min(1e-3) * area))

    # --- encoder ----------------------------------------------------------------------
    def encode(
        self, counts: Tensor, background: Tensor, effective_area: Tensor, exposure: Tensor
    ) -> dict[str, Tensor]:
        """Posterior parameters for a batch (float32 outputs).

        Returns
        -------
        dict of Tensor
            ``z_mean``, ``z_logvar`` (B, latent_dim); ``log_norm_mean``, ``log_norm_logvar``
            (B,), log10 photons/cm^2/s in the norm band; ``log_nh_mean``,
            ``log_nh_log_sigma`` (B,), log10 N_H in cm^-2 and its natural-log sigma.
        """
        counts, background = counts.float(), background.float()
        effective_area, exposure = effective_area.float(), exposure.float()
        tok = self.token_features(counts, background, effective_area, exposure)
        tok = tok.reshape(tok.shape[0], self.n_tokens, self.patch * N_TOKEN_FEATURES)
        energy = self.energy_features.expand(tok.shape[0], -1, -1)
        tokens = self.token_embed(torch.cat([tok, energy], dim=-1)) + self.bin_embed
        glob = self.global_features(counts, background, effective_area, exposure)
        summary = (self.summary_embed(glob) + self.summary_token)[:, None, :]
        h = self.transformer(torch.cat([summary, tokens], dim=1))
        h = self.final_norm(h)
        pooled = torch.cat([h[:, 0], h[:, 1:].mean(1)], dim=-1)
        t = self.trunk(pooled)
        lat = self.latent_head(t).float()
        nrm = self.norm_head(t).float()
        nh = self.nh_head(t).float()
        L = self.config.latent_dim
        rough = self.rough_log_norm(counts, background, effective_area, exposure)
        return {
            "z_mean": lat[:, :L],
            "z_logvar": _soft_clamp(lat[:, L:], -14.0, 4.0),
            "log_norm_mean": rough + nrm[:, 0],
            "log_norm_logvar": _soft_clamp(nrm[:, 1], -16.0, 4.0),
            "log_nh_mean": 21.5 + nh[:, 0],
            "log_nh_log_sigma": _soft_clamp(nh[:, 1], -5.0, 2.0),
        }

    # --- decoder ----------------------------------------------------------------------
    @property
    def decoder_dtype(self) -> torch.dtype:
        """Floating-point type of the decoder weights, in which it computes.

        float32 as trained; float64 in the copy that the Sherpa model ``latent``
        evaluates (``copy.deepcopy(model).to("cpu", torch.float64)``).
        """
        return self.decoder[-1].weight.dtype

    def log_shape(self, z: Tensor) -> Tensor:
        """Natural log of the normalised shape, (B, n_model): its norm-band photon flux is 1.

        Parameters
        ----------
        z : Tensor, shape (B, latent_dim)
            Shape latents (cast to :attr:`decoder_dtype`).

        Returns
        -------
        Tensor, shape (B, n_model)
            log of photons/cm^2/s per model-grid bin for a unit 0.5-7 keV photon flux, in
            :attr:`decoder_dtype` (autocast is off here).
        """
        with torch.autocast(device_type=z.device.type, enabled=False):
            logits = self.decoder(z.to(self.decoder_dtype))
            logw = torch.log(self.band_weights)  # -inf outside the band
            lse = torch.logsumexp(logits + logw, dim=-1, keepdim=True)
            return (logits - lse).clamp(-80.0, 30.0)

    def decode(self, z: Tensor, log_norm: Tensor) -> Tensor:
        """Intrinsic photon spectrum on the model grid.

        The one implementation of the decoder: training, encoding and the Sherpa model
        (on a float64 copy of the network) all go through it.

        Parameters
        ----------
        z : Tensor, shape (B, latent_dim)
            Shape latents.
        log_norm : Tensor, shape (B,) or (B, 1)
            log10 photon flux in the norm band (0.5-7 keV), photons/cm^2/s.

        Returns
        -------
        Tensor, shape (B, n_model)
            Photon flux integrated over each model-grid bin, photons/cm^2/s, in
            :attr:`decoder_dtype` (float32 for a network as trained).
        """
        log_norm = log_norm.to(self.decoder_dtype).reshape(-1, 1)
        with torch.autocast(device_type=z.device.type, enabled=False):
            return torch.exp(self.log_shape(z) + log_norm * _LN10)

    def band_flux(self, flux: Tensor) -> Tensor:
        """Photon flux in the norm band, (B,), photons/cm^2/s, of a model-grid spectrum."""
        return (flux.float() * self.band_weights).sum(-1)

    @torch.inference_mode()
    def decode_numpy(self, z: np.ndarray, log_norm: np.ndarray | float) -> np.ndarray:
        """:meth:`decode` for numpy input (one spectrum or a batch), float64 output.

        The inputs are cast to :attr:`decoder_dtype` on the model's device, so a float64
        copy of the network decodes in double precision and the trained float32 network
        in single precision.

        Parameters
        ----------
        z : ndarray, shape (latent_dim,) or (B, latent_dim)
            Shape latents.
        log_norm : float or ndarray, shape (B,)
            log10 photons/cm^2/s in the norm band (0.5-7 keV).

        Returns
        -------
        ndarray, shape (n_model,) or (B, n_model)
            photons/cm^2/s per model-grid bin.
        """
        z = np.asarray(z, dtype=np.float64)
        single = z.ndim == 1
        dtype, device = self.decoder_dtype, self.device
        zt = torch.as_tensor(np.atleast_2d(z), dtype=dtype, device=device)
        ln = torch.as_tensor(
            np.broadcast_to(np.asarray(log_norm, np.float64), (zt.shape[0],)).copy(),
            dtype=dtype,
            device=device,
        )
        out = self.decode(zt, ln).to(torch.float64).cpu().numpy()
        return out[0] if single else out

    # --- whole pass ---------------------------------------------------------------------
    def forward(self, batch: Mapping[str, Tensor], sample: bool | None = None) -> dict:
        """Encode, draw (or take the mean of) the posterior, decode.

        Parameters
        ----------
        batch : mapping of Tensor
            ``counts``, ``background``, ``effective_area``, ``exposure`` (see the class).
        sample : bool, optional
            Draw ``z`` and ``log_norm`` by reparameterisation (default: in training mode).

        Returns
        -------
        dict of Tensor
            The :meth:`encode` outputs plus ``z``, ``log_norm`` and ``flux``
            (B, n_model), photons/cm^2/s per model bin.
        """
        out = self.encode(
            batch["counts"], batch["background"], batch["effective_area"], batch["exposure"]
        )
        sample = self.training if sample is None else sample
        z, log_norm = out["z_mean"], out["log_norm_mean"]
        if sample:
            z = z + torch.exp(0.5 * out["z_logvar"]) * torch.randn_like(z)
            log_norm = log_norm + torch.exp(0.5 * out["log_norm_logvar"]) * torch.randn_like(
                log_norm
            )
        out["z"], out["log_norm"] = z, log_norm
        out["flux"] = self.decode(z, log_norm)
        return out


def _soft_clamp(x: Tensor, lo: float, hi: float) -> Tensor:
    """Smoothly keep ``x`` within (lo, hi) (identity-like in the middle)."""
    mid, half = 0.5 * (hi + lo), 0.5 * (hi - lo)
    return mid + half * torch.tanh((x - mid) / half)


# --------------------------------------------------------------------------------------
# likelihood and loss
# --------------------------------------------------------------------------------------
def predicted_counts(
    flux: Tensor, response: Tensor, exposure: Tensor, background: Tensor
) -> Tensor:
    """Expected counts per input bin, ``exposure * R @ flux + background`` (B, n_in).

    Parameters
    ----------
    flux : Tensor, (B, n_model)
        photons/cm^2/s per model bin.
    response : Tensor, (B, n_in, n_model)
        Projected response, cm^2.
    exposure : Tensor, (B,)
        s.
    background : Tensor, (B, n_in)
        Background counts in the source region.
    """
    src = torch.bmm(response.float(), flux.float().unsqueeze(-1)).squeeze(-1)
    return exposure.float()[:, None] * src + background.float()


def cstat(counts: Tensor, mu: Tensor) -> Tensor:
    """Cash statistic per bin without the data-only constant.

    ``C_i = 2 (mu - n + n log(n / mu))`` with ``mu`` floored at 1e-10; sum over bins for
    a spectrum's C. Its expectation is about 1 per bin for a correct model with many
    counts (see :func:`cstat_expectation` for fewer).
    """
    mu = mu.clamp_min(_MU_FLOOR)
    # n log(n / mu) as a log of the ratio (precise in float32), 0 where n = 0; the ratio
    # is taken with n floored so that no 0/0 reaches the gradient
    ratio = torch.log(counts.clamp_min(_MU_FLOOR) / mu)
    return 2.0 * (mu - counts + torch.where(counts > 0, counts * ratio, 0.0))


def used_bins(batch: Mapping[str, Tensor]) -> Tensor:
    """Bins that can hold counts (response or background non-zero), (B, n_in) bool.

    Uses ``batch["response_used"]`` (rows of R with any area) when the batch has it.
    """
    has_area = batch.get("response_used")
    if has_area is None:
        has_area = batch["response"].sum(-1) > 0
    return has_area | (batch["background"] > 0)


def autoencoder_loss(
    outputs: Mapping[str, Tensor],
    batch: Mapping[str, Tensor],
    *,
    beta: float = 1.0,
    nh_weight: float = 1.0,
    log_norm_prior: tuple[float, float] = (-4.0, 2.5),
    n_params: int = 9,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Negative ELBO plus the N_H term, averaged over the batch.

    ``loss = mean_b[ C_b / 2 + beta (KL_z + KL_norm) + nh_weight NLL(log_nh) ]``

    ``C_b / 2`` is the Poisson negative log-likelihood (nats) of the observed counts
    given ``mu = exposure * R @ flux + background``; with ``beta = 1`` the first two terms
    are the exact negative ELBO, so the latent spreads are honest posterior widths.

    Parameters
    ----------
    outputs : mapping
        :meth:`LatentAutoencoder.forward` output.
    batch : mapping
        ``counts``, ``background``, ``response``, ``exposure`` and optionally ``log_nh``
        (true log10 N_H, cm^-2).
    beta : float
        Weight of the KL divergences (warmed up from 0 in training).
    nh_weight : float
        Weight of the Gaussian negative log-likelihood of the true log10 N_H.
    log_norm_prior : tuple of float
        Mean and sigma of the prior on ``log_norm`` (log10 photons/cm^2/s).
    n_params : int
        Free parameters subtracted from the used bins for the degrees of freedom.

    Returns
    -------
    loss : Tensor
        Scalar to minimise.
    components : dict of Tensor
        Detached batch means: ``loss``, ``cstat`` (C per spectrum), ``cstat_dof``,
        ``kl_z``, ``kl_norm``, ``nh_nll`` (when ``log_nh`` is given).
    """
    counts = batch["counts"].float()
    mu = predicted_counts(
        outputs["flux"], batch["response"], batch["exposure"], batch["background"]
    )
    c_bin = cstat(counts, mu)
    c = c_bin.sum(-1)
    dof = (used_bins(batch).sum(-1) - n_params).clamp_min(1)

    zm, zlv = outputs["z_mean"], outputs["z_logvar"]
    kl_z = 0.5 * (zm.square() + zlv.exp() - 1.0 - zlv).sum(-1)
    pm, ps = log_norm_prior
    nm, nlv = outputs["log_norm_mean"], outputs["log_norm_logvar"]
    kl_norm = 0.5 * ((nm - pm).square() / ps**2 + nlv.exp() / ps**2 - 1.0 - nlv + 2 * math.log(ps))
    per = 0.5 * c + beta * (kl_z + kl_norm)
    comps = {
        "cstat": c.detach().mean(),
        "cstat_dof": (c / dof).detach().mean(),
        "kl_z": kl_z.detach().mean(),
        "kl_norm": kl_norm.detach().mean(),
    }
    if "log_nh" in batch:
        nll = gaussian_nll(
            batch["log_nh"].float(), outputs["log_nh_mean"], outputs["log_nh_log_sigma"]
        )
        per = per + nh_weight * nll
        comps["nh_nll"] = nll.detach().mean()
    loss = per.mean()
    comps["loss"] = loss.detach()
    return loss, comps


def gaussian_nll(target: Tensor, mean: Tensor, log_sigma: Tensor) -> Tensor:
    """Gaussian negative log-likelihood per element (nats)."""
    return (
        log_sigma + 0.5 * ((target - mean) / log_sigma.exp()).square() + 0.5 * math.log(2 * math.pi)
    )


# --- expected C-stat for the anomaly score ------------------------------------------------
@lru_cache(maxsize=1)
def _cstat_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """E[C_i] and Var[C_i] of one Poisson bin on a log grid of mu (exact sums)."""
    from scipy.special import gammaln, xlogy

    mu = np.geomspace(1e-6, 1e4, 500)
    width = int(24 * math.sqrt(mu[-1]) + 60)
    start = np.maximum(0, np.floor(mu - 12 * np.sqrt(mu) - 20)).astype(int)
    n = start[:, None] + np.arange(width)[None, :]
    m = mu[:, None]
    logp = n * np.log(m) - m - gammaln(n + 1.0)
    p = np.exp(logp)
    c = 2.0 * (m - n + xlogy(n, n) - xlogy(n, m))
    mean = (p * c).sum(1)
    var = (p * (c - mean[:, None]) ** 2).sum(1)
    return np.log(mu), mean, var


def cstat_expectation(mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the per-bin C-stat for Poisson counts of mean ``mu``.

    Exact sums over the Poisson distribution, tabulated for 1e-6 <= mu <= 1e4 and
    interpolated in log mu (Kaastra 2017, A&A 605, A51, gives approximations of the
    same); 0 below, and the asymptotic 1 and 2 above.
    """
    mu = np.asarray(mu, dtype=float)
    logmu, mean, var = _cstat_table()
    x = np.log(np.clip(mu, 1e-300, None))
    e = np.interp(x, logmu, mean, left=0.0, right=1.0)
    v = np.interp(x, logmu, var, left=0.0, right=2.0)
    return e, v


def anomaly_score(c: np.ndarray, mu: np.ndarray, used: np.ndarray, n_params: int) -> np.ndarray:
    """How far a spectrum's C-stat lies above what a correct model would give, in sigma.

    ``(C - E_fit) / sqrt(V)`` with ``E = sum_i E[C_i](mu_i)``, ``V = sum_i Var[C_i](mu_i)``
    over the used bins, and ``E_fit = E (n_used - n_params) / n_used`` to allow for the
    fitted parameters. About 0 for a well-modelled spectrum, whatever its counts; large
    and positive when the decoder cannot reproduce the data.
    """
    e_bin, v_bin = cstat_expectation(mu)
    e = (e_bin * used).sum(-1)
    v = (v_bin * used).sum(-1)
    n_used = used.sum(-1)
    e_fit = e * np.clip(n_used - n_params, 1, None) / np.clip(n_used, 1, None)
    return (c - e_fit) / np.sqrt(np.clip(v, 1e-12, None))


# --------------------------------------------------------------------------------------
# devices, batches, inference
# --------------------------------------------------------------------------------------
def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch device to use.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"} or torch.device
        "auto" takes CUDA when available, else the CPU.

    Raises
    ------
    ValueError
        CUDA asked for but not available, or an unknown name.
    """
    if isinstance(device, torch.device):
        dev = device
    else:
        name = "auto" if device is None else str(device).strip().lower()
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(name)
        except RuntimeError as exc:
            raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu' or 'cuda'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for but CUDA is not available; use 'auto' or 'cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {dev}: use 'auto', 'cpu' or 'cuda'")
    return dev


def autocast_context(device: torch.device):
    """bf16 autocast on CUDA; nothing on the CPU."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


_BATCH_FLOAT_KEYS = ("counts", "background", "effective_area", "exposure", "response", "log_nh")


def batch_to_tensors(
    batch: Mapping[str, Any],
    device: torch.device,
    bank: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Move a batch of arrays to ``device`` as float32 tensors.

    Parameters
    ----------
    batch : mapping
        Arrays ``counts``, ``background``, ``exposure`` and either ``response`` and
        ``effective_area`` or ``response_id``; optionally ``log_nh``, ``class_id``.
    device : torch.device
    bank : mapping of Tensor, optional
        Response library on ``device``: ``response`` (n_resp, n_in, n_model),
        ``effective_area`` (n_resp, n_in) and optionally ``used`` (n_resp, n_in) bool,
        rows of R with any area; used when the batch has ``response_id``.
    """
    out: dict[str, Tensor] = {}
    for key in _BATCH_FLOAT_KEYS:
        if key in batch:
            out[key] = torch.as_tensor(
                np.asarray(batch[key]) if not isinstance(batch[key], Tensor) else batch[key]
            ).to(device=device, dtype=torch.float32, non_blocking=True)
    if "class_id" in batch:
        out["class_id"] = torch.as_tensor(np.asarray(batch["class_id"])).to(device, torch.long)
    if "response" not in out:
        if bank is None or "response_id" not in batch:
            raise ValueError("batch has neither 'response' nor 'response_id' with a bank")
        rid = torch.as_tensor(np.asarray(batch["response_id"])).to(device, torch.long)
        out["response"] = bank["response"][rid]
        if "effective_area" not in out:
            out["effective_area"] = bank["effective_area"][rid]
        if "used" in bank:
            out["response_used"] = bank["used"][rid]
    return out


def stack_representations(reps: Sequence[Any]) -> dict[str, np.ndarray]:
    """Stack :class:`~sherpa_latent.spectrum.ResponseRepresentation` objects into a batch."""
    if not reps:
        raise ValueError("no representations to stack")
    return {
        "counts": np.stack([r.counts for r in reps]).astype(np.float32),
        "background": np.stack([r.background for r in reps]).astype(np.float32),
        "effective_area": np.stack([r.effective_area for r in reps]).astype(np.float32),
        "response": np.stack([r.response for r in reps]).astype(np.float32),
        "exposure": np.array([r.exposure for r in reps], dtype=np.float32),
    }


def encode_batch(
    model: LatentAutoencoder,
    batch: Mapping[str, Any],
    device: str | torch.device | None = None,
    batch_size: int = 1024,
    *,
    bank: Mapping[str, Tensor] | None = None,
    return_flux: bool = False,
) -> dict[str, np.ndarray]:
    """Encode spectra and score the decoded fit, without gradients.

    Parameters
    ----------
    model : LatentAutoencoder
    batch : mapping of arrays
        ``counts``, ``background``, ``effective_area``, ``exposure`` and ``response``
        (or ``response_id`` with ``bank``), N spectra.
    device : str or torch.device, optional
        Where to run (default: the model's device). bf16 autocast is used on CUDA only.
    batch_size : int
        Spectra per forward pass.
    bank : mapping of Tensor, optional
        Response library for ``response_id`` batches.
    return_flux : bool
        Also return the decoded photon flux (N, n_model), photons/cm^2/s per bin.

    Returns
    -------
    dict of ndarray
        ``z_mean``, ``z_std`` (N, latent_dim); ``log_norm``, ``log_norm_std`` (N,)
        log10 photons/cm^2/s in 0.5-7 keV; ``log_nh``, ``log_nh_sigma`` (N,) log10 cm^-2
        (sigma in dex); ``cstat``, ``dof``, ``cstat_dof`` of the decoded posterior mean;
        ``anomaly`` (see :func:`anomaly_score`); ``flux`` if asked.
    """
    dev = model.device if device is None else resolve_device(device)
    if dev != model.device:
        model = model.to(dev)
    n = len(np.asarray(batch["counts"]))
    n_params = model.config.latent_dim + 1
    parts: dict[str, list[np.ndarray]] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                sl = slice(start, min(start + batch_size, n))
                sub = {k: v[sl] for k, v in batch.items() if np.ndim(v) >= 1}
                tb = batch_to_tensors(sub, dev, bank)
                with autocast_context(dev):
                    out = model(tb, sample=False)
                mu = predicted_counts(out["flux"], tb["response"], tb["exposure"], tb["background"])
                c = cstat(tb["counts"], mu).sum(-1)
                used = used_bins(tb)
                dof = (used.sum(-1) - n_params).clamp_min(1)
                res = {
                    "z_mean": out["z_mean"],
                    "z_std": torch.exp(0.5 * out["z_logvar"]),
                    "log_norm": out["log_norm_mean"],
                    "log_norm_std": torch.exp(0.5 * out["log_norm_logvar"]),
                    "log_nh": out["log_nh_mean"],
                    "log_nh_sigma": torch.exp(out["log_nh_log_sigma"]),
                    "cstat": c,
                    "dof": dof,
                    "cstat_dof": c / dof,
                }
                if return_flux:
                    res["flux"] = out["flux"]
                arrs = {k: v.float().cpu().numpy() for k, v in res.items()}
                arrs["dof"] = arrs["dof"].astype(np.int64)
                arrs["anomaly"] = anomaly_score(
                    arrs["cstat"].astype(float),
                    mu.double().cpu().numpy(),
                    used.cpu().numpy(),
                    n_params,
                ).astype(np.float32)
                for k, v in arrs.items():
                    parts.setdefault(k, []).append(v)
    finally:
        model.train(was_training)
    result = {k: np.concatenate(v) for k, v in parts.items()}
    widths = getattr(model, "metadata", {}).get("latent_calibration")
    if widths:
        result["z_std"] = result["z_std"] * np.asarray(widths["scales"], dtype=np.float32)
    calibration = getattr(model, "metadata", {}).get("nh_calibration")
    if calibration:
        band = model.config.input_grid.band_sum(batch["counts"], FIT_BAND)
        result["log_nh_sigma"] = result["log_nh_sigma"] * nh_sigma_scale(band, calibration)
    return result


def nh_sigma_scale(band_counts: np.ndarray, calibration: Mapping[str, Any]) -> np.ndarray:
    """Factor on the N_H head's sigma, by 0.5-7 keV counts, from a recorded calibration.

    Parameters
    ----------
    band_counts : ndarray
        Counts in 0.5-7 keV per spectrum.
    calibration : mapping
        ``{"edges": [c1, c2, ...], "scales": [s0, s1, ...]}``: spectra with fewer than
        ``c1`` counts get ``s0``, and so on (one more scale than edges).
    """
    edges = np.asarray(calibration["edges"], dtype=float)
    scales = np.asarray(calibration["scales"], dtype=float)
    if scales.size != edges.size + 1:
        raise ValueError("nh_calibration needs one more scale than edges")
    return scales[np.searchsorted(edges, np.asarray(band_counts, dtype=float), side="right")]


# --------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------
def save_network(
    model: LatentAutoencoder,
    path: str | os.PathLike,
    metadata: Mapping[str, Any] | None = None,
    clobber: bool = False,
) -> Path:
    """Save a network: safetensors weights plus a JSON metadata file beside them.

    Parameters
    ----------
    model : LatentAutoencoder
    path : path-like
        Weights file (``.safetensors`` is added when missing) or an existing folder
        (``network.safetensors`` in it).
    metadata : mapping, optional
        Extra JSON-able metadata (training recipe, data size, metrics, ...). The config,
        grids, class names, version and SHA-256 are added.
    clobber : bool
        Overwrite existing files; otherwise ``FileExistsError``.

    Returns
    -------
    Path
        The weights file written.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "network.safetensors"
    elif path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    state = {
        k: v.detach().to("cpu", torch.float32).contiguous()
        for k, v in model.state_dict().items()
        if not _is_derived_buffer(k)
    }
    data = _st_save(state, metadata={"format": NETWORK_FORMAT})
    cfg = model.config
    meta: dict[str, Any] = {
        "format": NETWORK_FORMAT,
        "version": cfg.version,
        "config": cfg.to_dict(),
        "input_grid": cfg.input_grid.to_dict(),
        "model_grid": cfg.model_grid.to_dict(),
        "class_names": list(cfg.class_names),
        "norm_band_keV": list(cfg.norm_band),
        "torch_version": torch.__version__,
        "package_version": _package_version(),
    }
    for key, value in (metadata or {}).items():
        if key in ("format", "sha256", "weights_file", "config"):
            raise ValueError(f"metadata key {key!r} is reserved")
        meta[key] = value
    return write_safetensors_pair(path, data, meta, clobber=clobber)


def _package_version() -> str:
    from . import __version__

    return str(__version__)


_DERIVED_BUFFERS = ("energy_features", "input_band_weights", "band_weights")


def _is_derived_buffer(key: str) -> bool:
    return key in _DERIVED_BUFFERS


def default_network_path() -> Path:
    """The network shipped with the package (``sherpa_latent/data/network.safetensors``)."""
    return DATA_DIR / "network.safetensors"


def read_network(
    path_or_dir: str | os.PathLike | None = None, device: str | torch.device | None = "auto"
) -> LatentAutoencoder:
    """Load a network saved by :func:`save_network`, checking its SHA-256.

    Parameters
    ----------
    path_or_dir : path-like, optional
        Weights file, its JSON sidecar, or a folder holding ``network.safetensors``
        (default: the network shipped with the package).
    device : str or torch.device
        "auto" (CUDA when available), "cpu" or "cuda".

    Returns
    -------
    LatentAutoencoder
        In eval mode on ``device``; ``model.metadata`` holds the metadata and
        ``model.source_path`` the weights file.

    Raises
    ------
    NetworkFileError
        Missing or malformed files, a checksum mismatch, or weights that do not fit the
        recorded configuration.
    """
    path = default_network_path() if path_or_dir is None else Path(path_or_dir)
    if path.is_dir():
        path = path / "network.safetensors"
    if path_or_dir is None and not path.is_file():
        raise NetworkFileError(str(path), "no default network is installed; train one first")
    if path.suffix not in (".json", ".safetensors") and not path.exists():
        path = path.with_name(path.name + ".safetensors")
    weights, meta = read_json_sidecar(path, NETWORK_FORMAT)
    try:
        config = NetworkConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise NetworkFileError(str(sidecar_path(weights)), f"bad network config: {exc}") from None
    try:
        state = _st_load_file(str(weights), device="cpu")
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise NetworkFileError(str(weights), f"not a readable safetensors file ({exc})") from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise NetworkFileError(str(weights), f"weights hold NaN or infinite values ({bad[0]})")
    model = LatentAutoencoder(config)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        problem = " ".join(str(exc).split())[:200]
        raise NetworkFileError(
            str(weights), f"weights do not match the config ({problem})"
        ) from None
    missing = [k for k in missing if not _is_derived_buffer(k)]
    if missing or unexpected:
        detail = ", ".join(
            [f"missing {k}" for k in missing[:3]] + [f"unexpected {k}" for k in unexpected[:3]]
        )
        raise NetworkFileError(str(weights), f"weights do not match the config ({detail})")
    model.metadata = meta  # type: ignore[attr-defined]
    model.source_path = weights  # type: ignore[attr-defined]
    model.sha256 = meta["sha256"]  # type: ignore[attr-defined]
    return model.to(resolve_device(device)).eval()
