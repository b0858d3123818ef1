"""One vocabulary and provenance for every output (issue 13, point 4; what must hold 4).

The ``encode`` table, the ``report --output`` table, the JSON of a report and the session's
``latent_report()`` are made for the same three spectra of the sherpa package (3C 273,
with RA_TARG/DEC_TARG, and two Chandra Source Catalog spectra, with RA/DEC) and compared:
every name is in :mod:`sherpa_latent.columns`, and where two outputs share a name they
share its unit and value. Every FITS file written opens with astropy with warnings as
errors and carries EXTNAME, CREATOR, DATE, HISTORY (command, inputs, network SHA-256,
package versions) and the vocabulary's units.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from conftest import SHERPA_SPECTRA
from sherpa.astro import ui

import sherpa_latent.ui as slui
from sherpa_latent import columns
from sherpa_latent.catalogue import (
    encode_files,
    read_table,
    report_table,
    write_table,
)
from sherpa_latent.columns import (
    ENCODE_COLUMNS,
    REPORT_COLUMNS,
    SESSION_COLUMNS,
    VOCABULARY,
    class_column,
    column,
)
from sherpa_latent.inference import load_encoder
from sherpa_latent.report import report_file
from sherpa_latent.spectrum import load_spectrum

REPO = Path(__file__).resolve().parents[1]


# --- the vocabulary itself ---------------------------------------------------------------
def test_every_name_once_with_a_unit_fits_can_hold() -> None:
    all_names = [name for col in VOCABULARY for name in col.names]
    assert len(all_names) == len(set(all_names))
    for col in VOCABULARY:
        assert col.meaning and col.group and col.kind in ("float", "int", "bool", "text")
        if col.unit:
            u.Unit(col.unit).to_string("fits")  # raises for a unit FITS cannot hold
        for name in col.names:
            assert column(name) is col
    assert column("NH_LATENT_HI").name == "NH_LATENT"
    with pytest.raises(KeyError, match="NH_PL"):
        column("NH_PL")
    assert class_column("obscured AGN") == "P_OBSCURED_AGN"
    assert class_column("NS/pulsar") == "P_NS_PULSAR"
    # each output is a subset of the vocabulary, in its order
    order = {name: i for i, name in enumerate(all_names)}
    for output in (ENCODE_COLUMNS, REPORT_COLUMNS, SESSION_COLUMNS):
        assert [order[n] for n in output] == sorted(order[n] for n in output)
    assert set(ENCODE_COLUMNS) < set(REPORT_COLUMNS)
    assert set(SESSION_COLUMNS) - set(REPORT_COLUMNS) == {"ID"}


def test_docs_columns_md_is_written_from_the_vocabulary() -> None:
    text = (REPO / "docs" / "columns.md").read_text(encoding="utf-8")
    assert text == columns.markdown(), (
        "docs/columns.md is out of date: python -m sherpa_latent.columns docs/columns.md"
    )
    for col in VOCABULARY:
        assert f"| `{col.name}`" in text
    assert "docs/columns.md" in (REPO / "README.md").read_text(encoding="utf-8")
    assert "columns.md" in (REPO / "docs" / "user-guide.md").read_text(encoding="utf-8")


# --- four outputs, one vocabulary ---------------------------------------------------------
def _value(column, i: int):
    """Entry ``i`` of a table column as a plain value (masked text read back as "")."""
    if hasattr(column, "filled"):
        column = column.filled("" if column.dtype.kind in "SU" else np.nan)
    value = np.asarray(column)[i]
    if isinstance(value, bytes):
        return value.decode()
    return value.tolist() if isinstance(value, np.ndarray) else value.item()


def _missing(name: str):
    return column(name).missing


def _same(name: str, a, b, rtol: float = 1e-6) -> bool:
    a = _missing(name) if a is None else a
    b = _missing(name) if b is None else b
    if column(name).kind == "float":
        return np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=rtol, equal_nan=True)
    return a == b


@pytest.fixture(scope="module")
def outputs(small_network: Path, sherpa_data: Path, tmp_path_factory) -> dict:
    """The four outputs for the three spectra (the classical fit for 3C 273 only)."""
    folder = tmp_path_factory.mktemp("outputs")
    paths = [str(sherpa_data / name) for name in SHERPA_SPECTRA]
    encoder = load_encoder(str(small_network), device="cpu")

    encode_fits = folder / "latents.fits"
    write_table(encode_files(paths, encoder), encode_fits, command=["sherpa-latent", "x"])
    reports = [report_file(p, classical=(i == 0), encoder=encoder) for i, p in enumerate(paths)]
    report_fits = folder / "report.fits"
    write_table(report_table(reports, encoder), report_fits, inputs=paths)

    ui.clean()
    try:
        slui.load_network(small_network, device="cpu")
        for i, path in enumerate(paths):
            ui.load_pha(i + 1, path)
        session = slui.latent_report(1)
        more = slui.latent_report([2, 3], classical=False)
    finally:
        ui.clean()
    return {
        "paths": paths,
        "encode": read_table(encode_fits),
        "encode_fits": encode_fits,
        "report": read_table(report_fits),
        "report_fits": report_fits,
        "json": [json.loads(r.to_json()) for r in reports],
        "session": (session, more),
    }


def test_names_units_and_values_agree_across_the_outputs(outputs: dict) -> None:
    paths = outputs["paths"]
    encode, report, rows = outputs["encode"], outputs["report"], outputs["json"]
    first, more = outputs["session"]
    assert encode.colnames == list(ENCODE_COLUMNS)
    assert report.colnames == list(REPORT_COLUMNS)
    assert first.colnames == more.colnames == list(SESSION_COLUMNS)
    assert [list(r) for r in rows] == [list(REPORT_COLUMNS)] * 3  # JSON keys: the names
    assert list(first["ID"]) == ["1"] and list(more["ID"]) == ["2", "3"]

    for table in (encode, report, first, more):
        for name in table.colnames:
            want = column(name).unit
            assert table[name].unit == (u.Unit(want) if want else None), name

    def session_row(i: int) -> tuple[Table, int]:
        return (first, 0) if i == 0 else (more, i - 1)

    compared = 0
    for i, path in enumerate(paths):
        assert _value(encode["FILE"], i) == _value(report["FILE"], i) == rows[i]["FILE"] == path
        table, j = session_row(i)
        for name in REPORT_COLUMNS:
            assert _same(name, rows[i][name], _value(report[name], i)), (path, name)
            if name in SESSION_COLUMNS:
                # The session fits wabs * powlaw1d again, from the report's start (the
                # network's N_H and photon index): the same numbers.
                assert _same(name, rows[i][name], _value(table[name], j)), (path, name)
            compared += 1
        for name in ENCODE_COLUMNS:
            if name in ("STAT_LATENT", "DOF_LATENT", "NBINS_LATENT", "STATISTIC_LATENT"):
                continue  # encode has no channels: its statistic says what it is (below)
            if name == "BAND_LATENT":
                continue
            assert _same(name, _value(encode[name], i), rows[i][name]), (path, name)
    assert compared == 3 * len(REPORT_COLUMNS)

    # What the rows say, checked against the sources.
    for i, path in enumerate(paths):
        header = fits.getheader(path, 1)
        ra, dec = header.get("RA", header.get("RA_TARG")), header.get("DEC", header.get("DEC_TARG"))
        assert rows[i]["RA"] == pytest.approx(ra) and rows[i]["DEC"] == pytest.approx(dec)
        assert _value(encode["RA"], i) == pytest.approx(ra)
        assert rows[i]["NH_GAL_SURVEY"] == "HI4PI" and 0 < rows[i]["NH_GAL"] < 0.1
        assert rows[i]["STATISTIC_LATENT"] in ("cstat", "wstat")
        assert rows[i]["NBINS_LATENT"] > rows[i]["DOF_LATENT"] > 0
        lo, hi = rows[i]["BAND_LATENT"]
        assert (lo, hi) == (0.5, 7.0)
        norm = [rows[i][k] for k in ("NORM_LATENT_LO", "NORM_LATENT", "NORM_LATENT_HI")]
        assert norm == sorted(norm) and norm[0] > 0
        assert sum(rows[i][class_column(c)] for c in columns.CLASS_NAMES) == pytest.approx(1.0)
    three = rows[0]
    assert three["STATISTIC_CLASSICAL"] == "wstat"  # 3C 273 has a background
    assert three["NBINS_CLASSICAL"] - three["DOF_CLASSICAL"] == 3
    for tag in ("05_2", "2_7", "05_7"):
        for kind in ("ABS", "UNABS"):
            lo, value, hi = (three[f"FLUX_{kind}_{tag}{s}"] for s in ("_LO", "", "_HI"))
            assert 0 < lo <= value <= hi < 1e-11
    assert three["FLUX_ABS_05_7"] == pytest.approx(
        three["FLUX_ABS_05_2"] + three["FLUX_ABS_2_7"], rel=1e-6
    )
    assert three["NH_CLASSICAL_EXCEEDS_GAL"] == (three["NH_CLASSICAL_LO"] > three["NH_GAL"])
    assert rows[1]["NH_CLASSICAL"] is None and rows[1]["STAT_CLASSICAL"] is None  # no fit
    assert np.isnan(_value(report["NH_CLASSICAL"], 1)) and _value(report["DOF_CLASSICAL"], 1) == -1
    assert all(r["ERROR"] == "" for r in rows)

    # The encode table's latent statistic is the input grid's C-stat, and says so.
    for i in range(3):
        assert _value(encode["STATISTIC_LATENT"], i) == "cstat"
        assert _value(encode["NBINS_LATENT"], i) > _value(encode["DOF_LATENT"], i) > 0


def test_a_failed_file_is_one_row_with_its_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pi"
    result = report_file(missing)
    table = report_table([result])
    assert table.colnames == list(REPORT_COLUMNS) and len(table) == 1
    assert table["FILE"][0] == str(missing) and "not found" in table["ERROR"][0]
    assert np.isnan(table["NH_LATENT"][0]) and table["CLUSTER"][0] == -1


# --- provenance on every FITS output -------------------------------------------------------
def _open_strictly(path: Path) -> tuple[Table, fits.Header]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = Table.read(path)
        with fits.open(path) as hdus:
            header = hdus[1].header.copy()
    return table, header


def _check_provenance(path: Path, extname: str, netsha: str) -> list[str]:
    table, header = _open_strictly(path)
    assert header["EXTNAME"] == extname
    assert header["CREATOR"].startswith("sherpa_latent ")
    assert len(header["DATE"]) == 19
    assert header["NETSHA"] == netsha
    history = [str(h) for h in header["HISTORY"]]
    for package in ("sherpa_latent", "sherpa", "numpy", "astropy", "torch"):
        assert any(line.startswith(f"package {package} ") for line in history), package
    assert f"sha256 {netsha}" in history
    for k, name in enumerate(table.colnames, start=1):
        unit = column(name).unit
        if unit:
            assert header[f"TUNIT{k}"] == u.Unit(unit).to_string("fits"), name
            assert table[name].unit == u.Unit(unit), name
        else:
            assert f"TUNIT{k}" not in header, name
    return history


def test_fits_outputs_carry_their_provenance(outputs: dict, small_network: Path) -> None:
    sha = load_encoder(str(small_network), device="cpu").sha256
    history = _check_provenance(outputs["encode_fits"], "LATENT", sha)
    assert "command: sherpa-latent x" in history
    history = _check_provenance(outputs["report_fits"], "REPORT", sha)
    assert "input files: 3" in history
    assert "3c273.pi" in "".join(line for line in history if not line.startswith("package"))


def test_the_cli_writes_provenance(small_network: Path, sherpa_data: Path, tmp_path: Path):
    """The command line, the stack file and the inputs reach HISTORY; CSC spectra, whose
    position is in RA/DEC, get regions labelled with their file and cluster. (The command
    runs in this process, as ``cli.main`` allows, to save two start-ups.)"""
    from sherpa_latent import cli

    stack = tmp_path / "spectra.lis"
    stack.write_text("\n".join(str(sherpa_data / n) for n in SHERPA_SPECTRA) + "\n")
    output, regions = tmp_path / "latents.fits", tmp_path / "latents.reg"
    status = cli.main(["encode", f"@{stack}", f"outfile={output}", f"network={small_network}",
                       f"regions={regions}"])  # fmt: skip
    assert status == 0
    sha = load_encoder(str(small_network), device="cpu").sha256
    history = _check_provenance(output, "LATENT", sha)
    assert any(line.startswith("command: sherpa-latent encode @") for line in history)
    assert f"stack file: {stack}" in "".join(history)  # a long line spans several cards
    assert "input files: 3" in history

    from regions import Regions

    parsed = Regions.read(str(regions), format="ds9")
    table = read_table(output)
    assert len(parsed) == 3
    for region, row in zip(parsed, table, strict=True):
        base = Path(row["FILE"]).name
        assert region.meta["text"] == f"{row['OBJECT']}, {base}, cluster {row['CLUSTER']}"
        assert region.center.ra.deg == pytest.approx(row["RA"])

    report = tmp_path / "report.fits"
    status = cli.main(["report", str(sherpa_data / SHERPA_SPECTRA[1]), "--no-fit",
                       "--network", str(small_network), "--output", str(report)])  # fmt: skip
    assert status == 0
    history = _check_provenance(report, "REPORT", sha)
    assert any(line.startswith("command: sherpa-latent report ") for line in history)


def test_a_unit_fits_cannot_hold_is_refused(tmp_path: Path) -> None:
    table = Table()
    table["LOG_NORM"] = np.array([-3.0, -4.0]) * u.dex(u.ph / u.cm**2 / u.s)
    out = tmp_path / "t.fits"
    with pytest.raises(ValueError, match="LOG_NORM cannot be saved in FITS"):
        write_table(table, out)
    assert list(tmp_path.iterdir()) == []  # nothing left behind
    plain = Table({"X": [1.0, 2.0]})
    write_table(plain, out, extname="THINGS")
    _, header = _open_strictly(out)
    assert header["EXTNAME"] == "THINGS" and header["CREATOR"].startswith("sherpa_latent")
    assert "EXTNAME" not in plain.meta and "HISTORY" not in plain.meta  # not changed


def test_positions_from_ra_dec_first(sherpa_data: Path, tmp_path: Path) -> None:
    from conftest import write_modified_pha

    csc = load_spectrum(sherpa_data / SHERPA_SPECTRA[1])
    header = fits.getheader(sherpa_data / SHERPA_SPECTRA[1], 1)
    assert "RA_TARG" not in header
    assert csc.position == (header["RA"], header["DEC"])
    three = load_spectrum(sherpa_data / "3c273.pi")
    target = fits.getheader(sherpa_data / "3c273.pi", 1)
    assert "RA" not in target
    assert three.position == (target["RA_TARG"], target["DEC_TARG"])
    both = write_modified_pha(
        tmp_path / "both.pi", sherpa_data / "3c273.pi", header={"RA": 10.0, "DEC": -5.0}
    )
    assert load_spectrum(both).position == (10.0, -5.0)
    bad = write_modified_pha(
        tmp_path / "bad.pi", sherpa_data / "3c273.pi", header={"RA": 400.0, "DEC": 0.0}
    )
    assert load_spectrum(bad).position == three.position  # RA out of range: passed over
    none = write_modified_pha(
        tmp_path / "none.pi", sherpa_data / "3c273.pi", header={"RA_TARG": None, "DEC_TARG": None}
    )
    assert load_spectrum(none).position is None
