"""The command line: contracts, exit codes (0 ok, 1 user error, 2 internal) and JSON output."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from hygie.cli.main import app
from tests.cdm_files import write_cdm

runner = CliRunner()


def hygie(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_load_list_show_delete(tmp_path, home):
    folder = write_cdm(tmp_path / "cdm")
    result = hygie("cdm", "load", str(folder), "--release", "tiny", "--synthetic")
    assert result.exit_code == 0, result.output
    assert "published release tiny" in result.output

    listed = [json.loads(line) for line in hygie("release", "list", "--json").stdout.splitlines()]
    assert listed == [
        {"name": "tiny", "sequence": 1, "created_at": listed[0]["created_at"], "synthetic": True, "persons": 3}
    ]
    shown = json.loads(hygie("release", "show", "tiny", "--json").stdout)
    assert shown["tables"]["person"]["rows"] == 3
    assert shown["synthetic"] is True
    assert {e["table"] for e in shown["lineage"]} == {"person", "observation_period", "condition_occurrence", "concept"}
    assert "SYNTHETIC" in hygie("release", "show", "tiny").stdout
    assert hygie("release", "verify", "tiny").exit_code == 0

    assert hygie("release", "delete", "tiny", "--yes").exit_code == 0
    assert hygie("release", "list", "--json").stdout == ""


def test_user_errors_exit_1_with_the_reason(tmp_path, home):
    (tmp_path / "empty").mkdir()
    result = hygie("cdm", "load", str(tmp_path / "empty"), "--release", "x")
    assert result.exit_code == 1
    assert "no CDM table file" in result.stderr
    result = hygie("release", "show", "nope")
    assert result.exit_code == 1
    assert "no release named 'nope'" in result.stderr
    result = hygie("cdm", "load", str(tmp_path / "empty"), "--release", "../escape")
    assert result.exit_code == 1
    assert "invalid release name" in result.stderr


def test_summary_json(tmp_path, home):
    hygie("cdm", "load", str(write_cdm(tmp_path / "cdm")), "--release", "tiny")
    data = json.loads(hygie("cdm", "summary", "--release", "tiny", "--json").stdout)
    assert data["persons"] == 3
    assert {r["sex"]: r["persons"] for r in data["persons_by_sex"]} == {"MALE": 1, 'FEMALE "F"': 2}
    assert data["top_concepts"]["condition_occurrence"][0]["concept_name"] == "Gastrointestinal hemorrhage"


def test_schema_docs_list_every_table():
    text = hygie("cdm", "schema").stdout
    assert text.count("\n### ") == 39
    assert "| **person_id** | bigint | PK |" in text


def test_internal_errors_exit_2(tmp_path, home):
    hygie("cdm", "load", str(write_cdm(tmp_path / "cdm")), "--release", "tiny")
    (home / "releases" / "tiny" / "person.parquet").write_bytes(b"damaged")
    result = hygie("cdm", "summary", "--release", "tiny")
    assert result.exit_code == 2
    assert "internal error" in result.stderr
    assert hygie("release", "verify", "tiny").exit_code == 1


def test_console_script_runs(home):
    result = subprocess.run([sys.executable, "-m", "hygie", "--help"], capture_output=True, text=True, check=True)
    assert "cdm" in result.stdout and "release" in result.stdout


def test_generated_schema_docs_are_up_to_date():
    from pathlib import Path

    from hygie.cdm.docs import schema_markdown

    committed = Path(__file__).resolve().parents[2] / "docs" / "cdm-schema.md"
    assert committed.read_text() == schema_markdown("5.4"), "docs/cdm-schema.md is stale: run `make docs`"


def test_rejects_are_listed_and_exported(tmp_path, home):
    from tests.cdm_files import OBSERVATION_PERIOD

    bad = OBSERVATION_PERIOD.replace("3,3,2010-01-01,2018-12-31", "3,3,2010-01-01,2009-12-31")
    hygie("cdm", "load", str(write_cdm(tmp_path / "cdm", observation_period__csv=bad)), "--release", "r")
    listed = hygie("release", "rejects", "r")
    assert listed.exit_code == 0
    assert "observation_period_end_date is before" in listed.stdout
    out = tmp_path / "rejects.csv"
    assert hygie("release", "rejects", "r", "--out", str(out)).exit_code == 0
    import csv

    [row] = list(csv.DictReader(out.open()))
    assert (row["table_name"], row["source_row"], row["check_name"]) == ("observation_period", "3", "end_before_start")
    assert json.loads(row["record"])["person_id"] == 3
