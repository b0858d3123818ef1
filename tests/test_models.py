"""The ``latent`` Sherpa model component: flux conservation, grids, caching, composition,
parameter handling, and saving a session with it (save/restore and save_all)."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_small_network, require_default_network
from scipy.special import erf
from sherpa.astro import ui

import sherpa_latent.ui as slui
from sherpa_latent.errors import LatentModelError
from sherpa_latent.inference import LatentResult
from sherpa_latent.models import LatentSpectrum, init_from_result


@pytest.fixture
def component(session) -> LatentSpectrum:
    src = LatentSpectrum("src")
    src.z1.val, src.z2.val, src.z4.val = 1.2, -0.7, 2.0
    src.norm.val = 3e-4
    return src


def _edges(kind: str, lo: float, hi: float, n: int) -> np.ndarray:
    return np.geomspace(lo, hi, n + 1) if kind == "log" else np.linspace(lo, hi, n + 1)


def test_parameters(component: LatentSpectrum) -> None:
    names = [p.name for p in component.pars]
    assert names == [f"z{i}" for i in range(1, 9)] + ["norm"]
    assert component.norm.units == "photons/cm^2/s"
    assert component.norm.min == 0 and component.z3.min == -5 and component.z3.max == 5
    assert component.type == "latent"


def test_decoder_matches_the_network(component: LatentSpectrum) -> None:
    encoder = slui.get_network()
    z = np.array([p.val for p in component.zs])
    expected = encoder.decode(z, np.log10(component.norm.val))
    got = component.model_grid_flux()
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-30)


def test_norm_is_the_photon_flux_in_0p5_7_kev(component: LatentSpectrum) -> None:
    e = np.geomspace(0.5, 7.0, 4001)
    assert component(e[:-1], e[1:]).sum() == pytest.approx(3e-4, rel=1e-4)
    component.norm.val = 0.0
    assert np.all(component(e[:-1], e[1:]) == 0)


@pytest.mark.parametrize("band", [(0.3, 8.0), (0.5, 7.0), (0.27, 9.1)])
def test_flux_is_conserved_across_grids(component: LatentSpectrum, band) -> None:
    """What must hold 3: two grids over the same range give the same total (0.5%)."""
    coarse = _edges("lin", *band, 23)
    fine = _edges("log", *band, 3000)
    irregular = np.sort(np.concatenate([band, np.random.default_rng(1).uniform(*band, 200)]))
    totals = [component(e[:-1], e[1:]).sum() for e in (coarse, fine, irregular)]
    assert totals[1] == pytest.approx(totals[0], rel=5e-3)
    assert totals[2] == pytest.approx(totals[0], rel=5e-3)


def test_zero_outside_the_model_grid(component: LatentSpectrum) -> None:
    e = np.array([0.05, 0.1, 0.15, 0.2])
    assert np.all(component(e[:-1], e[1:]) == 0)
    e = np.array([10.0, 11.0, 12.0])
    assert np.all(component(e[:-1], e[1:]) == 0)
    # a bin straddling the grid's end holds only the part inside
    inside = component([9.0], [10.0])[0]
    assert component([9.0], [11.0])[0] == pytest.approx(inside, rel=1e-12)
    assert component([0.1, 10.5]).tolist() == [0.0, 0.0]


def test_points_give_the_density(component: LatentSpectrum) -> None:
    x = np.geomspace(0.3, 8.0, 20001)
    density = component(x)
    assert np.all(density > 0)
    binned = component([0.3], [8.0])[0]
    assert np.trapezoid(density, x) == pytest.approx(binned, rel=2e-3)
    component.integrate = False  # Sherpa's convention: evaluate at the lower edges
    np.testing.assert_allclose(component(x[:-1], x[1:]), density[:-1])


def test_wavelength_grid_is_refused(component: LatentSpectrum) -> None:
    hc = 12.398419843320026
    e = np.geomspace(0.5, 7.0, 11)
    wlo, whi = hc / e[1:], hc / e[:-1]  # each bin lo < hi, the grid decreasing (as Sherpa)
    with pytest.raises(LatentModelError, match="wavelength"):
        component(wlo, whi)
    with pytest.raises(LatentModelError, match="wavelength"):
        component(e[1:], e[:-1])


def test_cached_like_sherpa_models(component: LatentSpectrum) -> None:
    e = np.geomspace(0.3, 8.0, 101)
    first = component(e[:-1], e[1:])
    hits = component._cache_ctr["hits"]
    again = component(e[:-1], e[1:])
    assert component._cache_ctr["hits"] == hits + 1
    np.testing.assert_array_equal(first, again)
    component.z5.val = 0.5
    assert not np.array_equal(component(e[:-1], e[1:]), first)


def test_init_from_result(component: LatentSpectrum) -> None:
    z = np.array([0.5, -1.0, 7.0, 0.0, 0.1, 0.2, -0.3, 0.4])
    result = LatentResult(
        file="x.pi", z=z, z_err=np.full(8, 0.1), log_norm=-3.5, log_norm_err=0.05,
        nh=(0.1, 0.05, 0.2), cluster=0,
    )  # fmt: skip
    component.z2.freeze()
    component.z2.val = 0.25
    init_from_result(component, result)
    assert component.z1.val == 0.5 and component.z3.val == 5.0  # clipped to the soft limit
    assert component.z2.val == 0.25  # frozen parameters are left alone
    assert component.norm.val == pytest.approx(10**-3.5)
    bad = LatentResult(
        file="x.pi", z=z[:4], z_err=z[:4], log_norm=-3.5, log_norm_err=0.05,
        nh=(0.1, 0.05, 0.2), cluster=0,
    )  # fmt: skip
    with pytest.raises(LatentModelError):
        init_from_result(component, bad)


def test_pickle_keeps_the_network(component: LatentSpectrum) -> None:
    e = np.geomspace(0.3, 8.0, 51)
    before = component(e[:-1], e[1:])
    copy = pickle.loads(pickle.dumps(component))
    assert copy.network == component.network and copy.network_sha256
    np.testing.assert_array_equal(copy(e[:-1], e[1:]), before)


def test_a_changed_network_is_refused(component: LatentSpectrum, tmp_path: Path) -> None:
    other = make_small_network(tmp_path / "other", seed=1)
    component.set_network(str(other))
    component([1.0], [2.0])
    state = component.__getstate__()
    state["_network_sha256"] = "0" * 64
    copy = LatentSpectrum.__new__(LatentSpectrum)
    copy.__dict__.update(state)
    with pytest.raises(LatentModelError, match="SHA-256"):
        copy([1.0], [2.0])


# --- the decoder: the network's own, in float64 ------------------------------------------
def _reference_flux(state: dict, z: np.ndarray, norm: float) -> np.ndarray:
    """The decoder's maths in float64 numpy, from a state dict (photons/cm^2/s per bin):
    the GELU MLP, log-sum-exp over the norm band's bin fractions, clamp, times norm."""
    x = np.asarray(z, dtype=float)
    k = 0
    while f"decoder.{k}.weight" in state:
        x = state[f"decoder.{k}.weight"].double().numpy() @ x
        x = x + state[f"decoder.{k}.bias"].double().numpy()
        if f"decoder.{k + 2}.weight" in state:
            x = 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))  # nn.GELU()
        k += 2
    with np.errstate(divide="ignore"):
        weighted = x + np.log(state["band_weights"].double().numpy())
    top = weighted.max()
    lse = top + np.log(np.exp(weighted - top).sum())
    return norm * np.exp(np.clip(x - lse, -80.0, 30.0))


@pytest.fixture
def shipped() -> Iterator[LatentSpectrum]:
    """A component of the network shipped in the package, alone in a clean session."""
    require_default_network()
    ui.clean()
    slui.load_network("default", device="cpu")
    yield LatentSpectrum("src")
    ui.clean()


def test_decoder_is_the_network_in_float64(shipped: LatentSpectrum) -> None:
    """The component evaluates the network's own decode() on a float64 copy: it agrees
    with an independent float64 numpy evaluation to 1e-12, and with the float32 network
    to float32 precision."""
    encoder = slui.get_network()
    state = encoder.model.state_dict()
    assert shipped.decoder().network.decoder_dtype == torch.float64
    rng = np.random.default_rng(7)
    latents = np.vstack([np.zeros(8), rng.normal(size=(3, 8)), rng.uniform(-5, 5, (2, 8))])
    points = np.geomspace(0.21, 9.9, 301)
    edges = shipped.decoder().edges
    for z in latents:
        for norm in (1e-7, 3e-4, 0.05):
            pars = [*z, norm]
            expected = _reference_flux(state, z, norm)
            np.testing.assert_allclose(shipped.model_grid_flux(pars), expected, rtol=1e-12)
            # photons/cm^2/s/keV at points: the bin's flux over its width in keV
            i = np.searchsorted(edges, points, side="right") - 1
            density = expected[i] / (points * np.log(edges[i + 1] / edges[i]))
            np.testing.assert_allclose(shipped.calc(pars, points), density, rtol=1e-12)
            single = encoder.decode(z, np.log10(norm))
            np.testing.assert_allclose(single, expected, rtol=2e-5)


def test_finite_differences_are_smooth(shipped: LatentSpectrum) -> None:
    """Sherpa's optimisers differentiate by finite steps of about 1e-7 relative: in
    float64 such a step gives the same derivative as a 1000 times larger one."""
    e = np.geomspace(0.3, 8.0, 201)
    pars = np.array([0.4, -1.0, 0.3, 1.5, -0.2, 0.8, -0.6, 0.1, 2e-4])
    for k in (0, 3, 8):
        derivs = []
        for rel in (1e-7, 1e-4):
            h = rel * max(abs(pars[k]), 1.0) if k < 8 else rel * pars[k]
            up, down = pars.copy(), pars.copy()
            up[k] += h
            down[k] -= h
            derivs.append(
                (shipped.calc(up, e[:-1], e[1:]) - shipped.calc(down, e[:-1], e[1:])) / (2 * h)
            )
        scale = np.max(np.abs(derivs[1]))
        assert scale > 0
        np.testing.assert_allclose(derivs[0], derivs[1], rtol=0, atol=1e-5 * scale)


def test_evaluates_in_forked_workers(shipped: LatentSpectrum) -> None:
    """Sherpa's conf evaluates the model in forked processes, after the parent has used
    torch's thread pool: the child must not wait forever on it."""
    import multiprocessing

    e = np.geomspace(0.3, 8.0, 201)
    pars = [0.4, -1.0, 0.3, 1.5, -0.2, 0.8, -0.6, 0.1, 2e-4]
    expected = shipped.calc(pars, e[:-1], e[1:])
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)

    def work() -> None:
        pars[0] += 0.5  # not the cached value
        send.send(shipped.calc(pars, e[:-1], e[1:]))

    child = ctx.Process(target=work)
    child.start()
    try:
        assert receive.poll(60), "the model hangs in a forked process"
        got = receive.recv()
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()
    assert np.all(np.isfinite(got)) and not np.array_equal(got, expected)
    pars[0] += 0.5
    np.testing.assert_array_equal(got, shipped.calc(pars, e[:-1], e[1:]))


def test_fit_converges_with_the_shipped_network(shipped: LatentSpectrum, pha_3c273: Path) -> None:
    ui.load_pha(str(pha_3c273))
    ui.set_stat("cstat")
    ui.notice(0.5, 7.0)
    ui.set_source(shipped)
    shipped.norm = 2e-4
    start = ui.calc_stat()
    ui.set_method("levmar")
    ui.fit()
    first = ui.get_fit_results()
    assert first.succeeded and first.statval < start
    ui.fit()  # converged: a second fit from there gains nothing
    again = ui.get_fit_results()
    assert again.succeeded and again.statval == pytest.approx(first.statval, abs=0.05)
    assert ui.calc_photon_flux(0.5, 7.0, model=shipped) == pytest.approx(shipped.norm.val, rel=1e-3)


# --- in a Sherpa session -----------------------------------------------------------------
@pytest.fixture
def loaded(session, pha_3c273: Path):
    ui.load_pha(str(pha_3c273))
    ui.set_stat("cstat")
    ui.notice(0.5, 7.0)
    yield


def test_session_name_and_composition(loaded) -> None:
    src = slui.latent.src
    assert isinstance(src, LatentSpectrum) and ui.get_model_component("src") is src
    gal = slui.wabs.gal
    ui.set_source(gal * src)
    gal.nh = 0.03
    ui.freeze(gal.nh)
    ui.set_source(gal * src + ui.powlaw1d.extra)
    extra = ui.get_model_component("extra")
    extra.ampl = 1e-5
    ui.link(src.z2, src.z1 * 0.5)
    ui.freeze(src.z3, src.z4)
    ui.thaw(src.z4)
    free = [p.fullname for p in ui.get_source().pars if not p.frozen and not p.link]
    assert "src.z2" not in free and "src.z3" not in free and "src.z4" in free
    src.z1 = 0.8
    assert src.z2.val == pytest.approx(0.4)
    stat = ui.calc_stat()
    assert np.isfinite(stat)
    flux = ui.calc_photon_flux(0.5, 7.0, model=src)
    assert flux == pytest.approx(src.norm.val, rel=1e-3)


def test_wavelength_analysis_is_refused_in_session(loaded) -> None:
    ui.set_source(slui.latent.src)
    ui.set_analysis("wavelength")
    with pytest.raises(LatentModelError, match="wavelength"):
        ui.calc_stat()


def test_covar_and_conf_on_latent_parameters(loaded) -> None:
    src = slui.latent.src
    ui.set_source(src)
    src.norm = 2e-4
    ui.freeze(src)
    ui.thaw(src.norm, src.z1)
    ui.set_method("neldermead")
    ui.fit()
    ui.set_method("levmar")
    ui.fit()
    ui.covar()
    cov = ui.get_covar_results()
    assert all(np.isfinite(v) and v > 0 for v in cov.parmaxes)
    ui.conf(src.norm)
    res = ui.get_conf_results()
    assert res.parmins[0] < 0 < res.parmaxes[0]


def test_save_all_and_restore(loaded, tmp_path: Path) -> None:
    src = slui.latent.src
    ui.set_source(slui.wabs.gal * src)
    values = {"z1": 0.3, "z2": -1.1, "z5": 2.5, "norm": 2.5e-4}
    for name, value in values.items():
        setattr(src, name, value)
    ui.freeze(src.z7)
    stat = ui.calc_stat()
    script = tmp_path / "session.py"
    ui.save_all(str(script))
    text = script.read_text()
    assert 'create_model_component("latent", "src")' in text

    ui.clean()
    namespace: dict = {}
    exec("from sherpa.astro.ui import *\nfrom sherpa_latent.ui import *\n", namespace)
    exec(compile(text, str(script), "exec"), namespace)
    restored = ui.get_model_component("src")
    assert isinstance(restored, LatentSpectrum)
    for name, value in values.items():
        assert getattr(restored, name).val == pytest.approx(value)
    assert restored.z7.frozen
    assert ui.calc_stat() == pytest.approx(stat, rel=1e-9)

    # Sherpa's pickled session keeps the component and its network
    state = tmp_path / "session.save"
    ui.save(str(state), clobber=True)
    ui.clean()
    ui.restore(str(state))
    again = ui.get_model_component("src")
    assert again.network_sha256 == restored.network_sha256
    assert ui.calc_stat() == pytest.approx(stat, rel=1e-9)
