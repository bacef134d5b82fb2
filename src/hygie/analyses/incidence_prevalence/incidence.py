"""Incidence rates (IncidencePrevalence's estimateIncidence), set-based in SQL.

Each denominator row is split at the subject's outcomes (the latest one before entry and every one during the
row), each piece starting after the washout of the outcome before it; pieces are cut at a censor cohort,
rows with earlier outcomes are excluded (infinite washout) or at risk again after the washout, and, without
repeated events, only time up to the first outcome counts. The pieces are then summed per calendar interval.
Semantics step by step: docs/incidence-prevalence.md.
"""

from __future__ import annotations

import math
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
from hygie.analyses.incidence_prevalence.intervals import study_intervals
from hygie.analyses.incidence_prevalence.population import (
    Outcome,
    Strata,
    denominator_rows_sql,
    intervals_table,
    outcome_rows_sql,
    outcomes_of,
    strata_of,
)
from hygie.analyses.incidence_prevalence.spec import IncidenceSpec
from hygie.errors import HygieError

# A washout longer than this (about 274 years) cannot end inside any study: treated as this many days so that
# date arithmetic stays in range on every engine.
LONGEST_WASHOUT = 100_000

INCIDENCE_SCHEMA = pa.schema(
    [
        ("denominator_cohort_id", pa.int64()),
        ("outcome_cohort_id", pa.int64()),
        ("age_group", pa.string()),
        ("sex", pa.string()),
        ("days_prior_observation", pa.int64()),
        ("analysis_interval", pa.string()),
        ("incidence_start_date", pa.date32()),
        ("incidence_end_date", pa.date32()),
        ("denominator_count", pa.int64()),
        ("outcome_count", pa.int64()),
        ("person_days", pa.int64()),
        ("person_years", pa.float64()),
        ("incidence_100000_pys", pa.float64()),
        ("incidence_100000_pys_95ci_lower", pa.float64()),
        ("incidence_100000_pys_95ci_upper", pa.float64()),
        ("denominator_cohort_name", pa.string()),
        ("outcome_cohort_name", pa.string()),
        ("analysis_outcome_washout", pa.string()),
        ("analysis_repeated_events", pa.bool_()),
        ("analysis_complete_database_intervals", pa.bool_()),
        ("analysis_censor_cohort_name", pa.string()),
        ("strata_name", pa.string()),
        ("strata_level", pa.string()),
    ]
)

INCIDENCE_RATES = ("incidence_100000_pys", "incidence_100000_pys_95ci_lower", "incidence_100000_pys_95ci_upper")
INCIDENCE_COUNTS = {
    "denominator_count": ("person_days", "person_years", *INCIDENCE_RATES),
    "outcome_count": INCIDENCE_RATES,
}
# For disclosure control: what identifies one statistic (the denominator cohort's id and name are functions of
# its age group, sex and prior observation within one analysis), and the additive margin (Both = Male + Female;
# age groups are not additive: persons move between them over time).
INCIDENCE_STRUCTURE = TableStructure(
    keys=(
        "outcome_cohort_id",
        "age_group",
        "sex",
        "days_prior_observation",
        "analysis_interval",
        "incidence_start_date",
        "incidence_end_date",
        "analysis_outcome_washout",
        "analysis_repeated_events",
        "analysis_complete_database_intervals",
        "analysis_censor_cohort_name",
        "strata_name",
        "strata_level",
    ),
    margins={"sex": "Both"},
)


class IncidenceAnalysis:
    """Study-file key ``incidence``."""

    key: ClassVar[str] = "incidence"
    spec: ClassVar[type[Spec]] = IncidenceSpec

    def run(self, context: StudyContext, spec: Spec, study: StudyDefinitions) -> list[ResultTable]:
        assert isinstance(spec, IncidenceSpec)
        den = denominator(context, spec.denominator, check_known(dict(study.denominators), spec.denominator))
        return [*estimate_incidence(context, den, spec), *den.result_tables()]


def washout_text(washout: float) -> str:
    return "inf" if math.isinf(washout) else str(int(washout))


def censor_id(context: StudyContext, spec: IncidenceSpec) -> int | None:
    """The censor cohort's id, after checking it has at most one record per person."""
    if spec.censor is None:
        return None
    try:
        cohort_id = context.cohort(spec.censor.cohort).cohort_definition_id
    except KeyError as e:
        raise HygieError(f"censor: {e.args[0]}") from None
    if spec.censor.cohort_definition_id is not None and spec.censor.cohort_definition_id != cohort_id:
        raise HygieError(
            f"censor: cohort {spec.censor.cohort!r} has id {cohort_id} in this study, "
            f"not {spec.censor.cohort_definition_id}"
        )
    row = context.runner.query(
        f"SELECT count(*) AS n FROM (SELECT subject_id FROM {context.cohort_table} "
        f"WHERE cohort_definition_id = {int(cohort_id)} GROUP BY subject_id HAVING count(*) > 1) t"
    ).to_pylist()[0]
    if row["n"]:
        raise HygieError(
            f"censor cohort {spec.censor.cohort!r}: {row['n']} person(s) have more than one record; "
            "a censor cohort must have at most one record per person"
        )
    return cohort_id


def incidence_rows_sql(
    context: StudyContext,
    den: Denominator,
    outcomes: list[Outcome],
    strata: Strata,
    spec: IncidenceSpec,
    censor: int | None,
) -> str:
    """Every piece of every denominator row, for every outcome, with ``censor_ok`` (survives the censor
    cohort) and ``final_ok`` (counts towards incidence) and its final dates ``cs``..``ce`` and outcome ``os``."""
    d = context.runner.dialect
    strata_cols = "".join(f", {c}" for c in strata.columns.values())
    outcome_ids = " UNION ALL ".join(f"SELECT {int(o.cohort_definition_id)} AS outcome_id" for o in outcomes)
    censor_join, censor_end = "", "ce"
    if censor is not None:
        censor_join = (
            f"LEFT JOIN (SELECT subject_id, cohort_start_date AS censor_start FROM {context.cohort_table} "
            f"WHERE cohort_definition_id = {int(censor)}) k ON k.subject_id = s.subject_id"
        )
        censor_end = "CASE WHEN k.censor_start IS NOT NULL AND k.censor_start < s.ce THEN k.censor_start ELSE s.ce END"
    if math.isinf(spec.outcome_washout):
        wash_cs = "cs"
        wash_ok = "censor_ok AND prev_oe IS NULL AND cs <= ce"
    else:
        after = d.add_days("prev_oe", min(int(spec.outcome_washout) + 1, LONGEST_WASHOUT))
        wash_cs = f"CASE WHEN prev_oe IS NOT NULL AND {after} > cs THEN {after} ELSE cs END"
        wash_ok = f"censor_ok AND ({wash_cs}) <= ce"
    if spec.repeated_events or math.isinf(spec.outcome_washout):
        final_ok = "wash_ok"
    else:
        # Without repeated events: once a subject has an outcome, only their earliest piece(s) count.
        final_ok = "wash_ok AND (NOT has_info OR events_post = 0 OR cs = first_cs)"
    subject = "PARTITION BY denominator_cohort_id, outcome_id, subject_id, has_info"
    return f"""
WITH den AS ({denominator_rows_sql(context, den, strata)}),
ids AS ({outcome_ids}),
oc AS ({outcome_rows_sql(context, outcomes)}),
cand AS (
  SELECT d.rid, d.cs, o.outcome_id, o.os, o.oe,
         max(CASE WHEN o.os < d.cs THEN o.os END) OVER (PARTITION BY d.rid, o.outcome_id) AS last_prior
  FROM den d JOIN oc o ON o.subject_id = d.subject_id AND o.os <= d.ce),
kept AS (SELECT rid, outcome_id, os, oe FROM cand WHERE os >= cs OR os = last_prior),
seq AS (
  SELECT rid, outcome_id, os, oe,
         lag(oe) OVER (PARTITION BY rid, outcome_id ORDER BY os, oe) AS prev_oe,
         row_number() OVER (PARTITION BY rid, outcome_id ORDER BY os DESC, oe DESC) AS back
  FROM kept),
pieces AS (
  SELECT rid, outcome_id, os, prev_oe FROM seq
  UNION ALL
  SELECT rid, outcome_id, CAST(NULL AS DATE) AS os, oe AS prev_oe FROM seq WHERE back = 1),
split AS (
  SELECT d.denominator_cohort_id, d.rid, d.subject_id, d.cs, d.ce{strata_cols.replace(", ", ", d.")},
         i.outcome_id, p.os, p.prev_oe, p.rid IS NOT NULL AS has_info
  FROM den d CROSS JOIN ids i
  LEFT JOIN pieces p ON p.rid = d.rid AND p.outcome_id = i.outcome_id),
censored AS (
  SELECT s.denominator_cohort_id, s.rid, s.subject_id, s.cs{strata_cols}, s.outcome_id, s.os, s.prev_oe,
         s.has_info, {censor_end} AS ce
  FROM split s {censor_join}),
flagged AS (
  SELECT denominator_cohort_id, rid, subject_id, outcome_id, os, prev_oe, has_info{strata_cols},
         cs <= ce AND (os IS NULL OR os <= ce) AS censor_ok, cs,
         CASE WHEN os IS NOT NULL THEN os ELSE ce END AS ce
  FROM censored),
washed AS (
  SELECT denominator_cohort_id, rid, subject_id, outcome_id, os, has_info, censor_ok{strata_cols},
         {wash_ok} AS wash_ok, {wash_cs} AS cs, ce
  FROM flagged),
counted AS (
  SELECT *,
         sum(CASE WHEN wash_ok AND os IS NOT NULL THEN 1 ELSE 0 END) OVER ({subject}) AS events_post,
         min(CASE WHEN wash_ok THEN cs END) OVER ({subject}) AS first_cs
  FROM washed)
SELECT denominator_cohort_id, rid, subject_id, outcome_id, cs, ce, os{strata_cols}, censor_ok,
       {final_ok} AS final_ok
FROM counted"""


def pairs_sql(rows: str) -> str:
    """Per (denominator cohort, outcome): the span of the counted pieces and the attrition before intervals
    (records are denominator rows). Plain aggregations, per row, per subject, per pair: no ``count(DISTINCT)``,
    which Spark plans as an expensive expand."""
    pair = "denominator_cohort_id, outcome_id"
    return f"""
SELECT {pair}, min(first) AS first, max(last) AS last,
       sum(n1) AS r1, count(*) AS s1, sum(n2) AS r2, sum(CASE WHEN n2 > 0 THEN 1 ELSE 0 END) AS s2,
       sum(n3) AS r3, sum(CASE WHEN n3 > 0 THEN 1 ELSE 0 END) AS s3
FROM (
  SELECT {pair}, subject_id, min(first) AS first, max(last) AS last, count(*) AS n1, sum(c2) AS n2, sum(c3) AS n3
  FROM (
    SELECT {pair}, subject_id, rid, min(CASE WHEN final_ok THEN cs END) AS first,
           max(CASE WHEN final_ok THEN ce END) AS last, max(CASE WHEN censor_ok THEN 1 ELSE 0 END) AS c2,
           max(CASE WHEN final_ok THEN 1 ELSE 0 END) AS c3
    FROM {rows} GROUP BY {pair}, subject_id, rid) per_row
  GROUP BY {pair}, subject_id) per_subject
GROUP BY {pair}"""


def aggregate_sql(context: StudyContext, rows: str, intervals: str, strata: Strata) -> str:
    """Per interval and stratum (``kind`` 'rate'): subjects, person-days and outcomes of the pieces overlapping
    the interval; per interval kind (``kind`` 'span'): the records and subjects overlapping the span of the
    intervals, for the attrition. One statement: each round trip costs on Spark."""
    d = context.runner.dialect
    t_start = "CASE WHEN r.cs > i.s THEN r.cs ELSE i.s END"
    t_end = "CASE WHEN r.ce < i.e THEN r.ce ELSE i.e END"
    keys = "i.denominator_cohort_id, i.outcome_id, i.analysis_interval, i.s, i.e"
    join = (
        f"FROM {rows} r JOIN {intervals} i ON i.denominator_cohort_id = r.denominator_cohort_id "
        "AND i.outcome_id = r.outcome_id AND r.ce >= i.s AND r.cs <= i.e WHERE r.final_ok"
    )
    parts = []
    for group in strata.groups:
        name, level = strata.label_sql(group)
        extra = "".join(f", {c}" for c in strata.group_by(group))
        parts.append(
            f"SELECT 'rate' AS kind, {keys}, {name} AS strata_name, {level} AS strata_level, "
            "count(DISTINCT r.subject_id) AS denominator_count, "
            f"sum({d.day_diff(t_start, t_end)} + 1) AS person_days, "
            f"sum(CASE WHEN r.os IS NOT NULL AND r.os >= {t_start} AND r.os <= {t_end} THEN 1 ELSE 0 END) "
            f"AS outcome_count {join} GROUP BY {keys}{extra}"
        )
    span = (
        f"SELECT denominator_cohort_id, outcome_id, analysis_interval, min(s) AS s, max(e) AS e FROM {intervals} "
        "GROUP BY denominator_cohort_id, outcome_id, analysis_interval"
    )
    parts.append(
        "SELECT 'span' AS kind, i.denominator_cohort_id, i.outcome_id, i.analysis_interval, i.s, i.e, "
        "CAST(NULL AS STRING) AS strata_name, CAST(NULL AS STRING) AS strata_level, "
        "count(DISTINCT r.subject_id) AS denominator_count, CAST(NULL AS BIGINT) AS person_days, "
        "count(DISTINCT r.rid) AS outcome_count "
        f"{join.replace(intervals, f'({span})')} "
        "GROUP BY i.denominator_cohort_id, i.outcome_id, i.analysis_interval, i.s, i.e"
    )
    return " UNION ALL ".join(parts)


def estimate_incidence(context: StudyContext, den: Denominator, spec: IncidenceSpec) -> list[ResultTable]:
    runner = context.runner
    strata = strata_of(spec.strata, spec.include_overall_strata)
    outcomes = outcomes_of(context, spec.outcomes)
    censor = censor_id(context, spec)
    rows = context.temp_name("incidence_rows")
    intervals = context.temp_name("incidence_intervals")
    runner.materialize(rows, incidence_rows_sql(context, den, outcomes, strata, spec, censor))
    try:
        steps = runner.query(pairs_sql(rows)).to_pylist()
        chosen = [
            (int(r["denominator_cohort_id"]), int(r["outcome_id"]), unit, interval)
            for r in sorted(steps, key=lambda r: (r["denominator_cohort_id"], r["outcome_id"]))
            if r["first"] is not None
            for unit in spec.interval
            for interval in study_intervals(r["first"], r["last"], unit, spec.complete_database_intervals)
        ]
        runner.register(intervals, intervals_table(chosen))
        results = runner.query(aggregate_sql(context, rows, intervals, strata)).to_pylist()
    finally:
        runner.drop(rows)
        runner.drop(intervals)
    counts = [r for r in results if r["kind"] == "rate"]
    complete = [{**r, "r4": r["outcome_count"], "s4": r["denominator_count"]} for r in results if r["kind"] == "span"]
    names = {o.cohort_definition_id: o.name for o in outcomes}
    return [
        ResultTable(
            "incidence",
            _incidence_table(den, names, spec, counts),
            counts=INCIDENCE_COUNTS,
            plot="incidence",
            structure=INCIDENCE_STRUCTURE,
            description="Incidence rates per 100,000 person-years by denominator cohort, outcome, interval "
            "and stratum (exact Poisson 95% confidence intervals).",
        ),
        ResultTable(
            "incidence_attrition",
            _attrition_table(den, names, spec, steps, complete),
            counts=ATTRITION_COUNTS,
            plot="attrition",
            description="Denominator records and persons left after each step of the incidence analysis.",
        ),
    ]


def _incidence_table(den: Denominator, names: dict[int, str], spec: IncidenceSpec, counts: list[dict]) -> pa.Table:
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
    censor_name = spec.censor.cohort if spec.censor else None
    out = []
    for r in counts:
        cohort = den.cohort(int(r["denominator_cohort_id"]))
        days, events = int(r["person_days"]), int(r["outcome_count"])
        years = estimates.person_years(days)
        lower, upper = estimates.poisson_ci(events, years)
        out.append(
            {
                "denominator_cohort_id": cohort.cohort_definition_id,
                "outcome_cohort_id": int(r["outcome_id"]),
                "age_group": cohort.age_group,
                "sex": cohort.sex,
                "days_prior_observation": cohort.days_prior_observation,
                "analysis_interval": r["analysis_interval"],
                "incidence_start_date": r["s"],
                "incidence_end_date": r["e"],
                "denominator_count": int(r["denominator_count"]),
                "outcome_count": events,
                "person_days": days,
                "person_years": years,
                "incidence_100000_pys": estimates.incidence_rate(events, years),
                "incidence_100000_pys_95ci_lower": lower,
                "incidence_100000_pys_95ci_upper": upper,
                "denominator_cohort_name": den.cohort_name(cohort.cohort_definition_id),
                "outcome_cohort_name": names[int(r["outcome_id"])],
                "analysis_outcome_washout": washout_text(spec.outcome_washout),
                "analysis_repeated_events": spec.repeated_events,
                "analysis_complete_database_intervals": spec.complete_database_intervals,
                "analysis_censor_cohort_name": censor_name,
                "strata_name": r["strata_name"],
                "strata_level": r["strata_level"],
            }
        )
    return pa.Table.from_pylist(out, schema=INCIDENCE_SCHEMA)


def _attrition_table(
    den: Denominator, names: dict[int, str], spec: IncidenceSpec, steps: list[dict], complete: list[dict]
) -> pa.Table:
    by_pair = {(int(r["denominator_cohort_id"]), int(r["outcome_id"])): r for r in steps}
    by_interval = {(int(r["denominator_cohort_id"]), int(r["outcome_id"]), r["analysis_interval"]): r for r in complete}
    reasons = [("1", "Starting analysis population")]
    if spec.censor is not None:
        reasons.append(("2", "Excluded by the censor cohort (censored before entry or before the outcome)"))
    reasons.append(("3", "Excluded due to prior event (do not pass outcome washout during study period)"))
    reasons.append(("4", "Not observed during the complete database interval"))
    out = []
    for cohort in den.cohorts:
        for outcome_id, outcome_name in names.items():
            pair = by_pair.get((cohort.cohort_definition_id, outcome_id), {})
            for unit in spec.interval:
                last = by_interval.get((cohort.cohort_definition_id, outcome_id, unit), {})
                previous = None
                for reason_id, (step, reason) in enumerate(reasons, start=1):
                    source = last if step == "4" else pair
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
