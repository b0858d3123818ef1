"""The shipped network on real spectra: encoding, reports, the encode command, tampering."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table
from conftest import run_cli

from sherpa_latent import load_spectrum
from sherpa_latent.classes import CLASS_NAMES
from sherpa_latent.errors import NetworkFileError
from sherpa_latent.inference import load_encoder
from sherpa_latent.network import default_network_path, read_network


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("default", device="cpu")


def test_shipped_network_records_how_it_was_made(encoder) -> None:
    meta = encoder.model.metadata
    text = json.dumps(meta)
    assert "sherpa-latent train" in text and "recipes/default.toml" in text
    assert encoder.clusters is not None and encoder.clusters.n_components >= 8
    size = default_network_path().stat().st_size
    assert size < 20 * 2**20, "a few MB"


def test_encode_3c273(encoder, pha_3c273: Path) -> None:
    (result,) = encoder.encode([load_spectrum(pha_3c273)])
    assert result.z.shape == (8,) and np.all(np.isfinite(result.z))
    assert np.all(result.z_err > 0)
    value, lo, hi = result.nh
    assert 0 < lo < value < hi
    assert 0 <= result.cluster < encoder.clusters.n_components
    assert abs(sum(result.class_probabilities.values()) - 1) < 1e-6
    assert set(result.class_probabilities) == set(CLASS_NAMES)
    assert np.isfinite(result.anomaly) and result.dof > 0


def test_4c1944_observations_agree(encoder, shared_chandra: Path) -> None:
    """The four observations of 4C 19.44 are one source: latents agree within errors."""
    spectra = [load_spectrum(shared_chandra / f"obs{i}.pi") for i in range(1, 5)]
    results = encoder.encode(spectra)
    worst = 0.0
    for a, b in itertools.combinations(results, 2):
        pull = np.abs(a.z - b.z) / np.sqrt(a.z_err**2 + b.z_err**2)
        worst = max(worst, float(pull.max()))
    assert worst <= 3.0, f"largest pull {worst:.2f} sigma"


def test_changed_network_bytes_are_refused(tmp_path: Path) -> None:
    src = default_network_path()
    for path in (src, src.with_suffix(".json")):
        shutil.copy(path, tmp_path / path.name)
    weights = tmp_path / src.name
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(NetworkFileError, match="SHA-256"):
        read_network(weights, device="cpu")


def test_report_json_has_the_latent_columns(pha_3c273: Path) -> None:
    proc = run_cli("report", "--json", "--no-fit", str(pha_3c273))
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    for key in ("Z", "Z_ERR", "NH_LATENT", "NH_LATENT_LO", "CLUSTER", "P_AGN", "ANOMALY"):
        assert row[key] is not None, key
    assert len(row["Z"]) == 8 and row["NH_LATENT_LO"] <= row["NH_LATENT"] <= row["NH_LATENT_HI"]


def test_encode_command_writes_a_table_with_error_rows(tmp_path: Path, sherpa_data: Path):
    good = [sherpa_data / "3c273.pi", sherpa_data / "acisf07867_000N001_r0002_pha3.fits"]
    bad = tmp_path / "bad.pi"
    bad.write_bytes(b"SIMPLE  = T" + b" " * 100)
    out = tmp_path / "latents.fits"
    proc = run_cli("encode", *map(str, good), str(bad), "--output", str(out))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    table = Table.read(out, mask_invalid=False)
    assert len(table) == 3
    assert list(table["ERROR"][:2]) == ["", ""] and "bad.pi" in table["ERROR"][2]
    assert table["Z"].shape == (3, 8) and np.all(np.isfinite(table["Z"][:2]))
    assert np.all(table["NH_LATENT_LO"][:2] < table["NH_LATENT"][:2])
    # N_H is stored in units of 1e22 cm^-2, as the column's unit says.
    assert table["NH_LATENT"].unit == u.Unit("1e22 cm-2") and 0 < table["NH_LATENT"][0] < 1
    assert table.meta["NETSHA"] and table.meta["CREATOR"].startswith("sherpa_latent")
    # Refuses to overwrite without clobber, CIAO style clobber=yes works.
    again = run_cli("encode", str(good[0]), f"outfile={out}")
    assert again.returncode == 1 and "clobber" in again.stderr
    assert len(Table.read(out, mask_invalid=False)) == 3
    assert run_cli("encode", str(good[0]), f"outfile={out}", "clobber=yes").returncode == 0
    assert len(Table.read(out, mask_invalid=False)) == 1
