"""XSPEC-free physical models for simulation and classical fits.

PyPI's Sherpa has no XSPEC models, so the project carries its own:

* photoelectric absorption with the Morrison & McCammon (1983) cross-sections (``wabs``);
* a blackbody in XSPEC's ``bbodyrad`` normalisation;
* a multi-colour disk blackbody in XSPEC's ``diskbb`` normalisation;
* thermal bremsstrahlung in XSPEC's ``bremss`` normalisation;
* a thermal-plasma *approximation* in ``apec``'s normalisation: a free-free continuum plus
  the strong K-shell lines of O, Ne, Mg, Si, S, Ar, Ca and Fe;
* power-law and Gaussian-line kernels for the simulator.

There are two layers. The *kernels* (``*_photon_flux``, :func:`wabs_transmission`) are
plain numpy: parameters are scalars or 1-D arrays of shape (N,), energies are 1-D bin
edges of shape (M,) in keV, and the result has shape (N, M), or (M,) when every parameter
is a scalar. Additive kernels return photons/cm^2/s in each bin; the absorber returns the
bin-averaged transmission. Integrals are analytic where that is exact (power law,
Gaussian) and otherwise use 4-point Gauss-Legendre rules in log-energy on pieces no wider
than 5% in energy, split at the MM83 absorption edges: better than 1e-8 for these smooth
integrands on any grid (the quadrature nodes of a grid are cached). The *Sherpa models*
(:class:`WAbs`, :class:`BBodyRad`, :class:`DiskBB`, :class:`Bremss`, :class:`Plasma`) wrap
the kernels for use in model expressions such as ``wabs.gal * bbodyrad.bb``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.special import bernoulli, erfc, exprel, factorial, gamma, gammaincc, k0e, zeta
from sherpa.models.model import RegriddableModel1D, modelCacher1d
from sherpa.models.parameter import Parameter, hugeval
from sherpa.utils.err import ModelErr

__all__ = [
    "MM83_COEFFICIENTS",
    "BBODYRAD_CONSTANT",
    "DISKBB_CONSTANT",
    "BREMSS_HE_FACTOR",
    "PLASMA_LINES",
    "mm83_cross_section",
    "wabs_transmission",
    "powerlaw_photon_flux",
    "bbodyrad_photon_flux",
    "diskbb_photon_flux",
    "bremss_photon_flux",
    "gaussian_line_photon_flux",
    "plasma_photon_flux",
    "plasma_continuum_factor",
    "WAbs",
    "BBodyRad",
    "DiskBB",
    "Bremss",
    "Plasma",
    "MODEL_CLASSES",
]

# ---------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------

MM83_COEFFICIENTS: np.ndarray = np.array(
    [
        # e_lo,  e_hi,    c0,     c1,      c2   (keV; sigma E^3 in 1e-24 cm^2 keV^3)
        [0.030, 0.100, 17.3, 608.1, -2150.0],
        [0.100, 0.284, 34.6, 267.9, -476.1],
        [0.284, 0.400, 78.1, 18.8, 4.3],
        [0.400, 0.532, 71.4, 66.8, -51.4],
        [0.532, 0.707, 95.5, 145.8, -61.1],
        [0.707, 0.867, 308.9, -380.6, 294.0],
        [0.867, 1.303, 120.6, 169.3, -47.7],
        [1.303, 1.840, 141.3, 146.8, -31.5],
        [1.840, 2.471, 202.7, 104.7, -17.0],
        [2.471, 3.210, 342.7, 18.7, 0.0],
        [3.210, 4.038, 352.2, 18.7, 0.0],
        [4.038, 7.111, 433.9, -2.4, 0.75],
        [7.111, 8.331, 629.0, 30.9, 0.0],
        [8.331, 10.00, 701.2, 25.2, 0.0],
    ]
)
MM83_COEFFICIENTS.flags.writeable = False
"""Morrison & McCammon (1983, ApJ 270, 119) Table 2: e_lo, e_hi (keV), c0, c1, c2.

sigma(E) = (c0 + c1 E + c2 E^2) E^-3 1e-24 cm^2 per H atom. The first row also serves
below 0.03 keV and the last row above 10 keV (as XSPEC does)."""

_MM83_BREAKS: np.ndarray = MM83_COEFFICIENTS[1:, 0].copy()
"""Interior row boundaries (the absorption edges), keV; quadrature pieces split here."""

BBODYRAD_CONSTANT: float = 1.0344e-3
"""XSPEC bbodyrad: photons/cm^2/s/keV^3 for norm = R_km^2 / D_10kpc^2 = 1.

The exact value pi (1 km / 10 kpc)^2 2/(h^3 c^2) is 1.0380e-3; XSPEC's published
1.0344e-3 is kept so that norms agree with XSPEC."""

DISKBB_CONSTANT: float = 2.7701e-3
"""Prefactor C of the diskbb photon spectrum N(E) = C norm E^2 int_0^1 x^(-11/3) / (exp(E /
(Tin x)) - 1) dx, photons/cm^2/s/keV^3.

A geometrically thin disk with T = Tin (r/r_in)^(-3/4) seen at inclination i gives
C = (8/3) K with K the bbodyrad constant. XSPEC's diskbb (``xsdskb``, evaluated through
Mitsuda's 1994 interpolation ``mcdspc``: flux = value(E/Tin) Tin^2 norm / 361) is
1.00424 x (8/3) x 1.0344e-3 at every E/Tin from 0.003 to 10 (checked against a
transcription of that routine), i.e. K = 1.0388e-3, within 0.08% of the exact 1.0380e-3.
We use XSPEC's value, so the bolometric flux is 2 (3 C / 8) norm (pi^4/15) Tin^4: 0.42%
above twice a bbodyrad of the same norm and temperature."""

BREMSS_HE_FACTOR: float = 1.0 + 4.0 * 0.085
"""Z^2-weighted ion sum per hydrogen ion in XSPEC's bremss: n(He)/n(H) = 0.085, Z = 2.

XSPEC's ``xsbrms`` calls ``xsbrmv`` with He/H = 0.085, which adds 4 x 0.085 x g(Z=2) to the
hydrogen Gaunt factor; the norm is 3.02e-15 / (4 pi D^2) int n_e n_H dV."""

_BREMSS_GAUNT_PREFACTOR: float = np.sqrt(3.0) / np.pi

# Solar (Anders & Grevesse 1989, APEC's default) number abundances relative to H.
_ANGR_HE: float = 9.77e-2
# fmt: off
_ANGR_METALS: dict[int, float] = {
    6: 3.63e-4, 7: 1.12e-4, 8: 8.51e-4, 10: 1.23e-4, 11: 2.14e-6, 12: 3.80e-5,
    13: 2.95e-6, 14: 3.55e-5, 16: 1.62e-5, 17: 1.88e-7, 18: 3.63e-6, 20: 2.29e-6,
    24: 4.84e-7, 26: 4.68e-5, 28: 1.78e-6,
}
# fmt: on
_METALS_Z2: float = sum(z * z * n for z, n in _ANGR_METALS.items())  # 0.1381

APEC_NORM_SCALE: float = 1.0e14
"""apec's norm is 1e-14 / (4 pi D_A^2 (1+z)^2) int n_e n_H dV."""

PLASMA_LINES: tuple[tuple[str, float, float, float], ...] = (
    # ion,       E (keV), kT of peak EW (keV), peak EW at solar abundance (keV)
    ("O VII", 0.574, 0.17, 0.30),
    ("O VIII", 0.654, 0.30, 0.25),
    ("Ne IX", 0.922, 0.35, 0.12),
    ("Ne X", 1.022, 0.60, 0.10),
    ("Mg XI", 1.352, 0.60, 0.10),
    ("Mg XII", 1.472, 1.00, 0.07),
    ("Si XIII", 1.865, 0.90, 0.25),
    ("Si XIV", 2.006, 1.50, 0.15),
    ("S XV", 2.461, 1.30, 0.15),
    ("S XVI", 2.623, 2.50, 0.07),
    ("Ar XVII", 3.140, 1.80, 0.05),
    ("Ar XVIII", 3.323, 3.00, 0.025),
    ("Ca XIX", 3.902, 2.50, 0.05),
    ("Ca XX", 4.107, 4.50, 0.02),
    ("Fe XXV", 6.700, 5.00, 0.50),
    ("Fe XXVI", 6.966, 12.0, 0.18),
)
"""K-shell lines of the plasma approximation: (ion, energy keV, peak kT keV, peak EW keV).

A documented approximation, not a fit to APEC: each equivalent width (against the solar
continuum of :func:`plasma_photon_flux` at the line energy) is a log-normal in kT,
EW(kT) = EW_peak exp(-ln(kT/kT_peak)^2 / (2 w^2)) with w = 0.8, times the abundance."""

_LINE_LOG_WIDTH: float = 0.8
_LINE_REL_SIGMA: float = 1.0e-3
_LINE_E = np.array([line[1] for line in PLASMA_LINES])
_LINE_KT = np.array([line[2] for line in PLASMA_LINES])
_LINE_EW = np.array([line[3] for line in PLASMA_LINES])

# Quadrature: Gauss-Legendre nodes in ln E on pieces no wider than _MAX_DLOG in ln E.
_GL_ORDER = 4
_GL_X, _GL_W = np.polynomial.legendre.leggauss(_GL_ORDER)
_MAX_DLOG = 0.05
_CHUNK_ELEMENTS = 2_000_000  # rows x nodes evaluated at once (memory bound)

# diskbb: G(a) = int_a^inf y^(5/3) / (e^y - 1) dy, by series below _DISK_SPLIT.
_DISK_SPLIT = 2.0
_DISK_G0 = float(gamma(8.0 / 3.0) * zeta(8.0 / 3.0))
_DISK_NSERIES = 40
_DISK_SERIES = np.array(
    [
        bernoulli(_DISK_NSERIES)[n] / (factorial(n) * (n + 5.0 / 3.0))
        for n in range(_DISK_NSERIES + 1)
    ]
)
_DISK_NTAIL = 40
_DISK_ASYMPTOTIC = 50.0


# ---------------------------------------------------------------------------------------
# Input handling and quadrature
# ---------------------------------------------------------------------------------------


def _edges(elo, ehi) -> tuple[np.ndarray, np.ndarray]:
    lo = np.asarray(elo, dtype=float)
    hi = np.asarray(ehi, dtype=float)
    if lo.ndim != 1 or lo.shape != hi.shape:
        raise ValueError("elo and ehi must be 1-D arrays of the same length (keV)")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError("energy bin edges must be finite")
    if np.any(lo <= 0) or np.any(hi < lo):
        raise ValueError("energy bins must satisfy 0 < elo <= ehi (keV)")
    return lo, hi


def _params(*values) -> tuple[list[np.ndarray], bool]:
    """Broadcast scalar or (N,) parameters to (N, 1) columns; say if all were scalars."""
    arrays = [np.asarray(v, dtype=float) for v in values]
    if any(a.ndim > 1 for a in arrays):
        raise ValueError("parameters must be scalars or 1-D arrays")
    scalar = all(a.ndim == 0 for a in arrays)
    try:
        columns = np.broadcast_arrays(*[np.atleast_1d(a) for a in arrays])
    except ValueError:
        raise ValueError("parameter arrays must have the same length") from None
    return [c[:, None] for c in columns], scalar


def _finish(out: np.ndarray, scalar: bool) -> np.ndarray:
    return out[0] if scalar else out


@lru_cache(maxsize=32)
def _rule_cached(
    lo_bytes: bytes, hi_bytes: bytes, breaks_bytes: bytes
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo = np.frombuffer(lo_bytes, dtype=float)
    hi = np.frombuffer(hi_bytes, dtype=float)
    breaks = np.frombuffer(breaks_bytes, dtype=float)
    nbins = lo.size

    # Split each bin at the breaks strictly inside it.
    first = np.searchsorted(breaks, lo, side="right")
    ninside = np.maximum(np.searchsorted(breaks, hi, side="left") - first, 0)
    npieces = ninside + 1
    piece_bin = np.repeat(np.arange(nbins), npieces)
    piece_idx = np.arange(piece_bin.size) - np.repeat(np.cumsum(npieces) - npieces, npieces)
    if breaks.size:
        bfirst = first[piece_bin]
        below = breaks[np.clip(bfirst + piece_idx - 1, 0, breaks.size - 1)]
        above = breaks[np.clip(bfirst + piece_idx, 0, breaks.size - 1)]
        plo = np.where(piece_idx == 0, lo[piece_bin], below)
        phi = np.where(piece_idx == ninside[piece_bin], hi[piece_bin], above)
    else:
        plo, phi = lo[piece_bin], hi[piece_bin]

    # Subdivide each piece into equal steps in ln E no wider than _MAX_DLOG.
    span = np.log(phi / plo)
    nsub = np.maximum(np.ceil(span / _MAX_DLOG).astype(int), 1)
    sub_piece = np.repeat(np.arange(plo.size), nsub)
    sub_idx = np.arange(sub_piece.size) - np.repeat(np.cumsum(nsub) - nsub, nsub)
    step = span[sub_piece] / nsub[sub_piece]
    u0 = np.log(plo[sub_piece]) + sub_idx * step

    u = u0[:, None] + 0.5 * (_GL_X[None, :] + 1.0) * step[:, None]
    nodes = np.exp(u)
    weights = 0.5 * _GL_W[None, :] * step[:, None] * nodes
    node_bin = np.repeat(piece_bin[sub_piece], _GL_ORDER)
    starts = np.searchsorted(node_bin, np.arange(nbins), side="left")
    out = (nodes.ravel(), weights.ravel(), starts)
    for arr in out:
        arr.flags.writeable = False
    return out


def _rule(
    lo: np.ndarray, hi: np.ndarray, breaks: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quadrature nodes (keV), weights (keV) and the first node of each bin."""
    b = np.empty(0) if breaks is None else np.asarray(breaks, dtype=float)
    return _rule_cached(
        np.ascontiguousarray(lo).tobytes(), np.ascontiguousarray(hi).tobytes(), b.tobytes()
    )


def _integrate(
    density: Callable[..., np.ndarray],
    columns: list[np.ndarray],
    lo: np.ndarray,
    hi: np.ndarray,
    breaks: np.ndarray | None = None,
) -> np.ndarray:
    """Integrate density(*columns, E) over each bin; returns (N, M)."""
    nodes, weights, starts = _rule(lo, hi, breaks)
    nrows = columns[0].shape[0]
    out = np.empty((nrows, lo.size))
    chunk = max(1, _CHUNK_ELEMENTS // max(nodes.size, 1))
    for i in range(0, nrows, chunk):
        vals = density(*[c[i : i + chunk] for c in columns], nodes[None, :])
        out[i : i + chunk] = np.add.reduceat(vals * weights, starts, axis=1)
    return out


# ---------------------------------------------------------------------------------------
# Densities (photons/cm^2/s/keV at energy e); parameters broadcast against e
# ---------------------------------------------------------------------------------------


def _positive(x: np.ndarray) -> np.ndarray:
    """x where x > 0, else 1 (to keep divisions finite); pair with a mask."""
    return np.where(x > 0, x, 1.0)


def _bbodyrad_density(kt, norm, e):
    ok = kt > 0
    x = e / _positive(kt)
    val = BBODYRAD_CONSTANT * norm * e * e * np.exp(-x) / -np.expm1(-x)
    return np.where(ok, val, 0.0)


def _disk_g_series(a: np.ndarray) -> np.ndarray:
    """G(a) for 0 < a < 2 from y/(e^y - 1) = sum B_n y^n / n! (exact to ~1e-15)."""
    return _DISK_G0 - a ** (5.0 / 3.0) * np.polynomial.polynomial.polyval(a, _DISK_SERIES)


def _disk_g_tail(a: np.ndarray) -> np.ndarray:
    """G(a) for a >= 2 as Gamma(8/3) sum_k k^(-8/3) Q(8/3, k a) (slow; builds the table)."""
    total = np.zeros_like(a)
    for k in range(1, _DISK_NTAIL + 1):
        total += k ** (-8.0 / 3.0) * gammaincc(8.0 / 3.0, k * a)
    return gamma(8.0 / 3.0) * total


def _disk_g_asymptotic(a: np.ndarray) -> np.ndarray:
    """G(a) for a >= 50: e^-a a^(5/3) sum_n (5/3)(2/3)...(8/3 - n) a^-n (error < 1e-11)."""
    term = np.ones_like(a)
    total = np.ones_like(a)
    for n in range(1, 9):
        term = term * (8.0 / 3.0 - n) / a
        total = total + term
    return np.exp(-a) * a ** (5.0 / 3.0) * total


# ln G(a) + a is smooth in ln a (it tends to (5/3) ln a): a cubic spline of it on 600
# points over 2 <= a <= 50 reproduces the incomplete-gamma sum to better than 1e-10.
_DISK_U = np.linspace(np.log(_DISK_SPLIT), np.log(_DISK_ASYMPTOTIC), 600)
_DISK_SPLINE = CubicSpline(_DISK_U, np.log(_disk_g_tail(np.exp(_DISK_U))) + np.exp(_DISK_U))


def _disk_g(a) -> np.ndarray:
    """G(a) = int_a^inf y^(5/3) / (e^y - 1) dy for a > 0 (relative error < 1e-9)."""
    a = np.asarray(a, dtype=float)
    out = np.empty_like(a)
    small = a < _DISK_SPLIT
    large = a >= _DISK_ASYMPTOTIC
    mid = ~small & ~large
    out[small] = _disk_g_series(a[small])
    out[large] = _disk_g_asymptotic(a[large])
    am = a[mid]
    out[mid] = np.exp(_DISK_SPLINE(np.log(am)) - am)
    return out


def _diskbb_density(tin, norm, e):
    ok = tin > 0
    t = _positive(tin)
    a = e / t
    val = DISKBB_CONSTANT * norm * t * t * a ** (-2.0 / 3.0) * _disk_g(a)
    return np.where(ok, val, 0.0)


def _gaunt_exp(x: np.ndarray) -> np.ndarray:
    """Born-approximation Gaunt factor times exp(-x), x = E/kT."""
    return _BREMSS_GAUNT_PREFACTOR * k0e(0.5 * x) * np.exp(-x)


def _freefree_shape(kt, e):
    """g(E, kT) exp(-E/kT) / (E sqrt(kT)), keV^-3/2; zero where kT <= 0."""
    ok = kt > 0
    t = _positive(kt)
    return np.where(ok, _gaunt_exp(e / t) / (e * np.sqrt(t)), 0.0)


def _bremss_density(kt, norm, e):
    return norm * BREMSS_HE_FACTOR * _freefree_shape(kt, e)


def _gaussian_density(line_e, sigma, norm, e):
    ok = sigma > 0
    s = _positive(sigma)
    val = norm / (np.sqrt(2.0 * np.pi) * s) * np.exp(-0.5 * ((e - line_e) / s) ** 2)
    return np.where(ok, val, 0.0)


def _gaussian_bin(line_e, sigma, norm, lo, hi):
    """Photons in [lo, hi] from a normalised Gaussian, accurate far into the tails."""
    ok = sigma > 0
    scale = np.sqrt(2.0) * _positive(sigma)

    def z(edge):
        d = edge - line_e
        step = np.where(d > 0, np.inf, np.where(d < 0, -np.inf, 0.0))
        return np.where(ok, d / scale, step)

    zlo, zhi = z(lo), z(hi)
    tlo, thi = erfc(np.abs(zlo)), erfc(np.abs(zhi))  # twice the tail beyond each edge
    frac = np.where(zlo >= 0, tlo - thi, np.where(zhi <= 0, thi - tlo, 2.0 - tlo - thi))
    return 0.5 * norm * frac


def _add_lines(out, centre, sigma, flux, lo, hi) -> None:
    """Add Gaussian lines (columns of (N, L) arrays) to out (N, M), near each line only."""
    for j in range(centre.shape[1]):
        c, s, f = centre[:, j : j + 1], sigma[:, j : j + 1], flux[:, j : j + 1]
        # Beyond 12 sigma a line holds less than 1e-32 of its flux.
        first = np.searchsorted(hi, np.min(c - 12.0 * s), side="left")
        last = np.searchsorted(lo, np.max(c + 12.0 * s), side="right")
        if last > first:
            out[:, first:last] += _gaussian_bin(c, s, f, lo[None, first:last], hi[None, first:last])


def plasma_continuum_factor(abundance) -> np.ndarray:
    """Z^2-weighted ion sum per H ion of a fully ionised solar-composition plasma.

    Parameters
    ----------
    abundance : float or ndarray
        Metal abundance relative to solar (Anders & Grevesse 1989); He stays solar.

    Returns
    -------
    ndarray
        1 + 4 n_He/n_H + abundance * sum_Z Z^2 n_Z/n_H = 1.391 + 0.138 abundance.
    """
    return 1.0 + 4.0 * _ANGR_HE + np.asarray(abundance, dtype=float) * _METALS_Z2


def _plasma_rest_continuum(kt, abundance, norm, e_rest):
    """Rest-frame continuum density, photons/cm^2/s/keV, apec norm."""
    em = 3.02e-15 * APEC_NORM_SCALE * norm  # XSPEC bremss units, per n_e n_H
    return em * plasma_continuum_factor(abundance) * _freefree_shape(kt, e_rest)


def _plasma_line_fluxes(kt, abundance, norm):
    """Rest-frame line fluxes (photons/cm^2/s), shape (N, L) for (N, 1) parameters."""
    t = _positive(kt)
    lnratio = np.log(t / _LINE_KT[None, :])
    ew = _LINE_EW[None, :] * np.exp(-0.5 * (lnratio / _LINE_LOG_WIDTH) ** 2)
    cont = _plasma_rest_continuum(kt, 1.0, norm, _LINE_E[None, :])
    return np.where(kt > 0, abundance * ew * cont, 0.0)


def _plasma_density(kt, abundance, redshift, norm, e):
    zf = 1.0 + redshift
    cont = _plasma_rest_continuum(kt, abundance, norm, e * zf)
    flux = _plasma_line_fluxes(kt, abundance, norm) / zf  # time dilation
    centre = _LINE_E[None, :] / zf
    width = _LINE_REL_SIGMA * centre
    lines = np.zeros(np.broadcast_shapes(cont.shape, flux[:, :1].shape))
    for j in range(_LINE_E.size):
        lines = lines + _gaussian_density(
            centre[:, j : j + 1], width[:, j : j + 1], flux[:, j : j + 1], e
        )
    return cont + lines


# ---------------------------------------------------------------------------------------
# Public kernels
# ---------------------------------------------------------------------------------------


def mm83_cross_section(energy) -> np.ndarray:
    """Morrison & McCammon (1983) photoelectric cross-section per H atom.

    Parameters
    ----------
    energy : float or ndarray
        Photon energy, keV (> 0).

    Returns
    -------
    ndarray
        Cross-section, cm^2 per hydrogen atom, same shape as ``energy``.
    """
    e = np.asarray(energy, dtype=float)
    row = np.searchsorted(_MM83_BREAKS, e, side="right")
    c = MM83_COEFFICIENTS[row]
    return (c[..., 2] + c[..., 3] * e + c[..., 4] * e * e) / e**3 * 1.0e-24


@lru_cache(maxsize=32)
def _node_optical_depth(nodes_key: int, nodes: _HashableArray) -> np.ndarray:
    """MM83 optical depth per 10^22 cm^-2 at cached quadrature nodes (fits call this often)."""
    tau = 1.0e22 * mm83_cross_section(nodes.array)
    tau.flags.writeable = False
    return tau


class _HashableArray:
    """Wraps a cached, read-only node array so that lru_cache can key on its identity."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __hash__(self) -> int:
        return id(self.array)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _HashableArray) and other.array is self.array


def wabs_transmission(nh, elo, ehi) -> np.ndarray:
    """Bin-averaged transmission exp(-N_H sigma_MM83(E)) (XSPEC ``wabs``).

    Bins are split at the MM83 edges before integrating, so a bin straddling an edge
    gets its true average.

    Parameters
    ----------
    nh : float or ndarray of shape (N,)
        Hydrogen column, 10^22 atoms/cm^2.
    elo, ehi : ndarray of shape (M,)
        Bin edges, keV.

    Returns
    -------
    ndarray of shape (N, M) or (M,)
        Dimensionless mean transmission in each bin (the value at ``elo`` for a bin of
        zero width).
    """
    lo, hi = _edges(elo, ehi)
    (col,), scalar = _params(nh)
    nodes, weights, starts = _rule(lo, hi, _MM83_BREAKS)
    # The rule's arrays are cached by _rule_cached, so their identity keys the depths.
    tau1 = _node_optical_depth(id(nodes), _HashableArray(nodes))
    wsum = np.add.reduceat(weights, starts)
    zero = wsum <= 0
    out = np.empty((col.shape[0], lo.size))
    chunk = max(1, _CHUNK_ELEMENTS // max(nodes.size, 1))
    for i in range(0, col.shape[0], chunk):
        vals = np.exp(-col[i : i + chunk] * tau1[None, :])
        out[i : i + chunk] = np.add.reduceat(vals * weights, starts, axis=1) / np.where(
            zero, 1.0, wsum
        )
    if np.any(zero):
        out[:, zero] = np.exp(-col * 1.0e22 * mm83_cross_section(lo[zero])[None, :])
    return _finish(out, scalar)


def powerlaw_photon_flux(gamma, norm, elo, ehi) -> np.ndarray:
    """Power law norm E^-gamma integrated over each bin (analytic; gamma = 1 included).

    Parameters
    ----------
    gamma : float or ndarray of shape (N,)
        Photon index.
    norm : float or ndarray of shape (N,)
        Photons/keV/cm^2/s at 1 keV.
    elo, ehi : ndarray of shape (M,)
        Bin edges, keV.

    Returns
    -------
    ndarray of shape (N, M) or (M,)
        Photons/cm^2/s in each bin.
    """
    lo, hi = _edges(elo, ehi)
    (g, n), scalar = _params(gamma, norm)
    s = 1.0 - g
    span = np.log(hi / lo)[None, :]
    # (hi^s - lo^s) / s = lo^s * span * exprel(s * span), exact at s = 0.
    out = n * np.exp(s * np.log(lo)[None, :]) * span * exprel(s * span)
    return _finish(out, scalar)


def bbodyrad_photon_flux(kt, norm, elo, ehi) -> np.ndarray:
    """XSPEC ``bbodyrad``: norm 1.0344e-3 E^2 / (exp(E/kT) - 1) integrated over each bin.

    Parameters
    ----------
    kt : float or ndarray of shape (N,)
        Temperature, keV.
    norm : float or ndarray of shape (N,)
        R_km^2 / D_10kpc^2 (source radius in km, distance in units of 10 kpc).
    elo, ehi : ndarray of shape (M,)
        Bin edges, keV.

    Returns
    -------
    ndarray of shape (N, M) or (M,)
        Photons/cm^2/s in each bin.
    """
    lo, hi = _edges(elo, ehi)
    cols, scalar = _params(kt, norm)
    return _finish(_integrate(_bbodyrad_density, cols, lo, hi), scalar)


def diskbb_photon_flux(tin, norm, elo, ehi) -> np.ndarray:
    """XSPEC ``diskbb`` multi-colour disk (Mitsuda et al. 1984) integrated over each bin.

    N(E) = C norm E^2 int_0^1 x^(-11/3) / (exp(E/(Tin x)) - 1) dx with
    T(r) = Tin (r/r_in)^(-3/4) out to infinity, evaluated exactly as
    C norm Tin^2 a^(-2/3) G(a), a = E/Tin, G(a) = int_a^inf y^(5/3)/(e^y - 1) dy (series
    below a = 2, a spline of the incomplete-gamma sum above; relative error < 1e-10).

    Normalisation, confirmed against XSPEC's own source (``xsdskb`` / ``mcdspc``:
    "NORMALIZATION={RIN(KM)/(D/10KPC)}^2*COS(THETA)", photons/s/keV/cm^2): C =
    :data:`DISKBB_CONSTANT` = 2.7701e-3, which reproduces XSPEC's diskbb to 0.01% for
    E/Tin = 0.003-10. This is 1.0042 x (8/3) x 1.0344e-3; the bolometric energy flux is
    (3C/4) norm (pi^4/15) Tin^4 keV/cm^2/s, 0.42% above twice ``bbodyrad`` at the same
    norm and temperature.

    Parameters
    ----------
    tin : float or ndarray of shape (N,)
        Temperature at the inner disk radius, keV.
    norm : float or ndarray of shape (N,)
        (R_in/km / (D/10 kpc))^2 cos(i).
    elo, ehi : ndarray of shape (M,)
        Bin edges, keV.

    Returns
    -------
    ndarray of shape (N, M) or (M,)
        Photons/cm^2/s in each bin.
    """
    lo, hi = _edges(elo, ehi)
    cols, scalar = _params(tin, norm)
    return _finish(_integrate(_diskbb_density, cols, lo, hi), scalar)


def bremss_photon_flux(kt, norm, elo, ehi) -> np.ndarray:
    """Thermal bremsstrahlung in XSPEC ``bremss`` units, integrated over each bin.

    N(E) = norm (1 + 4 x 0.085) g(E, kT) exp(-E/kT) / (E sqrt(kT)) photons/cm^2/s/keV,
    norm = 3.02e-15 / (4 pi D^2) int n_e n_H dV (D in cm, densities in cm^-3). The
    3.02e-15 is the free-free emissivity 6.8e-38 Z^2 n_e n_i T^-1/2 exp(-h nu/kT) g
    erg/s/cm^3/Hz converted to photons/keV with T in keV: 6.8e-38 x 2.418e17 Hz/keV /
    1.602e-9 erg/keV x (1.1605e7 K/keV)^-1/2 = 3.013e-15. The factor 1 + 4 x 0.085 is
    XSPEC's helium term (He/H = 0.085 by number, Z^2 = 4), as in XSPEC's ``xsbrmv``.

    The Gaunt factor is the non-relativistic Born approximation,
    g = (sqrt(3)/pi) exp(x/2) K0(x/2), x = E/kT. It differs from XSPEC's fit to Karzas &
    Latter (Kellogg, Baldwin & Koch 1975) by a few per cent (more at kT below ~0.1 keV,
    where the Born approximation fails).

    Parameters
    ----------
    kt : float or ndarray of shape (N,)
        Plasma temperature, keV.
    norm : float or ndarray of shape (N,)
        As above.
    elo, ehi : ndarray of shape (M,)
        Bin edges, keV.

    Returns
    -------
    ndarray of shape (N, M) or (M,)
        Photons/cm^2/s in each bin.
    """
    lo, hi = _edges(elo, ehi)
    cols, scalar = _params(kt, norm)
    return _finish(_integrate(_bremss_density, cols, lo, hi), scalar)


def gaussian_line_photon_flux(line_e, sigma, norm, elo, ehi) -> np.ndarray:
    """Normalised Gaussian line integrated over each bin with erf (exact).

    Parameters
    ----------
    line_e : float or ndarray of shape (N,)
        Line centre, keV.
    sigma : float or ndarray of shape (N,)
        Gaussian standard deviation, keV; 0 puts all the flux in the bin holding
        ``line_e`` (half to each side of a bin edge it falls on).
    norm : float or ndarray of shape (N,)
        Total line flux, photons/cm^2/s.
    elo, ehi : ndarray of shape (M,)
        Bin edges, keV.

    Returns
    -------
    ndarray of shape (N, M) or (M,)
        Photons/cm^2/s in each bin.
    """
    lo, hi = _edges(elo, ehi)
    (c, s, n), scalar = _params(line_e, sigma, norm)
    return _finish(_gaussian_bin(c, s, n, lo[None, :], hi[None, :]), scalar)


def plasma_photon_flux(kt, abundance, redshift, norm, elo, ehi) -> np.ndarray:
    """Thermal plasma approximation in ``apec``'s units, integrated over each bin.

    Continuum: free-free emission of a fully ionised plasma, per n_e n_H,
    3.02e-15 x 1e14 x norm x (1 + 4 n_He/n_H + A sum Z^2 n_Z/n_H) g exp(-E/kT) /
    (E sqrt(kT)) with Anders & Grevesse (1989) abundances (He/H = 0.0977, metal sum
    0.138): in XSPEC ``bremss`` units a bremss norm of 0.302 norm (1.391 + 0.138 A) / 1.34,
    i.e. 0.342 norm at solar abundance. Free-bound, two-photon and Fe L emission are not
    modelled (they add tens of per cent, and the Fe L complex much more, below kT ~ 2 keV).

    Lines: :data:`PLASMA_LINES`, Gaussians of sigma = 1e-3 E, with flux
    A x EW(kT) x (solar continuum at the line energy).

    Redshift: the rest-frame spectrum is evaluated at E (1 + z) and the photon rate is
    divided by (1 + z) for time dilation, as XSPEC's redshifted additive models do;
    ``norm`` keeps apec's meaning, 1e-14 / (4 pi (D_A (1+z))^2) int n_e n_H dV.

    Parameters
    ----------
    kt : float or ndarray of shape (N,)
        Temperature, keV.
    abundance : float or ndarray of shape (N,)
        Metal abundance relative to solar (H and He solar).
    redshift : float or ndarray of shape (N,)
        Redshift z (> -1).
    norm : float or ndarray of shape (N,)
        apec normalisation, cm^-5.
    elo, ehi : ndarray of shape (M,)
        Observed-frame bin edges, keV.

    Returns
    -------
    ndarray of shape (N, M) or (M,)
        Photons/cm^2/s in each bin.
    """
    lo, hi = _edges(elo, ehi)
    (kt_c, ab_c, z_c, n_c), scalar = _params(kt, abundance, redshift, norm)
    if np.any(z_c <= -1):
        raise ValueError("redshift must be > -1")

    def cont(kt_, ab_, z_, n_, e):
        zf = 1.0 + z_
        return _plasma_rest_continuum(kt_, ab_, n_, e * zf)

    out = _integrate(cont, [kt_c, ab_c, z_c, n_c], lo, hi)
    zf = 1.0 + z_c
    flux = _plasma_line_fluxes(kt_c, ab_c, n_c) / zf  # time dilation
    centre = _LINE_E[None, :] / zf
    if np.all(np.diff(lo) > 0) and np.all(np.diff(hi) > 0):
        _add_lines(out, centre, _LINE_REL_SIGMA * centre, flux, lo, hi)
    else:  # unsorted bins: no windowing
        for j in range(_LINE_E.size):
            out += _gaussian_bin(
                centre[:, j : j + 1],
                _LINE_REL_SIGMA * centre[:, j : j + 1],
                flux[:, j : j + 1],
                lo[None, :],
                hi[None, :],
            )
    return _finish(out, scalar)


# ---------------------------------------------------------------------------------------
# Sherpa models
# ---------------------------------------------------------------------------------------


def _norm(name: str) -> Parameter:
    return Parameter(name, "norm", 1.0, min=0.0, max=1.0e24, hard_min=0.0, hard_max=hugeval)


def _sherpa_grid(model, xlo, xhi) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate a Sherpa grid; (energies, None) for point evaluation."""
    lo = np.asarray(xlo, dtype=float)
    hi = None if xhi is None else np.asarray(xhi, dtype=float)
    what = f"{type(model).__name__.lower()}.{model.name.split('.')[-1]}"
    if lo.ndim != 1 or (hi is not None and hi.shape != lo.shape):
        raise ModelErr(f"{what}: needs 1-D energy arrays (keV) of equal length")
    if not np.all(np.isfinite(lo)) or (hi is not None and not np.all(np.isfinite(hi))):
        raise ModelErr(f"{what}: energy grid contains NaN or infinite values")
    if np.any(lo <= 0) or (hi is not None and np.any(hi <= 0)):
        raise ModelErr(f"{what}: energies must be positive keV values")
    if hi is not None and np.any(hi < lo):
        raise ModelErr(f"{what}: bins have xlo > xhi (a wavelength grid?); needs keV")
    if hi is None or not model.integrate:
        return lo, None
    return lo, hi


class WAbs(RegriddableModel1D):
    """Photoelectric absorption with Morrison & McCammon (1983) cross-sections (``wabs``).

    A multiplicative model, as XSPEC's ``wabs``: on a binned grid (``xlo``, ``xhi``) it
    returns the mean transmission over each bin, so that in ``wabs * bbodyrad`` the product
    of the bin-averaged transmission and the additive model's bin-integrated photon flux is
    the absorbed flux in the bin (exact to the extent that the transmission varies little
    across a bin, as XSPEC assumes too). Given points (or ``integrate = False``) it returns
    the transmission at those energies. Unlike Sherpa's ``atten``, which always takes the
    value at the low edge, the bin average is what a folded fit on a coarse grid needs.

    Attributes
    ----------
    nH
        Equivalent hydrogen column, 10^22 atoms/cm^2.
    """

    def __init__(self, name: str = "wabs") -> None:
        self.nH = Parameter(
            name,
            "nH",
            1.0,
            min=0.0,
            max=1.0e5,
            hard_min=0.0,
            hard_max=1.0e6,
            units="10^22 atoms / cm^2",
        )
        super().__init__(name, (self.nH,))

    @modelCacher1d
    def calc(self, pars, xlo, xhi=None, **kwargs) -> np.ndarray:
        """Transmission, bin-averaged when ``xhi`` is given (energies in keV)."""
        lo, hi = _sherpa_grid(self, xlo, xhi)
        if hi is None:
            return np.exp(-pars[0] * 1.0e22 * mm83_cross_section(lo))
        return wabs_transmission(pars[0], lo, hi)


class _Additive(RegriddableModel1D):
    """Common calc for the additive models: bin integral or density at points."""

    _kernel: Callable[..., np.ndarray]
    _density: Callable[..., np.ndarray]

    @modelCacher1d
    def calc(self, pars, xlo, xhi=None, **kwargs) -> np.ndarray:
        """Photons/cm^2/s per bin, or photons/cm^2/s/keV at points (energies in keV)."""
        lo, hi = _sherpa_grid(self, xlo, xhi)
        values = [float(p) for p in pars]
        if hi is None:
            cols = [np.atleast_1d(v)[:, None] for v in values]
            return type(self)._density(*cols, lo[None, :])[0]
        return type(self)._kernel(*values, lo, hi)


class BBodyRad(_Additive):
    """Blackbody in XSPEC's ``bbodyrad`` normalisation.

    Attributes
    ----------
    kT
        Temperature, keV.
    norm
        R_km^2 / D_10kpc^2.
    """

    _kernel = staticmethod(bbodyrad_photon_flux)
    _density = staticmethod(_bbodyrad_density)

    def __init__(self, name: str = "bbodyrad") -> None:
        self.kT = Parameter(
            name, "kT", 3.0, min=1.0e-3, max=100.0, hard_min=1.0e-4, hard_max=200.0, units="keV"
        )
        self.norm = _norm(name)
        super().__init__(name, (self.kT, self.norm))


class DiskBB(_Additive):
    """Multi-colour disk blackbody in XSPEC's ``diskbb`` normalisation.

    Attributes
    ----------
    Tin
        Temperature at the inner disk radius, keV.
    norm
        (R_in/km / (D/10 kpc))^2 cos(i).
    """

    _kernel = staticmethod(diskbb_photon_flux)
    _density = staticmethod(_diskbb_density)

    def __init__(self, name: str = "diskbb") -> None:
        self.Tin = Parameter(
            name, "Tin", 1.0, min=0.0, max=1000.0, hard_min=0.0, hard_max=1000.0, units="keV"
        )
        self.norm = _norm(name)
        super().__init__(name, (self.Tin, self.norm))


class Bremss(_Additive):
    """Thermal bremsstrahlung in XSPEC's ``bremss`` normalisation (Born Gaunt factor).

    Attributes
    ----------
    kT
        Plasma temperature, keV.
    norm
        3.02e-15 / (4 pi D^2) int n_e n_H dV, D in cm.
    """

    _kernel = staticmethod(bremss_photon_flux)
    _density = staticmethod(_bremss_density)

    def __init__(self, name: str = "bremss") -> None:
        self.kT = Parameter(
            name, "kT", 7.0, min=1.0e-4, max=100.0, hard_min=1.0e-4, hard_max=200.0, units="keV"
        )
        self.norm = _norm(name)
        super().__init__(name, (self.kT, self.norm))


class Plasma(_Additive):
    """Thermal plasma approximation (continuum plus K-shell lines) in ``apec``'s units.

    See :func:`plasma_photon_flux` for what is and is not modelled.

    Attributes
    ----------
    kT
        Temperature, keV.
    Abundanc
        Metal abundance relative to solar (Anders & Grevesse 1989); frozen by default.
    Redshift
        Redshift; frozen by default.
    norm
        1e-14 / (4 pi (D_A (1+z))^2) int n_e n_H dV, cm^-5.
    """

    _kernel = staticmethod(plasma_photon_flux)
    _density = staticmethod(_plasma_density)

    def __init__(self, name: str = "plasma") -> None:
        self.kT = Parameter(
            name, "kT", 1.0, min=0.008, max=64.0, hard_min=0.008, hard_max=64.0, units="keV"
        )
        self.Abundanc = Parameter(
            name, "Abundanc", 1.0, min=0.0, max=5.0, hard_min=0.0, hard_max=5.0, frozen=True
        )
        self.Redshift = Parameter(
            name, "Redshift", 0.0, min=-0.999, max=10.0, hard_min=-0.999, hard_max=10.0, frozen=True
        )
        self.norm = _norm(name)
        super().__init__(name, (self.kT, self.Abundanc, self.Redshift, self.norm))


MODEL_CLASSES: tuple[type[RegriddableModel1D], ...] = (WAbs, BBodyRad, DiskBB, Bremss, Plasma)
"""The Sherpa model classes, for ``sherpa.astro.ui.add_model``."""
