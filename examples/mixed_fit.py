"""Mixing classical and learned components: 3C 273 fitted four ways, statistics and fluxes.

1. the classical absorbed power law, ``wabs.gal * powlaw1d.pl``;
2. the learned spectrum alone, ``latent.src`` started from the encoder;
3. ``wabs.gal * latent.src`` with ``gal.nh`` frozen at the Galactic column towards 3C 273,
   1.73 x 10^20 cm^-2 from HI4PI (the latent spectrum is intrinsic to the source, absorption
   included, so the Galactic absorber is a known extra that the latents need not learn);
4. ``latent.src + powlaw1d.extra``: the learned spectrum plus a classical power law.

Run::

    python examples/mixed_fit.py [OUTDIR]

It prints a table of the W-stat values and the 0.5-7 keV energy fluxes from
``calc_energy_flux`` and writes it, as plain text, to ``OUTDIR/mixed_fit.txt`` (OUTDIR
defaults to a new temporary folder).
"""

# The session style imports everything from Sherpa's and this plugin's ui modules.
# ruff: noqa: F403, F405

import sys
import tempfile
from pathlib import Path

import sherpa
from sherpa.astro.ui import *

from sherpa_latent.ui import *

outdir = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="mixed_fit_"))
outdir.mkdir(parents=True, exist_ok=True)
pha = Path(sherpa.__file__).parent / "astro/datastack/tests/data/3c273.pi"

load_pha(str(pha))
set_stat("wstat")  # the Cash statistic with the background (3c273_bg.pi) modelled
notice(0.5, 7)
rows = []  # (model, statistic, dof, energy flux in 0.5-7 keV of the whole source model)


def record(label: str) -> None:
    result = get_fit_results()
    flux = calc_energy_flux(0.5, 7)  # erg/cm^2/s, the whole source expression
    rows.append((label, result.statval, result.dof, flux))


# 1. classical ---------------------------------------------------------------------------
set_source(wabs.gal * powlaw1d.pl)
gal, pl = get_model_component("gal"), get_model_component("pl")
gal.nh, pl.gamma, pl.ampl = 0.05, 2.0, 1e-3
fit()
record("wabs.gal * powlaw1d.pl")
classical_flux = calc_energy_flux(0.5, 7)

# 2. latent alone -------------------------------------------------------------------------
src = set_latent_source(name="src")  # latent.src, z1..z8 and norm from the encoder
fit()
record("latent.src")
print(f"latent.src alone: 0.5-7 keV photon flux {src.norm.val:.4g} photons/cm^2/s")

# 3. Galactic absorption times the latent spectrum ----------------------------------------
set_source(wabs.gal * latent.src)
gal, src = get_model_component("gal"), get_model_component("src")
gal.nh = galactic_nh().nh  # 10^22 cm^-2: HI4PI towards 3C 273, from its RA_TARG/DEC_TARG
freeze(gal.nh)
init_from_result(src, get_latent())  # start z1..z8 and norm where the encoder put them
fit()
record(f"wabs.gal * latent.src (gal.nh = {gal.nh.val:.4f} frozen)")
unabsorbed = calc_energy_flux(0.5, 7, model=src)  # the latent component alone
print(f"wabs.gal * latent.src: latent component before absorption {unabsorbed:.4g} erg/cm^2/s")

# 4. the latent spectrum plus a classical power law ---------------------------------------
set_source(latent.src + powlaw1d.extra)
src, extra = get_model_component("src"), get_model_component("extra")
init_from_result(src, get_latent())
extra.gamma, extra.ampl = 1.7, 1e-5  # start the extra component faint
fit()
latent_part = calc_energy_flux(0.5, 7, model=src)
extra_part = calc_energy_flux(0.5, 7, model=extra)
record("latent.src + powlaw1d.extra")
print(
    f"latent.src + powlaw1d.extra: latent {latent_part:.4g}, extra {extra_part:.4g} "
    f"erg/cm^2/s (Gamma {extra.gamma.val:.2f})"
)

# --- compare --------------------------------------------------------------------------------
lines = [
    "3C 273, 0.5-7 keV, W-stat",
    f"{'model':<48} {'W-stat':>8} {'dof':>4} {'flux (erg/cm^2/s)':>18} {'vs classical':>12}",
]
for label, stat, dof, flux in rows:
    change = 100 * (flux / classical_flux - 1)
    lines.append(f"{label:<48} {stat:8.2f} {dof:4d} {flux:18.4g} {change:+11.1f}%")
text = "\n".join(lines)
print()
print(text)
(outdir / "mixed_fit.txt").write_text(text + "\n")
print(f"table written to {outdir / 'mixed_fit.txt'}")
