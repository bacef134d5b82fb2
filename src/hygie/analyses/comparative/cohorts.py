"""New-user target and comparator populations, their time at risk and their outcomes, in SQL (DuckDB or Spark
through ``runner.dialect``). Only per-person arrays indexed by a study row number come back into the process,
never a person id.

New users: each person's first era of the target (or comparator) cohort is the index; the person needs
``washout_days`` of observation before it (in the observation period holding the index date) and must not be in
the other cohort at all (persons in both are removed). Risk window: ``[index + start, min(index + end, end of
that observation period[, exposure end + grace_days when on treatment])]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hygie.analyses.base import StudyContext
from hygie.analyses.comparative.spec import ComparativeSpec

TARGET, COMPARATOR = 1, 0
GROUPS = {TARGET: "target", COMPARATOR: "comparator"}


@dataclass(frozen=True)
class AttritionStep:
    reason: str
    target: int
    comparator: int


@dataclass
class Population:
    """The new-user study population (one row per person, ``row_id`` 0..n-1, never a person id)."""

    table: str  # the runner's table: row_id, subject_id, treatment, index_date, tar_start, tar_end...
    treatment: np.ndarray  # 1 target, 0 comparator
    age: np.ndarray  # years at index (year of index - year of birth)
    gender_concept_id: np.ndarray
    index_year: np.ndarray
    tar_end_day: np.ndarray  # last day at risk, days since index (may be < start: no time at risk)
    attrition: list[AttritionStep]

    def __len__(self) -> int:
        return len(self.treatment)


def _counts(rows: list[dict], column: str) -> tuple[int, int]:
    by = {int(r["treatment"]): int(r[column] or 0) for r in rows}
    return by.get(TARGET, 0), by.get(COMPARATOR, 0)


def build_population(context: StudyContext, spec: ComparativeSpec) -> Population:
    """Materialise the new-user population on the runner and read its per-row arrays."""
    runner, d = context.runner, context.runner.dialect
    target = context.cohort(spec.target).cohort_definition_id
    comparator = context.cohort(spec.comparator).cohort_definition_id
    exposures = context.temp_name("cm_exposures")
    runner.materialize(
        exposures,
        f"""
WITH eras AS (
  SELECT subject_id, cohort_definition_id, cohort_start_date, cohort_end_date,
    row_number() OVER (PARTITION BY subject_id, cohort_definition_id
                       ORDER BY cohort_start_date, cohort_end_date) AS era
  FROM {context.cohort_table} WHERE cohort_definition_id IN ({target}, {comparator})
), firsts AS (
  SELECT subject_id, CASE WHEN cohort_definition_id = {target} THEN {TARGET} ELSE {COMPARATOR} END AS treatment,
    cohort_start_date AS index_date, cohort_end_date AS exposure_end
  FROM eras WHERE era = 1
), in_both AS (
  SELECT subject_id FROM firsts GROUP BY subject_id HAVING COUNT(*) > 1
)
SELECT f.subject_id, f.treatment, f.index_date, f.exposure_end,
  op.observation_period_start_date AS op_start, op.observation_period_end_date AS op_end,
  CASE WHEN b.subject_id IS NULL THEN 0 ELSE 1 END AS in_both
FROM firsts f
LEFT JOIN observation_period op ON op.person_id = f.subject_id
  AND f.index_date >= op.observation_period_start_date AND f.index_date <= op.observation_period_end_date
LEFT JOIN in_both b ON b.subject_id = f.subject_id""",
    )

    def washed(alias: str = "") -> str:
        return (
            f"{alias}op_start IS NOT NULL AND "
            f"{d.day_diff(f'{alias}op_start', f'{alias}index_date')} >= {spec.washout_days}"
        )

    counts = runner.query(
        f"SELECT treatment, COUNT(*) AS persons, SUM(CASE WHEN {washed()} THEN 1 ELSE 0 END) AS washed, "
        f"SUM(CASE WHEN {washed()} AND in_both = 0 THEN 1 ELSE 0 END) AS only_one "
        f"FROM {exposures} GROUP BY treatment"
    ).to_pylist()
    attrition = [
        AttritionStep("Persons in the exposure cohort", *_counts(counts, "persons")),
        AttritionStep(
            f"First exposure with at least {spec.washout_days} days of prior observation (new users)",
            *_counts(counts, "washed"),
        ),
        AttritionStep("Not in both exposure cohorts", *_counts(counts, "only_one")),
    ]
    tar = spec.time_at_risk
    ends = [d.add_days("e.index_date", tar.end), "e.op_end"]
    if tar.design == "on_treatment":
        ends.append(d.add_days("e.exposure_end", tar.grace_days))
    population = context.temp_name("cm_population")
    runner.materialize(
        population,
        f"""
SELECT CAST(row_number() OVER (ORDER BY e.subject_id) - 1 AS BIGINT) AS row_id, e.subject_id, e.treatment,
  e.index_date, {d.add_days("e.index_date", tar.start)} AS tar_start, LEAST({", ".join(ends)}) AS tar_end,
  {d.year("e.index_date")} - p.year_of_birth AS age, p.gender_concept_id, {d.year("e.index_date")} AS index_year
FROM {exposures} e JOIN person p ON p.person_id = e.subject_id
WHERE {washed("e.")} AND e.in_both = 0""",
    )
    runner.drop(exposures)
    rows = runner.query(
        f"SELECT row_id, treatment, age, gender_concept_id, index_year, "
        f"{d.day_diff('index_date', 'tar_end')} AS tar_end_day FROM {population} ORDER BY row_id"
    )
    column = {name: rows[name].to_numpy(zero_copy_only=False) for name in rows.column_names}
    return Population(
        table=population,
        treatment=column["treatment"].astype(np.int8),
        age=column["age"].astype(np.int64),
        gender_concept_id=column["gender_concept_id"].astype(np.int64),
        index_year=column["index_year"].astype(np.int64),
        tar_end_day=column["tar_end_day"].astype(np.int64),
        attrition=attrition,
    )


@dataclass(frozen=True)
class OutcomeEvents:
    """Per study row: an outcome before the risk window (within the lookback) and the first day at risk with it
    (days since index; -1: none)."""

    prior: np.ndarray
    event_day: np.ndarray


def outcome_events(
    context: StudyContext, population: Population, spec: ComparativeSpec, outcomes: Sequence[str]
) -> dict[str, OutcomeEvents]:
    """One query for every outcome: only rows with a record of the outcome come back."""
    d = context.runner.dialect
    ids = {context.cohort(name).cohort_definition_id: name for name in outcomes}
    lookback = spec.prior_outcome_washout
    window = ""
    if not isinstance(lookback, bool):
        window = f" AND o.cohort_start_date >= {d.add_days('p.tar_start', -lookback)}"
    rows = context.runner.query(
        f"""
SELECT p.row_id, o.cohort_definition_id AS outcome,
  MAX(CASE WHEN o.cohort_start_date < p.tar_start{window} THEN 1 ELSE 0 END) AS prior,
  MIN(CASE WHEN o.cohort_start_date >= p.tar_start AND o.cohort_start_date <= p.tar_end
      THEN {d.day_diff("p.index_date", "o.cohort_start_date")} END) AS event_day
FROM {population.table} p JOIN {context.cohort_table} o ON o.subject_id = p.subject_id
WHERE o.cohort_definition_id IN ({", ".join(str(i) for i in ids)})
GROUP BY p.row_id, o.cohort_definition_id"""
    )
    n = len(population)
    row = rows["row_id"].to_numpy(zero_copy_only=False).astype(np.int64)
    outcome = rows["outcome"].to_numpy(zero_copy_only=False).astype(np.int64)
    prior = rows["prior"].to_numpy(zero_copy_only=False).astype(bool)
    day = rows["event_day"].fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    result = {}
    for cohort_id, name in ids.items():
        m = outcome == cohort_id
        p = np.zeros(n, dtype=bool)
        e = np.full(n, -1, dtype=np.int64)
        p[row[m]] = prior[m] & (lookback is not False)
        e[row[m]] = day[m]
        result[name] = OutcomeEvents(p, e)
    return result
