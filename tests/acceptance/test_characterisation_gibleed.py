"""Characterisation of GiBleed's two ATLAS cohorts: the same Table 1 and SMDs on DuckDB and on Spark.

The cohorts are generated once (``run_batch`` on DuckDB; the cohort engine's Spark equivalence is tested in
test_gibleed_spark.py) and the same study cohort table is characterised on both engines over every domain and
three windows; the results must agree row for row (floating-point tolerance)."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

from hygie import datasets
from hygie.analyses.base import StudyCohort, StudyContext
from hygie.analyses.characterisation import Characterisation, CharacterisationSpec
from hygie.cohorts.service import CohortDefinition, DuckDBRunner, SparkRunner, SqlRunner, run_batch
from hygie.engine.duckdb import DuckDBEngine
from hygie.engine.spark import release_tables

FOLDER = datasets.get("gibleed").folder.parent / "cohorts"
SPEC = CharacterisationSpec.model_validate(
    {
        "cohorts": ["gi_bleed", "celecoxib_age40_male"],
        "compare": ["celecoxib_age40_male", "gi_bleed"],
        "windows": [[-365, -1], [-30, -1], [0, 0]],
        "domains": ["condition", "drug", "procedure", "measurement", "observation"],
    }
)


DEFINITIONS = [CohortDefinition.from_file(FOLDER / f"{name}.json") for name in SPEC.cohorts]


def study_cohort(runner: SqlRunner) -> pa.Table:
    results = run_batch(runner, DEFINITIONS)
    return pa.concat_tables(
        [
            r.rows.add_column(0, "cohort_definition_id", pa.array([i] * r.records, pa.int64()))
            for i, r in enumerate(results, start=1)
        ]
    )


def characterise(runner: SqlRunner, cohort_rows: pa.Table) -> dict[str, list[dict[str, Any]]]:
    runner.register("study_cohort", cohort_rows)
    cohorts = {d.name: StudyCohort(d.name, i, f"circe:{d.source}") for i, d in enumerate(DEFINITIONS, start=1)}
    tables = Characterisation().run(StudyContext(runner, cohorts), SPEC, study=None)  # type: ignore[arg-type]
    runner.drop("study_cohort")
    return {t.name: t.rows.to_pylist() for t in tables}


def keyed(rows: list[dict[str, Any]], key: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
    out = {tuple(r[k] for k in key): r for r in rows}
    assert len(out) == len(rows), "rows are not unique by their key"
    return out


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def test_characterisation_is_identical_on_duckdb_and_spark(spark, gibleed, gibleed_settings) -> None:
    with DuckDBEngine(gibleed, gibleed_settings) as engine:
        runner = DuckDBRunner(engine.con)
        cohort_rows = study_cohort(runner)
        on_duckdb = characterise(runner, cohort_rows)
    spark_runner = SparkRunner(spark, release_tables(gibleed, gibleed_settings))
    try:
        on_spark = characterise(spark_runner, cohort_rows)
    finally:
        spark_runner.close()

    table = on_duckdb["characterisation"]
    subjects = {r["cohort_name"]: r["count"] for r in table if r["covariate_name"] == "subjects"}
    assert subjects == {"gi_bleed": 479, "celecoxib_age40_male": 266}  # the published cohort counts
    males = {r["cohort_name"]: r["percent"] for r in table if r["covariate_name"] == "Male"}
    assert males["celecoxib_age40_male"] == 100.0  # an inclusion rule of the definition
    ages = {r["cohort_name"]: r["q1"] for r in table if r["covariate_type"] == "age"}
    assert ages["celecoxib_age40_male"] >= 40
    types = {r["covariate_type"] for r in table}
    assert {"condition", "drug", "procedure", "measurement", "visits"} <= types  # no observation in these windows
    assert len(on_duckdb["characterisation_smd"]) > 100

    for name, key in [
        ("characterisation", ("cohort_name", "covariate_type", "covariate_name", "concept_id", "window")),
        ("characterisation_smd", ("covariate_type", "covariate_name", "concept_id", "window")),
    ]:
        duck, spk = keyed(on_duckdb[name], key), keyed(on_spark[name], key)
        assert duck.keys() == spk.keys()
        differing = [k for k in duck if not all(same(duck[k][c], spk[k][c]) for c in duck[k])]
        assert not differing, [(duck[k], spk[k]) for k in differing[:3]]
