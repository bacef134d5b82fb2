"""``hygie synth`` on the command line: a run, and clear errors with exit code 1 on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hygie.cli.main import app

runner = CliRunner()


def test_synth_writes_the_four_sites_and_prints_a_json_summary(tmp_path: Path, home: Path) -> None:
    out = tmp_path / "synth"
    result = runner.invoke(app, ["synth", "--patients", "200", "--seed", "3", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["patients"] == 200 and summary["seed"] == 3
    assert set(summary["rows"]) == {"site_a", "site_b", "site_c", "site_d"}
    assert summary["rows"]["site_c"]["Patient"] == summary["persons_per_site"]["site_c"]
    assert summary["clinical_rows"] > 200 * 50
    assert (out / "site_a" / "cdm" / "person.csv").is_file()
    assert (out / "site_b" / "cdm" / "person.parquet").is_file()


def test_cdm_load_accepts_the_generated_site(tmp_path: Path, home: Path) -> None:
    out = tmp_path / "synth"
    assert runner.invoke(app, ["synth", "-n", "100", "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, ["cdm", "load", str(out / "site_b" / "cdm"), "--release", "site-b", "--synthetic"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "published release" in text and "0 rejected" in text


@pytest.mark.parametrize("patients", ["0", "-5"])
def test_no_patients_is_a_user_error(tmp_path: Path, patients: str) -> None:
    result = runner.invoke(app, ["synth", "--patients", patients, "--out", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "--patients must be at least 1" in " ".join(result.output.split())
    assert not (tmp_path / "x").exists()


def test_a_non_empty_output_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "used"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["synth", "-n", "10", "--out", str(out)])
    assert result.exit_code == 1
    assert "not empty" in " ".join(result.output.split())
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_an_unwritable_output_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["synth", "-n", "10", "--out", str(blocker / "out")])
    assert result.exit_code == 1
    assert "cannot create" in " ".join(result.output.split())
    result = runner.invoke(app, ["synth", "-n", "10", "--out", str(blocker)])
    assert result.exit_code == 1
    assert "not a folder" in " ".join(result.output.split())


def test_workers_must_be_one_or_two(tmp_path: Path) -> None:
    result = runner.invoke(app, ["synth", "-n", "10", "--workers", "3", "--out", str(tmp_path / "w")])
    assert result.exit_code == 1
    assert "workers must be 1 or 2" in " ".join(result.output.split())
