"""Issue 12, the output side: no lost run and no traceback for a user error.

Every case goes through the command (``python -m sherpa_latent.cli``): a user's mistake
ends with a non-zero status and one line naming the thing to fix; a file name with a space
and a non-ASCII letter goes through ``report``, ``encode``, the region file and a resumed
run, and reads back exactly; two ``encode`` runs on one output do not mix; JSON is strict.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import SHERPA_SPECTRA, kill_after_batches, run_cli, write_modified_pha
from regions import Regions

from sherpa_latent.catalogue import progress_path, read_table
from sherpa_latent.fileio import lock_path, output_lock

UNICODE_NAME = "3c 273 ü.pi"
N_LINKS = 200


# --- helpers ----------------------------------------------------------------------------
def _refuse_constant(name: str):
    raise ValueError(f"not strict JSON: {name}")


def strict_loads(text: str):
    """``json.loads`` that refuses NaN, Infinity and -Infinity."""
    return json.loads(text, parse_constant=_refuse_constant)


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Check a refused command: non-zero status, no traceback, one line naming the thing."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _can_write(folder: Path) -> bool:
    try:
        fd, name = tempfile.mkstemp(dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def read_only_folder(tmp_path: Path) -> Path:
    """A folder this user cannot make files in (as root, chmod is not enough: try /sys)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if not _can_write(folder):
        return folder
    for candidate in (Path("/sys"), Path("/proc/sys")):
        if candidate.is_dir() and not _can_write(candidate):
            return candidate
    pytest.skip("no folder here that this user cannot write in")


def run_all(*commands: list[str]) -> list[subprocess.CompletedProcess]:
    """``run_cli`` of several independent commands at once (they only read)."""
    with ThreadPoolExecutor(max_workers=min(len(commands), os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda args: run_cli(*args), commands))


def _popen(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sherpa_latent.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a kill reaches its workers too
    )


# --- files --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spectra(tmp_path_factory, sherpa_data: Path) -> dict:
    """The non-ASCII spaced copy of 3C 273 (no OBJECT, so regions are labelled by file
    name), and N_LINKS symlinks to copies of the three sherpa-package spectra."""
    folder = tmp_path_factory.mktemp("spectra")
    unicode = write_modified_pha(
        folder / UNICODE_NAME, sherpa_data / "3c273.pi", header={"OBJECT": None}
    )
    copies = [write_modified_pha(folder / name, sherpa_data / name) for name in SHERPA_SPECTRA]
    links = []
    (folder / "links").mkdir()
    for i in range(N_LINKS):
        link = folder / "links" / f"s{i:03d}.pi"
        link.symlink_to(copies[i % len(copies)])
        links.append(str(link))
    stack = folder / "links.lis"
    stack.write_text("\n".join(links) + "\n")
    return {"unicode": unicode, "links": links, "stack": stack, "folder": folder}


# --- a non-ASCII, spaced file name ------------------------------------------------------
def test_non_ascii_name_through_report(spectra: dict, small_network: Path, tmp_path: Path):
    name = str(spectra["unicode"])
    out = tmp_path / "report.fits"
    proc = run_cli("report", name, "--no-fit", "--json", "--network", str(small_network),
                   "--output", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert strict_loads(proc.stdout)["FILE"] == name
    table = read_table(out)
    assert list(table["FILE"]) == [name]  # decoded exactly
    raw = fits.getdata(out, 1)["FILE"][0]
    assert raw.isascii() and raw.endswith("3c 273 %C3%BC.pi")  # FITS holds printable ASCII
    assert fits.getheader(out, 1)["PCTENC"] == "FILE"
    text = run_cli("report", name, "no_fit=yes", "no_latent=yes")
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0] == name


def test_non_ascii_name_through_an_interrupted_encode(
    spectra: dict, small_network: Path, tmp_path: Path
) -> None:
    files = [str(spectra["unicode"]), *spectra["links"][:60]]
    stack = tmp_path / "files.lis"
    stack.write_text("\n".join(files) + "\n", encoding="utf-8")
    output, regions = tmp_path / "latents.fits", tmp_path / "latents.reg"
    progress = progress_path(output)
    args = ["encode", f"@{stack}", f"outfile={output}", f"network={small_network}",
            "batch_size=2", f"regions={regions}"]  # fmt: skip
    kill_after_batches(_popen(*args), progress, 2, timeout=120)
    assert progress.exists() and not output.exists()
    complete = progress.read_bytes().split(b"\n")[1:-1]  # batches written in full
    recorded = [rec["FILE"] for line in complete for rec in json.loads(line)["rows"]]
    assert recorded[0] == files[0]  # the name was recorded before the kill
    assert lock_path(output).exists()  # left by the killed run: it must not block

    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"of {len(files)} files done" in proc.stderr
    table = read_table(output)
    assert list(table["FILE"]) == files
    assert not any(table["ERROR"])
    assert not progress.exists() and not lock_path(output).exists()
    parsed = Regions.read(str(regions), format="ds9")
    assert len(parsed) == np.isfinite(np.asarray(table["RA"])).sum() >= 20
    # no OBJECT: labelled by its file name (and its cluster)
    assert parsed[0].meta["text"] == f"{UNICODE_NAME}, cluster {table['CLUSTER'][0]}"


# --- one run per output ---------------------------------------------------------------------
def test_two_encode_runs_on_one_output(spectra: dict, small_network: Path, tmp_path: Path):
    output = tmp_path / "latents.fits"
    args = ["encode", f"@{spectra['stack']}", "--output", str(output),
            "--network", str(small_network), "--batch-size", "20"]  # fmt: skip
    runs = [_popen(*args), _popen(*args)]
    try:
        deadline = time.monotonic() + 180
        while all(r.poll() is None for r in runs):
            assert time.monotonic() < deadline, "neither run ended in 3 minutes"
            time.sleep(0.01)
        first = next(r for r in runs if r.poll() is not None)
        other = runs[1 - runs.index(first)]
        assert other.poll() is None, "the refused run did not refuse at once"
        outs = {id(r): r.communicate(timeout=180) for r in runs}
    finally:
        for r in runs:
            if r.poll() is None:
                os.killpg(r.pid, signal.SIGKILL)
    loser = subprocess.CompletedProcess(args, first.returncode, *outs[id(first)])
    one_line_error(loser, str(output), "another run is writing it", str(lock_path(output)))
    assert loser.stdout == ""
    assert other.returncode == 0, outs[id(other)][1]
    files = list(read_table(output)["FILE"])
    assert files == spectra["links"]  # every file once, in order
    assert not progress_path(output).exists() and not lock_path(output).exists()
    again = run_cli(*args, "--clobber")
    assert again.returncode == 0, again.stderr
    assert list(read_table(output)["FILE"]) == spectra["links"]


def test_a_held_lock_refuses_and_a_stale_lock_file_does_not(
    pha_3c273: Path, small_network: Path, tmp_path: Path
) -> None:
    output = tmp_path / "one.fits"
    args = ["encode", str(pha_3c273), "--output", str(output), "--network", str(small_network)]
    with output_lock(output):
        held = run_cli(*args)
    one_line_error(held, "another run is writing it")
    assert not output.exists() and not progress_path(output).exists()
    assert not lock_path(output).exists()  # removed by the run that held it
    lock_path(output).write_text("12345\n")  # as a killed run leaves it
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert output.exists() and not lock_path(output).exists()


def test_output_lock_in_one_process_and_without_fcntl(tmp_path: Path) -> None:
    from sherpa_latent import fileio
    from sherpa_latent.errors import OutputLocked

    output = tmp_path / "x.fits"
    with output_lock(output) as lock:
        assert lock == lock_path(output) and lock.read_text() == f"{os.getpid()}\n"
        with pytest.raises(OutputLocked, match="another run is writing it"):
            with output_lock(output):
                pass
        assert lock.exists()  # the refused attempt left the holder's lock alone
    assert not lock.exists()
    # Where there is no fcntl: a file made with O_EXCL, which a killed run would leave.
    with fileio._exclusive_lock(output, lock):
        with pytest.raises(OutputLocked, match="remove the lock file if no run is going"):
            with fileio._exclusive_lock(output, lock):
                pass
    assert not lock.exists()


def test_a_progress_file_without_a_header_does_not_block(
    pha_3c273: Path, small_network: Path, tmp_path: Path
) -> None:
    output = tmp_path / "one.fits"
    progress = progress_path(output)
    # What a run that lost the race for the file used to leave: batches, no header.
    progress.write_text('{"batch":0,"rows":[{"FILE":"x.pi","ERROR":""}]}\n')
    proc = run_cli(
        "encode", str(pha_3c273), "--output", str(output), "--network", str(small_network)
    )
    assert proc.returncode == 0, proc.stderr
    assert "no valid header" in proc.stderr and "moved to" in proc.stderr
    assert list(read_table(output)["FILE"]) == [str(pha_3c273)]
    aside = progress.with_name(progress.name + ".invalid")
    assert aside.read_text().startswith('{"batch":0') and not progress.exists()


# --- outputs checked before the work ----------------------------------------------------
def test_encode_to_a_missing_folder(pha_3c273: Path, tmp_path: Path) -> None:
    output = tmp_path / "no" / "such" / "latents.fits"
    proc = run_cli("encode", str(pha_3c273), "--output", str(output))
    one_line_error(proc, str(output), "does not exist")


def test_encode_to_a_read_only_folder(pha_3c273: Path, tmp_path: Path) -> None:
    folder = read_only_folder(tmp_path)
    output = folder / "latents.fits"
    proc = run_cli("encode", str(pha_3c273), "--output", str(output))
    one_line_error(proc, str(output), "cannot write in folder")


def test_encode_bad_regions_path_is_refused_before_the_work(
    pha_3c273: Path, small_network: Path, tmp_path: Path
) -> None:
    output = tmp_path / "latents.fits"
    regions = tmp_path / "no" / "latents.reg"
    proc = run_cli("encode", str(pha_3c273), f"outfile={output}",
                   f"network={small_network}", f"regions={regions}")  # fmt: skip
    one_line_error(proc, str(regions), "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no table, progress or lock
    existing = tmp_path / "old.reg"
    existing.write_text("keep\n")
    proc = run_cli("encode", str(pha_3c273), f"outfile={output}",
                   f"network={small_network}", f"regions={existing}")  # fmt: skip
    one_line_error(proc, str(existing), "clobber")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.reg"]


def test_report_plot_to_an_existing_file(pha_3c273: Path, tmp_path: Path) -> None:
    target = tmp_path / "plots"
    target.write_text("a file\n")
    proc = run_cli("report", str(pha_3c273), "--no-fit", "--plot", str(target))
    one_line_error(proc, str(target), "not a folder")
    assert proc.stdout == ""


def test_report_outputs_are_checked_before_the_work(
    pha_3c273: Path, small_network: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "png"
    folder.mkdir()
    (folder / "3c273.png").write_bytes(b"old")
    proc = run_cli("report", str(pha_3c273), "--no-fit", "--network", str(small_network),
                   "--plot", str(folder))  # fmt: skip
    one_line_error(proc, str(folder / "3c273.png"), "clobber")
    assert proc.stdout == ""  # refused before any spectrum was reported
    missing = tmp_path / "no" / "report.fits"
    proc = run_cli("report", str(pha_3c273), "--no-fit", "--output", str(missing))
    one_line_error(proc, str(missing), "does not exist")
    assert proc.stdout == ""


# --- inputs and arguments ----------------------------------------------------------------
def test_evaluate_and_train_on_a_missing_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("work_dir = \n")
    evaluate, train, toml = run_all(
        ["evaluate", str(tmp_path / "nowhere")],
        ["train", str(tmp_path / "none.toml")],
        ["train", str(bad)],
    )
    one_line_error(evaluate, "nowhere", "test folder not found")
    one_line_error(train, "none.toml", "recipe file not found")
    one_line_error(toml, "bad.toml")
    assert not (tmp_path / "evaluation").exists()


def test_network_options_with_a_bad_network_file(
    pha_3c273: Path, small_network: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in small_network.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    weights = broken / "network.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_text("not a network\n")
    output = str(tmp_path / "x.fits")
    done = run_all(
        ["report", str(pha_3c273), "--no-fit", "--network", str(broken)],
        ["evaluate", str(tmp_path), "--network", str(broken)],
        ["encode", str(pha_3c273), "--output", output, f"network={garbage}"],
        ["encode", str(pha_3c273), "--output", output, "--network", "none"],
    )
    for proc in done[:2]:
        one_line_error(proc, str(weights), "SHA-256", "does not match")
    one_line_error(done[2], str(garbage))
    one_line_error(done[3], "needs a network")
    assert not Path(output).exists() and not lock_path(output).exists()
    assert not (tmp_path / "evaluation").exists()


def test_stacks_that_include_themselves_or_name_nothing(pha_3c273: Path, tmp_path: Path):
    loop = tmp_path / "loop.lis"
    lines = [str(pha_3c273)] * 3000
    lines[1499] = f"@{loop}"
    loop.write_text("\n".join(lines) + "\n")
    inner, outer = tmp_path / "inner.lis", tmp_path / "outer.lis"
    inner.write_text(f"@{outer}\n")
    outer.write_text(f"{pha_3c273}\n@{inner}\n")
    empty, comments = tmp_path / "empty.lis", tmp_path / "comments.lis"
    empty.write_text("")
    comments.write_text("# nothing here\n\n   \n")
    output = tmp_path / "out.fits"
    done = run_all(
        ["report", f"@{loop}", "--no-fit"],
        ["report", f"@{outer}"],
        ["encode", f"@{empty}", "--output", str(output)],
        ["report", f"@{comments}"],
    )
    one_line_error(done[0], f"@{loop} (line 1500 of {loop}) includes itself")
    one_line_error(done[1], "includes itself", f"@{outer} -> @{inner} -> @{outer}")
    for proc, stack in zip(done[2:], (empty, comments), strict=True):
        message = f"sherpa-latent: no files in @{stack} (only blank lines and comments)"
        assert one_line_error(proc) == message
    assert not output.exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["encode", "x.pi", "--output", "OUT", "--batch-size", "abc"], "--batch-size"),
        (["encode", "x.pi", "--output", "OUT", "workers=0"], "workers"),
        (["encode", "x.pi"], "--output"),
        (["report", "x.pi", "clobber=maybe"], "clobber=maybe"),
        (["report", "x.pi", "--no-such-option"], "--no-such-option"),
        (["evaluate", "TMP", "--n-splits", "0"], "n-splits"),
        ([], "command"),
    ],
)
def test_bad_arguments_are_one_line(args: list[str], needle: str, tmp_path: Path) -> None:
    places = {"OUT": str(tmp_path / "o.fits"), "TMP": str(tmp_path)}
    one_line_error(run_cli(*(places.get(a, a) for a in args)), needle)
    assert list(tmp_path.iterdir()) == []


# --- strict JSON -------------------------------------------------------------------------
def test_report_json_is_strict(pha_3c273: Path, small_network: Path, tmp_path: Path):
    """A response with no area above 0.7 keV: the decoded model has no counts in the
    medium and hard bands, so its HR_hm is undefined (NaN): null in the JSON."""
    with fits.open(pha_3c273.parent / "3c273.arf") as hdus:
        hdus[1].data["SPECRESP"][hdus[1].data["ENERG_LO"] >= 0.7] = 0.0
        hdus.writeto(tmp_path / "soft.arf")
    soft = write_modified_pha(
        tmp_path / "soft.pi", pha_3c273, header={"ANCRFILE": str(tmp_path / "soft.arf")}
    )
    missing = tmp_path / "missing.pi"
    proc = run_cli("report", "--json", "--no-fit", "--network", str(small_network),
                   str(soft), str(missing))  # fmt: skip
    assert proc.returncode == 1  # the missing file
    assert "NaN" not in proc.stdout and "Infinity" not in proc.stdout
    rows = [strict_loads(line) for line in proc.stdout.splitlines()]
    assert [r["FILE"] for r in rows] == [str(soft), str(missing)]
    assert rows[0]["HR_HM_LATENT"] is None
    assert np.isfinite(rows[0]["NET_COUNTS"]) and "not found" in rows[1]["ERROR"]
