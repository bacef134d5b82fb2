"""Point and period prevalence (IncidencePrevalence's estimatePointPrevalence / estimatePeriodPrevalence), in SQL.

For each interval (a day for point prevalence), the denominator rows overlapping it — covering it entirely
with ``full_contribution`` — are clipped to it; a person (or record) counts as a case when any of their
outcome records overlaps the clipped row, so ongoing outcomes count. Semantics: docs/incidence-prevalence.md.
"""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa

from hygie.analyses.base import ResultTable, Spec, StudyContext, StudyDefinitions, TableStructure
from hygie.analyses.incidence_prevalence import estimates
from hygie.analyses.incidence_prevalence.denominators import (
    ATTRITION_COUNTS,
    OUTCOME_ATTRITION_SCHEMA,
    Denominator,
    check_known,
    denominator,
)
from hygie.analyses.incidence_prevalence.intervals import Interval, study_intervals, time_points
from hygie.analyses.incidence_prevalence.population import (
    Strata,
    denominator_rows_sql,
    intervals_table,
    outcome_rows_sql,
    outcomes_of,
    strata_of,
)
from hygie.analyses.incidence_prevalence.spec import PrevalenceSpec

PREVALENCE_SCHEMA = pa.schema(
    [
        ("denominator_cohort_id", pa.int64()),
        ("outcome_cohort_id", pa.int64()),
        ("age_group", pa.string()),
        ("sex", pa.string()),
        ("days_prior_observation", pa.int64()),
        ("analysis_interval", pa.string()),
        ("prevalence_start_date", pa.date32()),
        ("prevalence_end_date", pa.date32()),
        ("denominator_count", pa.int64()),
        ("outcome_count", pa.int64()),
        ("prevalence", pa.float64()),
        ("prevalence_95ci_lower", pa.float64()),
        ("prevalence_95ci_upper", pa.float64()),
        ("analysis_type", pa.string()),
        ("analysis_level", pa.string()),
        ("denominator_cohort_name", pa.string()),
        ("outcome_cohort_name", pa.string()),
        ("analysis_time_point", pa.string()),
        ("analysis_complete_database_intervals", pa.bool_()),
        ("analysis_full_contribution", pa.bool_()),
        ("strata_name", pa.string()),
        ("strata_level", pa.string()),
    ]
)

PREVALENCES = ("prevalence", "prevalence_95ci_lower", "prevalence_95ci_upper")
PREVALENCE_COUNTS = {"denominator_count": PREVALENCES, "outcome_count": PREVALENCES}
# For disclosure control, as for incidence: one statistic per these keys; Both = Male + Female.
PREVALENCE_STRUCTURE = TableStructure(
    keys=(
        "outcome_cohort_id",
        "age_group",
        "sex",
        "days_prior_observation",
        "analysis_interval",
        "prevalence_start_date",
        "prevalence_end_date",
        "analysis_type",
        "analysis_level",
        "analysis_time_point",
        "analysis_complete_database_intervals",
        "analysis_full_contribution",
        "strata_name",
        "strata_level",
    ),
    margins={"sex": "Both"},
)


class PrevalenceAnalysis:
    """Study-file key ``prevalence``."""

    key: ClassVar[str] = "prevalence"
    spec: ClassVar[type[Spec]] = PrevalenceSpec

    def run(self, context: StudyContext, spec: Spec, study: StudyDefinitions) -> list[ResultTable]:
        assert isinstance(spec, PrevalenceSpec)
        den = denominator(context, spec.denominator, check_known(dict(study.denominators), spec.denominator))
        return [*estimate_prevalence(context, den, spec), *den.result_tables()]


def prevalence_intervals(spec: PrevalenceSpec, unit: str, first: object, last: object) -> list[Interval]:
    if spec.type == "point":
        return time_points(first, last, unit, spec.time_point)  # type: ignore[arg-type]
    return study_intervals(first, last, unit, spec.complete_database_intervals)  # type: ignore[arg-type]


def _overlap(spec: PrevalenceSpec) -> str:
    """Which denominator rows count for interval ``i``."""
    if spec.type == "period" and spec.full_contribution:
        return "r.cs <= i.s AND r.ce >= i.e"
    return "r.ce >= i.s AND r.cs <= i.e"


def cases_sql(context: StudyContext, den: Denominator, spec: PrevalenceSpec, strata: Strata, intervals: str) -> str:
    """One row per (interval, subject, clipped start): whether an outcome overlaps the clipped row."""
    strata_cols = "".join(f", r.{c}" for c in strata.columns.values())
    clip_start = "CASE WHEN r.cs > i.s THEN r.cs ELSE i.s END"
    clip_end = "CASE WHEN r.ce < i.e THEN r.ce ELSE i.e END"
    keys = "b.denominator_cohort_id, b.outcome_id, b.analysis_interval, b.s, b.e, b.subject_id, b.ccs"
    grouped = keys + "".join(f", b.{c}" for c in strata.columns.values())
    return f"""
WITH r AS ({denominator_rows_sql(context, den, strata)}),
oc AS ({outcome_rows_sql(context, outcomes_of(context, spec.outcomes))}),
b AS (
  SELECT i.denominator_cohort_id, i.outcome_id, i.analysis_interval, i.s, i.e, r.subject_id{strata_cols},
         {clip_start} AS ccs, {clip_end} AS cce
  FROM r JOIN {intervals} i ON i.denominator_cohort_id = r.denominator_cohort_id AND {_overlap(spec)})
SELECT {grouped}, max(CASE WHEN o.subject_id IS NOT NULL THEN 1 ELSE 0 END) AS has_outcome
FROM b LEFT JOIN oc o ON o.subject_id = b.subject_id AND o.outcome_id = b.outcome_id
 AND o.os <= b.cce AND o.oe >= b.ccs
GROUP BY {grouped}"""


def aggregate_sql(cases: str, strata: Strata, level: str) -> str:
    parts = []
    keys = "c.denominator_cohort_id, c.outcome_id, c.analysis_interval, c.s, c.e"
    if level == "person":
        counts = (
            "count(DISTINCT c.subject_id) AS denominator_count, "
            "count(DISTINCT CASE WHEN c.has_outcome = 1 THEN c.subject_id END) AS outcome_count"
        )
    else:
        counts = "count(*) AS denominator_count, sum(c.has_outcome) AS outcome_count"
    for group in strata.groups:
        name, level_sql = strata.label_sql(group, "c")
        extra = "".join(f", {col}" for col in strata.group_by(group, "c"))
        parts.append(
            f"SELECT {keys}, {name} AS strata_name, {level_sql} AS strata_level, {counts} "
            f"FROM {cases} c GROUP BY {keys}{extra}"
        )
    return " UNION ALL ".join(parts)


def attrition_sql(context: StudyContext, den: Denominator, spec: PrevalenceSpec, intervals: str) -> str:
    """Denominator records and subjects: all, overlapping the intervals' span, covering an interval."""
    full = "r.cs <= i.s AND r.ce >= i.e"
    return f"""
WITH r AS (SELECT cohort_definition_id AS denominator_cohort_id, subject_id, cohort_start_date AS cs,
                  cohort_end_date AS ce,
                  concat(CAST(subject_id AS STRING), '|', CAST(cohort_start_date AS STRING), '|',
                         CAST(cohort_end_date AS STRING)) AS record
           FROM {den.rows}),
bounds AS (SELECT denominator_cohort_id, outcome_id, analysis_interval, min(s) AS s, max(e) AS e
           FROM {intervals} GROUP BY denominator_cohort_id, outcome_id, analysis_interval),
spanned AS (
  SELECT b.denominator_cohort_id, b.outcome_id, b.analysis_interval, r.subject_id, r.record,
         r.cs, r.ce
  FROM bounds b JOIN r ON r.denominator_cohort_id = b.denominator_cohort_id AND r.ce >= b.s AND r.cs <= b.e),
covering AS (
  SELECT DISTINCT i.denominator_cohort_id, i.outcome_id, i.analysis_interval, r.record
  FROM {intervals} i JOIN r ON r.denominator_cohort_id = i.denominator_cohort_id AND {full})
SELECT s.denominator_cohort_id, s.outcome_id, s.analysis_interval,
       count(DISTINCT s.record) AS r2, count(DISTINCT s.subject_id) AS s2,
       count(DISTINCT CASE WHEN c.record IS NOT NULL THEN s.record END) AS r3,
       count(DISTINCT CASE WHEN c.record IS NOT NULL THEN s.subject_id END) AS s3
FROM spanned s LEFT JOIN covering c ON c.denominator_cohort_id = s.denominator_cohort_id
 AND c.outcome_id = s.outcome_id AND c.analysis_interval = s.analysis_interval AND c.record = s.record
GROUP BY s.denominator_cohort_id, s.outcome_id, s.analysis_interval"""


def estimate_prevalence(context: StudyContext, den: Denominator, spec: PrevalenceSpec) -> list[ResultTable]:
    runner = context.runner
    strata = strata_of(spec.strata, spec.include_overall_strata)
    outcomes = outcomes_of(context, spec.outcomes)
    names = {o.cohort_definition_id: o.name for o in outcomes}
    starting = {
        int(r["cohort_definition_id"]): r
        for r in runner.query(
            "SELECT cohort_definition_id, min(cohort_start_date) AS first, max(cohort_end_date) AS last, "
            f"count(*) AS r1, count(DISTINCT subject_id) AS s1 FROM {den.rows} GROUP BY cohort_definition_id"
        ).to_pylist()
    }
    spans = {den_id: (r["first"], r["last"]) for den_id, r in starting.items()}
    chosen = [
        (den_id, o.cohort_definition_id, unit, interval)
        for den_id, (first, last) in sorted(spans.items())
        for o in outcomes
        for unit in spec.interval
        for interval in prevalence_intervals(spec, unit, first, last)
    ]
    intervals = context.temp_name("prevalence_intervals")
    runner.register(intervals, intervals_table(chosen))
    try:
        cases = f"({cases_sql(context, den, spec, strata, intervals)})"
        counts = runner.query(aggregate_sql(cases, strata, spec.level)).to_pylist()
        steps = runner.query(attrition_sql(context, den, spec, intervals)).to_pylist()
    finally:
        runner.drop(intervals)
    return [
        ResultTable(
            "prevalence",
            _prevalence_table(den, names, spec, chosen, counts),
            counts=PREVALENCE_COUNTS,
            plot="prevalence",
            structure=PREVALENCE_STRUCTURE,
            description=f"{spec.type.capitalize()} prevalence by denominator cohort, outcome, interval and stratum "
            "(Wilson 95% confidence intervals).",
        ),
        ResultTable(
            "prevalence_attrition",
            _attrition_table(den, names, spec, starting, steps),
            counts=ATTRITION_COUNTS,
            plot="attrition",
            description="Denominator records and persons left after each step of the prevalence analysis.",
        ),
    ]


def _prevalence_table(
    den: Denominator,
    names: dict[int, str],
    spec: PrevalenceSpec,
    chosen: list[tuple[int, int, str, Interval]],
    counts: list[dict],
) -> pa.Table:
    with_overall = () in strata_of(spec.strata, spec.include_overall_strata).groups
    found = {
        (
            r["denominator_cohort_id"],
            r["outcome_id"],
            r["analysis_interval"],
            r["s"],
            r["strata_name"],
            r["strata_level"],
        )
        for r in counts
    }
    # An interval nobody is eligible for still gets its (overall) row, with 0 / 0, as in IncidencePrevalence.
    for den_id, outcome_id, unit, interval in chosen:
        if with_overall and (den_id, outcome_id, unit, interval.start, "overall", "overall") not in found:
            counts.append(
                {
                    "denominator_cohort_id": den_id,
                    "outcome_id": outcome_id,
                    "analysis_interval": unit,
                    "s": interval.start,
                    "e": interval.end,
                    "strata_name": "overall",
                    "strata_level": "overall",
                    "denominator_count": 0,
                    "outcome_count": 0,
                }
            )
    order = {unit: i for i, unit in enumerate(spec.interval)}
    counts.sort(
        key=lambda r: (
            r["denominator_cohort_id"],
            r["outcome_id"],
            r["strata_name"] != "overall",
            r["strata_name"],
            r["strata_level"],
            order[r["analysis_interval"]],
            r["s"],
        )
    )
    out = []
    for r in counts:
        cohort = den.cohort(int(r["denominator_cohort_id"]))
        n, cases = int(r["denominator_count"]), int(r["outcome_count"] or 0)
        lower, upper = estimates.wilson_ci(cases, n)
        out.append(
            {
                "denominator_cohort_id": cohort.cohort_definition_id,
                "outcome_cohort_id": int(r["outcome_id"]),
                "age_group": cohort.age_group,
                "sex": cohort.sex,
                "days_prior_observation": cohort.days_prior_observation,
                "analysis_interval": r["analysis_interval"],
                "prevalence_start_date": r["s"],
                "prevalence_end_date": r["e"],
                "denominator_count": n,
                "outcome_count": cases,
                "prevalence": estimates.prevalence(cases, n),
                "prevalence_95ci_lower": lower,
                "prevalence_95ci_upper": upper,
                "analysis_type": spec.type,
                "analysis_level": spec.level,
                "denominator_cohort_name": den.cohort_name(cohort.cohort_definition_id),
                "outcome_cohort_name": names[int(r["outcome_id"])],
                "analysis_time_point": spec.time_point if spec.type == "point" else None,
                "analysis_complete_database_intervals": spec.complete_database_intervals
                if spec.type == "period"
                else None,
                "analysis_full_contribution": spec.full_contribution if spec.type == "period" else None,
                "strata_name": r["strata_name"],
                "strata_level": r["strata_level"],
            }
        )
    return pa.Table.from_pylist(out, schema=PREVALENCE_SCHEMA)


def _attrition_table(
    den: Denominator, names: dict[int, str], spec: PrevalenceSpec, starting: dict[int, dict], steps: list[dict]
) -> pa.Table:
    by_key = {(int(r["denominator_cohort_id"]), int(r["outcome_id"]), r["analysis_interval"]): r for r in steps}
    reasons = [("1", "Starting analysis population"), ("2", "Not observed during the complete database interval")]
    if spec.type == "period" and spec.full_contribution:
        reasons.append(("3", "Do not satisfy full contribution requirement for an interval"))
    out = []
    for cohort in den.cohorts:
        for outcome_id, outcome_name in names.items():
            for unit in spec.interval:
                source = {
                    **starting.get(cohort.cohort_definition_id, {}),
                    **by_key.get((cohort.cohort_definition_id, outcome_id, unit), {}),
                }
                previous = None
                for reason_id, (step, reason) in enumerate(reasons, start=1):
                    records = int(source.get(f"r{step}") or 0)
                    subjects = int(source.get(f"s{step}") or 0)
                    out.append(
                        {
                            "denominator_cohort_id": cohort.cohort_definition_id,
                            "outcome_cohort_id": outcome_id,
                            "denominator_cohort_name": den.cohort_name(cohort.cohort_definition_id),
                            "outcome_cohort_name": outcome_name,
                            "analysis_interval": unit,
                            "reason_id": reason_id,
                            "reason": reason,
                            "number_records": records,
                            "number_subjects": subjects,
                            "excluded_records": 0 if previous is None else previous[0] - records,
                            "excluded_subjects": 0 if previous is None else previous[1] - subjects,
                        }
                    )
                    previous = (records, subjects)
    return pa.Table.from_pylist(out, schema=OUTCOME_ATTRITION_SCHEMA)
