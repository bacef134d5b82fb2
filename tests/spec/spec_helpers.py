"""Helpers of the spec tests: tiny tables in, expected cohort rows out.

``cdm`` builds an in-memory CDM from a few rows (defaults fill the columns a test does not care about);
``cohort`` runs a definition on it and returns ``[(subject_id, start, end), ...]``. Every test also checks
the reference evaluator gives the same rows, so these examples pin both executors.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hygie.cohorts.circe import parse_expression
from hygie.cohorts.memory import cdm_connection
from hygie.cohorts.reference import evaluate
from hygie.cohorts.service import CohortDefinition, CohortResult, DuckDBRunner, run_batch

D = dt.date.fromisoformat


def concept(concept_id: int, invalid_reason: str | None = None) -> dict[str, Any]:
    return {
        "concept_id": concept_id,
        "concept_name": f"c{concept_id}",
        "domain_id": "X",
        "vocabulary_id": "X",
        "concept_class_id": "X",
        "concept_code": str(concept_id),
        "valid_start_date": D("1970-01-01"),
        "valid_end_date": D("2099-12-31"),
        "invalid_reason": invalid_reason,
    }


def person(person_id: int, year_of_birth: int = 1970, gender: int = 8507) -> dict[str, Any]:
    return {"person_id": person_id, "gender_concept_id": gender, "year_of_birth": year_of_birth,
            "race_concept_id": 0, "ethnicity_concept_id": 0}  # fmt: skip


_ids = iter(range(1, 1_000_000))


def period(person_id: int, start: str, end: str) -> dict[str, Any]:
    return {"observation_period_id": next(_ids), "person_id": person_id, "observation_period_start_date": D(start),
            "observation_period_end_date": D(end), "period_type_concept_id": 32817}  # fmt: skip


def condition(person_id: int, concept_id: int, start: str, end: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"condition_occurrence_id": next(_ids), "person_id": person_id, "condition_concept_id": concept_id,
            "condition_start_date": D(start), "condition_end_date": D(end) if end else None,
            "condition_type_concept_id": 32817, **extra}  # fmt: skip


def drug(person_id: int, concept_id: int, start: str, end: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"drug_exposure_id": next(_ids), "person_id": person_id, "drug_concept_id": concept_id,
            "drug_exposure_start_date": D(start), "drug_exposure_end_date": D(end) if end else None,
            "drug_type_concept_id": 32817, **extra}  # fmt: skip


def concept_set(set_id: int, *concept_ids: int, **flags: bool) -> dict[str, Any]:
    return {"id": set_id, "name": f"set {set_id}",
            "expression": {"items": [{"concept": {"CONCEPT_ID": c}, **flags} for c in concept_ids]}}  # fmt: skip


def definition(
    criteria: list[dict[str, Any]],
    sets: list[dict[str, Any]] | None = None,
    *,
    primary_options: dict[str, Any] | None = None,
    **top: Any,
) -> dict[str, Any]:
    """Circe JSON: primary ``criteria`` (with ``primary_options``), concept sets 0 = {100}, 1 = {200} by default."""
    return {
        "ConceptSets": sets if sets is not None else [concept_set(0, 100), concept_set(1, 200)],
        "PrimaryCriteria": {"CriteriaList": criteria, **(primary_options or {})},
        **top,
    }


VOCABULARY = [concept(c) for c in (100, 101, 200, 201, 300, 9201, 9202)]


def run(tables: dict[str, list[dict[str, Any]]], circe: dict[str, Any]) -> CohortResult:
    tables = {"concept": VOCABULARY, **tables}
    expression = parse_expression(circe)
    con = cdm_connection(tables)
    try:
        (result,) = run_batch(DuckDBRunner(con), [CohortDefinition("spec", expression)])
    finally:
        con.close()
    rows = [(r["subject_id"], r["cohort_start_date"], r["cohort_end_date"]) for r in result.rows.to_pylist()]
    assert rows == evaluate(tables, expression).rows, "DuckDB and the reference evaluator disagree"
    return result


def cohort(tables: dict[str, list[dict[str, Any]]], circe: dict[str, Any]) -> list[tuple[int, dt.date, dt.date]]:
    """The cohort rows, checked to be the same on DuckDB and on the reference evaluator."""
    result = run(tables, circe)
    return [(r["subject_id"], r["cohort_start_date"], r["cohort_end_date"]) for r in result.rows.to_pylist()]
