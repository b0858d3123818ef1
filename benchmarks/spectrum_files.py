"""Simulated spectrum files on disk, laid out as a pipeline would find them.

:func:`write_spectrum_files` writes OGIP type-I PHA files, each with its own background
file, for absorbed power laws folded through the real responses that ship inside the
installed ``sherpa`` package (3C 273 and two Chandra Source Catalog sources). Spectra of
one "observation" share its ARF and RMF, copied once beside them, as the spectra of one
observation do. Counts are Poisson draws of the expected counts that Sherpa's own
``Response1D`` gives; the background is a Poisson draw of the observation's real background.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import sherpa
from astropy.io import fits
from sherpa.astro.instrument import Response1D
from sherpa.models.basic import PowLaw1D
from sherpa.utils.logging import SherpaVerbosity

from sherpa_latent.physics import WAbs
from sherpa_latent.spectrum import load_spectrum

SHERPA_DATA = Path(sherpa.__file__).parent / "astro" / "datastack" / "tests" / "data"
"""Real Chandra spectra with responses in the installed sherpa package."""

TEMPLATES = (
    "3c273.pi",
    "acisf04938_000N002_r0043_pha3.fits",
    "acisf07867_000N001_r0002_pha3.fits",
)

_COPIED_KEYS = ("TELESCOP", "INSTRUME", "FILTER", "EXPOSURE", "BACKSCAL", "AREASCAL", "DATE-OBS")


def _observation(template: Path, out_dir: Path, n_sources: int, rng: np.random.Generator):
    """Copy one template's responses and return what its spectra need."""
    with SherpaVerbosity("ERROR"):
        spectrum = load_spectrum(template)
    pha = spectrum.pha
    rmf, arf = pha.get_rmf(), pha.get_arf()
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {}
    for key, response in (("RESPFILE", rmf), ("ANCRFILE", arf)):
        src = Path(response.name)
        dst = out_dir / src.name
        if not dst.exists():
            shutil.copyfile(src, dst)
        names[key] = dst.name
    with fits.open(template) as hdus:
        header = hdus["SPECTRUM"].header
        copied = {k: header[k] for k in _COPIED_KEYS if k in header}
    background = pha.get_background()
    bkg_counts = np.zeros_like(pha.counts) if background is None else background.counts
    bkg_backscal = 1.0 if background is None else float(np.mean(background.backscal))
    pha.notice()
    mus = []
    for _ in range(n_sources):
        absorber, powerlaw = WAbs("gal"), PowLaw1D("pl")
        absorber.nh = 10 ** rng.uniform(-2.0, 1.0)
        powerlaw.gamma = rng.uniform(1.2, 2.8)
        powerlaw.ampl = 1.0
        mu = pha.eval_model(Response1D(pha)(absorber * powerlaw))
        total = 10 ** rng.uniform(np.log10(50), np.log10(20_000))
        mus.append(mu * total / mu.sum())
    return {
        "channels": np.asarray(pha.channel, dtype=np.int32),
        "header": copied,
        "responses": names,
        "sources": mus,
        "background": np.asarray(bkg_counts, dtype=float),
        "background_backscal": bkg_backscal,
    }


def _write_pha(
    path: Path, channels: np.ndarray, counts: np.ndarray, header: dict, extra: dict
) -> None:
    cols = [
        fits.Column(name="CHANNEL", format="J", array=channels),
        fits.Column(name="COUNTS", format="J", unit="count", array=counts.astype(np.int32)),
    ]
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.header["EXTNAME"] = "SPECTRUM"
    for key, value in {
        "HDUCLASS": "OGIP",
        "HDUCLAS1": "SPECTRUM",
        "HDUCLAS2": "TOTAL",
        "HDUCLAS3": "COUNT",
        "HDUVERS": "1.2.1",
        "CHANTYPE": "PI",
        "DETCHANS": len(channels),
        "POISSERR": True,
        "TLMIN1": int(channels[0]),
        "TLMAX1": int(channels[-1]),
        **header,
        **extra,
    }.items():
        hdu.header[key] = value
    tmp = path.with_name(path.name + ".tmp")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)
    os.replace(tmp, path)


def write_spectrum_files(
    out_dir: str | os.PathLike,
    n_files: int,
    *,
    seed: int = 0,
    n_sources: int = 32,
) -> list[Path]:
    """Write ``n_files`` source spectra (each with a background file); reuse what exists.

    Parameters
    ----------
    out_dir : path-like
        Folder; one sub-folder per observation holds its responses and spectra.
    n_files : int
        Number of source spectra.
    seed : int
        Seed of the source parameters and the Poisson draws.
    n_sources : int
        Distinct source models per observation (each file is a new Poisson draw).

    Returns
    -------
    list of Path
        The source PHA files, in a fixed order.
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    observations = [
        _observation(SHERPA_DATA / name, out_dir / f"obs{k}", n_sources, rng)
        for k, name in enumerate(TEMPLATES)
    ]
    paths = []
    for i in range(n_files):
        k = i % len(observations)
        obs = observations[k]
        folder = out_dir / f"obs{k}"
        src = folder / f"src{i:06d}.pi"
        paths.append(src)
        if src.exists():
            continue
        bkg = folder / f"src{i:06d}_bkg.pi"
        background = rng.poisson(obs["background"])
        mu = obs["sources"][i // len(observations) % len(obs["sources"])]
        # Total counts: the source plus the background seen through the source aperture.
        backscal = float(obs["header"].get("BACKSCAL", 1.0))
        counts = rng.poisson(mu + obs["background"] * backscal / obs["background_backscal"])
        _write_pha(
            bkg,
            obs["channels"],
            background,
            obs["header"],
            {"HDUCLAS2": "BKG", "BACKSCAL": obs["background_backscal"], "OBJECT": "background"},
        )
        _write_pha(
            src,
            obs["channels"],
            counts,
            obs["header"],
            {
                **obs["responses"],
                "BACKFILE": bkg.name,
                "OBJECT": f"simulated source {i}",
                "OBS_ID": f"{90000 + k}",
            },
        )
    return paths
