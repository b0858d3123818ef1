"""Per-spectrum reports: plain text for a person, a dict for JSON, one row per file.

:func:`report_file` never raises for a bad file: the result then carries the file name
and a one-line error, so that a batch goes on past it.
"""

from __future__ import annotations

import os
import textwrap
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from sherpa.utils.err import SherpaErr

from .classical import ClassicalFit, fit_absorbed_powerlaw, photon_index_of
from .columns import json_values, report_values
from .fileio import strict_json
from .galactic import GalacticColumn, galactic_nh
from .grids import FIT_BAND
from .hardness import HardnessRatios, hardness_ratios
from .inference import format_statistic
from .inputs import SpectrumInput, as_input
from .spectrum import Spectrum, load_spectrum

if TYPE_CHECKING:
    from .inference import LatentEncoder, LatentResult

__all__ = [
    "SpectrumReport",
    "report_spectrum",
    "assemble_report",
    "report_file",
    "error_message",
    "latent_start",
]


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
    position : tuple of float or None
        Source RA and Dec (ICRS), degrees, from the header (RA/DEC, else RA_TARG/DEC_TARG);
        None when the header has none.
    galactic : GalacticColumn or None
        The Galactic H I column towards ``position`` (HI4PI, as HEASoft's ``nh``); None
        without a position.
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
    position: tuple[float, float] | None = None
    galactic: GalacticColumn | None = None

    def to_dict(self) -> dict:
        """Every output column of this report, flat: keys are the column names.

        The keys and units are those of the ``report --output`` table
        (:data:`~sherpa_latent.columns.REPORT_COLUMNS`, listed in docs/columns.md):
        ``FILE``, ``NH_CLASSICAL``, ``NH_CLASSICAL_LO``, ``NH_LATENT``, ``P_AGN``, ...;
        N_H in 10^22 cm^-2, fluxes in erg/cm^2/s, photon fluxes in photons/cm^2/s. A value
        that was not computed (no classical fit, no network, no position, an undefined
        ratio) is None; ``Z``, ``Z_ERR`` and the ``BAND_*`` entries are lists.
        """
        return json_values(report_values(self))

    def to_json(self) -> str:
        """:meth:`to_dict` as strict JSON, on one line: NaN and infinities are null."""
        return strict_json(self.to_dict())

    def to_text(self) -> str:
        """A plain-text summary, ending with a paragraph a helpdesk scientist can paste.

        N_H in 10^22 cm^-2, fluxes in erg/cm^2/s, intervals 68%.
        """
        lo, hi = FIT_BAND
        lines = [
            f"{self.file}",
            f"  target      {self.object or '(no OBJECT)'}   ObsID {self.obsid or '-'}   "
            f"{self.instrument}   exposure {self.exposure / 1e3:.1f} ks",
            f"  position    {_position_text(self.position)}",
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
            lines += _classical_lines(self.classical)
        if self.latent is not None:
            lat = self.latent
            pred = lat.predicted_hardness
            lines += [
                f"  latent      N_H {_interval(lat.nh, '{:.3g}')} x 10^22 cm^-2 (68%)   "
                f"anomaly {lat.anomaly:+.1f} sigma (network's score, 0.3-8 keV input grid)",
                f"              {lat.statistic_text()}",
                f"              {lat.cluster_label}",
                "              decoded-model hardness   "
                + "   ".join(
                    f"{label} {pred.get(key, float('nan')):+.2f}"
                    for key, label in (("hr_hm", "HR_hm"), ("hr_hs", "HR_hs"), ("hr_ms", "HR_ms"))
                ),
            ]
        lines += _galactic_lines(self)
        lines += [f"  warning     {w}" for w in self.warnings]
        lines += _wrap("  helpdesk    ", self.helpdesk_paragraph())
        return "\n".join(lines)

    def helpdesk_paragraph(self) -> str:
        """Plain English on the source, every number in it one of this report's values.

        What a helpdesk scientist could paste into an answer: the data, the absorbed
        power law with its intervals, the Galactic column and whether the fit needs more,
        the hardness and fluxes, and what the network says. Numbers are rounded as in
        the rest of :meth:`to_text`; N_H in 10^22 cm^-2, fluxes in erg/cm^2/s.
        """
        return _helpdesk_paragraph(self)


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


def _position_text(position: tuple[float, float] | None) -> str:
    if position is None:
        return "no position (neither RA/DEC nor RA_TARG/DEC_TARG in the header)"
    return f"RA {position[0]:.4f}  Dec {position[1]:+.4f} (deg, ICRS)"


def _classical_lines(fit: ClassicalFit) -> list[str]:
    """The classical fit: its statistic, N_H and Gamma, and the fluxes with intervals."""
    pad = " " * 14
    lines = [
        "  classical   "
        + format_statistic(fit.model, fit.statistic, fit.stat, fit.dof, fit.band, fit.n_bins),
        f"{pad}N_H {_interval(fit.nh, '{:.3g}', fit.nh_at_limit)} x 10^22 cm^-2   "
        f"Gamma {_interval(fit.gamma, '{:.2f}', fit.gamma_at_limit)}   (68%)",
    ]
    for flux in fit.fluxes:
        band = f"{flux.band[0]:g}-{flux.band[1]:g} keV"
        lines.append(
            f"{pad}flux {band:<11} absorbed {_interval(flux.absorbed, '{:.3g}')}   "
            f"unabsorbed {_interval(flux.unabsorbed, '{:.3g}')} erg/cm^2/s"
        )
    if fit.note:
        lines.append(f"{pad}no intervals: {fit.note}")
    lines += [f"{pad}{note}" for note in fit.limit_notes]
    return lines


def _against_galactic(name: str, interval, galactic: GalacticColumn) -> str:
    """Whether a fitted N_H interval exceeds the Galactic column, with the excess."""
    value, lo, hi = (float(v) for v in interval)
    head = f"{name} N_H {_interval((value, lo, hi), '{:.3g}')}: "
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return head + "no interval, so no comparison with the Galactic column"
    if galactic.exceeded_by((value, lo, hi)):
        excess = galactic.excess((value, lo, hi))
        return (
            head + "above the Galactic column (intrinsic absorption), excess "
            f"{_interval(excess, '{:.3g}')} x 10^22 cm^-2"
        )
    if hi < galactic.nh:
        return head + "below the Galactic column (the fit prefers less absorption)"
    return head + "consistent with the Galactic column (no intrinsic absorption needed)"


def _galactic_lines(report: SpectrumReport) -> list[str]:
    """The Galactic column towards the source and the fitted N_H beside it."""
    galactic = report.galactic
    if galactic is None:
        why = "no position" if report.position is None else "not available"
        return [f"  Galactic    N_H {why}"]
    pad = " " * 14
    lines = [
        f"  Galactic    N_H {galactic.nh:.3g} x 10^22 cm^-2 ({galactic.survey}: "
        f"{galactic.reference}; weighted mean within {galactic.radius:g} deg, as HEASoft nh)"
    ]
    if report.classical is not None:
        lines.append(pad + _against_galactic("classical", report.classical.nh, galactic))
    if report.latent is not None:
        lines.append(pad + _against_galactic("latent", report.latent.nh, galactic))
    return lines


def _wrap(first: str, text: str, width: int = 100) -> list[str]:
    """``text`` wrapped to ``width``, after ``first`` and then under it."""
    if not text:
        return []
    return textwrap.wrap(
        text,
        width=width,
        initial_indent=first,
        subsequent_indent=" " * len(first),
        break_on_hyphens=False,
        break_long_words=False,
    )


def _helpdesk_paragraph(report: SpectrumReport) -> str:
    """Plain English from the report's own numbers (see ``SpectrumReport.helpdesk_paragraph``)."""
    lo, hi = FIT_BAND
    name = report.object or os.path.basename(report.file)
    obsid = f"ObsID {report.obsid}, " if report.obsid else ""
    said = [
        f"{name} ({obsid}{report.instrument}, {report.exposure / 1e3:.1f} ks) has "
        f"{report.net_counts:.1f} net counts in {lo:g}-{hi:g} keV."
    ]
    fit = report.classical
    if fit is not None:
        stat = f"{fit.statistic} {fit.stat:.1f} for {fit.dof} dof over {fit.n_bins} bins"
        if fit.note:
            said.append(
                f"An absorbed power law ({fit.model}) does not describe it ({stat}), so its "
                f"parameters and fluxes are only indicative: photon index {fit.gamma[0]:.2f}, "
                f"N_H {fit.nh[0]:.3g} x 10^22 cm^-2."
            )
        else:
            said.append(
                f"An absorbed power law ({fit.model}, {stat}) gives a photon index of "
                f"{_interval(fit.gamma, '{:.2f}')} and N_H {_interval(fit.nh, '{:.3g}')} "
                "x 10^22 cm^-2 (68% intervals)."
            )
        whole = fit.flux(FIT_BAND)
        if whole is not None:
            said.append(
                f"Its {lo:g}-{hi:g} keV flux is {_interval(whole.absorbed, '{:.3g}')} "
                f"erg/cm^2/s as observed and {_interval(whole.unabsorbed, '{:.3g}')} "
                "erg/cm^2/s corrected for absorption."
            )
    galactic = report.galactic
    if galactic is None:
        said.append(
            "The file gives no position, so the Galactic column towards it is not known here."
            if report.position is None
            else "The Galactic column towards it could not be looked up."
        )
    else:
        sentence = (
            f"The Galactic H I column towards it is {galactic.nh:.3g} x 10^22 cm^-2 "
            f"({galactic.survey})"
        )
        if fit is not None and np.isfinite(fit.nh[1]):
            if galactic.exceeded_by(fit.nh):
                sentence += (
                    f"; the fitted N_H lies above it (lower bound {fit.nh[1]:.3g}), which "
                    "points to absorption intrinsic to the source."
                )
            else:
                sentence += "; the fitted N_H is consistent with it or below it, so no "
                sentence += "absorption intrinsic to the source is needed."
        else:
            sentence += "."
        said.append(sentence)
    hr = report.hardness
    said.append(
        f"Its CSC hardness ratios are HR_hm {hr.hr_hm.as_list()[0]:+.2f}, "
        f"HR_hs {hr.hr_hs.as_list()[0]:+.2f} and HR_ms {hr.hr_ms.as_list()[0]:+.2f}."
    )
    lat = report.latent
    if lat is not None:
        sentence = f"The network's N_H is {_interval(lat.nh, '{:.3g}')} x 10^22 cm^-2"
        if lat.class_probabilities:
            top = max(lat.class_probabilities, key=lat.class_probabilities.get)
            sentence += (
                f"; it places the spectrum in cluster {lat.cluster}, most probably {top} "
                f"(probability {lat.class_probabilities[top]:.2f})"
            )
        sentence += f", with an anomaly of {lat.anomaly:+.1f} sigma"
        if np.isfinite(lat.anomaly) and lat.anomaly > 3:
            sentence += ": its decoded spectrum fits poorly, so treat that class with care."
        else:
            sentence += "."
        said.append(sentence)
    return " ".join(said)


def latent_start(encoder: LatentEncoder, result: LatentResult) -> tuple[float, float] | None:
    """Where the classical fit starts given the network: its N_H and a photon index.

    The index is the slope of the network's decoded spectrum once absorption by that N_H
    is divided out (:func:`~sherpa_latent.classical.photon_index_of`), kept within 0-4.

    Parameters
    ----------
    encoder : LatentEncoder
        The network that made ``result``.
    result : LatentResult
        Its result for the spectrum.

    Returns
    -------
    tuple of float or None
        (N_H in 10^22 cm^-2, photon index); None when the network gave no usable N_H.
    """
    nh = float(result.nh[0])
    if not np.isfinite(nh) or nh < 0:
        return None
    grid = encoder.model.config.model_grid
    flux = encoder.decode(np.asarray(result.z, float), float(result.log_norm))
    gamma = photon_index_of(grid.lo, grid.hi, flux, nh)
    if not np.isfinite(gamma):
        gamma = 2.0
    return nh, float(np.clip(gamma, 0.0, 4.0))


def report_spectrum(
    spectrum: Spectrum,
    *,
    classical: bool = True,
    encoder: LatentEncoder | None = None,
    galactic: bool = True,
) -> SpectrumReport:
    """Hardness ratios, the classical fit, the network's view and the Galactic column.

    With a network the classical fit starts from the network's N_H and the photon index
    of its decoded spectrum (:func:`latent_start`), and tries the grid of starting N_H
    only when that fit is poor (see :func:`~sherpa_latent.classical.fit_absorbed_powerlaw`).

    Parameters
    ----------
    spectrum : Spectrum
        A validated spectrum.
    classical : bool, optional
        Run the absorbed-power-law fit with ``conf`` intervals and fluxes.
    encoder : LatentEncoder, optional
        Network to encode the spectrum with (see :func:`~sherpa_latent.inference.load_encoder`).
    galactic : bool, optional
        Look up the Galactic column (HI4PI) towards the header's position.
    """
    latent = encoder.encode([spectrum])[0] if encoder is not None else None
    fit = None
    if classical:
        start = latent_start(encoder, latent) if latent is not None else None
        fit = fit_absorbed_powerlaw(spectrum, start=start)
    return assemble_report(spectrum, hardness_ratios(spectrum), fit, latent, galactic=galactic)


def assemble_report(
    spectrum: Spectrum,
    hardness: HardnessRatios,
    classical: ClassicalFit | None,
    latent: LatentResult | None,
    *,
    galactic: bool = True,
) -> SpectrumReport:
    """A :class:`SpectrumReport` from results already at hand, with the header's facts.

    The Galactic column towards the header's position is looked up here (a failed lookup
    becomes a warning of the report, and the rest of the report stands).

    Parameters
    ----------
    spectrum : Spectrum
        The spectrum the results are of.
    hardness : HardnessRatios
        Its hardness ratios.
    classical : ClassicalFit or None
        Its classical fit.
    latent : LatentResult or None
        What the network says about it.
    galactic : bool, optional
        Look up the Galactic column (HI4PI) towards the header's position.
    """
    said = list(spectrum.warnings)
    position = spectrum.position
    column = None
    if galactic and position is not None:
        try:
            column = galactic_nh(*position)
        except (ValueError, OSError) as exc:
            said.append(f"no Galactic N_H: {' '.join(str(exc).split())}")
    return SpectrumReport(
        file=spectrum.path,
        object=spectrum.object,
        obsid=spectrum.obsid,
        instrument=spectrum.detector,
        exposure=spectrum.exposure,
        net_counts=float(spectrum.net_counts()),
        hardness=hardness,
        classical=classical,
        latent=latent,
        warnings=said,
        position=position,
        galactic=column,
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
    path: str | os.PathLike | SpectrumInput,
    *,
    classical: bool = True,
    encoder: LatentEncoder | None = None,
    galactic: bool = True,
) -> SpectrumReport | dict:
    """Load and report one file; a bad file gives ``{"file": ..., "error": ...}``.

    Parameters
    ----------
    path : str, path-like or SpectrumInput
        The PHA file, or a :class:`~sherpa_latent.inputs.SpectrumInput` naming its ARF,
        RMF and background too.
    classical : bool, optional
        Run the classical fit too.
    encoder : LatentEncoder, optional
        Network to encode the spectrum with.
    galactic : bool, optional
        Look up the Galactic column towards the header's position.
    """
    item = as_input(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spectrum = load_spectrum(
                item.pha, arf=item.arf, rmf=item.rmf, background=item.background
            )
            return report_spectrum(
                spectrum, classical=classical, encoder=encoder, galactic=galactic
            )
    except Exception as exc:  # noqa: BLE001 - a batch goes on past any bad file
        return {"file": item.pha, "error": error_message(item.pha, exc)}
