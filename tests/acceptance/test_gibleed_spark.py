"""The same compiler on Spark (local mode): GiBleed's published figures, identical rows to DuckDB."""

from __future__ import annotations

from pathlib import Path

from hygie.cohorts.service import CohortDefinition, DuckDBRunner, SparkRunner, run_batch
from hygie.engine.duckdb import DuckDBEngine
from hygie.engine.spark import release_tables

DATA = Path(__file__).parents[1] / "data" / "cohorts"


def test_spark_reproduces_published_counts_and_duckdb_rows(spark, gibleed, gibleed_settings):
    definitions = [CohortDefinition.from_file(DATA / "cohortgenerator" / "celecoxibAge40Male.json")]
    runner = SparkRunner(spark, release_tables(gibleed, gibleed_settings))
    try:
        on_spark = run_batch(runner, definitions)
    finally:
        runner.close()
    with DuckDBEngine(gibleed, gibleed_settings) as engine:
        on_duckdb = run_batch(DuckDBRunner(engine.con), definitions)
    (celecoxib,) = on_spark
    assert (celecoxib.records, celecoxib.subjects) == (266, 266)
    assert celecoxib.mask_counts == {0: 603, 1: 303, 2: 628, 3: 266}  # published cohort_inclusion_result
    assert [r.subjects for r in celecoxib.inclusion_rules] == [569, 266]
    assert celecoxib.rows.equals(on_duckdb[0].rows)
