"""The decoder of the latent autoencoder as a Sherpa model component, ``latent``.

:class:`LatentSpectrum` turns 8 latent shape parameters ``z1``..``z8`` and a normalisation
``norm`` into an intrinsic photon spectrum, which Sherpa folds through a spectrum's own
ARF and RMF like any other additive model::

    from sherpa.astro.ui import *
    from sherpa_latent.ui import *
    load_pha("src.pi")
    set_source(latent.src)            # or set_latent_source() to start from the encoder
    fit()

``norm`` is the photon flux of the component in 0.5-7 keV (the network's norm band),
photons/cm^2/s: the decoder's output is normalised so that its 0.5-7 keV photon flux is
exactly ``norm`` (the network's ``log_norm`` is ``log10(norm)``).

Which network
-------------
A component uses the network that was current when it was made: the one chosen with
:func:`use_network` (``sherpa_latent.ui.load_network``), by default the network shipped in
the package, loaded on first use. It records that network's weights file and SHA-256
(:attr:`LatentSpectrum.network`, :attr:`LatentSpectrum.network_sha256`) and refuses to
evaluate with weights whose SHA-256 differs.

Saving a session
----------------
Sherpa's ``save`` / ``restore`` (pickle) keep the component with its network file and
SHA-256; the network is read again on first use after ``restore``. ``save_all`` writes
``create_model_component("latent", "src")`` and the parameter values, but not which
network: run the saved script after ``from sherpa_latent.ui import *`` (which registers
``latent``) and, when the component used a network other than the default, after
``load_network(path)``.

Evaluation runs the network's own decoder (``LatentAutoencoder.decode``) on a float64 CPU
copy of the network, so that the finite-difference derivatives of Sherpa's optimisers are
smooth.

Outside the model grid
----------------------
The decoder predicts the spectrum on 0.2-10 keV only; outside that range the component is
0. A flux asked of Sherpa over a band that leaves the grid (``calc_energy_flux(10, 20)``,
``calc_photon_flux``, ``sample_flux``) would be silently too low, so the component then
warns with :class:`LatentGridWarning`, naming the band and the grid.
"""

from __future__ import annotations

import copy
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sherpa.models.model import RegriddableModel1D, modelCacher1d
from sherpa.models.parameter import Parameter, hugeval

from .errors import LatentModelError

if TYPE_CHECKING:
    from .inference import LatentEncoder, LatentResult

__all__ = [
    "LatentSpectrum",
    "Latent",
    "LatentGridWarning",
    "latent_components",
    "LATENT_DIM",
    "Z_SOFT_LIMIT",
    "use_network",
    "current_encoder",
    "get_encoder",
    "init_from_result",
]

LATENT_DIM = 8
"""Number of latent shape parameters (``z1``..``z8``)."""

Z_SOFT_LIMIT = 5.0
"""Soft limits of ``z1``..``z8``: +-5 standard deviations of the latent prior N(0, 1)."""

_DEFAULT = "default"
_lock = threading.RLock()
_encoders: dict[str, LatentEncoder] = {}
_decoders: dict[str, _Decoder] = {}
_current: dict[str, Any] = {"key": _DEFAULT, "device": "auto"}


# --------------------------------------------------------------------------------------
# which network
# --------------------------------------------------------------------------------------
def _key(name_or_path: str | os.PathLike | None) -> str:
    """Weights file of a network name or path (``"default"`` stays as it is)."""
    if name_or_path is None or str(name_or_path) == _DEFAULT:
        return _DEFAULT
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        path = path / "network.safetensors"
    elif path.suffix not in (".json", ".safetensors") and not path.exists():
        path = path.with_name(path.name + ".safetensors")
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    return str(path.resolve())


def get_encoder(
    name_or_path: str | os.PathLike | None = _DEFAULT,
    device: str | None = None,
    *,
    reload: bool = False,
) -> LatentEncoder:
    """Load a network and its cluster model once per process and keep it.

    Parameters
    ----------
    name_or_path : path-like or "default"
        Network file or folder, or "default" for the network shipped in the package.
    device : str, optional
        "auto", "cpu" or "cuda" (default: the device given to :func:`use_network`).
    reload : bool, optional
        Read the files again even when the network is already loaded.

    Returns
    -------
    LatentEncoder

    Raises
    ------
    NetworkFileError
        Missing or malformed network files, or a SHA-256 mismatch.
    """
    from .inference import load_encoder

    key = _key(name_or_path)
    with _lock:
        if reload or key not in _encoders:
            encoder = load_encoder(key, device=device or _current["device"])
            _encoders[key] = encoder
            # the same network under its other name too ("default" or its weights file)
            _encoders[str(Path(encoder.model.source_path).resolve())] = encoder
            if _network_id(encoder)[0] == _DEFAULT:
                _encoders[_DEFAULT] = encoder
        return _encoders[key]


def use_network(
    name_or_path: str | os.PathLike | None = _DEFAULT, device: str = "auto"
) -> LatentEncoder:
    """Load a network and make it the current one (for new components and encoding).

    Parameters
    ----------
    name_or_path : path-like or "default"
        Network file or folder, or "default" for the network shipped in the package.
    device : str
        "auto" (CUDA when present), "cpu" or "cuda", for encoding.

    Returns
    -------
    LatentEncoder
    """
    encoder = get_encoder(name_or_path, device, reload=True)
    with _lock:
        _current["key"] = _key(name_or_path)
        _current["device"] = device
    return encoder


def current_encoder() -> LatentEncoder:
    """The current network (loading the default on first use)."""
    return get_encoder(_current["key"])


def _network_id(encoder: LatentEncoder) -> tuple[str, str]:
    """(weights file, SHA-256) of a network; "default" for the one shipped in the package,
    so that a saved session finds it wherever the package is installed."""
    from .network import default_network_path

    path = Path(encoder.model.source_path).resolve()
    if path == default_network_path().resolve():
        return _DEFAULT, encoder.sha256
    return str(path), encoder.sha256


# --------------------------------------------------------------------------------------
# the decoder in float64
# --------------------------------------------------------------------------------------
class _Decoder:
    """A float64 CPU copy of a network, evaluated through its own decoder.

    The spectrum comes from ``LatentAutoencoder.decode``, the method that training and
    encoding use, run on ``copy.deepcopy(model)`` converted to float64: double precision
    keeps the finite-difference derivatives of Sherpa's optimisers smooth.
    """

    def __init__(self, encoder: LatentEncoder) -> None:
        import torch

        model = encoder.model
        cfg = model.config
        self.path, self.sha256 = _network_id(encoder)
        self.latent_dim = int(cfg.latent_dim)
        self.grid = cfg.model_grid
        self.edges = np.asarray(self.grid.edges, dtype=float)
        self.log_edges = np.log(self.edges)
        self.norm_band = tuple(float(v) for v in cfg.norm_band)
        # the whole network (under a million weights): decode() needs its band weights
        self.network = copy.deepcopy(model).to("cpu", torch.float64).eval()
        _single_threaded_torch_after_fork()

    def flux(self, z: np.ndarray, norm: float) -> np.ndarray:
        """Photon flux per model-grid bin, photons/cm^2/s, float64.

        Parameters
        ----------
        z : ndarray, shape (latent_dim,)
            Shape latents.
        norm : float
            Photon flux in the norm band (0.5-7 keV), photons/cm^2/s; > 0.
        """
        return self.network.decode_numpy(np.asarray(z, dtype=float), np.log10(norm))


_fork_hook: dict[str, bool] = {"registered": False}


def _single_threaded_torch_after_fork() -> None:
    """Make torch single-threaded in processes forked from this one (registered once).

    Sherpa's ``conf`` (and other parallel commands) evaluate the model in forked worker
    processes; torch's OpenMP thread pool, once used in the parent, does not survive a
    fork, and a multi-threaded torch operation in the child then waits forever.
    """
    with _lock:
        if _fork_hook["registered"] or not hasattr(os, "register_at_fork"):
            return
        import torch

        os.register_at_fork(after_in_child=lambda: torch.set_num_threads(1))
        _fork_hook["registered"] = True


def _decoder_for(path: str, sha256: str) -> _Decoder:
    with _lock:
        cache_key = f"{path}|{sha256}"
        if cache_key not in _decoders:
            decoder = _Decoder(get_encoder(path))
            if sha256 and decoder.sha256 != sha256:
                raise LatentModelError(
                    f"network {path} has SHA-256 {decoder.sha256[:12]}..., but the component "
                    f"was made with {sha256[:12]}...; load that network with load_network()"
                )
            _decoders[cache_key] = decoder
        return _decoders[cache_key]


# --------------------------------------------------------------------------------------
# fluxes outside the model grid
# --------------------------------------------------------------------------------------
class LatentGridWarning(UserWarning):
    """A flux of a ``latent`` component was asked over energies outside its model grid."""


_FLUX_FRAMES = 40
"""How far up the call stack to look for Sherpa's flux integration."""


def _flux_band_in_progress() -> tuple[float | None, float | None] | None:
    """The (lo, hi) band of a Sherpa flux calculation that is evaluating a model now.

    ``calc_energy_flux``, ``calc_photon_flux`` and ``sample_flux`` (session or object
    API) all integrate in ``sherpa.astro.utils._flux``, which evaluates the model over
    the response's whole energy grid and only then keeps the bins in ``lo``-``hi``; the
    model never sees the band otherwise. None when no such calculation is running.
    """
    frame = sys._getframe(2)
    for _ in range(_FLUX_FRAMES):
        if frame is None:
            return None
        code = frame.f_code
        if code.co_name == "_flux" and frame.f_globals.get("__name__") == "sherpa.astro.utils":
            lo, hi = frame.f_locals.get("lo"), frame.f_locals.get("hi")
            return (
                None if lo is None else float(lo),
                None if hi is None else float(hi),
            )
        frame = frame.f_back
    return None


def latent_components(model: Any) -> list[LatentSpectrum]:
    """The ``latent`` components inside a Sherpa model expression (in order, no repeats).

    Parameters
    ----------
    model : sherpa.models.model.Model
        A component or an expression such as ``wabs.gal * latent.src``.

    Returns
    -------
    list of LatentSpectrum
    """
    found: list[LatentSpectrum] = []
    stack = [model]
    while stack:
        item = stack.pop(0)
        if isinstance(item, LatentSpectrum):
            if all(item is not other for other in found):
                found.append(item)
            continue
        parts = getattr(item, "parts", None)
        if parts:
            stack[:0] = list(parts)
    return found


# --------------------------------------------------------------------------------------
# the Sherpa model
# --------------------------------------------------------------------------------------
class LatentSpectrum(RegriddableModel1D):
    """Intrinsic photon spectrum decoded from 8 latent shape parameters (``latent``).

    An additive model: on a binned energy grid (keV) it returns the photon flux in each
    bin, photons/cm^2/s, integrated from the decoder's model grid (log-spaced, 0.2-10 keV)
    so that flux is conserved: the cumulative flux at the model-grid edges is
    interpolated linearly in log energy at the requested edges and differenced. It is
    zero outside the model grid. Given points (no ``xhi``, or ``integrate = False``) it
    returns the flux density at those energies, photons/cm^2/s/keV.

    Parameters
    ----------
    name : str
        Component name.
    network : path-like or "default", optional
        The network to decode with (default: the current one, see :func:`use_network`).

    Attributes
    ----------
    z1, z2, z3, z4, z5, z6, z7, z8
        Latent shape parameters, dimensionless; the prior is N(0, 1), so the soft
        limits are +-5.
    norm
        Photon flux of the component in 0.5-7 keV, photons/cm^2/s: the decoded spectrum
        is normalised so that this is exact (the encoder's ``log_norm`` is
        ``log10(norm)``).

    Notes
    -----
    Wavelength analysis is not supported: Sherpa then hands over a grid in Angstrom that
    decreases, and the component raises :class:`~sherpa_latent.errors.LatentModelError`.
    Energies must increase along the grid (as Sherpa's energy grids do).

    A spectrum of a few hundred counts constrains only some of the latents; the others
    stay near their prior (``covar`` errors of several units). ``conf`` then needs long
    refits (several seconds on 3C 273); ``set_method_opt("ftol", 1e-4)`` makes it faster
    but moved the bounds in the second or third digit there.
    """

    def __init__(self, name: str = "latent", network: str | os.PathLike | None = None) -> None:
        self.zs = tuple(
            Parameter(
                name,
                f"z{i + 1}",
                0.0,
                min=-Z_SOFT_LIMIT,
                max=Z_SOFT_LIMIT,
                hard_min=-hugeval,
                hard_max=hugeval,
            )
            for i in range(LATENT_DIM)
        )
        (self.z1, self.z2, self.z3, self.z4, self.z5, self.z6, self.z7, self.z8) = self.zs
        self.norm = Parameter(
            name,
            "norm",
            1.0e-4,
            min=0.0,
            max=hugeval,
            hard_min=0.0,
            hard_max=hugeval,
            units="photons/cm^2/s",
        )
        self._network_path = ""
        self._network_sha256 = ""
        self._decoder: _Decoder | None = None
        super().__init__(name, (*self.zs, self.norm))
        # save_all writes create_model_component(<type>, <name>): "latent" whatever the
        # subclass, as that is the name registered in a session.
        self.type = "latent"
        self._bind(network)

    # --- network ------------------------------------------------------------------
    def _bind(self, network: str | os.PathLike | None) -> None:
        key = _current["key"] if network is None else _key(network)
        with _lock:
            loaded = _encoders.get(key)
        if loaded is not None:
            self._network_path, self._network_sha256 = _network_id(loaded)
        else:  # loaded lazily on first evaluation
            self._network_path, self._network_sha256 = key, ""
        self._decoder = None
        self.cache_clear()

    def set_network(self, network: str | os.PathLike | LatentEncoder) -> None:
        """Decode with another network (a path, "default", or a loaded encoder).

        Parameters
        ----------
        network : path-like, "default" or LatentEncoder
            The network.
        """
        if hasattr(network, "model"):
            self._network_path, self._network_sha256 = _network_id(network)  # type: ignore[arg-type]
            with _lock:
                _encoders.setdefault(self._network_path, network)  # type: ignore[arg-type]
            self._decoder = None
            self.cache_clear()
        else:
            self._bind(network)

    @property
    def network(self) -> str:
        """Weights file of the component's network, or "default" for the shipped one."""
        return self._network_path

    @property
    def network_sha256(self) -> str:
        """SHA-256 of the component's network ("" before its first use)."""
        return self._network_sha256

    def decoder(self) -> _Decoder:
        """The (float64) decoder of the component's network, loading it when needed."""
        if self._decoder is None:
            dec = _decoder_for(self._network_path, self._network_sha256)
            if dec.latent_dim != LATENT_DIM:
                raise LatentModelError(
                    f"{self.name}: network {dec.path} has {dec.latent_dim} latent dimensions; "
                    f"the latent model has {LATENT_DIM}"
                )
            self._network_path, self._network_sha256 = dec.path, dec.sha256
            self._decoder = dec
        return self._decoder

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_decoder"] = None  # read the network again after unpickling
        state["_cache"] = {}
        return state

    # --- evaluation ----------------------------------------------------------------
    def model_grid_flux(self, pars: np.ndarray | None = None) -> np.ndarray:
        """Photon flux per model-grid bin, photons/cm^2/s.

        Parameters
        ----------
        pars : ndarray, optional
            ``z1``..``z8`` and ``norm`` (default: the current parameter values).
        """
        if pars is None:
            pars = [p.val for p in self.pars]
        pars = np.asarray(pars, dtype=float)
        norm = float(pars[LATENT_DIM])
        dec = self.decoder()
        if not norm > 0:
            return np.zeros(dec.grid.nbins)
        return dec.flux(pars[:LATENT_DIM], norm)

    def calc(self, pars, xlo, xhi=None, **kwargs) -> np.ndarray:
        """Photons/cm^2/s per bin, or photons/cm^2/s/keV at points (energies in keV).

        Zero outside the model grid; warns with :class:`LatentGridWarning` when a Sherpa
        flux calculation asks for a band that leaves the grid (checked before the model
        cache, so a repeated request warns too).
        """
        self._check_flux_band(xlo, xhi)
        return self._calc(pars, xlo, xhi, **kwargs)

    def _check_flux_band(self, xlo, xhi) -> None:
        lo = np.asarray(xlo, dtype=float)
        hi = lo if xhi is None else np.asarray(xhi, dtype=float)
        if lo.size == 0:
            return
        dec = self.decoder()
        emin, emax = float(dec.edges[0]), float(dec.edges[-1])
        if np.nanmin(lo) >= emin and np.nanmax(hi) <= emax:
            return  # the grid asked for lies inside the model grid
        band = _flux_band_in_progress()
        if band is None:
            return
        b_lo = float(np.nanmin(lo)) if band[0] is None else band[0]
        b_hi = float(np.nanmax(hi)) if band[1] is None else band[1]
        if b_lo >= emin and b_hi <= emax:
            return
        inside = max(0.0, min(b_hi, emax) - max(b_lo, emin))
        what = "lies outside" if inside <= 0 else "reaches beyond"
        warnings.warn(
            LatentGridWarning(
                f"{self.name}: the flux band {b_lo:g}-{b_hi:g} keV {what} the latent model's "
                f"grid {emin:g}-{emax:g} keV; the model is 0 outside the grid, so the flux "
                "misses that part"
            ),
            stacklevel=3,
        )

    @modelCacher1d
    def _calc(self, pars, xlo, xhi=None, **kwargs) -> np.ndarray:
        lo, hi = self._grid(xlo, xhi)
        flux = self.model_grid_flux(pars)
        dec = self.decoder()
        edges, log_edges = dec.edges, dec.log_edges
        if hi is None:
            idx = np.searchsorted(edges, lo, side="right") - 1
            inside = (idx >= 0) & (idx < len(flux))
            out = np.zeros_like(lo)
            i = idx[inside]
            out[inside] = flux[i] / (lo[inside] * (log_edges[i + 1] - log_edges[i]))
            return out
        cumulative = np.concatenate([[0.0], np.cumsum(flux)])
        c_lo = np.interp(np.log(lo), log_edges, cumulative, left=0.0, right=cumulative[-1])
        c_hi = np.interp(np.log(hi), log_edges, cumulative, left=0.0, right=cumulative[-1])
        return np.clip(c_hi - c_lo, 0.0, None)

    def _grid(self, xlo, xhi) -> tuple[np.ndarray, np.ndarray | None]:
        lo = np.asarray(xlo, dtype=float)
        hi = None if xhi is None else np.asarray(xhi, dtype=float)
        if lo.ndim != 1 or (hi is not None and hi.shape != lo.shape):
            raise LatentModelError(f"{self.name}: needs 1-D energy arrays (keV) of equal length")
        if not np.all(np.isfinite(lo)) or (hi is not None and not np.all(np.isfinite(hi))):
            raise LatentModelError(f"{self.name}: energy grid contains NaN or infinite values")
        decreasing = lo.size > 1 and bool(np.any(np.diff(lo) < 0))
        if decreasing or (hi is not None and np.any(hi < lo)):
            raise LatentModelError(
                f"{self.name}: the grid decreases, as a wavelength grid (Angstrom) does; the "
                "latent model works in energy (keV): use set_analysis('energy')"
            )
        if np.any(lo <= 0):
            raise LatentModelError(f"{self.name}: energies must be positive (keV)")
        if hi is None or not self.integrate:
            return lo, None
        return lo, hi


class Latent(LatentSpectrum):
    """Intrinsic photon spectrum decoded from 8 latent shape parameters (``latent``).

    The name under which :class:`LatentSpectrum` is registered in a Sherpa session, so
    that ``latent.src`` works; see :class:`LatentSpectrum` for the parameters.
    """


def init_from_result(component: LatentSpectrum, result: LatentResult) -> LatentSpectrum:
    """Set ``z1``..``z8`` and ``norm`` of a component from an encoder result.

    ``z_i`` takes the posterior mean (clipped to the soft limits) and ``norm`` is
    ``10**log_norm`` (photons/cm^2/s in 0.5-7 keV). Frozen parameters keep their values.

    Parameters
    ----------
    component : LatentSpectrum
        The component to set.
    result : LatentResult
        What the encoder said about the spectrum.

    Returns
    -------
    LatentSpectrum
        The same component.
    """
    z = np.asarray(result.z, dtype=float)
    if z.shape != (LATENT_DIM,):
        raise LatentModelError(
            f"{component.name}: result has {z.size} latent values, the model has {LATENT_DIM}"
        )
    for par, value in zip(component.zs, z, strict=True):
        if not par.frozen:
            par.val = float(np.clip(value, par.min, par.max))
    if not component.norm.frozen:
        component.norm.val = float(10.0 ** float(result.log_norm))
    return component
