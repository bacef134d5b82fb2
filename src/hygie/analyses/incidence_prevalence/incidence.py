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
    outcome_attrition_rows,
)
from hygie.analyses.incidence_prevalence.intervals import Interval, study_intervals
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
    strata_d = strata_cols.replace(", ", ", d.")
    washed = f"""
washed AS (
  SELECT denominator_cohort_id, rid, subject_id, outcome_id, os, has_info, censor_ok{strata_cols},
         {wash_ok} AS wash_ok, {wash_cs} AS cs, ce
  FROM flagged)"""
    if spec.repeated_events or math.isinf(spec.outcome_washout):
        last = f"""{washed}
SELECT denominator_cohort_id, rid, subject_id, outcome_id, cs, ce, os{strata_cols}, has_info, censor_ok,
       wash_ok AS final_ok
FROM washed"""
    else:
        # Without repeated events: once a subject has an outcome, only their earliest piece(s) count. The windows
        # only look at the rows with outcome records (the others keep every piece that passed the washout).
        subject = "PARTITION BY denominator_cohort_id, outcome_id, subject_id"
        last = f"""{washed},
counted AS (
  SELECT *,
         sum(CASE WHEN wash_ok AND os IS NOT NULL THEN 1 ELSE 0 END) OVER ({subject}) AS events_post,
         min(CASE WHEN wash_ok THEN cs END) OVER ({subject}) AS first_cs
  FROM washed WHERE has_info)
SELECT denominator_cohort_id, rid, subject_id, outcome_id, cs, ce, os{strata_cols}, has_info, censor_ok,
       wash_ok AND (events_post = 0 OR cs = first_cs) AS final_ok
FROM counted
UNION ALL
SELECT denominator_cohort_id, rid, subject_id, outcome_id, cs, ce, os{strata_cols}, has_info, censor_ok,
       wash_ok AS final_ok
FROM washed WHERE NOT has_info"""
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
  SELECT d.denominator_cohort_id, d.rid, d.subject_id, d.cs, d.ce{strata_d},
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
  FROM censored),{last}"""


def pairs_sql(rows: str, one_row_per_person: bool = False) -> str:
    """Per (denominator cohort, outcome): the span of the counted pieces and the records and subjects with a
    piece surviving the censor cohort (2) and counting (3). A row without outcome records is a single piece:
    only the rows with outcome records are grouped per row. Plain aggregations, no ``count(DISTINCT)``, which
    Spark plans as an expensive expand."""
    pair = "denominator_cohort_id, outcome_id"
    first, last = "CASE WHEN final_ok THEN cs END", "CASE WHEN final_ok THEN ce END"
    c2, c3 = "CASE WHEN censor_ok THEN 1 ELSE 0 END", "CASE WHEN final_ok THEN 1 ELSE 0 END"
    per_row = f"""
    SELECT {pair}, subject_id, {first} AS first, {last} AS last, {c2} AS c2, {c3} AS c3
    FROM {rows} WHERE NOT has_info
    UNION ALL
    SELECT {pair}, subject_id, min({first}) AS first, max({last}) AS last, max({c2}) AS c2, max({c3}) AS c3
    FROM {rows} WHERE has_info GROUP BY {pair}, subject_id, rid"""
    if one_row_per_person:  # rows are persons
        return f"""
SELECT {pair}, min(first) AS first, max(last) AS last, sum(c2) AS r2, sum(c2) AS s2, sum(c3) AS r3, sum(c3) AS s3
FROM ({per_row}) per_row GROUP BY {pair}"""
    return f"""
SELECT {pair}, min(first) AS first, max(last) AS last,
       sum(n2) AS r2, sum(CASE WHEN n2 > 0 THEN 1 ELSE 0 END) AS s2,
       sum(n3) AS r3, sum(CASE WHEN n3 > 0 THEN 1 ELSE 0 END) AS s3
FROM (
  SELECT {pair}, subject_id, min(first) AS first, max(last) AS last, sum(c2) AS n2, sum(c3) AS n3
  FROM ({per_row}) per_row
  GROUP BY {pair}, subject_id) per_subject
GROUP BY {pair}"""


def aggregate_sql(
    context: StudyContext, rows: str, intervals: str, strata: Strata, one_row_per_person: bool = False
) -> str:
    """Per interval (``interval_id``) and stratum: subjects, person-days and outcomes of the counted pieces
    overlapping the interval.

    Subjects are counted without ``count(DISTINCT)``: a piece counts its subject in an interval unless an
    earlier piece of the subject (in the same stratum) also overlaps it — that is, unless the latest end of the
    earlier pieces (``prev_end``, one window over the pieces before they are joined to the intervals) falls on
    or after the interval's start."""
    d = context.runner.dialect
    partitions = strata.partitions()
    ends = "".join(
        f", max(ce) OVER (PARTITION BY denominator_cohort_id, outcome_id, subject_id{''.join(', ' + c for c in cols)} "
        f"ORDER BY cs, ce ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end_{k}"
        for k, cols in enumerate(partitions)
    )
    t_start = "CASE WHEN r.cs > i.s THEN r.cs ELSE i.s END"
    t_end = "CASE WHEN r.ce < i.e THEN r.ce ELSE i.e END"
    counted = f"(SELECT *{ends} FROM {rows} WHERE final_ok)"
    if one_row_per_person:
        # A row without outcome records is then its person's only piece: the windows only see the others.
        alone = "".join(f", CAST(NULL AS DATE) AS prev_end_{k}" for k in range(len(partitions)))
        counted = (
            f"(SELECT *{ends} FROM {rows} WHERE final_ok AND has_info "
            f"UNION ALL SELECT *{alone} FROM {rows} WHERE final_ok AND NOT has_info)"
        )
    join = (
        f"FROM {counted} r JOIN {intervals} i ON i.denominator_cohort_id = r.denominator_cohort_id "
        "AND i.outcome_id = r.outcome_id AND r.ce >= i.s AND r.cs <= i.e"
    )
    parts = []
    for group in strata.groups:
        name, level = strata.label_sql(group)
        extra = "".join(f", {c}" for c in strata.group_by(group))
        prev_end = f"r.prev_end_{partitions.index(strata.partition_of(group))}"
        parts.append(
            f"SELECT i.interval_id, {name} AS strata_name, {level} AS strata_level, "
            f"sum(CASE WHEN {prev_end} IS NULL OR {prev_end} < i.s THEN 1 ELSE 0 END) AS denominator_count, "
            f"sum({d.day_diff(t_start, t_end)} + 1) AS person_days, "
            f"sum(CASE WHEN r.os IS NOT NULL AND r.os >= {t_start} AND r.os <= {t_end} THEN 1 ELSE 0 END) "
            f"AS outcome_count {join} GROUP BY i.interval_id{extra}"
        )
    return " UNION ALL ".join(parts)


def span_sql(rows: str, spans: str) -> str:
    """Records and subjects with a counted piece overlapping the span of a unit's intervals (``interval_id``)."""
    return (
        "SELECT i.interval_id, count(DISTINCT r.subject_id) AS s4, count(DISTINCT r.rid) AS r4 "
        f"FROM {rows} r JOIN {spans} i ON i.denominator_cohort_id = r.denominator_cohort_id "
        "AND i.outcome_id = r.outcome_id AND r.ce >= i.s AND r.cs <= i.e WHERE r.final_ok GROUP BY i.interval_id"
    )


def estimate_incidence(context: StudyContext, den: Denominator, spec: IncidenceSpec) -> list[ResultTable]:
    runner = context.runner
    strata = strata_of(spec.strata, spec.include_overall_strata)
    outcomes = outcomes_of(context, spec.outcomes)
    censor = censor_id(context, spec)
    rows = context.temp_name("incidence_rows")
    intervals = context.temp_name("incidence_intervals")
    spans_table = context.temp_name("incidence_spans")
    runner.materialize(rows, incidence_rows_sql(context, den, outcomes, strata, spec, censor))
    try:
        steps = runner.query(pairs_sql(rows, den.one_row_per_person)).to_pylist()
        for r in steps:
            r["r1"], r["s1"] = den.counts(int(r["denominator_cohort_id"]))
        chosen: list[tuple[int, int, str, Interval]] = []
        spans: list[tuple[int, int, str, Interval]] = []  # units whose intervals do not cover every counted day
        complete = []
        for r in sorted(steps, key=lambda r: (r["denominator_cohort_id"], r["outcome_id"])):
            if r["first"] is None:
                continue
            pair = (int(r["denominator_cohort_id"]), int(r["outcome_id"]))
            for unit in spec.interval:
                cut = study_intervals(r["first"], r["last"], unit, spec.complete_database_intervals)
                chosen += [(*pair, unit, interval) for interval in cut]
                if not cut:
                    continue
                span = Interval(cut[0].start, cut[-1].end)
                if span == Interval(r["first"], r["last"]):  # every counted piece overlaps the span
                    complete.append({**_unit_key(*pair, unit), "r4": r["r3"], "s4": r["s3"]})
                else:
                    spans.append((*pair, unit, span))
        runner.register(intervals, intervals_table(chosen))
        results = runner.query(aggregate_sql(context, rows, intervals, strata, den.one_row_per_person)).to_pylist()
        if spans:
            runner.register(spans_table, intervals_table(spans))
            for r in runner.query(span_sql(rows, spans_table)).to_pylist():
                den_id, outcome_id, unit, _ = spans[int(r["interval_id"])]
                complete.append({**_unit_key(den_id, outcome_id, unit), "r4": r["r4"], "s4": r["s4"]})
    finally:
        runner.drop(rows)
        runner.drop(intervals)
        runner.drop(spans_table)
    counts = []
    for r in results:
        den_id, outcome_id, unit, interval = chosen[int(r["interval_id"])]
        counts.append(
            {**r, "denominator_cohort_id": den_id, "outcome_id": outcome_id, "analysis_interval": unit,
             "s": interval.start, "e": interval.end}
        )  # fmt: skip
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


def _unit_key(den_id: int, outcome_id: int, unit: str) -> dict:
    return {"denominator_cohort_id": den_id, "outcome_id": outcome_id, "analysis_interval": unit}


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
                reason_steps = [(reason, last if step == "4" else pair, step) for step, reason in reasons]
                out += outcome_attrition_rows(
                    den, cohort.cohort_definition_id, (outcome_id, outcome_name), unit, reason_steps
                )
    return pa.Table.from_pylist(out, schema=OUTCOME_ATTRITION_SCHEMA)
