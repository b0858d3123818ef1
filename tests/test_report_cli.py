"""The classical fit, the report, and the sherpa-latent command on good and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, write_modified_pha

from sherpa_latent import load_spectrum
from sherpa_latent.classical import fit_absorbed_powerlaw


@pytest.fixture(scope="module")
def classical_3c273(pha_3c273: Path):
    return fit_absorbed_powerlaw(load_spectrum(pha_3c273))


def test_classical_fit_of_3c273(classical_3c273) -> None:
    fit = classical_3c273
    assert 1.85 <= fit.gamma[0] <= 2.2
    assert fit.gamma[1] < fit.gamma[0] < fit.gamma[2]
    # Galactic N_H towards 3C 273 is 1.8e20 cm^-2: the interval reaches below 0.1e22.
    assert fit.nh[1] < 0.1
    assert fit.nh[1] <= fit.nh[0] <= fit.nh[2]
    assert fit.statistic == "wstat"
    assert 0 < fit.stat < 3 * fit.dof
    assert 1e-13 < fit.flux_absorbed < fit.flux_unabsorbed < 1e-11


def test_classical_fit_restores_the_filter(pha_3c273: Path) -> None:
    spec = load_spectrum(pha_3c273)
    spec.pha.notice(1.0, 2.0)
    before = spec.pha.mask.copy()
    fit_absorbed_powerlaw(spec, errors=False)
    np.testing.assert_array_equal(spec.pha.mask, before)


def test_rejected_classical_fit_still_reports(tmp_path: Path, pha_3c273: Path) -> None:
    """A spectrum an absorbed power law cannot fit gets its fit, without intervals, and a note."""
    from astropy.io import fits

    counts = fits.getdata(pha_3c273, "SPECTRUM")["COUNTS"].astype(np.int32)
    counts[430:434] += 300  # a strong narrow line near 6.3 keV
    line = write_modified_pha(tmp_path / "line.pi", pha_3c273, counts=counts)
    fit = fit_absorbed_powerlaw(load_spectrum(line))
    assert fit.stat / fit.dof > 3
    assert "rejected" in fit.note
    assert np.isnan(fit.nh[1]) and np.isnan(fit.gamma[2])
    done = run_cli("report", "--json", "--no-latent", str(line))
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert [row["NH_CLASSICAL_LO"], row["NH_CLASSICAL_HI"]] == [None, None]
    assert "rejected" in row["WARNINGS"]


def _bad_files(tmp: Path, good: Path) -> dict[str, Path]:
    truncated = tmp / "truncated.pi"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    return {
        "missing": tmp / "missing.pi",
        "truncated": truncated,
        "no RESPFILE": write_modified_pha(tmp / "alone.pi", good, absolute_files=False),
        "rmf channels": write_modified_pha(
            tmp / "half.pi", good, nrows=512, header={"BACKFILE": "none"}
        ),
        "grating": write_modified_pha(tmp / "tg.pi", good, header={"TG_M": 1, "TG_PART": 1}),
        "hrc": write_modified_pha(tmp / "hrc.pi", good, header={"INSTRUME": "HRC"}),
        "zero counts": write_modified_pha(
            tmp / "zero.pi", good, counts=np.zeros(1024, dtype=np.int32)
        ),
        "nan": write_modified_pha(
            tmp / "nan.pi", good, counts=np.where(np.arange(1024) == 50, np.nan, 1.0)
        ),
    }


def test_report_json_on_a_batch_with_every_kind_of_bad_file(tmp_path: Path, pha_3c273: Path):
    bad = _bad_files(tmp_path, pha_3c273)
    files = [
        str(bad["missing"]),
        str(pha_3c273),
        *(str(p) for k, p in bad.items() if k != "missing"),
    ]
    proc = run_cli("report", "--json", *files, "verbose=0")  # stderr: the errors only
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["FILE"] for r in rows] == files
    good = rows[1]
    for key in ("FILE", "OBJECT", "OBSID", "INSTRUMENT", "EXPOSURE", "NET_COUNTS"):
        assert key in good
    assert good["OBJECT"] == "3C 273"
    for key in ("HR_HM", "HR_HS", "HR_MS"):
        assert -1 <= good[key + "_LO"] <= good[key] <= good[key + "_HI"] <= 1
    assert good["NH_CLASSICAL_LO"] <= good["NH_CLASSICAL"] <= good["NH_CLASSICAL_HI"]
    assert 1.85 <= good["GAMMA_CLASSICAL"] <= 2.2
    assert good["DOF_CLASSICAL"] > 0 and good["STAT_CLASSICAL"] > 0
    errors = {r["FILE"]: r["ERROR"] for r in rows if r["ERROR"]}
    assert len(errors) == len(bad)
    expected = {
        "missing": "not found",
        "truncated": "truncated",
        "no RESPFILE": "RESPFILE",
        "rmf channels": "1024 channels but the spectrum has 512",
        "grating": "grating",
        "hrc": "HRC",
        "zero counts": "no counts in 0.5-7",
        "nan": "NaN",
    }
    stderr_lines = proc.stderr.strip().splitlines()
    assert len(stderr_lines) == len(bad)
    for kind, path in bad.items():
        message = errors[str(path)]
        assert "\n" not in message and str(path) in message
        assert expected[kind] in message, (kind, message)
        assert any(str(path) in line for line in stderr_lines)


def test_report_text_ciao_style_arguments_and_stacks(tmp_path: Path, pha_3c273: Path):
    stack = tmp_path / "spectra.lis"
    stack.write_text(f"# two spectra\n{pha_3c273}\n\n{pha_3c273.parent / 'no_such.pi'}\n")
    proc = run_cli("report", f"@{stack}", "no_fit=yes", "verbose=0")
    assert proc.returncode == 1
    assert "3C 273" in proc.stdout and "HR_hm" in proc.stdout
    assert "classical" not in proc.stdout
    assert proc.stderr.strip().splitlines() == [
        f"sherpa-latent: {pha_3c273.parent / 'no_such.pi'}: file not found"
    ]


def test_report_all_good_exits_zero(pha_3c273: Path) -> None:
    proc = run_cli("report", "--no-fit", "--json", str(pha_3c273))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["NET_COUNTS"] > 500


def test_session_has_the_models_and_commands(pha_3c273: Path) -> None:
    from sherpa.astro import ui

    import sherpa_latent.ui as latent_ui

    ui.clean()
    ui.load_pha("hr", str(pha_3c273))
    gal = ui.create_model_component("wabs", "gal")
    ui.set_source("hr", gal * ui.create_model_component("powlaw1d", "pl"))
    assert type(ui.get_model_component("gal")).__name__ == "WAbs"
    for name in ("wabs", "bbodyrad", "diskbb", "bremss", "plasma"):
        assert name in ui.list_models()
    hr = latent_ui.hardness_ratios("hr")
    assert -1 < hr.hr_hm.mode < 1
    ui.clean()
