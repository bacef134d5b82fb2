"""A sample of the random definitions on Spark: Spark agrees with the reference evaluator (and so with DuckDB).

Few examples: Spark local mode takes seconds per cohort."""

from __future__ import annotations

from cohort_strategies import cdms, definitions
from hypothesis import HealthCheck, given, settings

from hygie.cohorts.circe import parse_expression
from hygie.cohorts.memory import cdm_connection
from hygie.cohorts.reference import evaluate
from hygie.cohorts.service import CohortDefinition, SparkRunner, run_batch


def arrow_tables(tables):
    con = cdm_connection(tables)
    try:
        names = [name for (name,) in con.execute("SHOW TABLES").fetchall()]
        return {name: con.execute(f'SELECT * FROM "{name}"').to_arrow_table() for name in names}
    finally:
        con.close()


@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@given(tables=cdms(), definition=definitions())
def test_spark_agrees_with_the_reference_evaluator(spark, tables, definition):
    expression = parse_expression(definition)
    runner = SparkRunner(spark, arrow_tables(tables))
    try:
        (result,) = run_batch(runner, [CohortDefinition("random", expression)])
    finally:
        runner.close()
    oracle = evaluate(tables, expression)
    rows = [(r["subject_id"], r["cohort_start_date"], r["cohort_end_date"]) for r in result.rows.to_pylist()]
    assert rows == oracle.rows
    assert result.mask_counts == oracle.mask_counts
    assert [r.subjects for r in result.inclusion_rules] == oracle.rule_subjects
