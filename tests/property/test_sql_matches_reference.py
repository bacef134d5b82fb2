"""DuckDB (through the SQL compiler) and the row-by-row reference evaluator agree on random CDMs and
random definitions: same cohort rows, same inclusion-rule statistics."""

from __future__ import annotations

from typing import Any

from cohort_strategies import cdms, definitions
from hypothesis import HealthCheck, given, settings

from hygie.cohorts.circe import parse_expression
from hygie.cohorts.memory import cdm_connection
from hygie.cohorts.reference import evaluate
from hygie.cohorts.service import CohortDefinition, DuckDBRunner, run_batch


def engine_and_oracle(tables: dict[str, list[dict[str, Any]]], definition: dict[str, Any]):
    expression = parse_expression(definition)
    con = cdm_connection(tables)
    try:
        (result,) = run_batch(DuckDBRunner(con), [CohortDefinition("random", expression)])
    finally:
        con.close()
    return result, evaluate(tables, expression)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tables=cdms(), definition=definitions())
def test_duckdb_agrees_with_the_reference_evaluator(tables, definition):
    result, oracle = engine_and_oracle(tables, definition)
    rows = [(r["subject_id"], r["cohort_start_date"], r["cohort_end_date"]) for r in result.rows.to_pylist()]
    assert rows == oracle.rows
    assert result.qualified_events == oracle.qualified_events
    assert result.mask_counts == oracle.mask_counts
    assert result.best_mask_counts == oracle.best_mask_counts
    assert [r.subjects for r in result.inclusion_rules] == oracle.rule_subjects
