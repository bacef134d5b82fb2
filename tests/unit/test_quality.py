"""Data-quality checks run before any release is published; a fatal one stops the publication."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hygie.cli.main import app
from hygie.ingest.cdm_load import load_cdm
from hygie.ingest.quality import QualityConfig, QualityError, checks
from hygie.releases import ReleaseStore
from tests.cdm_files import OBSERVATION_PERIOD, write_cdm

LABS = """\
measurement_id,person_id,measurement_concept_id,measurement_date,measurement_type_concept_id,value_as_number,measurement_source_value,unit_source_value
1,1,3016723,2010-01-01,32817,80,2160-0,umol/L
2,1,3016723,2010-02-01,32817,80000,2160-0,umol/L
3,2,3016723,2010-02-01,32817,1.1,2160-0,mmol/L
"""


def _by_name(release):
    return {r["name"]: r for r in release.manifest.quality}


def test_results_are_recorded_in_the_manifest(tmp_path, settings):
    release = load_cdm(write_cdm(tmp_path / "cdm", measurement__csv=LABS), "q", settings, synthetic=True)
    results = _by_name(release)
    assert results["implausible_lab_values"]["failing"] == 1  # 80,000 umol/L of creatinine
    assert results["implausible_lab_values"]["status"] == "warning"
    assert results["lab_units_unknown"]["failing"] == 1  # creatinine in mmol/L is not a listed unit
    assert results["person_without_observation_period"]["status"] == "pass"
    assert len(results) == len({c.name for c in checks(set(release.manifest.tables))})


def test_a_fatal_check_stops_publication(tmp_path, settings):
    overlapping = OBSERVATION_PERIOD + "4,1,2015-01-01,2016-01-01,44814724\n"
    with pytest.raises(QualityError, match="overlapping_observation_periods: 1 of 4 rows"):
        load_cdm(write_cdm(tmp_path / "cdm", observation_period__csv=overlapping), "q", settings, synthetic=True)
    assert ReleaseStore(settings).names() == []


def test_thresholds_and_severities_are_configurable(tmp_path, settings):
    config = tmp_path / "quality.json"
    config.write_text(json.dumps({"implausible_lab_values": {"severity": "fatal"}}))
    with pytest.raises(QualityError, match="implausible_lab_values"):
        load_cdm(
            write_cdm(tmp_path / "cdm", measurement__csv=LABS),
            "q",
            settings,
            synthetic=True,
            quality=QualityConfig.from_file(config),
        )
    config.write_text(json.dumps({"implausible_lab_values": {"severity": "fatal", "threshold_pct": 50}}))
    release = load_cdm(
        write_cdm(tmp_path / "cdm2", measurement__csv=LABS),
        "q2",
        settings,
        synthetic=True,
        quality=QualityConfig.from_file(config),
    )
    assert _by_name(release)["implausible_lab_values"]["status"] == "pass"


def test_cli_report(tmp_path, home):
    runner = CliRunner()
    assert (
        runner.invoke(
            app, ["cdm", "load", str(write_cdm(tmp_path / "cdm", measurement__csv=LABS)), "--release", "q"]
        ).exit_code
        == 0
    )
    shown = runner.invoke(app, ["release", "quality", "q"])
    assert "implausible_lab_values" in shown.stdout
    out = tmp_path / "q.html"
    assert runner.invoke(app, ["release", "quality", "q", "--html", str(out)]).exit_code == 0
    html = out.read_text()
    assert "<table>" in html and "implausible_lab_values" in html and "http" not in html
    data = json.loads(runner.invoke(app, ["release", "quality", "q", "--json"]).stdout)
    assert {r["status"] for r in data} <= {"pass", "warning"}
