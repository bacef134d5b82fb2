"""``cohort_counts``: how many persons and records each study cohort holds (no plot)."""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa

from hygie.analyses.base import ResultTable, Spec, StudyContext, StudyDefinitions


class CohortCountsSpec(Spec):
    """``cohorts``: the study cohorts to count (all of them, in study-file order, when omitted)."""

    cohorts: list[str] | None = None


class CohortCounts:
    key: ClassVar[str] = "cohort_counts"
    spec: ClassVar[type[Spec]] = CohortCountsSpec

    def run(self, context: StudyContext, spec: Spec, study: StudyDefinitions) -> list[ResultTable]:
        if not isinstance(spec, CohortCountsSpec):
            raise TypeError(f"cohort_counts needs a CohortCountsSpec, got {type(spec).__name__}")
        names = spec.cohorts if spec.cohorts is not None else list(context.cohorts)
        cohorts = [context.cohort(name) for name in names]
        ids = ", ".join(str(int(c.cohort_definition_id)) for c in cohorts) or "NULL"
        counted = context.runner.query(
            f"SELECT CAST(cohort_definition_id AS BIGINT) AS cohort_definition_id, "
            f"COUNT(DISTINCT subject_id) AS number_subjects, COUNT(*) AS number_records "
            f"FROM {context.cohort_table} WHERE cohort_definition_id IN ({ids}) GROUP BY cohort_definition_id"
        ).to_pylist()
        by_id = {row["cohort_definition_id"]: row for row in counted}
        rows = pa.table(
            {
                "cohort_definition_id": pa.array([c.cohort_definition_id for c in cohorts], pa.int64()),
                "cohort_name": pa.array([c.name for c in cohorts], pa.string()),
                "number_subjects": pa.array(
                    [by_id.get(c.cohort_definition_id, {}).get("number_subjects", 0) for c in cohorts], pa.int64()
                ),
                "number_records": pa.array(
                    [by_id.get(c.cohort_definition_id, {}).get("number_records", 0) for c in cohorts], pa.int64()
                ),
            }
        )
        return [
            ResultTable(
                "cohort_counts",
                rows,
                counts={"number_subjects": (), "number_records": ()},
                description="Persons and records in each study cohort.",
            )
        ]
