"""Per-spectrum reports: plain text for a person, a dict for JSON, one row per file.

:func:`report_file` never raises for a bad file: the result then carries the file name
and a one-line error, so that a batch goes on past it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from sherpa.utils.err import SherpaErr

from .classical import ClassicalFit, fit_absorbed_powerlaw
from .fileio import strict_json
from .grids import FIT_BAND
from .hardness import HardnessRatios, hardness_ratios
from .spectrum import Spectrum, load_spectrum

if TYPE_CHECKING:
    from .inference import LatentEncoder, LatentResult

__all__ = ["SpectrumReport", "report_spectrum", "report_file", "error_message"]


@dataclass
class SpectrumReport:
    """What the project says about one spectrum.

    Parameters
    ----------
    file : str
        The PHA file.
    object, obsid, instrument : str
        From the header (OBJECT, OBS_ID, INSTRUME and DETNAM).
    exposure : float
        Exposure time, s.
    net_counts : float
        Background-subtracted counts in 0.5-7 keV.
    hardness : HardnessRatios
        CSC hardness ratios with 68% credible intervals.
    classical : ClassicalFit or None
        The absorbed-power-law fit (None when it was not asked for).
    latent : LatentResult or None
        What the network says (None without a network).
    warnings : list of str
        Problems that did not stop the report.
    """

    file: str
    object: str
    obsid: str
    instrument: str
    exposure: float
    net_counts: float
    hardness: HardnessRatios
    classical: ClassicalFit | None = None
    latent: LatentResult | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain numbers for JSON: intervals as ``[value, lo, hi]``, N_H in 10^22 cm^-2."""
        out = {
            "file": self.file,
            "object": self.object,
            "obsid": self.obsid,
            "instrument": self.instrument,
            "exposure": self.exposure,
            "net_counts": self.net_counts,
            "hardness": self.hardness.to_dict(),
            "classical": None,
            "latent": None if self.latent is None else self.latent.to_dict(),
            "warnings": list(self.warnings),
        }
        if self.classical is not None:
            fit = self.classical
            out["classical"] = {
                "model": "wabs * powlaw1d",
                "nh": _json_interval(fit.nh),
                "gamma": _json_interval(fit.gamma),
                "cstat": fit.stat,
                "statistic": fit.statistic,
                "dof": fit.dof,
                "flux_absorbed": fit.flux_absorbed,
                "flux_unabsorbed": fit.flux_unabsorbed,
                "band": list(fit.band),
                "note": fit.note,
                "nh_at_limit": list(fit.nh_at_limit),
                "gamma_at_limit": list(fit.gamma_at_limit),
                "limit_notes": fit.limit_notes,
            }
        return out

    def to_json(self) -> str:
        """:meth:`to_dict` as strict JSON, on one line: NaN and infinities are null."""
        return strict_json(self.to_dict())

    def to_text(self) -> str:
        """A short plain-text summary."""
        lo, hi = FIT_BAND
        lines = [
            f"{self.file}",
            f"  target      {self.object or '(no OBJECT)'}   ObsID {self.obsid or '-'}   "
            f"{self.instrument}   exposure {self.exposure / 1e3:.1f} ks",
            f"  net counts  {self.net_counts:.1f} ({lo:g}-{hi:g} keV, background subtracted)",
        ]
        hr = self.hardness
        lines.append(
            "  hardness    "
            + "   ".join(
                f"{label} {_interval(getattr(hr, key).as_list(), '{:+.2f}')}"
                for key, label in (("hr_hm", "HR_hm"), ("hr_hs", "HR_hs"), ("hr_ms", "HR_ms"))
            )
            + "   (mode [68%])"
        )
        if self.classical is not None:
            fit = self.classical
            lines += [
                f"  classical   wabs * powlaw1d, {fit.statistic} {fit.stat:.1f} for {fit.dof} dof",
                f"              N_H {_interval(fit.nh, '{:.3g}', fit.nh_at_limit)} x 10^22 cm^-2   "
                f"Gamma {_interval(fit.gamma, '{:.2f}', fit.gamma_at_limit)}   (68%)",
                f"              flux {lo:g}-{hi:g} keV: {fit.flux_absorbed:.3g} absorbed, "
                f"{fit.flux_unabsorbed:.3g} unabsorbed erg/cm^2/s",
            ]
            if fit.note:
                lines.append(f"              no intervals: {fit.note}")
            lines += [f"              {note}" for note in fit.limit_notes]
        if self.latent is not None:
            lat = self.latent
            pred = lat.predicted_hardness
            lines += [
                f"  latent      N_H {_interval(lat.nh, '{:.3g}')} x 10^22 cm^-2 (68%)   "
                f"anomaly {lat.anomaly:+.1f} sigma (C-stat {lat.cstat:.1f} for {lat.dof} dof)",
                f"              {lat.cluster_label}",
                "              decoded-model hardness   "
                + "   ".join(
                    f"{label} {pred.get(key, float('nan')):+.2f}"
                    for key, label in (("hr_hm", "HR_hm"), ("hr_hs", "HR_hs"), ("hr_ms", "HR_ms"))
                ),
            ]
        lines += [f"  warning     {w}" for w in self.warnings]
        return "\n".join(lines)


def _interval(values, fmt: str, at_limit: tuple[bool, bool] = (False, False)) -> str:
    """``value [lo, hi]``; a bound that is a parameter limit, not a measurement, says so."""
    value, lo, hi = values
    if np.isnan(lo) and np.isnan(hi):
        return f"{fmt.format(value)} [no interval]"
    bounds = [
        fmt.format(b) + (" (limit)" if hit else "")
        for b, hit in zip((lo, hi), at_limit, strict=True)
    ]
    return f"{fmt.format(value)} [{bounds[0]}, {bounds[1]}]"


def _json_interval(values) -> list[float | None]:
    """``[value, lo, hi]`` with a missing bound as None (JSON has no NaN)."""
    return [None if np.isnan(v) else float(v) for v in values]


def report_spectrum(
    spectrum: Spectrum, *, classical: bool = True, encoder: LatentEncoder | None = None
) -> SpectrumReport:
    """Hardness ratios, the classical fit and the network's view of a loaded spectrum.

    Parameters
    ----------
    spectrum : Spectrum
        A validated spectrum.
    classical : bool, optional
        Run the absorbed-power-law fit with ``conf`` intervals (a few seconds).
    encoder : LatentEncoder, optional
        Network to encode the spectrum with (see :func:`~sherpa_latent.inference.load_encoder`).
    """
    return SpectrumReport(
        file=spectrum.path,
        object=spectrum.object,
        obsid=spectrum.obsid,
        instrument=spectrum.instrument,
        exposure=spectrum.exposure,
        net_counts=float(spectrum.net_counts()),
        hardness=hardness_ratios(spectrum),
        classical=fit_absorbed_powerlaw(spectrum) if classical else None,
        latent=encoder.encode([spectrum])[0] if encoder is not None else None,
        warnings=list(spectrum.warnings),
    )


def error_message(path: str, exc: BaseException) -> str:
    """One line naming the file and the problem, whatever the exception."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, SherpaErr) and getattr(exc, "path", None):
        return text  # already "file: problem"
    if str(path) in text:
        return text
    if isinstance(exc, SherpaErr):
        return f"{path}: {text}"
    return f"{path}: {type(exc).__name__}: {text}"


def report_file(
    path: str | os.PathLike, *, classical: bool = True, encoder: LatentEncoder | None = None
) -> SpectrumReport | dict:
    """Load and report one file; a bad file gives ``{"file": ..., "error": ...}``.

    Parameters
    ----------
    path : str or path-like
        The PHA file.
    classical : bool, optional
        Run the classical fit too.
    encoder : LatentEncoder, optional
        Network to encode the spectrum with.
    """
    path = os.fspath(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return report_spectrum(load_spectrum(path), classical=classical, encoder=encoder)
    except Exception as exc:  # noqa: BLE001 - a batch goes on past any bad file
        return {"file": path, "error": error_message(path, exc)}
