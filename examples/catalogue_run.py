"""Catalogue run: encode a list of spectra into a FITS table and a DS9 region file.

Writes an ``@list`` of the three Chandra spectra that ship inside the installed ``sherpa``
package (3C 273 and two Chandra Source Catalog spectra), runs ``sherpa-latent encode``
on it with CIAO-style ``key=value`` arguments, shows that an existing output is not
overwritten without ``clobber=yes``, and reads the table and the region file back.

Run::

    python examples/catalogue_run.py [OUTDIR]

OUTDIR (default: a new temporary folder) receives ``spectra.lis``, ``latents.fits`` and
``latents.reg``.
"""

import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sherpa
from astropy import units as u
from astropy.table import Table
from regions import Regions

outdir = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="catalogue_"))
outdir.mkdir(parents=True, exist_ok=True)
data = Path(sherpa.__file__).parent / "astro/datastack/tests/data"
spectra = [
    data / "3c273.pi",
    data / "acisf04938_000N002_r0043_pha3.fits",
    data / "acisf07867_000N001_r0002_pha3.fits",
]

# An @list names one file per line; relative names are relative to the list's folder.
lines = ["# Chandra spectra shipped with sherpa", *(str(path) for path in spectra)]
(outdir / "spectra.lis").write_text("\n".join(lines) + "\n")


def command_words(command: str) -> list[str]:
    """The command's words; the console script beside this Python, or ``python -m``."""
    words = shlex.split(command)
    script = Path(sys.executable).with_name("sherpa-latent")
    if script.exists():
        words[0] = str(script)
    elif not shutil.which(words[0]):
        words[:1] = [sys.executable, "-m", "sherpa_latent.cli"]
    return words


def sherpa_latent(command: str, interrupt_after_batches: int = 0) -> int:
    """Run a command line in OUTDIR, echoing it and what it prints; the exit status.

    With ``interrupt_after_batches``, press Ctrl-C (send SIGINT) as soon as that many
    batches are recorded in the progress file, as an impatient user or a lost
    connection would.
    """
    print(f"$ {command}")
    run = subprocess.Popen(
        command_words(command),
        cwd=outdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if interrupt_after_batches:
        progress = outdir / "latents.fits.partial.jsonl"  # header line, then one per batch
        while run.poll() is None:
            if progress.exists() and progress.read_text().count("\n") > interrupt_after_batches:
                run.send_signal(signal.SIGINT)
                print("^C")
                break
            time.sleep(0.02)
    output, _ = run.communicate()
    print(output, end="")
    print(f"(exit status {run.returncode})\n")
    return run.returncode


# --- encode, interrupted after the first batch -----------------------------------------------
# batch_size=1 so that three spectra make three batches; the default is 256 files a batch.
command = "sherpa-latent encode @spectra.lis outfile=latents.fits regions=latents.reg batch_size=1"
(outdir / "latents.fits.partial.jsonl").unlink(missing_ok=True)  # a fresh start
for stale in ("latents.fits", "latents.reg"):
    (outdir / stale).unlink(missing_ok=True)
status = sherpa_latent(command, interrupt_after_batches=1)

# --- the same command again: it goes on from the progress file --------------------------------
if status == 130:
    status = sherpa_latent(command)
else:
    print("(the run ended before the interrupt landed)")
if status != 0:
    sys.exit("sherpa-latent encode failed")

# Outputs are never overwritten without clobber=yes: this run refuses, the next one replaces them.
assert sherpa_latent(command) == 1
again = "sherpa-latent encode @spectra.lis outfile=latents.fits regions=latents.reg clobber=yes"
assert sherpa_latent(again) == 0

# --- read the table back -------------------------------------------------------------------
table = Table.read(outdir / "latents.fits", mask_invalid=False)
print(
    f"latents.fits: {len(table)} rows, network {table.meta['NETWORK']} "
    f"(SHA-256 {table.meta['NETSHA'][:12]}...), {table.meta['CREATOR']}"
)
print(f"  input grid {table.meta['INGRID']}, model grid {table.meta['MODGRID']}")
nh = {
    key: table[f"NH_LATENT{key}"].quantity.to_value(u.Unit("1e22 cm-2"))
    for key in ("", "_LO", "_HI")
}
for i, row in enumerate(table):
    name = Path(row["FILE"]).name
    if row["ERROR"]:
        print(f"  {name}: failed: {row['ERROR']}")
        continue
    position = "no position" if np.isnan(row["RA"]) else f"RA {row['RA']:.5f} Dec {row['DEC']:+.5f}"
    print(
        f"  {name:<38} {row['OBJECT'] or '-':<10} {position:<30} "
        f"N_H {nh[''][i]:.3g} [{nh['_LO'][i]:.3g}, {nh['_HI'][i]:.3g}] x 10^22 cm^-2"
    )
    print(f"  {'':<38} {row['CLUSTER_LABEL']}, anomaly {row['ANOMALY']:+.1f} sigma")

# --- read the region file back -------------------------------------------------------------
regions = Regions.read(str(outdir / "latents.reg"), format="ds9")
with_position = int(np.sum(np.isfinite(table["RA"]) & np.isfinite(table["DEC"])))
print(
    f"latents.reg: {len(regions)} region(s), one per spectrum with a position "
    f"({with_position} of {len(table)})"
)
for region in regions:
    centre = region.center.icrs
    colour = region.visual.get("edgecolor", region.visual.get("color"))
    print(
        f"  {type(region).__name__} at RA {centre.ra.deg:.5f} Dec {centre.dec.deg:+.5f}, "
        f"radius {region.radius.to(u.arcsec):.1f}, colour {colour}, "
        f"text {region.meta.get('text')!r}, tag {region.meta.get('tag')}"
    )
