"""The study cohort table: every cohort of a study in one table of the OMOP cohort shape, in the runner.

Cohort definition ids follow the study file's order (1, 2, ...). Circe and Python-built cohorts are generated
in one batch (their concept sets resolved once); cohort table files were read at validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from hygie.analyses.base import StudyCohort
from hygie.cohorts.service import COHORT_SCHEMA, CohortDefinition, SqlRunner, run_batch
from hygie.studies.model import Study

STUDY_COHORT_TABLE = "study_cohort"
STUDY_COHORT_SCHEMA = pa.schema([("cohort_definition_id", pa.int64()), *COHORT_SCHEMA])


@dataclass(frozen=True)
class CohortCount:
    """A study cohort's size (aggregate: goes to the manifest and the report, after disclosure control)."""

    name: str
    cohort_definition_id: int
    source: str
    subjects: int
    records: int
    warnings: list[str] = field(default_factory=list)


def build_cohort_table(
    runner: SqlRunner, study: Study, table: str = STUDY_COHORT_TABLE
) -> tuple[dict[str, StudyCohort], list[CohortCount]]:
    """Generate or read every cohort of ``study`` and register them as ``table`` in the runner."""
    ids = {name: i for i, name in enumerate(study.cohorts, start=1)}
    to_generate = [
        CohortDefinition(name, entry.expression, entry.label)
        for name, entry in study.cohorts.items()
        if entry.expression is not None
    ]
    generated = {r.name: r for r in run_batch(runner, to_generate)} if to_generate else {}
    parts, counts = [], []
    for name, entry in study.cohorts.items():
        result = generated.get(name)
        rows = result.rows if result is not None else entry.rows
        if rows is None:  # a validated study always has one or the other
            raise ValueError(f"cohort {name} has neither a definition nor rows")
        rows = rows.cast(COHORT_SCHEMA)
        ident = pa.array([ids[name]] * rows.num_rows, pa.int64())
        parts.append(rows.add_column(0, "cohort_definition_id", ident))
        subjects = int(pc.count_distinct(rows["subject_id"]).as_py()) if rows.num_rows else 0
        warnings = list(result.warnings) if result is not None else []
        counts.append(CohortCount(name, ids[name], entry.label, subjects, rows.num_rows, warnings))
    combined = pa.concat_tables(parts).cast(STUDY_COHORT_SCHEMA) if parts else STUDY_COHORT_SCHEMA.empty_table()
    runner.register(table, combined)
    cohorts = {name: StudyCohort(name, ids[name], study.cohorts[name].label) for name in study.cohorts}
    return cohorts, counts
