"""A study on GiBleed with the two shipped ATLAS cohorts, on DuckDB and on Spark: the published counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hygie import datasets
from hygie.studies import run_study

COHORTS = datasets.get("gibleed").folder.parent / "cohorts"
STUDY = f"""\
name: gibleed-counts
cohorts:
  celecoxib_age40_male: {{circe: {COHORTS / "celecoxib_age40_male.json"}}}
  gi_bleed: {{circe: {COHORTS / "gi_bleed.json"}}}
analyses:
  - cohort_counts: {{}}
"""
PUBLISHED = {"celecoxib_age40_male": 266, "gi_bleed": 479}  # subjects (ATLAS / CohortGenerator on Eunomia)


@pytest.fixture(scope="module")
def study_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gibleed_study") / "study.yaml"
    path.write_text(STUDY)
    return path


@pytest.fixture(scope="module")
def duckdb_run(gibleed, gibleed_settings, study_file, tmp_path_factory):
    return run_study(study_file, gibleed, gibleed_settings, out=tmp_path_factory.mktemp("out") / "duckdb")


def test_cohort_counts_on_duckdb_match_the_published_figures(duckdb_run):
    rows = duckdb_run.tables["cohort_counts"].to_pylist()
    assert {r["cohort_name"]: r["number_subjects"] for r in rows} == PUBLISHED
    manifest = json.loads((duckdb_run.out / "manifest.json").read_text())
    assert {c["name"]: c["subjects"] for c in manifest["cohorts"]} == PUBLISHED
    assert manifest["release"]["synthetic"] is True and manifest["disclosure"] == "exempt: synthetic release"


def test_spark_gives_the_same_tables(spark, gibleed, gibleed_settings, study_file, duckdb_run, tmp_path):
    on_spark = run_study(study_file, gibleed, gibleed_settings, engine="spark", out=tmp_path / "spark")
    assert on_spark.manifest["engine"] == "spark"
    assert on_spark.tables["cohort_counts"].equals(duckdb_run.tables["cohort_counts"])
    assert on_spark.manifest["cohorts"] == duckdb_run.manifest["cohorts"]
