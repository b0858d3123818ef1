"""One vocabulary for every output: each quantity's column name, unit and meaning, once.

The ``encode`` table, the ``report --output`` table, the session's ``latent_report()``
table and the JSON of a report (``SpectrumReport.to_dict``, ``report --json``) all name a
quantity the same way and give it the same unit, from :data:`VOCABULARY`. A quantity with
a 68% interval has two companions, ``NAME_LO`` and ``NAME_HI``, beside it. docs/columns.md
is written from this module (``python -m sherpa_latent.columns docs/columns.md``) and a
test checks that it is up to date.

Values travel as *rows*: plain dicts from column name to value, made by
:func:`report_values` (a whole report), :func:`latent_values`, :func:`classical_values`,
:func:`hardness_values` and :func:`galactic_values`. A value that was not computed is
None in a row; :func:`make_table` turns rows into an astropy ``Table`` with units (None
becomes NaN, -1 for whole numbers, False for flags, "" for text) and :func:`json_values`
into JSON-ready values (None and NaN become null).

Nothing here imports torch or reads files: the functions read the attributes of the
result objects they are given (``LatentResult``, ``ClassicalFit``, ``HardnessRatios``,
``GalacticColumn``, ``SpectrumReport``).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .classes import CLASS_NAMES

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = [
    "Column",
    "VOCABULARY",
    "LATENT_DIM",
    "FLUX_BANDS",
    "ENCODE_COLUMNS",
    "REPORT_COLUMNS",
    "SESSION_COLUMNS",
    "class_column",
    "column",
    "names",
    "report_values",
    "latent_values",
    "classical_values",
    "hardness_values",
    "galactic_values",
    "make_table",
    "json_values",
    "markdown",
]

LATENT_DIM = 8
"""Number of latent shape dimensions (the Z and Z_ERR columns hold this many values)."""

FLUX_BANDS: tuple[tuple[str, tuple[float, float]], ...] = (
    ("05_2", (0.5, 2.0)),
    ("2_7", (2.0, 7.0)),
    ("05_7", (0.5, 7.0)),
)
"""Tags and energy bands (keV) of the flux columns (``FLUX_ABS_05_2`` is 0.5-2 keV)."""

NH_UNIT = "1e22 cm-2"
PHOTON_FLUX = "ph cm-2 s-1"
ENERGY_FLUX = "erg cm-2 s-1"

_MISSING = {"float": math.nan, "int": -1, "bool": False, "text": ""}
_DTYPES = {"float": np.float64, "int": np.int32, "bool": np.bool_, "text": str}


@dataclass(frozen=True)
class Column:
    """One output quantity.

    Parameters
    ----------
    name : str
        Column name (FITS TTYPE) and JSON key.
    kind : str
        "float", "int", "bool" or "text".
    unit : str
        astropy unit string, saved as the FITS TUNIT ("" for a number without unit and
        for text).
    meaning : str
        One line saying what the value is.
    interval : bool
        Whether ``NAME_LO`` and ``NAME_HI`` (68% interval, same unit) go with it.
    size : int
        Values per row for a vector column (0 for one value).
    group : str
        "spectrum", "hardness", "galactic", "classical", "latent" or "status".
    """

    name: str
    kind: str
    unit: str
    meaning: str
    interval: bool = False
    size: int = 0
    group: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        """The column's name and, for an interval, its ``_LO`` and ``_HI`` companions."""
        if self.interval:
            return (self.name, f"{self.name}_LO", f"{self.name}_HI")
        return (self.name,)

    @property
    def missing(self) -> Any:
        """What a table holds where the value was not computed."""
        if self.size:
            return [_MISSING[self.kind]] * self.size
        return _MISSING[self.kind]


def class_column(name: str) -> str:
    """Column of a class probability: ``P_`` and the class name in capitals, A-Z0-9_.

    ``class_column("obscured AGN")`` is ``"P_OBSCURED_AGN"``, ``class_column("NS/pulsar")``
    is ``"P_NS_PULSAR"``.
    """
    return "P_" + re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_")


def _vocabulary() -> tuple[Column, ...]:
    c = Column
    ci = "68% interval"
    cols = [
        # --- the spectrum ---
        c("ID", "text", "", "Sherpa data-set identifier (latent_report only)"),
        c("FILE", "text", "", "PHA file, as given"),
        c("OBJECT", "text", "", "target name (OBJECT keyword)"),
        c("OBSID", "text", "", "Chandra observation identifier (OBS_ID keyword)"),
        c(
            "INSTRUMENT",
            "text",
            "",
            "detector in words, e.g. ACIS-S3 or ACIS-I (chips I0-I3), and the grating if any",
        ),
        c("RA", "float", "deg", "source right ascension (RA keyword, else RA_TARG), ICRS"),
        c("DEC", "float", "deg", "source declination (DEC keyword, else DEC_TARG), ICRS"),
        c("EXPOSURE", "float", "s", "exposure time (EXPOSURE keyword)"),
        c("NET_COUNTS", "float", "count", "background-subtracted counts, 0.5-7 keV"),
    ]
    cols += [
        c(
            f"HR_{pair}",
            "float",
            "",
            f"CSC hardness ratio ({a}-{b})/({a}+{b}) of the counts (soft 0.5-1.2, medium "
            "1.2-2, hard 2-7 keV): posterior mode, 68% credible interval",
            interval=True,
        )
        for pair, a, b in (("HM", "H", "M"), ("HS", "H", "S"), ("MS", "M", "S"))
    ]
    cols += [
        c("NH_GAL", "float", NH_UNIT, "Galactic N_H towards RA, DEC (NH_GAL_SURVEY map)"),
        c("NH_GAL_SURVEY", "text", "", "survey of NH_GAL (HI4PI: HI4PI Collaboration 2016)"),
        c("NH_GAL_RADIUS", "float", "deg", "radius of the weighted average giving NH_GAL"),
        c(
            "NH_CLASSICAL_EXCEEDS_GAL",
            "bool",
            "",
            "NH_CLASSICAL_LO > NH_GAL: absorption beyond the Galaxy's (intrinsic); False also "
            "when unknown (null in JSON)",
        ),
        c(
            "NH_LATENT_EXCEEDS_GAL",
            "bool",
            "",
            "NH_LATENT_LO > NH_GAL: absorption beyond the Galaxy's (intrinsic); False also "
            "when unknown (null in JSON)",
        ),
    ]
    fit = "classical fit (wabs * powlaw1d, 0.5-7 keV)"
    cols += [
        c("NH_CLASSICAL", "float", NH_UNIT, f"N_H of the {fit}, {ci} from conf", True),
        c("NH_CLASSICAL_LO_AT_LIMIT", "bool", "", "NH_CLASSICAL_LO is the parameter limit"),
        c("NH_CLASSICAL_HI_AT_LIMIT", "bool", "", "NH_CLASSICAL_HI is the parameter limit"),
        c("GAMMA_CLASSICAL", "float", "", f"photon index of the {fit}, {ci} from conf", True),
        c("GAMMA_CLASSICAL_LO_AT_LIMIT", "bool", "", "GAMMA_CLASSICAL_LO is the limit"),
        c("GAMMA_CLASSICAL_HI_AT_LIMIT", "bool", "", "GAMMA_CLASSICAL_HI is the limit"),
        c("NORM_CLASSICAL", "float", "ph cm-2 s-1 keV-1", f"power-law amplitude at 1 keV, {fit}"),
    ]
    for tag, (lo, hi) in FLUX_BANDS:
        for kind, word in (("ABS", "absorbed"), ("UNABS", "unabsorbed")):
            cols.append(
                c(
                    f"FLUX_{kind}_{tag}",
                    "float",
                    ENERGY_FLUX,
                    f"{word} energy flux {lo:g}-{hi:g} keV of the classical fit, {ci}",
                    interval=True,
                )
            )
    cols += _statistic_columns("CLASSICAL", "the classical fit")
    cols += [
        c("Z", "float", "", "latent posterior means (encoder plus refinement)", size=LATENT_DIM),
        c("Z_ERR", "float", "", "latent posterior standard deviations", size=LATENT_DIM),
        c(
            "NORM_LATENT",
            "float",
            PHOTON_FLUX,
            "photon flux 0.5-7 keV of the decoded intrinsic spectrum (the latent component's "
            f"norm), {ci}",
            interval=True,
        ),
        c("NH_LATENT", "float", NH_UNIT, f"N_H of the latent model: posterior median, {ci}", True),
        c("CLUSTER", "int", "", "most probable cluster of the latent space (-1: none)"),
        c("CLUSTER_LABEL", "text", "", "that cluster and its class make-up, in words"),
    ]
    cols += [
        c(class_column(name), "float", "", f"probability of the class {name}", group="latent")
        for name in CLASS_NAMES
    ]
    cols += [
        c(
            "ANOMALY",
            "float",
            "",
            "how badly the encoder's model fits the counts, sigma (about 0 for a good fit)",
        ),
    ]
    cols += _statistic_columns("LATENT", "the encoder's latent model")
    cols += [
        c(
            f"HR_{pair}_LATENT",
            "float",
            "",
            f"hardness ratio HR_{pair} of the decoded model folded through the response",
        )
        for pair in ("HM", "HS", "MS")
    ]
    cols += [
        c("WARNINGS", "text", "", "problems that did not stop the spectrum being used, '; '"),
        c("ERROR", "text", "", "why the file could not be used ('' when it could)"),
    ]
    groups = {
        "ID": "spectrum",
        "HR_HM": "hardness",
        "NH_GAL": "galactic",
        "NH_CLASSICAL": "classical",
        "Z": "latent",
        "WARNINGS": "status",
    }
    out, group = [], "spectrum"
    for col in cols:
        group = groups.get(col.name, group)
        out.append(Column(**{**col.__dict__, "group": group}))
    return tuple(out)


def _statistic_columns(model: str, words: str) -> list[Column]:
    return [
        Column(f"STATISTIC_{model}", "text", "", f"fit statistic of {words} (cstat or wstat)"),
        Column(
            f"STAT_{model}",
            "float",
            "",
            f"statistic of {words}: STATISTIC_{model} over NBINS_{model} bins in BAND_{model}",
        ),
        Column(f"DOF_{model}", "int", "", f"degrees of freedom of {words}"),
        Column(f"NBINS_{model}", "int", "", f"bins the statistic of {words} sums over"),
        Column(f"BAND_{model}", "float", "keV", f"energy band of {words}", size=2),
    ]


VOCABULARY: tuple[Column, ...] = _vocabulary()
"""Every output quantity, in the order of the columns of a report table."""

_BY_NAME: dict[str, Column] = {name: col for col in VOCABULARY for name in col.names}


def column(name: str) -> Column:
    """The quantity a column name belongs to (``NH_LATENT_LO`` gives ``NH_LATENT``).

    Raises
    ------
    KeyError
        The name is not in the vocabulary.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name!r} is not an output column (see sherpa_latent.columns)") from None


def names(groups: Iterable[str] | None = None, *, exclude: Iterable[str] = ()) -> tuple[str, ...]:
    """Column names of some groups (all when None), in vocabulary order, companions included."""
    wanted = None if groups is None else set(groups)
    skip = set(exclude)
    return tuple(
        name
        for col in VOCABULARY
        if wanted is None or col.group in wanted
        for name in col.names
        if name not in skip
    )


ENCODE_COLUMNS: tuple[str, ...] = (
    "FILE",
    "OBJECT",
    "OBSID",
    "INSTRUMENT",
    "RA",
    "DEC",
    "EXPOSURE",
    *names(["latent"]),
    "WARNINGS",
    "ERROR",
)
"""Columns of the ``sherpa-latent encode`` table (EXTNAME LATENT)."""

REPORT_COLUMNS: tuple[str, ...] = names(exclude=["ID"])
"""Columns of the ``report --output`` table (EXTNAME REPORT) and keys of a report's JSON."""

SESSION_COLUMNS: tuple[str, ...] = names(exclude=["ERROR"])
"""Columns of the session's ``latent_report()`` table (a data set that fails raises)."""


# --- rows -------------------------------------------------------------------------------
def _float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value


def _triple(name: str, values: Sequence[Any] | None) -> dict[str, float | None]:
    if values is None:
        return {}
    value, lo, hi = (_float(v) for v in values)
    return {name: value, f"{name}_LO": lo, f"{name}_HI": hi}


def hardness_values(hardness: Any) -> dict[str, Any]:
    """HR_HM, HR_HS, HR_MS with their 68% intervals from a ``HardnessRatios``."""
    out: dict[str, Any] = {}
    for key in ("hm", "hs", "ms"):
        out |= _triple(f"HR_{key.upper()}", getattr(hardness, f"hr_{key}").as_list())
    return out


def _band(values: Any) -> list[float] | None:
    return None if values is None else [float(v) for v in values]


def latent_values(result: Any) -> dict[str, Any]:
    """The latent columns of a ``LatentResult`` (see :data:`VOCABULARY`, group "latent").

    The photon flux 0.5-7 keV, NORM_LATENT, is ``10**log_norm`` with ``10**(log_norm
    -+ log_norm_err)`` as its 68% interval.
    """
    log_norm, err = float(result.log_norm), float(result.log_norm_err)
    out: dict[str, Any] = {
        "Z": [float(v) for v in result.z],
        "Z_ERR": [float(v) for v in result.z_err],
        **_triple(
            "NORM_LATENT", [10.0**log_norm, 10.0 ** (log_norm - err), 10.0 ** (log_norm + err)]
        ),
        **_triple("NH_LATENT", result.nh),
        "CLUSTER": int(result.cluster),
        "CLUSTER_LABEL": str(result.cluster_label),
    }
    probabilities = result.class_probabilities
    for name in CLASS_NAMES:
        out[class_column(name)] = _float(probabilities.get(name))
    out["ANOMALY"] = float(result.anomaly)
    out |= {
        "STATISTIC_LATENT": getattr(result, "statistic", None),
        "STAT_LATENT": float(result.cstat),
        "DOF_LATENT": int(result.dof),
        "NBINS_LATENT": _int(getattr(result, "n_bins", None)),
        "BAND_LATENT": _band(getattr(result, "band", None)),
    }
    predicted = result.predicted_hardness
    for key in ("hm", "hs", "ms"):
        out[f"HR_{key.upper()}_LATENT"] = _float(predicted.get(f"hr_{key}"))
    return out


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _band_tag(band: Sequence[float]) -> str | None:
    for tag, (lo, hi) in FLUX_BANDS:
        if abs(float(band[0]) - lo) < 1e-6 and abs(float(band[1]) - hi) < 1e-6:
            return tag
    return None


def classical_values(fit: Any) -> dict[str, Any]:
    """The classical columns of a ``ClassicalFit`` (group "classical", NH_GAL aside).

    Fluxes come from ``fit.fluxes`` (``BandFlux`` per band, 68% intervals); a band that
    is not one of :data:`FLUX_BANDS` is left out.
    """
    out: dict[str, Any] = {
        **_triple("NH_CLASSICAL", fit.nh),
        "NH_CLASSICAL_LO_AT_LIMIT": bool(fit.nh_at_limit[0]),
        "NH_CLASSICAL_HI_AT_LIMIT": bool(fit.nh_at_limit[1]),
        **_triple("GAMMA_CLASSICAL", fit.gamma),
        "GAMMA_CLASSICAL_LO_AT_LIMIT": bool(fit.gamma_at_limit[0]),
        "GAMMA_CLASSICAL_HI_AT_LIMIT": bool(fit.gamma_at_limit[1]),
        "NORM_CLASSICAL": float(fit.norm),
    }
    for flux in getattr(fit, "fluxes", ()) or ():
        tag = _band_tag(flux.band)
        if tag is not None:
            out |= _triple(f"FLUX_ABS_{tag}", flux.absorbed)
            out |= _triple(f"FLUX_UNABS_{tag}", flux.unabsorbed)
    out |= {
        "STATISTIC_CLASSICAL": str(fit.statistic),
        "STAT_CLASSICAL": float(fit.stat),
        "DOF_CLASSICAL": int(fit.dof),
        "NBINS_CLASSICAL": _int(getattr(fit, "n_bins", None)),
        "BAND_CLASSICAL": _band(fit.band),
    }
    return out


def galactic_values(galactic: Any, classical: Any = None, latent: Any = None) -> dict[str, Any]:
    """NH_GAL, its survey and radius, and whether the fitted columns exceed it.

    Parameters
    ----------
    galactic : GalacticColumn or None
        The Galactic column towards the source (None: no position, nothing here).
    classical : ClassicalFit, optional
    latent : LatentResult, optional
        Their N_H intervals are compared with ``galactic.exceeded_by``.
    """
    if galactic is None:
        return {}
    out: dict[str, Any] = {
        "NH_GAL": float(galactic.nh),
        "NH_GAL_SURVEY": str(galactic.survey),
        "NH_GAL_RADIUS": float(galactic.radius),
    }
    if classical is not None:
        out["NH_CLASSICAL_EXCEEDS_GAL"] = _exceeds(galactic, classical.nh)
    if latent is not None:
        out["NH_LATENT_EXCEEDS_GAL"] = _exceeds(galactic, latent.nh)
    return out


def _exceeds(galactic: Any, interval: Sequence[float]) -> bool | None:
    """``galactic.exceeded_by(interval)``; None when the interval has no lower bound."""
    if not all(np.isfinite(float(v)) for v in interval):
        return None
    return bool(galactic.exceeded_by(tuple(float(v) for v in interval)))


def report_values(report: Any) -> dict[str, Any]:
    """Every column of one ``SpectrumReport`` (None where a value was not computed).

    Parameters
    ----------
    report : SpectrumReport
        A report of :func:`~sherpa_latent.report.report_spectrum`.

    Returns
    -------
    dict
        Keys: :data:`REPORT_COLUMNS`, in that order.
    """
    position = getattr(report, "position", None)
    row: dict[str, Any] = dict.fromkeys(REPORT_COLUMNS)
    row |= {
        "FILE": str(report.file),
        "OBJECT": str(report.object),
        "OBSID": str(report.obsid),
        "INSTRUMENT": str(report.instrument),
        "RA": None if position is None else float(position[0]),
        "DEC": None if position is None else float(position[1]),
        "EXPOSURE": float(report.exposure),
        "NET_COUNTS": float(report.net_counts),
    }
    row |= hardness_values(report.hardness)
    said = list(report.warnings)
    if report.classical is not None:
        row |= classical_values(report.classical)
        if report.classical.note:
            said.append(f"classical fit without intervals: {report.classical.note}")
        said += list(report.classical.limit_notes)
    if report.latent is not None:
        row |= latent_values(report.latent)
    row |= galactic_values(getattr(report, "galactic", None), report.classical, report.latent)
    row["WARNINGS"] = "; ".join(said)
    row["ERROR"] = ""
    return row


# --- tables and JSON ------------------------------------------------------------------------
def make_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    sizes: Mapping[str, int] | None = None,
) -> Table:
    """An astropy ``Table`` of rows, with the vocabulary's units and types.

    Parameters
    ----------
    rows : sequence of mapping
        Column name -> value; a name that is absent or None gets the column's missing
        value (NaN, -1, False or "").
    columns : sequence of str
        The columns, in order (names of :data:`VOCABULARY`).
    sizes : mapping, optional
        Values per row of vector columns, where they differ from the vocabulary's (Z
        and Z_ERR of a network with another number of latents).

    Returns
    -------
    astropy.table.Table
        Floats as float64 (CLUSTER int16, other whole numbers int32), text as str.
    """
    from astropy import units as u
    from astropy.table import Table

    table = Table()
    n = len(rows)
    for name in columns:
        col = column(name)
        size = (sizes or {}).get(name, col.size)
        fill = [_MISSING[col.kind]] * size if size else col.missing
        values = [fill if row.get(name) is None else row[name] for row in rows]
        dtype = np.int16 if name == "CLUSTER" else _DTYPES[col.kind]
        if col.kind == "text":
            array = np.array([str(v) for v in values], dtype=str)
            if n == 0:
                array = np.zeros(0, dtype="U1")
        else:
            shape = (n, size) if size else (n,)
            array = np.array(values, dtype=dtype).reshape(shape)
        table[name] = array * u.Unit(col.unit) if col.unit else array
    return table


def json_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as JSON-ready values: numpy scalars as Python ones, NaN and None as None."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple, np.ndarray)):
            return [plain(v) for v in value]
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            return float(value) if math.isfinite(float(value)) else None
        return value

    return {key: plain(value) for key, value in row.items()}


# --- docs/columns.md -----------------------------------------------------------------------
_GROUP_TITLES = {
    "spectrum": "The spectrum",
    "hardness": "Hardness ratios",
    "galactic": "Galactic absorption",
    "classical": "Classical fit",
    "latent": "Latent model",
    "status": "Status",
}

_WHERE = {
    "encode": ENCODE_COLUMNS,
    "report": REPORT_COLUMNS,
    "session": SESSION_COLUMNS,
}


def markdown() -> str:
    """The text of docs/columns.md: every column, its unit, meaning and outputs."""
    lines = [
        "# Columns",
        "",
        "<!-- Written by `python -m sherpa_latent.columns docs/columns.md` from "
        "sherpa_latent/columns.py: do not edit by hand. -->",
        "",
        "One vocabulary for every output. The same name means the same quantity, in the same",
        "unit, in the `sherpa-latent encode` table (EXTNAME `LATENT`), the `sherpa-latent",
        "report --output` table (EXTNAME `REPORT`), the session's `latent_report()` table and",
        "the keys of a report's JSON (`report --json`, `SpectrumReport.to_dict()`). In the",
        "JSON a value that was not computed is null; in a table it is NaN (-1 for whole",
        "numbers, False for flags, an empty string for text). A name marked with an interval",
        "has two companions, `NAME_LO` and `NAME_HI`, in the same unit: the 68% interval.",
        "Where: E `encode`, R `report` (table and JSON), S `latent_report()`.",
        "",
        "Every FITS output also carries CREATOR, DATE, the network's name and SHA-256",
        "(NETWORK, NETSHA) and HISTORY cards: the command line, the input files (or their",
        "number) and stack files, and the versions of sherpa_latent, sherpa, numpy, astropy",
        "and torch.",
    ]
    group = None
    for col in VOCABULARY:
        if col.group != group:
            group = col.group
            lines += [
                "",
                f"## {_GROUP_TITLES[group]}",
                "",
                "| column | unit | where | meaning |",
                "|---|---|---|---|",
            ]
        name = f"`{col.name}`"
        if col.interval:
            name += ", `_LO`, `_HI`"
        if col.size:
            name += f" ({col.size} values)"
        where = "".join(
            letter
            for letter, key in (("E", "encode"), ("R", "report"), ("S", "session"))
            if col.name in _WHERE[key]
        )
        unit = f"`{col.unit}`" if col.unit else ""
        lines.append(f"| {name} | {unit} | {where} | {col.meaning} |")
    return "\n".join(lines) + "\n"


def _main(argv: Sequence[str]) -> int:
    """``python -m sherpa_latent.columns [PATH]``: print or write docs/columns.md."""
    text = markdown()
    if not argv:
        sys.stdout.write(text)
        return 0
    from .fileio import atomic_output

    with atomic_output(argv[0], clobber=True) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main(sys.argv[1:]))
