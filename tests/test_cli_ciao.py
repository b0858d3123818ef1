"""Issue 13, the command line in CIAO's manner: responses by hand, stack columns, verbose,
mode, unknown keys, help with defaults, ``encode --json``, progress off a terminal, a log
file, and warnings scoped to the command.

Real files only: the Chandra spectra, responses and background that ship inside the
installed ``sherpa`` package, and copies of them with header keywords removed.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import require_default_network, run_cli, write_modified_pha

from sherpa_latent import cli
from sherpa_latent.catalogue import read_table
from sherpa_latent.errors import StackFileError
from sherpa_latent.fileio import json_safe
from sherpa_latent.inputs import SpectrumInput, expand_stacks

RESPONSE_KEYWORDS = {"RESPFILE": None, "ANCRFILE": None, "BACKFILE": None}
PROGRESS = re.compile(r"^sherpa-latent: (report|encode): ")


def _refuse_constant(name: str):
    raise ValueError(f"not strict JSON: {name}")


def strict_rows(text: str) -> list[dict]:
    """One strict JSON object per line (NaN or Infinity refused)."""
    return [json.loads(line, parse_constant=_refuse_constant) for line in text.splitlines()]


def one_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """A refusal: non-zero status, no traceback, one line on stderr with every needle."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def run_main(capsys, *args: str) -> subprocess.CompletedProcess:
    """``sherpa-latent ARGS`` in this process (no start-up cost), as ``run_cli`` returns it.

    A ``SystemExit`` with a message ends with status 1 and the message on stderr, as
    Python ends a process with it.
    """
    capsys.readouterr()
    try:
        status = cli.main(list(args))
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), status, out.out, out.err)


def without_file(row: dict) -> dict:
    return {k: v for k, v in row.items() if k.upper() != "FILE"}


@pytest.fixture(scope="module")
def bare(tmp_path_factory, sherpa_data: Path) -> dict[str, Path]:
    """3C 273 without RESPFILE, ANCRFILE and BACKFILE, and copies of its three files in
    a folder ``obs`` (for stack lines relative to the stack's folder)."""
    folder = tmp_path_factory.mktemp("bare")
    obs = folder / "obs"
    obs.mkdir()
    files = {"pha": write_modified_pha(obs / "bare.pi", sherpa_data / "3c273.pi",
                                       header=RESPONSE_KEYWORDS)}  # fmt: skip
    for key, name in (("arf", "3c273.arf"), ("rmf", "3c273.rmf"), ("bkg", "3c273_bg.pi")):
        files[key] = Path(shutil.copy(sherpa_data / name, obs / name))
    files["folder"] = folder
    return files


@pytest.fixture(scope="module")
def shipped() -> None:
    require_default_network()


# --- responses by hand ----------------------------------------------------------------------
def test_report_takes_arf_rmf_bkg_for_a_pha_without_keywords(
    bare: dict, pha_3c273: Path, shipped: None, capsys
) -> None:
    pha = str(bare["pha"])
    alone = run_main(capsys, "report", pha, "--no-fit", "verbose=0")
    one_line(alone, pha, "RESPFILE is not set")
    assert alone.stdout == ""
    given = [f"arf={bare['arf']}", f"rmf={bare['rmf']}", f"bkg={bare['bkg']}"]
    keyed = run_cli("report", pha, *given, "--no-fit", "--json", "verbose=0", "mode=h")  # as typed
    assert keyed.returncode == 0, keyed.stderr
    flags = ["--arf", str(bare["arf"]), "--rmf", str(bare["rmf"]), "--bkg", str(bare["bkg"])]
    flagged = run_main(capsys, "report", pha, *flags, "--no-fit", "--json", "verbose=0")
    header = run_main(capsys, "report", str(pha_3c273), "--no-fit", "--json", "verbose=0")
    assert flagged.returncode == 0 and header.returncode == 0, flagged.stderr + header.stderr
    (row,), (flag_row,), (reference,) = map(strict_rows, (keyed.stdout, flagged.stdout,
                                                          header.stdout))  # fmt: skip
    assert row == flag_row
    # The same files as the header of the original names: the same report, number for number.
    assert without_file(row) == without_file(reference)
    assert keyed.stderr == ""  # verbose=0: results and errors only


def test_arf_rmf_bkg_refused_with_more_than_one_spectrum(
    bare: dict, pha_3c273: Path, capsys
) -> None:
    proc = run_main(capsys, "report", str(bare["pha"]), str(pha_3c273), f"rmf={bare['rmf']}")
    one_line(proc, "rmf=", "single PHA file", "2 spectra", "stack file")
    assert proc.stdout == ""


# --- stack files with columns ----------------------------------------------------------------
def test_expand_stacks_columns(tmp_path: Path, bare: dict) -> None:
    folder = bare["folder"]
    spaced = tmp_path / "my src.pi"
    spaced.write_bytes(b"")  # only its name matters here
    stack = folder / "columns.lis"
    stack.write_text(
        "# pha arf rmf bkg\n"
        "obs/bare.pi obs/3c273.arf obs/3c273.rmf obs/3c273_bg.pi\n"
        "obs/bare.pi  -  obs/3c273.rmf\n"
        "obs/bare.pi none NONE obs/3c273_bg.pi\n"
        f"{spaced}\n"
        f'"{spaced}" - {bare["rmf"]}\n'
    )
    items = expand_stacks([f"@{stack}", str(bare["pha"])])
    obs = str(folder / "obs")
    assert items == [
        SpectrumInput(f"{obs}/bare.pi", f"{obs}/3c273.arf", f"{obs}/3c273.rmf",
                      f"{obs}/3c273_bg.pi"),
        SpectrumInput(f"{obs}/bare.pi", None, f"{obs}/3c273.rmf", None),
        SpectrumInput(f"{obs}/bare.pi", None, None, f"{obs}/3c273_bg.pi"),
        SpectrumInput(str(spaced)),
        SpectrumInput(str(spaced), rmf=str(bare["rmf"])),
        SpectrumInput(str(bare["pha"])),
    ]  # fmt: skip
    bad = folder / "bad.lis"
    bad.write_text("a.pi\n\nb.pi c.arf d.rmf e.pi f.pi\n")
    with pytest.raises(StackFileError, match=r"line 3 has 5 columns; a stack line holds 1 to 4"):
        expand_stacks([f"@{bad}"])
    bad.write_text("- a.arf\n")
    with pytest.raises(StackFileError, match="line 1: the first column names the PHA file"):
        expand_stacks([f"@{bad}"])
    bad.write_text('"a.pi b.arf\n')
    with pytest.raises(StackFileError, match="line 1: No closing quotation"):
        expand_stacks([f"@{bad}"])


def test_stack_relative_to_the_current_folder(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "lists").mkdir()
    stack = tmp_path / "lists" / "here.lis"
    stack.write_text("a.pi b.arf\n")
    monkeypatch.chdir(tmp_path)
    assert expand_stacks(["@-lists/here.lis"]) == [SpectrumInput("a.pi", arf="b.arf")]
    assert expand_stacks(["@lists/here.lis"]) == [SpectrumInput("lists/a.pi", arf="lists/b.arf")]


def test_four_column_stack_for_report_and_encode(
    bare: dict, sherpa_data: Path, pha_3c273: Path, tmp_path: Path, shipped: None, capsys
) -> None:
    folder = bare["folder"]
    csc = sherpa_data / "acisf07867_000N001_r0002_pha3.fits"
    stack = folder / "four.lis"
    stack.write_text(
        "# pha                arf               rmf               bkg\n"
        "obs/bare.pi          obs/3c273.arf     obs/3c273.rmf     obs/3c273_bg.pi\n"
        f"{pha_3c273}          -                 -                 -\n"
        f"{csc}\n"
    )
    files = [str(folder / "obs" / "bare.pi"), str(pha_3c273), str(csc)]
    assert cli.main(["report", f"@{stack}", "--no-fit", "--json", "verbose=0"]) == 0
    out = capsys.readouterr()
    rows = strict_rows(out.out)
    assert [r["FILE"] for r in rows] == files and out.err == ""
    assert without_file(rows[0]) == without_file(rows[1])  # explicit files = header's

    output = tmp_path / "latents.fits"
    args = ["encode", f"@{stack}", f"outfile={output}", "json=yes", "verbose=0"]
    assert cli.main(args) == 0
    out = capsys.readouterr()
    streamed = strict_rows(out.out)  # stdout: JSON lines only, the summary went to stderr
    assert out.err.strip() == f"{output}: 3 encoded, 0 failed"
    table = read_table(output, mask_invalid=False)
    assert list(table["FILE"]) == files
    assert [r["FILE"] for r in streamed] == files
    for row, line in zip(table, streamed, strict=True):
        assert list(line) == table.colnames  # the table's keys, in its order
        for name in table.colnames:
            assert line[name] == json_safe(np.asarray(row[name]).tolist()), name
    assert np.isfinite(streamed[0]["NH_LATENT"])
    assert streamed[0]["NH_LATENT"] == pytest.approx(streamed[1]["NH_LATENT"], rel=1e-6)


# --- verbose, mode, unknown keys, help -----------------------------------------------------
def test_progress_lines_off_a_terminal(
    pha_3c273: Path, sherpa_data: Path, shipped: None, capsys
) -> None:
    files = [str(pha_3c273), str(sherpa_data / "acisf04938_000N002_r0043_pha3.fits")]
    args = ["report", *files, "--no-fit", "--json", "mode=ql"]
    chatty = run_cli(*args)  # stderr a pipe, default verbose=1
    quiet, timed = (run_main(capsys, *args, f"verbose={level}") for level in (0, 2))
    for proc in (quiet, chatty, timed):
        assert proc.returncode == 0, proc.stderr
        assert [row["FILE"] for row in strict_rows(proc.stdout)] == files
    assert quiet.stderr == ""
    lines = chatty.stderr.strip().splitlines()
    assert lines[0] == "sherpa-latent: report: 2 files to do"
    assert re.fullmatch(r"sherpa-latent: report: 1 of 2 files \(50%\), [\d.]+ s", lines[1])
    assert re.fullmatch(r"sherpa-latent: report: 2 of 2 files in [\d.]+ s", lines[-1])
    assert all(PROGRESS.match(line) for line in lines)  # plain lines, no bar
    per_file = [ln for ln in timed.stderr.splitlines() if ": reported; read " in ln]
    assert [ln.split(": ")[2] for ln in per_file] == files
    assert all(re.search(r"read [\d.]+ s, report [\d.]+ s$", ln) for ln in per_file)


def test_a_progress_line_at_least_every_ten_seconds(monkeypatch, tmp_path: Path, capsys):
    """While no file finishes, a line still comes (here every 0.05 s instead of 10 s)."""
    import time

    monkeypatch.setattr(cli, "_PROGRESS_SECONDS", 0.05)
    with open(tmp_path / "run.log", "a", encoding="utf-8") as log:
        progress = cli._Progress(cli._Console(verbose=0, log=log), 3, "encode")
        deadline = time.monotonic() + 60
        while "0 of 3 files (0%)" not in (tmp_path / "run.log").read_text():
            assert time.monotonic() < deadline, "no progress line while nothing finished"
            time.sleep(0.01)
        progress.update(3)
        progress.close()
    lines = (tmp_path / "run.log").read_text().splitlines()
    assert lines[0].endswith("sherpa-latent: encode: 3 files to do")
    assert re.search(r"sherpa-latent: encode: 3 of 3 files in [\d.]+ s$", lines[-1])
    assert capsys.readouterr().err == ""  # verbose=0: the log only


def test_encode_progress_lines(sherpa_data: Path, tmp_path: Path, shipped: None, capsys) -> None:
    stack = tmp_path / "many.lis"
    stack.write_text(f"{sherpa_data / '3c273.pi'}\n" * 12)
    proc = run_main(capsys, "encode", f"@{stack}", f"outfile={tmp_path / 'x.fits'}",
                    "batch_size=4", "verbose=2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{tmp_path / 'x.fits'}: 12 encoded, 0 failed"
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "sherpa-latent: encode: 12 files to do"
    counted = [re.search(r"encode: (\d+) of 12 files \(\d+%\)", ln) for ln in lines]
    assert {int(m[1]) for m in counted if m} >= set(range(1, 12))  # each file is over 5%
    per_file = [ln for ln in lines if ": encoded; loaded in " in ln]
    assert len(per_file) == 12 and "its batch of 4 through the network in" in per_file[0]
    assert re.fullmatch(r"sherpa-latent: encode: 12 of 12 files in [\d.]+ s", lines[-1])


def test_unknown_keys_and_bad_values_are_refused(pha_3c273: Path) -> None:
    parsers = cli._subparsers(cli.build_parser())
    for command, extra in (("report", []), ("encode", ["outfile=x.fits"])):
        proc = run_cli(command, str(pha_3c273), *extra, "foo=1")
        line = one_line(proc, f"sherpa-latent {command}: foo=1: unknown parameter; valid keys:")
        listed = line.split("valid keys: ")[1].split(", ")
        assert listed == cli.parameter_names(parsers[command])
        assert {"infile", "verbose", "mode", "logfile", "clobber", "arf", "rmf", "bkg"} <= set(
            listed
        )
    one_line(run_cli("report", str(pha_3c273), "json=maybe"), "json=maybe", "yes or no")
    one_line(run_cli("report", str(pha_3c273), "verbose=6"), "--verbose", "invalid choice")
    one_line(run_cli("report", str(pha_3c273), "mode=x"), "not a CIAO parameter mode")


def test_help_lists_every_parameter_with_its_default(capsys) -> None:
    for command, parser in cli._subparsers(cli.build_parser()).items():
        with pytest.raises(SystemExit) as done:
            cli.main([command, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        block = text.split("parameters (name=value")[1]
        for action in parser._actions:
            if not action.option_strings or action.dest == "help":
                continue
            name = cli._option_names(action)[-1]
            default = cli._shown_default(action)
            if action.required:  # as plist shows a parameter to be given: no parentheses
                pattern = rf"^ +{name} = {re.escape(default)} "
            else:
                pattern = rf"^ +\({name} = {re.escape(default)} *\)"
            assert re.search(pattern, block, re.MULTILINE), (command, name)
        for name in cli.parameter_names(parser):
            assert re.search(rf"\b{name}\b", block), (command, name)
    report = cli._subparsers(cli.build_parser())["report"]
    assert cli._shown_default(next(a for a in report._actions if a.dest == "verbose")) == "1"


# --- log file ---------------------------------------------------------------------------------
def test_logfile_gets_progress_and_warnings_and_is_appended(
    tmp_path: Path, sherpa_data: Path, shipped: None, capsys
) -> None:
    log = tmp_path / "run.log"
    # No BACKFILE: the report says it (a warning) and the log gets it too.
    nobkg = write_modified_pha(tmp_path / "nobkg.pi", sherpa_data / "3c273.pi",
                               header={"BACKFILE": "missing_bkg.pi"})  # fmt: skip
    args = ["report", str(nobkg), "--no-fit", "--json", "verbose=0", f"logfile={log}"]
    assert cli.main(args) == 0
    assert capsys.readouterr().err == ""  # verbose=0 on the terminal; the log has it all
    first = log.read_text().splitlines()
    assert first[0].startswith("# ") and first[0].endswith(
        f"sherpa-latent {' '.join(args)} (sherpa_latent {__import__('sherpa_latent').__version__})"
    )
    assert any(line.endswith("sherpa-latent: report: 1 file to do") for line in first)
    assert any(f"{nobkg}: warning:" in line and "missing_bkg.pi" in line for line in first)
    assert re.fullmatch(r"# \S+ exit status 0, [\d.]+ s", first[-1])
    assert cli.main(["report", str(tmp_path / "none.pi"), "--no-fit", f"logfile={log}"]) == 1
    second = log.read_text().splitlines()
    assert second[: len(first)] == first  # appended, never replaced
    assert any("none.pi: file not found" in line for line in second[len(first) :])
    assert re.fullmatch(r"# \S+ exit status 1, [\d.]+ s", second[-1])
    missing = tmp_path / "no" / "run.log"
    proc = run_main(capsys, "report", str(nobkg), f"logfile={missing}")
    one_line(proc, str(missing), "cannot open the log file")


# --- warnings scoped to the command ------------------------------------------------------------
def test_main_leaves_no_warning_filter_or_logger_level(
    pha_3c273: Path, shipped: None, capsys
) -> None:
    import sherpa.astro.ui  # noqa: F401 - imports that add filters of their own, done first

    import sherpa_latent.catalogue  # noqa: F401

    sherpa_log = logging.getLogger("sherpa")
    before = list(warnings.filters)
    levels = {name: logging.getLogger(name).level for name in ("sherpa", "astropy")}
    streams = [getattr(h, "stream", None) for h in sherpa_log.handlers]
    for level in ("0", "1", "3", "5"):
        assert cli.main(["report", str(pha_3c273), "--no-fit", "--json", f"verbose={level}"]) == 0
        assert warnings.filters == before, level
        assert {n: logging.getLogger(n).level for n in levels} == levels, level
        assert [getattr(h, "stream", None) for h in sherpa_log.handlers] == streams
        strict_rows(capsys.readouterr().out)  # stdout holds only the result
    assert not any(f[0] == "ignore" and f[1] is None and f[2] is Warning for f in warnings.filters)
    with pytest.warns(UserWarning, match="still shown"):
        warnings.warn("still shown", UserWarning, stacklevel=1)
