"""A small Achilles-style characterisation of a release: who is in it, for how long, and what was recorded.

For operators and data engineers checking a load; it reads row-level data and is not a research output
(research outputs go through disclosure control and output checking).
"""

from __future__ import annotations

from typing import Any

from hygie.engine.duckdb import DuckDBEngine

# Event tables and their concept column, in the order the summary shows them.
DOMAIN_TABLES = {
    "condition_occurrence": "condition_concept_id",
    "drug_exposure": "drug_concept_id",
    "procedure_occurrence": "procedure_concept_id",
    "measurement": "measurement_concept_id",
    "observation": "observation_concept_id",
    "visit_occurrence": "visit_concept_id",
    "device_exposure": "device_concept_id",
}
TOP = 10


def _rows(engine: DuckDBEngine, sql: str) -> list[dict[str, Any]]:
    rel = engine.sql(sql)
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def summarise(engine: DuckDBEngine) -> dict[str, Any]:
    m = engine.release.manifest
    persons = _rows(
        engine,
        """
        SELECT coalesce(c.concept_name, 'concept ' || p.gender_concept_id) AS sex,
               (p.year_of_birth // 10 * 10) || '-' || (p.year_of_birth // 10 * 10 + 9) AS birth_years,
               count(*) AS persons
        FROM person p LEFT JOIN concept c ON c.concept_id = p.gender_concept_id
        GROUP BY ALL ORDER BY sex, birth_years
        """,
    )
    by_sex = _rows(
        engine,
        """
        SELECT coalesce(c.concept_name, 'concept ' || p.gender_concept_id) AS sex, count(*) AS persons
        FROM person p LEFT JOIN concept c ON c.concept_id = p.gender_concept_id GROUP BY ALL ORDER BY sex
        """,
    )
    observation = _rows(
        engine,
        """
        SELECT count(*) AS periods, count(DISTINCT o.person_id) AS persons,
               min(observation_period_start_date) AS first_start, max(observation_period_end_date) AS last_end,
               round(sum(datediff('day', observation_period_start_date, observation_period_end_date) + 1)
                     / 365.25, 1) AS person_years,
               median(datediff('day', observation_period_start_date, observation_period_end_date) + 1)
                   AS median_days
        FROM observation_period o SEMI JOIN person p ON p.person_id = o.person_id
        """,
    )[0]
    top: dict[str, list[dict[str, Any]]] = {}
    for table, column in DOMAIN_TABLES.items():
        if m.tables[table].rows == 0:
            continue
        top[table] = _rows(
            engine,
            f"""
            SELECT t.{column} AS concept_id, coalesce(c.concept_name, '(not in vocabulary)') AS concept_name,
                   count(*) AS records, count(DISTINCT t.person_id) AS persons
            FROM {table} t LEFT JOIN concept c ON c.concept_id = t.{column}
            GROUP BY ALL ORDER BY records DESC, concept_id LIMIT {TOP}
            """,
        )
    return {
        "release": m.name,
        "synthetic": m.synthetic,
        "cdm_version": m.cdm_version,
        "persons": sum(r["persons"] for r in by_sex),
        "persons_by_sex": by_sex,
        "persons_by_sex_and_birth_decade": persons,
        "observation": observation,
        "records_per_table": {t.name: t.rows for t in m.tables.values() if t.rows},
        "top_concepts": top,
    }
