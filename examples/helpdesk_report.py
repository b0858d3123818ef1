"""Helpdesk question: "what is this source, is it absorbed, how hard is it?" for 3c273.pi.

Answered twice: by the ``sherpa-latent report`` command, as a user would type it in the
folder that holds the spectrum (a PNG per spectrum with ``--plot DIR``, a FITS table
with ``--output FILE``), and through the Python API, whose numbers make the plain-language
answer printed at the end.

Run::

    python examples/helpdesk_report.py [OUTDIR]

OUTDIR (default: a new temporary folder) receives a copy of 3c273.pi with its ARF, RMF
and background, ``report_plots/3c273.png``, ``3c273_report.fits`` and ``answer.txt``.
"""

import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import sherpa
from astropy import units as u
from astropy.table import Table

from sherpa_latent import load_spectrum
from sherpa_latent.classical import fit_absorbed_powerlaw
from sherpa_latent.hardness import hardness_ratios
from sherpa_latent.inference import load_encoder
from sherpa_latent.spectrum import header_file_names

outdir = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="helpdesk_"))
outdir.mkdir(parents=True, exist_ok=True)
original = Path(sherpa.__file__).parent / "astro/datastack/tests/data/3c273.pi"

# Work in a folder holding the spectrum and the files its header names, as a user would.
for name in ["3c273.pi", *header_file_names(str(original)).values()]:
    if name and name.lower() != "none":
        shutil.copy(original.parent / name, outdir / name)


def sherpa_latent_command(command: str) -> list[str]:
    """The command's words; the console script beside this Python, or ``python -m``."""
    words = shlex.split(command)
    script = Path(sys.executable).with_name("sherpa-latent")
    if script.exists():
        return [str(script), *words[1:]]
    if shutil.which(words[0]):
        return words
    return [sys.executable, "-m", "sherpa_latent.cli", *words[1:]]


# --- 1. the command line --------------------------------------------------------------------
command = "sherpa-latent report 3c273.pi --plot report_plots --output 3c273_report.fits --clobber"
print(f"$ {command}")
run = subprocess.run(
    sherpa_latent_command(command), cwd=outdir, capture_output=True, text=True, check=False
)
print(run.stdout, end="")
if run.returncode != 0:
    sys.exit(f"sherpa-latent report failed ({run.returncode}):\n{run.stderr}")

table = Table.read(outdir / "3c273_report.fits", mask_invalid=False)
nh_unit = u.Unit("1e22 cm-2")  # whatever unit the column was written in
nh_classical = table["NH_CLASSICAL"].quantity[0].to_value(nh_unit)
nh_latent = table["NH_LATENT"].quantity[0].to_value(nh_unit)
print(
    f"3c273_report.fits, {len(table)} row: N_H {nh_classical:.4f} (classical), "
    f"{nh_latent:.4f} (network) x 10^22 cm^-2; {table['CLUSTER_LABEL'][0]}"
)

# --- 2. the Python API ----------------------------------------------------------------------
spec = load_spectrum(outdir / "3c273.pi")  # finds ARF, RMF and background from the header
hr = hardness_ratios(spec)  # CSC bands, modes and 68% credible intervals
fit = fit_absorbed_powerlaw(spec)  # wabs * powlaw1d, W-stat, 68% conf intervals
(latent,) = load_encoder().encode([spec])  # the shipped network


def interval(values, fmt: str = "{:.2f}") -> str:
    value, lo, hi = values
    return f"{fmt.format(value)} ({fmt.format(lo)} to {fmt.format(hi)})"


def absorption(nh_hi: float) -> str:
    """Plain words for the larger of the two N_H upper bounds, 10^22 cm^-2."""
    if nh_hi < 0.1:
        return "little absorbed, both upper bounds below 10^21 cm^-2"
    if nh_hi < 1.0:
        return "moderately absorbed, with a column of up to a few 10^21 cm^-2"
    return "absorbed, with a column above 10^22 cm^-2 allowed"


def hardness(hr_hs) -> str:
    """Plain words for HR_hs = (H-S)/(H+S) from its 68% interval."""
    if hr_hs.lo > 0:
        return "more counts in the hard band (2-7 keV) than in the soft band (0.5-1.2 keV)"
    if hr_hs.hi < 0:
        return "more counts in the soft band (0.5-1.2 keV) than in the hard band (2-7 keV)"
    return "about as many counts in the hard band (2-7 keV) as in the soft band (0.5-1.2 keV)"


top = sorted(latent.class_probabilities.items(), key=lambda kv: -kv[1])[:3]
likely = ", ".join(f"{name} {100 * p:.0f}%" for name, p in top)
caution = (
    f" Its anomaly score is {latent.anomaly:+.1f} sigma: the learned model fits this spectrum "
    "worse than it fits the simulated ones, so treat the cluster as a weak hint."
    if latent.anomaly > 2
    else f" Its anomaly score ({latent.anomaly:+.1f} sigma) says the learned model fits well."
)
answer = (
    f"{spec.object} (ObsID {spec.obsid}, {spec.exposure / 1e3:.1f} ks) has "
    f"{spec.net_counts():.0f} net counts in 0.5-7 keV. "
    f"What is it? The network places it in {latent.cluster_label.split(':')[0]}, whose "
    f"simulated training spectra are {latent.cluster_label.split(': ', 1)[1]}; the class "
    f"probabilities are {likely}. That make-up is of the simulated training set, not a "
    f"classification.{caution} "
    f"Is it absorbed? The absorbed power law gives N_H = {interval(fit.nh, '{:.3f}')} "
    f"x 10^22 cm^-2 and the network {interval(latent.nh, '{:.3f}')} x 10^22 cm^-2 (68%): "
    f"{absorption(max(fit.nh[2], latent.nh[2]))}. "
    f"How hard is it? HR_hm = {interval(hr.hr_hm.as_list(), '{:+.2f}')}, "
    f"HR_hs = {interval(hr.hr_hs.as_list(), '{:+.2f}')} and "
    f"HR_ms = {interval(hr.hr_ms.as_list(), '{:+.2f}')} (CSC bands, 68%): "
    f"{hardness(hr.hr_hs)}. These are ratios of counts, so they depend on the instrument "
    f"as well as the source; the photon index, {interval(fit.gamma)}, does not."
)
print()
print(answer)
(outdir / "answer.txt").write_text(answer + "\n")
