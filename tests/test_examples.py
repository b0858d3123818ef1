"""The examples and the docs (issue 4, what must hold 5 and 7).

Every script in examples/ runs on the 3C 273 spectrum (and two CSC spectra) that ship
inside the installed sherpa package and writes the files it promises; every code block
of docs/user-guide.md marked ``<!-- example: examples/NAME.py -->`` is literally part of
that script, so that the guide's commands are the ones the examples run; the guide's
images are in docs/images and nothing else is; docs/api.md is what docs/make_api.py
writes now.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table
from matplotlib.image import imread
from regions import Regions

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs"
GUIDE = DOCS / "user-guide.md"

# What each example writes into its output folder.
OUTPUTS = {
    "session_walkthrough.py": ["3c273_latent_fit.png", "3c273_latent_space.png"],
    "mixed_fit.py": ["mixed_fit.txt"],
    "helpdesk_report.py": ["report_plots/3c273.png", "3c273_report.fits", "answer.txt"],
    "catalogue_run.py": ["spectra.lis", "latents.fits", "latents.reg"],
}

MARKER = re.compile(
    r"<!--\s*example:\s*(?P<path>\S+)\s*-->\s*\n(?:[ \t]*\n)*"
    r"```(?P<lang>[\w-]*)[ \t]*\n(?P<body>.*?)\n```",
    re.DOTALL,
)


def assert_not_blank(path: Path) -> None:
    """A PNG with content: lines, points and text on a background."""
    assert path.is_file() and path.stat().st_size > 5000, path
    image = imread(path)
    pixels = image[..., :3].reshape(-1, 3)
    assert image.shape[0] > 200 and image.shape[1] > 200, path
    assert float(pixels.std()) > 0.05, path
    assert len(np.unique(np.round(pixels, 2), axis=0)) > 10, path


def run_example(script: str, outdir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONWARNINGS="ignore")
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / script), str(outdir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, f"{script} exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
    for name in OUTPUTS[script]:
        assert (outdir / name).is_file(), f"{script} did not write {name}"
    return run


def test_every_example_is_known() -> None:
    """A new example must say here what it writes (and so is run below)."""
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(OUTPUTS)


@pytest.fixture(scope="module")
def default_network() -> None:
    from conftest import require_default_network

    require_default_network()


def test_session_walkthrough(default_network, tmp_path: Path) -> None:
    run = run_example("session_walkthrough.py", tmp_path)
    for name in OUTPUTS["session_walkthrough.py"]:
        assert_not_blank(tmp_path / name)
    assert "best-constrained latent: latent1.z" in run.stdout
    # conf gave both bounds for the normalisation and the latent
    pattern = re.compile(r"\s+latent1\.(norm|z\d)\s+\S+\s+\[")
    intervals = [ln for ln in run.stdout.splitlines() if pattern.match(ln)]
    assert len(intervals) == 2 and not any("unbounded" in ln for ln in intervals), run.stdout
    stats = dict(re.findall(r"^\s+(latent model|wabs \* powlaw1d)\s+([\d.]+)$", run.stdout, re.M))
    assert float(stats["latent model"]) <= float(stats["wabs * powlaw1d"]) + 10


def test_mixed_fit(default_network, tmp_path: Path) -> None:
    run_example("mixed_fit.py", tmp_path)
    rows = (tmp_path / "mixed_fit.txt").read_text().splitlines()[2:]
    assert len(rows) == 4
    # every model fits as well as the classical one (within 10) and gives its flux to 10%
    stats = [float(row.split()[-4]) for row in rows]
    changes = [float(row.split()[-1].rstrip("%")) for row in rows]
    assert rows[0].startswith("wabs.gal * powlaw1d.pl") and changes[0] == 0.0
    assert max(stats[1:]) <= stats[0] + 10
    assert max(abs(c) for c in changes) < 10


def test_helpdesk_report(default_network, tmp_path: Path) -> None:
    run = run_example("helpdesk_report.py", tmp_path)
    assert_not_blank(tmp_path / "report_plots" / "3c273.png")
    table = Table.read(tmp_path / "3c273_report.fits", mask_invalid=False)
    assert len(table) == 1 and not table["ERROR"][0]
    assert table["OBJECT"][0] == "3C 273"
    nh = table["NH_CLASSICAL"].quantity[0].to_value(u.Unit("1e22 cm-2"))
    assert 0 < nh < 1
    answer = (tmp_path / "answer.txt").read_text()
    assert answer.strip() in run.stdout
    for needed in ("3C 273", "cluster", "N_H", "HR_hm", "HR_hs", "HR_ms", "photon index"):
        assert needed in answer
    assert "target      3C 273" in run.stdout  # the command's own report came through


def test_catalogue_run(default_network, tmp_path: Path) -> None:
    run = run_example("catalogue_run.py", tmp_path)
    table = Table.read(tmp_path / "latents.fits", mask_invalid=False)
    assert len(table) == 3 and not any(table["ERROR"])
    assert len(table.meta["NETSHA"]) == 64
    regions = Regions.read(str(tmp_path / "latents.reg"), format="ds9")
    with_position = np.isfinite(table["RA"]) & np.isfinite(table["DEC"])
    assert len(regions) == int(with_position.sum()) >= 1
    assert "exists and clobber is not set" in run.stdout  # a run without clobber refused
    # the interrupted run went on where it stopped (unless it ended before the interrupt)
    assert "1 of 3 files done, 2 to go" in run.stdout or "ended before" in run.stdout
    assert not list(tmp_path.glob("*.partial.jsonl"))  # the progress file is gone


# --------------------------------------------------------------------------------------
# docs
# --------------------------------------------------------------------------------------
def marked_blocks() -> list[tuple[str, str, str]]:
    return [(m["path"], m["lang"], m["body"]) for m in MARKER.finditer(GUIDE.read_text())]


def test_guide_commands_are_the_examples() -> None:
    blocks = marked_blocks()
    text = GUIDE.read_text()
    assert len(blocks) == text.count("<!-- example:"), "a marker is not followed by a block"
    assert {Path(path).name for path, _, _ in blocks} == set(OUTPUTS), "an example has no block"
    for path, lang, body in blocks:
        assert lang in ("python", "bash"), f"{path}: block marked as {lang!r}"
        source = (ROOT / path).read_text()
        assert body.strip("\n") in source, f"docs block not in {path}:\n{body}"


def test_guide_images() -> None:
    """One PNG of each plot kind in the guide; every image in docs/images used by a page."""
    pattern = r"!\[[^\]]*\]\((images/[^)\s]+)\)"
    used = set(re.findall(pattern, GUIDE.read_text()))
    everywhere = {m for page in DOCS.glob("*.md") for m in re.findall(pattern, page.read_text())}
    present = {str(p.relative_to(DOCS)) for p in (DOCS / "images").rglob("*") if p.is_file()}
    assert everywhere == present
    names = " ".join(sorted(used))
    assert "latent_fit" in names and "latent_space" in names and "report_plots" in names
    for name in used:
        assert_not_blank(DOCS / name)


def test_api_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location("make_api", DOCS / "make_api.py")
    make_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_api)
    assert (DOCS / "api.md").read_text(encoding="utf-8") == make_api.render(), (
        "docs/api.md is out of date: run python docs/make_api.py"
    )
