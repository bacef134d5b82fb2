"""Helpers of the analysis spec tests: a tiny CDM from Python rows plus a study cohort table, on DuckDB or Spark.

``study(engine, spark, tables, cohorts)`` gives a ``StudyContext`` whose runner sees the CDM tables and
``study_cohort``; ``cohorts`` maps a cohort name to its ``(subject_id, start, end)`` rows (ids 1, 2, ... in
order). Row builders for the CDM come from ``spec_helpers`` (person, period, condition, drug, ...).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from hygie.analyses.base import ResultTable, StudyCohort, StudyContext
from hygie.cohorts.memory import cdm_connection
from hygie.cohorts.service import DuckDBRunner, SparkRunner

D = dt.date.fromisoformat
ENGINES = ("duckdb", "spark")

COHORT_SCHEMA = pa.schema(
    [
        ("cohort_definition_id", pa.int64()),
        ("subject_id", pa.int64()),
        ("cohort_start_date", pa.date32()),
        ("cohort_end_date", pa.date32()),
    ]
)


def concept(concept_id: int, name: str, domain: str = "X", concept_class: str = "X") -> dict[str, Any]:
    return {"concept_id": concept_id, "concept_name": name, "domain_id": domain, "vocabulary_id": "X",
            "concept_class_id": concept_class, "concept_code": str(concept_id), "valid_start_date": D("1970-01-01"),
            "valid_end_date": D("2099-12-31")}  # fmt: skip


def visit(person_id: int, concept_id: int, start: str, visit_id: int) -> dict[str, Any]:
    return {"visit_occurrence_id": visit_id, "person_id": person_id, "visit_concept_id": concept_id,
            "visit_start_date": D(start), "visit_end_date": D(start), "visit_type_concept_id": 32817}  # fmt: skip


def cohort_table(cohorts: Mapping[str, Sequence[tuple[int, str, str]]]) -> pa.Table:
    rows = [
        {"cohort_definition_id": i, "subject_id": s, "cohort_start_date": D(a), "cohort_end_date": D(b)}
        for i, rows in enumerate(cohorts.values(), start=1)
        for s, a, b in rows
    ]
    return pa.Table.from_pylist(rows, schema=COHORT_SCHEMA)


@contextmanager
def study(
    engine: str,
    spark: Any,
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    cohorts: Mapping[str, Sequence[tuple[int, str, str]]],
) -> Iterator[StudyContext]:
    """A study context over the tiny CDM ``tables`` (CDM 5.4 types) on ``engine``."""
    con = cdm_connection(tables)
    named = {name: StudyCohort(name, i, "python") for i, name in enumerate(cohorts, start=1)}
    if engine == "duckdb":
        runner: Any = DuckDBRunner(con)
    else:  # every CDM table is handed over, so no view of an earlier test can be read by mistake
        arrow = {name: con.execute(f'SELECT * FROM "{name}"').to_arrow_table() for (name,) in
                 con.execute("SELECT table_name FROM information_schema.tables").fetchall()}  # fmt: skip
        runner = SparkRunner(spark, arrow)
    try:
        runner.register("study_cohort", cohort_table(cohorts))
        yield StudyContext(runner=runner, cohorts=named, engine=engine)
    finally:
        if engine == "spark":
            runner.drop("study_cohort")
            runner.close()
        con.close()


def rows_of(tables: list[ResultTable], name: str) -> list[dict[str, Any]]:
    (table,) = [t for t in tables if t.name == name]
    return table.rows.to_pylist()
