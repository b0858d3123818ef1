"""Synthetic ACIS-like responses (ARF and RMF from scratch) for the response library."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import ndtr

from ..grids import INPUT_GRID, MODEL_GRID, EnergyGrid
from ..projection import bin_mean, project_response
from .response_library import ResponseLibrary

# ----------------------------------------------------------------------------------------
# Synthetic ACIS-like responses
# ----------------------------------------------------------------------------------------

SYNTHETIC_ENERGY_EDGES: np.ndarray = np.linspace(0.2, 11.0, 1081)
"""Energy grid of synthetic ARFs and RMFs, keV (10 eV bins, like ACIS responses)."""

SYNTHETIC_CHANNEL_WIDTH = 0.0146
"""Width of an ACIS PI channel, keV."""

SYNTHETIC_N_CHANNELS = 1024
"""Number of PI channels of a synthetic RMF."""

_SI_DENSITY = 2.33  # g/cm^3
_AL_DENSITY = 2.70
_POLYIMIDE_DENSITY = 1.42
_POLYIMIDE = {"C": 0.691, "N": 0.073, "O": 0.209}  # mass fractions of C22H10N2O5 (H left out)
_SIO2 = {"Si": 0.467, "O": 0.533}
_SIO2_DENSITY = 2.2
_SI3N4 = {"Si": 0.6, "N": 0.4}
_SI3N4_DENSITY = 3.17
_SI_ESCAPE_KEV = 1.74
_CONTAMINATION_START = 1999.6  # decimal year: launch
_CONTAMINATION_REF_KEV = 0.67


@dataclass(frozen=True)
class _Edge:
    """A K-shell absorber: mu = mu_ref (E / e_ref)^-slope above the edge, / jump below."""

    edge: float  # keV
    mu_ref: float  # cm^2/g at e_ref (above the edge)
    e_ref: float  # keV
    jump: float
    slope: float


# Approximate mass attenuation coefficients (NIST XCOM values at the reference energies;
# power laws between), good to ~10-20%: enough for the shape of an ACIS-like response.
_ELEMENTS: dict[str, _Edge] = {
    "C": _Edge(0.2842, 2211.0, 1.0, 20.0, 2.6),
    "N": _Edge(0.4099, 3311.0, 1.0, 18.0, 2.65),
    "O": _Edge(0.5431, 4590.0, 1.0, 17.0, 2.7),
    "F": _Edge(0.6967, 5615.0, 1.0, 16.0, 2.7),
    "Al": _Edge(1.5596, 2263.0, 2.0, 10.6, 2.6),
    "Si": _Edge(1.8389, 2777.0, 2.0, 10.5, 2.65),
}


def _mass_attenuation(composition: dict[str, float], energy: np.ndarray) -> np.ndarray:
    """Mass attenuation coefficient (cm^2/g) of a mixture given by mass fractions."""
    energy = np.asarray(energy, dtype=float)
    mu = np.zeros_like(energy)
    for element, fraction in composition.items():
        e = _ELEMENTS[element]
        value = e.mu_ref * (energy / e.e_ref) ** (-e.slope)
        mu += fraction * np.where(energy >= e.edge, value, value / e.jump)
    return mu


def _transmission(composition: dict[str, float], density: float, microns: float, energy):
    """Transmission of a layer (thickness in micron, density in g/cm^3)."""
    return np.exp(-_mass_attenuation(composition, energy) * density * microns * 1e-4)


# HRMA on-axis effective area, cm^2: log-log interpolation between these knots, with the
# iridium M-edge drops near 2.04 and 2.12 keV (and a smaller one at 2.55 keV).
_HRMA_KNOTS = np.array(
    [
        [0.20, 800.0],
        [0.50, 815.0],
        [1.00, 810.0],
        [1.50, 790.0],
        [1.80, 720.0],
        [2.039, 690.0],
        [2.041, 430.0],
        [2.119, 400.0],
        [2.121, 385.0],
        [2.30, 405.0],
        [2.549, 425.0],
        [2.551, 412.0],
        [3.00, 425.0],
        [4.00, 430.0],
        [5.00, 378.0],
        [6.00, 265.0],
        [7.00, 155.0],
        [8.00, 78.0],
        [9.00, 44.0],
        [10.0, 24.0],
        [11.0, 13.0],
    ]
)


def _hrma_area(energy: np.ndarray) -> np.ndarray:
    """Template HRMA on-axis effective area, cm^2."""
    return np.exp(
        np.interp(np.log(energy), np.log(_HRMA_KNOTS[:, 0]), np.log(_HRMA_KNOTS[:, 1]))
    )


@dataclass(frozen=True)
class SyntheticChip:
    """Parameters of one synthetic ACIS-like response.

    Parameters
    ----------
    chip : str
        ``"FI"`` (front-illuminated, like ACIS-I3) or ``"BI"`` (back-illuminated, ACIS-S3).
    epoch : float
        Decimal year; sets the low-energy contamination.
    vignetting : float
        Off-axis vignetting factor at 1.5 keV (0.6-1.0); it deepens with energy.
    hrma_scale : float
        Scale of the mirror area template.
    depletion_um : float
        Depletion depth, micron (FI ~ 76, BI ~ 45): QE roll-off above 5 keV.
    dead_layer_um : float
        Silicon in the gate structure (FI) or the back-surface dead layer (BI), micron.
    oxide_um, nitride_um : float
        SiO2 and Si3N4 in the gate structure or dead layer, micron.
    filter_al_nm, filter_polyimide_nm : float
        Optical blocking filter, nm.
    contamination_rate : float
        Optical depth of the contaminant at 0.67 keV gained per year.
    contamination_mix : tuple of float
        Mass fractions of C, N, O, F in the contaminant.
    fwhm0_kev, fwhm6_kev : float
        Energy resolution FWHM at 0 and 6 keV, keV (FWHM^2 rises linearly with E).
    shelf_fraction : float
        Fraction of events redistributed flat from 0 to E (incomplete charge collection).
    escape_fraction : float
        Fraction of events above the Si K edge in the Si escape peak (E - 1.74 keV).
    wiggle : tuple of float
        Smooth multiplicative distortion of the area: 1 + a1 x + a2 (x^2 - 1/3) with
        x in [-1, 1] over log E.
    """

    chip: str
    epoch: float
    vignetting: float
    hrma_scale: float
    depletion_um: float
    dead_layer_um: float
    oxide_um: float
    nitride_um: float
    filter_al_nm: float
    filter_polyimide_nm: float
    contamination_rate: float
    contamination_mix: tuple[float, float, float, float]
    fwhm0_kev: float
    fwhm6_kev: float
    shelf_fraction: float
    escape_fraction: float
    wiggle: tuple[float, float]

    def to_json(self) -> str:
        """The parameters as a one-line JSON string."""
        return json.dumps({k: v for k, v in asdict(self).items()}, separators=(",", ":"))


def draw_synthetic_chip(
    rng: np.random.Generator,
    *,
    chip: str | None = None,
    epoch_range: tuple[float, float] = (2000.0, 2025.0),
) -> SyntheticChip:
    """Draw the parameters of one synthetic response.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random numbers.
    chip : {"FI", "BI"}, optional
        Chip type; drawn with equal odds when not given.
    epoch_range : tuple of float
        Range of the contamination epoch, decimal years.
    """
    if chip is None:
        chip = "FI" if rng.random() < 0.5 else "BI"
    if chip not in ("FI", "BI"):
        raise ValueError(f"chip must be 'FI' or 'BI', got {chip!r}")
    fi = chip == "FI"
    mix = np.array([0.80, 0.03, 0.10, 0.07]) * rng.uniform(0.7, 1.3, 4)
    mix /= mix.sum()
    return SyntheticChip(
        chip=chip,
        epoch=float(rng.uniform(*epoch_range)),
        vignetting=float(rng.uniform(0.6, 1.0)),
        hrma_scale=float(rng.uniform(0.95, 1.05)),
        depletion_um=float(rng.uniform(68.0, 80.0) if fi else rng.uniform(40.0, 48.0)),
        dead_layer_um=float(rng.uniform(0.3, 0.4) if fi else rng.uniform(0.03, 0.08)),
        oxide_um=float(rng.uniform(0.09, 0.15) if fi else rng.uniform(0.005, 0.02)),
        nitride_um=float(rng.uniform(0.06, 0.10) if fi else 0.0),
        filter_al_nm=float((120.0 if fi else 100.0) * rng.uniform(0.92, 1.08)),
        filter_polyimide_nm=float(200.0 * rng.uniform(0.92, 1.08)),
        contamination_rate=float(rng.uniform(0.05, 0.10)),
        contamination_mix=tuple(float(v) for v in mix),
        fwhm0_kev=float(rng.uniform(0.045, 0.065) if fi else rng.uniform(0.06, 0.08)),
        fwhm6_kev=float(rng.uniform(0.13, 0.19) if fi else rng.uniform(0.14, 0.20)),
        shelf_fraction=float(rng.uniform(0.01, 0.03) if fi else rng.uniform(0.02, 0.05)),
        escape_fraction=float(rng.uniform(0.002, 0.008)),
        wiggle=(float(rng.normal(0.0, 0.02)), float(rng.normal(0.0, 0.02))),
    )


def _contamination_tau(chip: SyntheticChip, energy: np.ndarray) -> np.ndarray:
    """Optical depth of the ACIS contaminant at the chip's epoch."""
    mix = dict(zip(("C", "N", "O", "F"), chip.contamination_mix, strict=True))
    shape = _mass_attenuation(mix, energy) / _mass_attenuation(
        mix, np.array([_CONTAMINATION_REF_KEV])
    )
    years = max(chip.epoch - _CONTAMINATION_START, 0.0)
    return chip.contamination_rate * years * shape


def synthetic_arf(chip: SyntheticChip, energ_lo: np.ndarray, energ_hi: np.ndarray) -> np.ndarray:
    """Effective area (cm^2) of a synthetic response on the given energy bins (keV).

    HRMA area x filter transmission x contamination x CCD quantum efficiency x
    vignetting x a smooth distortion, all evaluated at the bin centres.
    """
    e = 0.5 * (np.asarray(energ_lo, dtype=float) + np.asarray(energ_hi, dtype=float))
    mirror = chip.hrma_scale * _hrma_area(e)
    filt = _transmission(_POLYIMIDE, _POLYIMIDE_DENSITY, chip.filter_polyimide_nm * 1e-3, e)
    filt *= _transmission({"Al": 1.0}, _AL_DENSITY, chip.filter_al_nm * 1e-3, e)
    contam = np.exp(-_contamination_tau(chip, e))
    dead = _transmission({"Si": 1.0}, _SI_DENSITY, chip.dead_layer_um, e)
    dead *= _transmission(_SIO2, _SIO2_DENSITY, chip.oxide_um, e)
    dead *= _transmission(_SI3N4, _SI3N4_DENSITY, chip.nitride_um, e)
    absorbed = 1.0 - _transmission({"Si": 1.0}, _SI_DENSITY, chip.depletion_um, e)
    vignetting = chip.vignetting ** (0.85 + 0.1 * e)
    x = np.clip(2.0 * np.log(e / 0.2) / np.log(11.0 / 0.2) - 1.0, -1.0, 1.0)
    wiggle = 1.0 + chip.wiggle[0] * x + chip.wiggle[1] * (x * x - 1.0 / 3.0)
    return mirror * filt * contam * dead * absorbed * vignetting * np.clip(wiggle, 0.5, 1.5)


def synthetic_rmf(
    chip: SyntheticChip,
    energ_lo: np.ndarray,
    energ_hi: np.ndarray,
    e_min: np.ndarray,
    e_max: np.ndarray,
) -> np.ndarray:
    """Redistribution matrix (n_energy, n_channel) of a synthetic response.

    A Gaussian of energy-dependent width (FWHM^2 linear in E), a flat shelf from 0 to E
    and, above the Si K edge, a Si escape peak; each row sums to 1 over channels that
    cover the energy range.
    """
    e = 0.5 * (np.asarray(energ_lo, dtype=float) + np.asarray(energ_hi, dtype=float))
    e_min = np.asarray(e_min, dtype=float)
    e_max = np.asarray(e_max, dtype=float)
    edges = np.append(e_min, e_max[-1])
    fwhm = np.sqrt(chip.fwhm0_kev**2 + (chip.fwhm6_kev**2 - chip.fwhm0_kev**2) * e / 6.0)
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))

    n_chan = e_min.size
    min_width = float(np.min(e_max - e_min))

    def gauss(centre: np.ndarray, width: np.ndarray) -> np.ndarray:
        # Only the channels within 8 sigma of the centre are evaluated (a band matrix).
        span = int(np.ceil(16.0 * width.max() / min_width)) + 2
        first = np.searchsorted(e_max, centre - 8.0 * width, side="right")
        chan = first[:, None] + np.arange(span)[None, :]
        valid = chan < n_chan
        chan = np.minimum(chan, n_chan - 1)
        prob = ndtr((edges[chan + 1] - centre[:, None]) / width[:, None]) - ndtr(
            (edges[chan] - centre[:, None]) / width[:, None]
        )
        out = np.zeros((centre.size, n_chan))
        rows = np.broadcast_to(np.arange(centre.size)[:, None], chan.shape)
        out[rows[valid], chan[valid]] = prob[valid]
        return out

    escape = np.where(e > _ELEMENTS["Si"].edge, chip.escape_fraction, 0.0)
    escape[e - _SI_ESCAPE_KEV <= 0] = 0.0
    shelf = np.clip(np.minimum(e_max[None, :], e[:, None]) - e_min[None, :], 0.0, None)
    shelf /= e[:, None]
    matrix = (1.0 - chip.shelf_fraction - escape)[:, None] * gauss(e, sigma)
    matrix += chip.shelf_fraction * shelf
    escaped = escape > 0
    if np.any(escaped):
        peak = gauss(e[escaped] - _SI_ESCAPE_KEV, sigma[escaped])
        matrix[escaped] += escape[escaped, None] * peak
    return matrix


def synthetic_response(
    chip: SyntheticChip,
    input_grid: EnergyGrid = INPUT_GRID,
    model_grid: EnergyGrid = MODEL_GRID,
) -> tuple[np.ndarray, np.ndarray]:
    """Build a synthetic ARF and RMF and project them exactly as real ones are.

    Returns
    -------
    response : ndarray, shape (n_input, n_model)
        Projected response R, cm^2.
    effective_area : ndarray, shape (n_input,)
        Mean ARF over each input-grid bin, cm^2.
    """
    lo, hi = SYNTHETIC_ENERGY_EDGES[:-1], SYNTHETIC_ENERGY_EDGES[1:]
    e_min = np.arange(SYNTHETIC_N_CHANNELS) * SYNTHETIC_CHANNEL_WIDTH
    e_max = e_min + SYNTHETIC_CHANNEL_WIDTH
    specresp = synthetic_arf(chip, lo, hi)
    matrix = synthetic_rmf(chip, lo, hi, e_min, e_max)
    response = project_response(lo, hi, specresp, matrix, e_min, e_max, input_grid, model_grid)
    return response, bin_mean(lo, hi, specresp, input_grid.edges)


def synthetic_responses(
    n: int,
    *,
    rng: np.random.Generator | int | None = None,
    input_grid: EnergyGrid = INPUT_GRID,
    model_grid: EnergyGrid = MODEL_GRID,
    epoch_range: tuple[float, float] = (2000.0, 2025.0),
) -> ResponseLibrary:
    """``n`` synthetic ACIS-like responses (half FI, half BI on average).

    Parameters
    ----------
    n : int
        Number of responses.
    rng : numpy.random.Generator or int, optional
        Random numbers (or a seed).
    input_grid, model_grid : EnergyGrid
        Grids to project onto.
    epoch_range : tuple of float
        Range of the contamination epochs, decimal years.

    Returns
    -------
    ResponseLibrary
        Kind ``"synthetic"``, epoch the contamination epoch, details the
        :class:`SyntheticChip` parameters as JSON.
    """
    rng = np.random.default_rng(rng)
    n = int(n)
    if n < 0:
        raise ValueError(f"number of synthetic responses must be >= 0, got {n}")
    chips = [draw_synthetic_chip(rng, epoch_range=epoch_range) for _ in range(n)]
    response = np.zeros((n, input_grid.nbins, model_grid.nbins), dtype=np.float32)
    area = np.zeros((n, input_grid.nbins), dtype=np.float32)
    for i, chip in enumerate(chips):
        response[i], area[i] = synthetic_response(chip, input_grid, model_grid)
    return ResponseLibrary(
        names=tuple(f"synthetic-{i:04d}-{c.chip}" for i, c in enumerate(chips)),
        kinds=("synthetic",) * n,
        epochs=np.array([c.epoch for c in chips], dtype=float),
        response=response,
        effective_area=area,
        input_grid=input_grid,
        model_grid=model_grid,
        details=tuple(c.to_json() for c in chips),
    )


