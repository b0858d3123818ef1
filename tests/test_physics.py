"""Tests of the XSPEC-free physics models (sherpa_latent.physics)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import constants
from scipy.integrate import quad
from scipy.special import erf, k0
from scipy.stats import norm as normal
from sherpa.astro.data import DataPHA
from sherpa.astro.instrument import Response1D, create_arf, create_delta_rmf
from sherpa.astro.ui.utils import Session
from sherpa.models.basic import PowLaw1D
from sherpa.utils.err import ModelErr

from sherpa_latent import physics as ph
from sherpa_latent.physics import (
    MODEL_CLASSES,
    BBodyRad,
    Bremss,
    DiskBB,
    Plasma,
    WAbs,
)

# XSPEC wabs, N_H = 1e22 cm^-2: bin-averaged transmission (e_lo, e_hi keV, transmission).
XSPEC_WABS_NH1 = [
    (0.50, 0.51, 0.000802086),
    (0.70, 0.71, 0.00722349),
    (0.99, 1.00, 0.0858903),
    (1.50, 1.51, 0.42599),
    (2.00, 2.01, 0.652365),
    (3.00, 3.01, 0.86329),
    (5.00, 5.01, 0.965462),
    (7.00, 7.01, 0.986882),
]

# XSPEC diskbb photon spectrum (photons/cm^2/s/keV) at (E keV, Tin keV) for norm = 1, from
# XSPEC's mcdspc routine (Mitsuda 1994 interpolation: value(E/Tin) Tin^2 norm / 361).
XSPEC_DISKBB_POINTS = [
    (0.01, 1.0, 0.11529295872057638),
    (0.1, 1.0, 0.024681273027051018),
    (0.5, 1.0, 0.007787174201395128),
    (1.0, 1.0, 0.00414729967894224),
    (3.0, 1.0, 0.0007044248666173738),
    (8.0, 1.0, 9.108451124287865e-06),
    (2.0, 2.0, 0.01658919871576896),
    (0.3, 0.5, 0.0016750566930847774),
]


def log_grid(emin: float, emax: float, nbins: int) -> tuple[np.ndarray, np.ndarray]:
    edges = np.geomspace(emin, emax, nbins + 1)
    return edges[:-1], edges[1:]


def energy_flux(kernel, *pars, emin=1e-4, emax=300.0, nbins=20000) -> float:
    """keV/cm^2/s from a fine log grid (bin flux times geometric bin centre)."""
    lo, hi = log_grid(emin, emax, nbins)
    return float(np.sum(kernel(*pars, lo, hi) * np.sqrt(lo * hi)))


def bremss_formula(e: float, kt: float, norm: float) -> float:
    """XSPEC bremss convention with the Born Gaunt factor, written out independently."""
    x = e / kt
    gaunt = np.sqrt(3.0) / np.pi * np.exp(x / 2.0) * k0(x / 2.0)
    return norm * 1.34 * gaunt * np.exp(-x) / (e * np.sqrt(kt))


# --------------------------------------------------------------------------------------
# Absorption
# --------------------------------------------------------------------------------------


def test_mm83_cross_section_rows_and_extrapolation():
    # 1 keV lies in the 0.867-1.303 row.
    assert ph.mm83_cross_section(1.0) == pytest.approx((120.6 + 169.3 - 47.7) * 1e-24)
    # At a tabulated edge the upper row applies (the edge is the start of its row).
    e = 0.532
    assert ph.mm83_cross_section(e) == pytest.approx(
        (95.5 + 145.8 * e - 61.1 * e**2) / e**3 * 1e-24
    )
    # Above 10 keV the last row, below 0.03 keV the first row.
    for e, (c0, c1, c2) in [(20.0, (701.2, 25.2, 0.0)), (0.02, (17.3, 608.1, -2150.0))]:
        expect = (c0 + c1 * e + c2 * e * e) / e**3 * 1e-24
        assert ph.mm83_cross_section(np.array([e]))[0] == pytest.approx(expect, rel=1e-12)
    # The oxygen K edge at 0.532 keV is a jump up in the cross-section.
    below, above = ph.mm83_cross_section(np.array([0.532 - 1e-9, 0.532]))
    assert above > 1.5 * below


@pytest.mark.parametrize("through_sherpa", [False, True])
def test_wabs_matches_xspec_reference(through_sherpa):
    lo = np.array([row[0] for row in XSPEC_WABS_NH1])
    hi = np.array([row[1] for row in XSPEC_WABS_NH1])
    ref = np.array([row[2] for row in XSPEC_WABS_NH1])
    if through_sherpa:
        model = WAbs("gal")
        model.nH = 1.0
        got = model(lo, hi)
    else:
        got = ph.wabs_transmission(1.0, lo, hi)
    rel = np.abs(got / ref - 1.0)
    assert rel[0] < 0.015  # 0.50-0.51 keV (measured 1.14%)
    assert np.all(rel[1:] < 0.002)  # from 0.7 keV up (worst measured 0.087%, at 0.70 keV)


def test_wabs_bins_straddling_edges_are_exact():
    # Bins across the O K (0.532) and Fe L (0.707) edges, and one wide bin across several.
    lo = np.array([0.52, 0.70, 0.30])
    hi = np.array([0.54, 0.72, 3.00])
    nh = 0.3
    got = ph.wabs_transmission(nh, lo, hi)
    for i in range(lo.size):
        pts = [b for b in ph.MM83_COEFFICIENTS[:, 0] if lo[i] < b < hi[i]]
        val = quad(
            lambda e: np.exp(-nh * 1e22 * ph.mm83_cross_section(e)),
            lo[i],
            hi[i],
            points=pts,
            epsabs=0,
            epsrel=1e-12,
            limit=200,
        )[0]
        assert got[i] == pytest.approx(val / (hi[i] - lo[i]), rel=1e-7)


def test_wabs_zero_column_and_points():
    lo, hi = log_grid(0.1, 10.0, 37)
    assert np.all(ph.wabs_transmission(0.0, lo, hi) == 1.0)
    model = WAbs()
    model.nh = 2.5
    pts = np.array([0.3, 1.0, 6.0])
    assert model(pts) == pytest.approx(np.exp(-2.5e22 * ph.mm83_cross_section(pts)), rel=1e-12)
    # A larger column absorbs more in every bin.
    t1, t2 = ph.wabs_transmission(np.array([1.0, 3.0]), lo, hi)
    assert np.all(t2 <= t1) and np.all(t2[lo < 2] < t1[lo < 2])


# --------------------------------------------------------------------------------------
# Additive kernels
# --------------------------------------------------------------------------------------


def test_powerlaw_analytic():
    lo = np.array([0.5, 1.0, 2.0])
    hi = np.array([1.0, 2.0, 7.0])
    assert ph.powerlaw_photon_flux(1.0, 3.0, lo, hi) == pytest.approx(3.0 * np.log(hi / lo))
    assert ph.powerlaw_photon_flux(2.0, 1.0, lo, hi) == pytest.approx(1.0 / lo - 1.0 / hi)
    g = 1.7
    expect = (hi ** (1 - g) - lo ** (1 - g)) / (1 - g)
    assert ph.powerlaw_photon_flux(g, 1.0, lo, hi) == pytest.approx(expect, rel=1e-12)
    # Continuous through gamma = 1.
    near = ph.powerlaw_photon_flux(1.0 + 1e-9, 1.0, lo, hi)
    assert near == pytest.approx(np.log(hi / lo), rel=1e-8)
    # Agrees with Sherpa's own integrated PowLaw1D.
    pl = PowLaw1D()
    pl.gamma, pl.ampl = 1.7, 2e-3
    assert ph.powerlaw_photon_flux(1.7, 2e-3, lo, hi) == pytest.approx(pl(lo, hi), rel=1e-10)


def test_gaussian_line_analytic():
    lo, hi = log_grid(5.0, 8.0, 300)
    line_e, sigma, flux = 6.4, 0.05, 2e-4
    got = ph.gaussian_line_photon_flux(line_e, sigma, flux, lo, hi)
    cdf, sf = normal.cdf, normal.sf
    expect = flux * np.where(
        lo >= line_e,
        sf(lo, line_e, sigma) - sf(hi, line_e, sigma),
        cdf(hi, line_e, sigma) - cdf(lo, line_e, sigma),
    )
    assert got == pytest.approx(expect, rel=1e-9, abs=1e-25)
    assert got.sum() == pytest.approx(flux, rel=1e-12)
    # Same as the erf form of the brief, in the core.
    core = (lo > 6.3) & (hi < 6.5)
    z = np.sqrt(2.0) * sigma
    erf_form = 0.5 * flux * (erf((hi - line_e) / z) - erf((lo - line_e) / z))
    assert got[core] == pytest.approx(erf_form[core], rel=1e-10)
    # Far tail keeps its relative accuracy (erf differences would give 0 there).
    tail = ph.gaussian_line_photon_flux(6.4, 0.05, 1.0, np.array([7.5]), np.array([7.6]))
    assert tail[0] > 0
    assert tail[0] == pytest.approx(normal.sf(7.5, 6.4, 0.05) - normal.sf(7.6, 6.4, 0.05), rel=1e-8)
    # Zero width: everything in the bin holding the line.
    delta = ph.gaussian_line_photon_flux(6.4, 0.0, 1.0, lo, hi)
    assert delta.sum() == pytest.approx(1.0)
    assert delta[np.searchsorted(hi, 6.4)] == pytest.approx(1.0)


@pytest.mark.parametrize("kt", [0.1, 1.0, 3.0])
def test_bbodyrad_bolometric_flux(kt):
    analytic = ph.BBODYRAD_CONSTANT * np.pi**4 / 15.0 * kt**4
    got = energy_flux(ph.bbodyrad_photon_flux, kt, 1.0)
    assert got == pytest.approx(analytic, rel=1e-4)  # measured 2e-10


@pytest.mark.parametrize("tin", [0.3, 1.0, 3.0])
def test_diskbb_bolometric_flux(tin):
    got = energy_flux(ph.diskbb_photon_flux, tin, 1.0)
    analytic = 2.0 * (3.0 / 8.0 * ph.DISKBB_CONSTANT) * np.pi**4 / 15.0 * tin**4
    assert got == pytest.approx(analytic, rel=1e-4)  # measured < 2e-5
    # Twice bbodyrad at the same norm and temperature, within XSPEC's 0.42%.
    twice_bb = 2.0 * ph.BBODYRAD_CONSTANT * np.pi**4 / 15.0 * tin**4
    assert got == pytest.approx(twice_bb, rel=0.005)


def test_diskbb_matches_xspec_points():
    model = DiskBB()
    for energy, tin, expect in XSPEC_DISKBB_POINTS:
        model.Tin = tin
        got = model(np.array([energy]))[0]
        assert got == pytest.approx(expect, rel=2e-4)  # measured < 8e-5


def test_diskbb_low_energy_slope_is_minus_two_thirds():
    e = np.array([1e-4, 1e-3])
    model = DiskBB()
    dens = model(e)
    assert np.log(dens[1] / dens[0]) / np.log(10.0) == pytest.approx(-2.0 / 3.0, abs=1e-3)


def test_bremss_constant_from_emissivity():
    # 6.8e-38 erg cm^3 s^-1 K^1/2 Hz^-1 -> photons/keV with T in keV.
    kev_erg = constants.e * 1e3 * 1e7
    hz_per_kev = constants.e * 1e3 / constants.h
    kelvin_per_kev = constants.e * 1e3 / constants.k
    c = 6.8e-38 * hz_per_kev / kev_erg / np.sqrt(kelvin_per_kev)
    assert c == pytest.approx(3.02e-15, rel=0.005)
    assert ph.BREMSS_HE_FACTOR == pytest.approx(1.34)


@pytest.mark.parametrize("kt", [0.5, 2.0, 7.0, 30.0])
def test_bremss_band_flux_matches_quad(kt):
    got = ph.bremss_photon_flux(kt, 1.0, np.array([0.5]), np.array([7.0]))[0]
    val = quad(bremss_formula, 0.5, 7.0, args=(kt, 1.0), epsabs=0, epsrel=1e-12, limit=200)[0]
    assert got == pytest.approx(val, rel=1e-6)  # brief asks 0.5%; measured 1e-15
    # Also low-energy bins, where the spectrum rises as 1/E.
    got_low = ph.bremss_photon_flux(kt, 1.0, np.array([0.01]), np.array([0.3]))[0]
    val_low = quad(bremss_formula, 0.01, 0.3, args=(kt, 1.0), epsabs=0, epsrel=1e-12, limit=200)[0]
    assert got_low == pytest.approx(val_low, rel=1e-6)


@pytest.mark.parametrize(
    "kernel, pars",
    [
        (ph.bbodyrad_photon_flux, (0.2, 3.0)),
        (ph.diskbb_photon_flux, (1.2, 50.0)),
        (ph.bremss_photon_flux, (0.3, 1e-3)),
        (ph.plasma_photon_flux, (0.7, 1.0, 0.0, 1e-3)),
    ],
)
def test_coarse_bins_are_accurate(kernel, pars):
    # Wide bins against the sum over a very fine grid of the same range.
    lo = np.array([0.05, 0.5, 2.0, 5.0])
    hi = np.array([0.5, 2.0, 5.0, 10.0])
    coarse = kernel(*pars, lo, hi)
    for i in range(lo.size):
        flo, fhi = log_grid(lo[i], hi[i], 4000)
        assert coarse[i] == pytest.approx(kernel(*pars, flo, fhi).sum(), rel=1e-8)


# --------------------------------------------------------------------------------------
# Plasma
# --------------------------------------------------------------------------------------


def plasma_continuum(kt, abundance, norm, lo, hi):
    """The bremss-equivalent continuum the plasma model documents."""
    bremss_norm = 3.02e-15 * 1e14 * norm * ph.plasma_continuum_factor(abundance)
    return ph.bremss_photon_flux(kt, bremss_norm / ph.BREMSS_HE_FACTOR, lo, hi)


def test_plasma_continuum_factor_value():
    # 1 + 4 x 0.0977 + 0.138 A: 1.529 at solar, i.e. 1.14 times XSPEC bremss's 1.34.
    assert ph.plasma_continuum_factor(1.0) == pytest.approx(1.529, abs=0.002)
    assert ph.plasma_continuum_factor(0.0) == pytest.approx(1.391, abs=0.001)


def test_plasma_continuum_away_from_lines():
    lo, hi = log_grid(0.3, 10.0, 400)
    got = ph.plasma_photon_flux(3.0, 1.0, 0.0, 1e-3, lo, hi)
    cont = plasma_continuum(3.0, 1.0, 1e-3, lo, hi)
    mid = np.sqrt(lo * hi)
    near = np.any(np.abs(mid[:, None] - ph._LINE_E[None, :]) < 0.05 * ph._LINE_E[None, :], axis=1)
    assert np.sum(~near) > 100
    assert got[~near] == pytest.approx(cont[~near], rel=1e-9)
    assert np.all(got[near] >= cont[near] * (1 - 1e-12))


def test_plasma_lines_at_right_energies():
    lo = np.arange(0.5, 7.5, 0.001)
    hi = lo + 0.001
    mid = 0.5 * (lo + hi)
    for kt in (0.4, 1.5, 5.0):
        excess = ph.plasma_photon_flux(kt, 1.0, 0.0, 1.0, lo, hi) - plasma_continuum(
            kt, 1.0, 1.0, lo, hi
        )
        for ion, energy, kt_peak, _ in ph.PLASMA_LINES:
            if abs(np.log(kt / kt_peak)) > 1.0:
                continue  # too far from this line's temperature to matter
            window = np.abs(mid - energy) < 0.02
            peak = mid[window][np.argmax(excess[window])]
            assert peak == pytest.approx(energy, abs=0.0015), (ion, kt)
            assert excess[window].max() > 0


def test_plasma_fe_line_stronger_when_hot():
    lo = np.arange(6.0, 7.5, 0.002)
    hi = lo + 0.002
    window = (lo > 6.6) & (hi < 6.8)

    def fe25(kt):
        total = ph.plasma_photon_flux(kt, 1.0, 0.0, 1.0, lo, hi)
        return float(np.sum((total - plasma_continuum(kt, 1.0, 1.0, lo, hi))[window]))

    hot, cool = fe25(5.0), fe25(0.5)
    assert hot > 1000 * max(cool, 1e-300)
    # At kT = 5 keV the Fe XXV equivalent width is the table's peak, 0.5 keV.
    cont_density = plasma_continuum(5.0, 1.0, 1.0, np.array([6.69]), np.array([6.71]))[0] / 0.02
    assert hot / cont_density == pytest.approx(0.50, rel=0.02)


def test_plasma_abundance_and_redshift():
    lo = np.arange(0.5, 8.0, 0.002)
    hi = lo + 0.002
    no_metals = ph.plasma_photon_flux(2.0, 0.0, 0.0, 1.0, lo, hi)
    assert no_metals == pytest.approx(plasma_continuum(2.0, 0.0, 1.0, lo, hi), rel=1e-12)
    # Redshift moves the Fe XXV line to 6.7 / (1 + z) and divides photon rates by (1 + z).
    z = 0.5
    shifted = ph.plasma_photon_flux(5.0, 1.0, z, 1.0, lo, hi)
    rest_lo, rest_hi = lo * (1 + z), hi * (1 + z)
    rest = ph.plasma_photon_flux(5.0, 1.0, 0.0, 1.0, rest_lo, rest_hi)
    assert shifted == pytest.approx(rest / (1 + z), rel=1e-9)
    window = np.abs(0.5 * (lo + hi) - 6.7 / (1 + z)) < 0.01
    assert np.argmax(shifted[window]) not in (0, window.sum() - 1)


# --------------------------------------------------------------------------------------
# Sherpa models
# --------------------------------------------------------------------------------------


def test_wabs_times_powerlaw_in_sherpa():
    lo, hi = log_grid(0.3, 8.0, 50)
    absorber, pl = WAbs("gal"), PowLaw1D("pl")
    absorber.nh, pl.gamma, pl.ampl = 0.7, 1.9, 3e-3
    got = (absorber * pl)(lo, hi)
    expect = ph.wabs_transmission(0.7, lo, hi) * ph.powerlaw_photon_flux(1.9, 3e-3, lo, hi)
    assert got == pytest.approx(expect, rel=1e-12)


def test_wabs_product_folded_through_a_response():
    edges = np.linspace(0.1, 10.0, 500)
    elo, ehi = edges[:-1], edges[1:]
    area = np.linspace(100.0, 600.0, elo.size)
    chans = np.arange(1, elo.size + 1)
    pha = DataPHA("sim", chans, np.ones(elo.size), exposure=2000.0)
    pha.set_arf(create_arf(elo, ehi, area))
    pha.set_rmf(create_delta_rmf(elo, ehi, e_min=elo, e_max=ehi))
    absorber, bb = WAbs("gal"), BBodyRad("bb")
    absorber.nh, bb.kt, bb.norm = 0.4, 0.8, 20.0
    counts = pha.eval_model(Response1D(pha)(absorber * bb))
    expect = (
        2000.0
        * area
        * ph.wabs_transmission(0.4, elo, ehi)
        * ph.bbodyrad_photon_flux(0.8, 20.0, elo, ehi)
    )
    assert counts == pytest.approx(expect, rel=1e-10, abs=1e-300)


@pytest.mark.parametrize("cls", [BBodyRad, DiskBB, Bremss, Plasma])
def test_flux_conserved_between_grids(cls):
    model = cls()
    a_lo, a_hi = log_grid(0.5, 7.0, 37)
    b = np.sort(np.concatenate([[0.5, 7.0], np.random.default_rng(1).uniform(0.5, 7.0, 120)]))
    assert model(a_lo, a_hi).sum() == pytest.approx(model(b[:-1], b[1:]).sum(), rel=1e-9)


def test_absorbed_flux_nearly_conserved_between_fine_grids():
    absorber, bb = WAbs(), BBodyRad()
    absorber.nh = 0.5
    src = absorber * bb
    a = src(*log_grid(0.5, 7.0, 700)).sum()
    b = src(*log_grid(0.5, 7.0, 1013)).sum()
    assert a == pytest.approx(b, rel=1e-5)


def test_parameters_by_name_and_defaults():
    absorber = WAbs()
    assert absorber.nh is absorber.nH and absorber.NH is absorber.nH
    absorber.nh = 2.0
    assert absorber.nH.val == 2.0
    assert (absorber.nH.min, absorber.nH.max, absorber.nH.val) == (0.0, 1e5, 2.0)
    assert absorber.nH.units == "10^22 atoms / cm^2"
    plasma = Plasma()
    assert [p.name for p in plasma.pars] == ["kT", "Abundanc", "Redshift", "norm"]
    assert plasma.abundanc.frozen and plasma.redshift.frozen and not plasma.kt.frozen
    assert plasma.abundanc.val == 1.0 and plasma.redshift.val == 0.0
    assert BBodyRad().kT.val == 3.0 and Bremss().kT.val == 7.0 and DiskBB().tin.val == 1.0
    for cls in (BBodyRad, DiskBB, Bremss, Plasma):
        assert cls().pars[-1].name == "norm"


def test_registration_names():
    session = Session()
    for cls in MODEL_CLASSES:
        session.add_model(cls)
    for name, cls in zip(
        ("wabs", "bbodyrad", "diskbb", "bremss", "plasma"), MODEL_CLASSES, strict=True
    ):
        comp = session.create_model_component(name, "c" + name)
        assert isinstance(comp, cls)
        assert comp.name == f"{name}.c{name}"
    session.set_par("cwabs.nh", 3.0)
    assert session.get_model_component("cwabs").nH.val == 3.0


def test_points_and_integrate_flag():
    bb = BBodyRad()
    bb.kt, bb.norm = 2.0, 5.0
    e = np.array([0.5, 1.0, 4.0])
    density = 5.0 * 1.0344e-3 * e**2 / np.expm1(e / 2.0)
    assert bb(e) == pytest.approx(density, rel=1e-12)
    lo, hi = e, e * 1.1
    assert not np.allclose(bb(lo, hi), density)
    bb.integrate = False
    assert bb(lo, hi) == pytest.approx(density, rel=1e-12)


@pytest.mark.parametrize("cls", MODEL_CLASSES)
def test_bad_grids_raise_model_error(cls):
    model = cls()
    with pytest.raises(ModelErr, match="xlo > xhi") as info:
        model(np.array([10.0, 5.0]), np.array([5.0, 1.0]))
    assert "\n" not in str(info.value)
    with pytest.raises(ModelErr, match="positive"):
        model(np.array([0.0, 1.0]))
    with pytest.raises(ModelErr, match="positive"):
        model(np.array([-1.0, 1.0]), np.array([1.0, 2.0]))


# --------------------------------------------------------------------------------------
# Vectorisation and input checks
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kernel, columns",
    [
        (ph.wabs_transmission, [[0.0, 0.05, 1.0, 30.0, 300.0]]),
        (ph.powerlaw_photon_flux, [[0.5, 1.0, 1.7, 2.5, 3.0], [1, 2, 3, 4, 5]]),
        (ph.bbodyrad_photon_flux, [[0.05, 0.1, 0.5, 2.0, 10.0], [1, 10, 100, 1, 1]]),
        (ph.diskbb_photon_flux, [[0.1, 0.5, 1.0, 2.0, 0.0], [1, 2, 3, 4, 5]]),
        (ph.bremss_photon_flux, [[0.2, 1.0, 5.0, 20.0, 80.0], [1, 1, 2, 2, 3]]),
        (
            ph.gaussian_line_photon_flux,
            [[0.6, 1.0, 6.4, 6.7, 9.0], [0.0, 0.01, 0.1, 0.2, 1.0], [1, 2, 3, 4, 5]],
        ),
        (
            ph.plasma_photon_flux,
            [
                [0.2, 1.0, 3.0, 8.0, 30.0],
                [1.0, 0.3, 0.0, 1.0, 2.0],
                [0.0, 0.0, 0.1, 0.5, 1.0],
                [1, 2, 3, 4, 5],
            ],
        ),
    ],
)
def test_vectorised_equals_scalar_loop(kernel, columns):
    lo, hi = log_grid(0.2, 10.0, 64)
    arrays = [np.asarray(c, dtype=float) for c in columns]
    batch = kernel(*arrays, lo, hi)
    assert batch.shape == (5, 64)
    for i in range(5):
        single = kernel(*[float(a[i]) for a in arrays], lo, hi)
        assert single.shape == (64,)
        assert batch[i] == pytest.approx(single, rel=1e-12, abs=1e-300)
    # A scalar parameter broadcasts against an array one.
    if len(arrays) > 1:
        mixed = kernel(arrays[0], *[float(a[0]) for a in arrays[1:]], lo, hi)
        assert mixed.shape == (5, 64)


def test_kernel_input_errors():
    lo, hi = log_grid(0.5, 7.0, 10)
    with pytest.raises(ValueError):
        ph.bbodyrad_photon_flux(1.0, 1.0, lo, hi[:-1])
    with pytest.raises(ValueError):
        ph.bbodyrad_photon_flux(1.0, 1.0, hi, lo)
    with pytest.raises(ValueError):
        ph.wabs_transmission(1.0, np.array([0.0]), np.array([1.0]))
    with pytest.raises(ValueError):
        ph.bremss_photon_flux(np.ones(3), np.ones(4), lo, hi)
    with pytest.raises(ValueError):
        ph.plasma_photon_flux(1.0, 1.0, -1.0, 1.0, lo, hi)
