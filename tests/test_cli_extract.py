"""The command line beyond encode: ``extract`` (CIAO's specextract, and the plain message
outside CIAO), ``report --output`` (FITS table) and ``report --plot`` (PNG per spectrum)."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from conftest import make_small_network, write_modified_pha

import sherpa_latent
from sherpa_latent import cli
from sherpa_latent.ciao import have_ciao


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> Path:
    return make_small_network(tmp_path_factory.mktemp("network"))


# --- extract ------------------------------------------------------------------------------
@pytest.mark.skipif(have_ciao(), reason="inside CIAO the command runs")
def test_extract_outside_ciao_says_it_needs_ciao(tmp_path: Path) -> None:
    evt2 = tmp_path / "evt2.fits"
    evt2.write_bytes(b"")
    proc = subprocess.run(
        [sys.executable, "-m", "sherpa_latent.cli", "extract", str(evt2), "circle(1,1,2)",
         "--outroot", str(tmp_path / "src")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "needs CIAO" in lines[0] and "not on PyPI" in lines[0]
    assert not list(tmp_path.glob("src*"))


class _FakeTool:
    """Stands in for ``ciao_contrib.runtool.specextract``: records, then writes outputs."""

    def __init__(self, source: Path, fail: str | None = None) -> None:
        self.source, self.fail = source, fail
        self.calls: list = []

    def punlearn(self) -> None:
        self.calls.append("punlearn")

    def __call__(self, **params) -> str:
        self.calls.append(params)
        if self.fail:
            raise OSError(f"An error occurred while running 'specextract':\n  {self.fail}\n")
        write_modified_pha(Path(params["outroot"] + ".pi"), self.source)
        return ""


@pytest.fixture
def fake_ciao(monkeypatch, pha_3c273: Path):
    tool = _FakeTool(pha_3c273)
    runtool = types.ModuleType("ciao_contrib.runtool")
    runtool.specextract = tool
    package = types.ModuleType("ciao_contrib")
    package.runtool = runtool
    monkeypatch.setitem(sys.modules, "ciao_contrib", package)
    monkeypatch.setitem(sys.modules, "ciao_contrib.runtool", runtool)
    return tool


def test_extract_runs_specextract_then_reports(fake_ciao, tmp_path: Path, capsys) -> None:
    evt2 = tmp_path / "acisf_evt2.fits"
    evt2.write_bytes(b"events")
    region = tmp_path / "src.reg"
    region.write_text("circle(4096.5,4096.5,20)\n")
    root = tmp_path / "out" / "src"
    root.parent.mkdir()
    rc = cli.main(
        ["extract", f"region={region}", f"evt2={evt2}", "bkg=annulus(4096.5,4096.5,30,60)",
         f"outroot={root}", "no_fit=yes", "no_latent=yes", "json=yes"]
    )  # fmt: skip
    assert rc == 0
    assert fake_ciao.calls[0] == "punlearn"
    params = fake_ciao.calls[1]
    assert params["infile"] == f"{evt2}[sky=region({region})]"
    assert params["bkgfile"] == f"{evt2}[sky=annulus(4096.5,4096.5,30,60)]"
    assert params["outroot"] == str(root)
    assert params["weight"] is False and params["correctpsf"] is True
    assert params["grouptype"] == "NONE" and params["clobber"] is False
    out = capsys.readouterr()
    row = json.loads(out.out)
    assert row["FILE"] == f"{root}.pi" and row["OBJECT"] == "3C 273"
    assert f"specextract made {root}.pi" in out.err


def test_extract_checks_its_outputs_before_specextract(fake_ciao, tmp_path: Path, capsys):
    """Issue 12: an output that could not be written stops extract before CIAO runs."""
    evt2 = tmp_path / "evt2.fits"
    evt2.write_bytes(b"events")
    missing = tmp_path / "no" / "report.fits"
    args = ["extract", str(evt2), "circle(1,1,2)", "--outroot", str(tmp_path / "x")]
    assert cli.main([*args, "--output", str(missing)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"sherpa-latent: {missing}: folder {missing.parent} does not exist"]
    assert fake_ciao.calls == []  # specextract never ran
    with pytest.raises(SystemExit, match="event file not found"):
        cli.main(["extract", str(tmp_path / "none.fits"), "circle(1,1,2)", "--outroot", "x"])
    assert fake_ciao.calls == []


def test_extract_reports_a_failed_specextract_in_one_line(fake_ciao, tmp_path: Path, capsys):
    fake_ciao.fail = "ERROR: region file src.reg has no shapes"
    evt2 = tmp_path / "evt2.fits"
    evt2.write_bytes(b"events")
    rc = cli.main(["extract", str(evt2), "circle(1,1,2)", "--outroot", str(tmp_path / "x")])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sherpa-latent extract: specextract: ERROR: region file src.reg has no shapes"]


# --- report --output and --plot ----------------------------------------------------------
def test_report_output_table_and_clobber(network: Path, pha_3c273: Path, tmp_path: Path):
    out = tmp_path / "report.fits"
    missing = tmp_path / "missing.pi"
    args = ["report", str(pha_3c273), str(missing), f"network={network}", f"outfile={out}"]
    assert cli.main([*args, "--json"]) == 1  # the missing file fails
    table = Table.read(out, mask_invalid=False)  # NaN stays NaN (not masked)
    assert len(table) == 2
    for name in ("FILE", "OBJECT", "OBSID", "EXPOSURE", "NET_COUNTS", "CLUSTER", "ERROR"):
        assert name in table.colnames
    for key in ("HR_HM", "HR_HS", "HR_MS", "NH_CLASSICAL", "GAMMA_CLASSICAL", "NH_LATENT"):
        assert {key, key + "_LO", key + "_HI"} <= set(table.colnames)
        lo, value, hi = (float(table[key + s][0]) for s in ("_LO", "", "_HI"))
        assert lo <= value <= hi, key
    good, bad = table[0], table[1]
    assert good["OBJECT"] == "3C 273" and good["NET_COUNTS"] > 500
    assert 1.8 < good["GAMMA_CLASSICAL"] < 2.3 and good["CLUSTER"] >= 0
    assert str(table["EXPOSURE"].unit) == "s" and table["NH_LATENT"].unit is not None
    assert "not found" in str(bad["ERROR"]) and np.isnan(bad["GAMMA_CLASSICAL"])
    assert table.meta["NETSHA"]
    # Not overwritten without clobber; clobber=yes replaces it.
    assert cli.main(["report", str(pha_3c273), f"outfile={out}", "no_latent=yes"]) == 1
    assert len(Table.read(out)) == 2
    args = ["report", str(pha_3c273), f"outfile={out}", "no_latent=yes", "no_fit=yes"]
    assert cli.main([*args, "clobber=yes"]) == 0
    assert len(Table.read(out)) == 1


def test_report_plot_needs_the_plotting_module(monkeypatch, tmp_path: Path, pha_3c273: Path):
    monkeypatch.delattr(sherpa_latent, "plotting", raising=False)
    monkeypatch.setitem(sys.modules, "sherpa_latent.plotting", None)
    with pytest.raises(SystemExit, match="--plot needs sherpa_latent.plotting"):
        cli.main(["report", str(pha_3c273), "--plot", str(tmp_path / "png")])
    assert not (tmp_path / "png").exists()


def _has_plotting() -> bool:
    try:
        from sherpa_latent import plotting
    except ImportError:
        return False
    return hasattr(plotting, "plot_latent_fit") and hasattr(plotting, "plot_latent_space")


@pytest.mark.skipif(not _has_plotting(), reason="sherpa_latent.plotting is not there yet")
def test_report_plot_writes_a_png_per_spectrum(network: Path, sherpa_data: Path, tmp_path):
    from matplotlib import image

    files = [sherpa_data / "3c273.pi", sherpa_data / "acisf07867_000N001_r0002_pha3.fits"]
    folder = tmp_path / "png"
    args = ["report", *map(str, files), "--no-fit", "--network", str(network)]
    assert cli.main([*args, "--plot", str(folder)]) == 0
    pngs = sorted(p.name for p in folder.iterdir())
    assert pngs == ["3c273.png", "acisf07867_000N001_r0002_pha3.png"]
    for name in pngs:
        pixels = image.imread(folder / name)
        assert pixels.shape[1] > pixels.shape[0] > 200  # two panels side by side
        assert pixels[..., :3].std() > 0.05 and len(np.unique(pixels[..., 0])) > 20
    # An existing PNG is kept without clobber.
    assert cli.main([*args[:2], "--no-fit", "--network", str(network), "--plot", str(folder)]) == 1


def test_ciao_style_arguments_can_name_every_positional() -> None:
    extract = cli._subparsers(cli.build_parser())["extract"]
    argv = ["--network", "net", "region=src.reg", "evt2=e.fits", "bkg=b.reg", "clobber=yes"]
    converted = cli.ciao_style_arguments(argv, extract)
    assert converted == ["e.fits", "src.reg", "--network", "net", "--bkg", "b.reg", "--clobber"]
    args = extract.parse_args([*converted, "--outroot", "x"])
    assert (args.evt2, args.region, args.bkg, args.network) == ("e.fits", "src.reg", "b.reg", "net")
    encode = cli._subparsers(cli.build_parser())["encode"]
    plain = ["a.pi", "outfile=o.fits", "b.pi", "workers=2", "batch_size=10"]
    assert cli.ciao_style_arguments(plain, encode) == [
        "a.pi", "--outfile", "o.fits", "b.pi", "--workers", "2", "--batch-size", "10"
    ]  # fmt: skip
