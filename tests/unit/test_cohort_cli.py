"""``hygie cohort generate`` on a small hand-made CDM loaded with ``hygie cdm load``: the CLI contract."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hygie.cli.main import app

TABLES = {
    "person": "person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id\n"
    "1,8507,1960,0,0\n2,8532,1980,0,0\n3,8507,1975,0,0\n",
    "observation_period": "observation_period_id,person_id,observation_period_start_date,"
    "observation_period_end_date,period_type_concept_id\n"
    "1,1,2000-01-01,2010-12-31,32817\n2,2,2000-01-01,2010-12-31,32817\n3,3,2000-01-01,2004-12-31,32817\n",
    "condition_occurrence": "condition_occurrence_id,person_id,condition_concept_id,condition_start_date,"
    "condition_type_concept_id\n10,1,100,2003-04-05,32817\n11,2,100,2004-01-01,32817\n12,3,100,2004-06-01,32817\n"
    "13,1,100,2006-01-01,32817\n",
    "concept": "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,concept_code,valid_start_date,"
    "valid_end_date\n100,Bleed,Condition,X,X,100,1970-01-01,2099-12-31\n",
}

BLEED = {
    "ConceptSets": [{"id": 0, "name": "bleed", "expression": {"items": [{"concept": {"CONCEPT_ID": 100}}]}}],
    "PrimaryCriteria": {"CriteriaList": [{"ConditionOccurrence": {"CodesetId": 0}}]},
    "InclusionRules": [
        {"name": "male", "expression": {"DemographicCriteriaList": [{"Gender": [{"CONCEPT_ID": 8507}]}]}},
        {"name": "over 40", "expression": {"DemographicCriteriaList": [{"Age": {"Value": 40, "Op": "gt"}}]}},
    ],
}


@pytest.fixture
def release(home: Path, tmp_path: Path) -> str:
    folder = tmp_path / "cdm"
    folder.mkdir()
    for table, text in TABLES.items():
        (folder / f"{table}.csv").write_text(text)
    result = CliRunner().invoke(app, ["cdm", "load", str(folder), "--release", "tiny", "--synthetic"])
    assert result.exit_code == 0, result.output
    return "tiny"


def write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_json_lines_report_counts_and_subjects_remaining_after_each_rule(release, tmp_path):
    everyone = {**BLEED, "InclusionRules": []}
    files = [write(tmp_path, "bleed_men_over_40", BLEED), write(tmp_path, "bleed", everyone)]
    result = CliRunner().invoke(app, ["cohort", "generate", "--release", release, *map(str, files), "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(x["name"], x["subjects"], x["records"]) for x in lines] == [("bleed_men_over_40", 1, 1), ("bleed", 3, 3)]
    assert [(r["name"], r["subjects"]) for r in lines[0]["inclusion_rules"]] == [("male", 2), ("over 40", 1)]


def test_out_writes_one_csv_per_cohort_with_iso_dates(release, tmp_path):
    out = tmp_path / "out"
    definition = write(tmp_path, "bleed", {**BLEED, "InclusionRules": []})
    result = CliRunner().invoke(app, ["cohort", "generate", "--release", release, str(definition), "--out", str(out)])
    assert result.exit_code == 0, result.output
    with (out / "bleed.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows == [
        ["subject_id", "cohort_start_date", "cohort_end_date"],
        ["1", "2003-04-05", "2010-12-31"],
        ["2", "2004-01-01", "2010-12-31"],
        ["3", "2004-06-01", "2004-12-31"],
    ]


def test_cohort_rows_are_stored_in_the_results_area_not_the_release(release, tmp_path, home):
    definition = write(tmp_path, "bleed", BLEED)
    result = CliRunner().invoke(app, ["cohort", "generate", "--release", release, str(definition)])
    assert result.exit_code == 0, result.output
    assert (home / "results" / release / "cohorts" / "bleed.parquet").is_file()
    assert not list((home / "releases" / release).glob("bleed*"))


def test_invalid_json_is_a_user_error_naming_the_file(release, tmp_path):
    broken = write(tmp_path, "broken", '{"PrimaryCriteria": [')
    result = CliRunner().invoke(app, ["cohort", "generate", "--release", release, str(broken)])
    assert result.exit_code == 1
    assert "broken.json" in result.output and "invalid JSON" in result.output


def test_unsupported_feature_is_a_user_error_naming_file_path_and_reason(release, tmp_path):
    data = {**BLEED, "EndStrategy": {"CustomEra": {"DrugCodesetId": 0}}}
    data["PrimaryCriteria"] = {"CriteriaList": [{"VisitOccurrence": {"PlaceOfServiceLocation": 0}}]}
    unsupported = write(tmp_path, "pos", data)
    result = CliRunner().invoke(app, ["cohort", "generate", "--release", release, str(unsupported)])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "pos.json" in output
    assert "$.PrimaryCriteria.CriteriaList[0].VisitOccurrence.PlaceOfServiceLocation" in output
    assert "not supported" in output


def test_unknown_concepts_are_warnings_not_errors(release, tmp_path):
    data = json.loads(json.dumps(BLEED))
    data["ConceptSets"][0]["expression"]["items"].append({"concept": {"CONCEPT_ID": 424242}})
    result = CliRunner().invoke(
        app, ["cohort", "generate", "--release", release, str(write(tmp_path, "bleed", data)), "--json"]
    )
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert json.loads(line)["warnings"] == [
        "concept set 0 ('bleed'): concept id(s) 424242 are not in the release's vocabulary and match nothing"
    ]


def test_unknown_engine_is_refused(release, tmp_path):
    definition = write(tmp_path, "bleed", BLEED)
    result = CliRunner().invoke(app, ["cohort", "generate", "--release", release, str(definition), "--engine", "x"])
    assert result.exit_code == 1
    assert "unknown engine 'x'" in result.output


def test_spark_engine_gives_the_same_json_as_duckdb(release, tmp_path, spark):
    definition = str(write(tmp_path, "bleed_men_over_40", BLEED))
    outputs = []
    for engine in ("duckdb", "spark"):
        args = ["cohort", "generate", "--release", release, definition, "--json", "--engine", engine]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        outputs.append(json.loads(result.stdout))
    assert outputs[0] == outputs[1]
    assert (outputs[1]["subjects"], [r["subjects"] for r in outputs[1]["inclusion_rules"]]) == (1, [2, 1])


def test_spark_engine_exposes_release_tables_through_ibis(release, settings, spark):
    from hygie.engine.spark import SparkEngine
    from hygie.releases import ReleaseStore

    with SparkEngine(ReleaseStore(settings).get(release), settings, session=spark) as engine:
        assert "person" in engine.tables()
        person = engine.table("person")
        assert engine.to_arrow(person.count()).as_py() == 3
        males = person.filter(person.gender_concept_id == 8507)
        assert engine.to_arrow(males.count()).as_py() == 2
