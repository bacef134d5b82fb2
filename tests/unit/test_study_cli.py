"""``hygie study``: exit codes (0 ok, 1 the user's to fix), progress lines, JSON, schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hygie.cli.main import app
from hygie.cli.study import schema_text
from hygie.config import Settings
from hygie.ingest.cdm_load import load_cdm
from tests.study_files import STUDY, write_small_cdm, write_study

runner = CliRunner()


@pytest.fixture
def release(settings: Settings, tmp_path: Path) -> str:
    load_cdm(write_small_cdm(tmp_path / "cdm"), "small", settings, synthetic=True)
    return "small"


def test_validate_ok_and_errors(tmp_path):
    good = write_study(tmp_path / "good")
    result = runner.invoke(app, ["study", "validate", str(good)])
    assert result.exit_code == 0, result.output
    assert "valid study 'small-study': 3 cohort(s), 0 denominator(s), 2 analysis(es)" in result.output
    bad = write_study(tmp_path / "bad", STUDY.replace("cohorts: [mi, listed]", "cohorts: [mi, lost]"))
    result = runner.invoke(app, ["study", "validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}, line 10, analyses[1].cohort_counts.cohorts[1]: unknown cohort 'lost'" in result.output


def test_run_writes_the_folder_and_refuses_to_overwrite(release, tmp_path):
    study = write_study(tmp_path / "s")
    out = tmp_path / "out"
    result = runner.invoke(app, ["study", "run", str(study), "--release", release, "--out", str(out)])
    assert result.exit_code == 0, result.output
    for line in (
        "validating",
        "opening release small on duckdb",
        "building 3 study cohort(s)",
        "analysis 1/2: cohort_counts",
        "analysis 2/2: cohort_counts",
        "writing 1 result table(s)",
    ):
        assert line in result.output
    assert "SYNTHETIC release" in result.output and (out / "report.html").is_file()
    again = runner.invoke(app, ["study", "run", str(study), "--release", release, "--out", str(out)])
    assert again.exit_code == 1 and "exists and is not empty" in again.output
    forced = runner.invoke(app, ["study", "run", str(study), "-r", release, "--out", str(out), "--force", "--json"])
    assert forced.exit_code == 0, forced.output
    manifest = json.loads(forced.stdout)
    assert manifest["study"]["name"] == "small-study" and manifest["tables"]["cohort_counts"]["rows"] == 5


def test_run_user_errors_exit_1(release, tmp_path):
    study = write_study(tmp_path / "s")
    unknown = runner.invoke(app, ["study", "run", str(study), "--release", "nope", "--out", str(tmp_path / "o")])
    assert unknown.exit_code == 1 and "no release named 'nope'" in unknown.output
    missing = runner.invoke(
        app, ["study", "run", str(tmp_path / "none.yaml"), "-r", release, "--out", str(tmp_path / "o")]
    )
    assert missing.exit_code == 1 and "cannot be read" in missing.output
    engine = runner.invoke(
        app, ["study", "run", str(study), "-r", release, "--out", str(tmp_path / "o"), "--engine", "x"]
    )
    assert engine.exit_code == 1 and "unknown engine 'x'" in engine.output and not (tmp_path / "o").exists()


def test_schema_prints_or_writes(tmp_path):
    printed = runner.invoke(app, ["study", "schema"])
    assert printed.exit_code == 0 and json.loads(printed.stdout)["title"] == "hygie study file"
    target = tmp_path / "schema.json"
    written = runner.invoke(app, ["study", "schema", "--out", str(target)])
    assert written.exit_code == 0 and target.read_text() == schema_text()
