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
    outcome_attrition_rows,
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


def rows_sql(context: StudyContext, den: Denominator, strata: Strata) -> str:
    """The denominator rows with their strata, and what counting distinct persons and records needs without
    ``count(DISTINCT)``: ``prev_end_<k>``, the latest exit of the person's earlier rows (ordered by entry, then
    exit) within partition ``k`` of the strata (``Strata.partitions``; ``prev_end`` over the whole cohort), and
    ``first_record``, false for a row identical to an earlier one (same person, entry and exit). When no person
    has two rows in a cohort (``Denominator.one_row_per_person``), no window is needed."""
    rows = denominator_rows_sql(context, den, strata)
    if den.one_row_per_person:  # every row is its person's only one: nothing to deduplicate
        ends = "".join(f", CAST(NULL AS DATE) AS prev_end_{k}" for k in range(len(strata.partitions())))
        return f"SELECT r.*, CAST(NULL AS DATE) AS prev_end{ends}, TRUE AS first_record FROM ({rows}) r"
    base = "PARTITION BY denominator_cohort_id, subject_id"
    earlier = "ORDER BY cs, ce ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING"
    ends = "".join(
        f", max(ce) OVER ({base}{''.join(', ' + c for c in cols)} {earlier}) AS prev_end_{k}"
        for k, cols in enumerate(strata.partitions())
    )
    return f"""
SELECT r.*, max(ce) OVER ({base} {earlier}) AS prev_end{ends},
       NOT coalesce(lag(cs) OVER ({base} ORDER BY cs, ce) = cs AND lag(ce) OVER ({base} ORDER BY cs, ce) = ce, FALSE)
         AS first_record
FROM ({rows}) r"""


def counts_sql(context: StudyContext, spec: PrevalenceSpec, strata: Strata, rows: str, intervals: str) -> str:
    """Per interval (``interval_id``) and stratum: the persons (or records) of the rows counting for the
    interval (``kind`` 'denominator') and those with an outcome overlapping the row within the interval
    (``kind`` 'outcome').

    Outcomes are matched to the denominator rows once (``seg``: the part of each outcome record inside the
    row), and only those parts are joined to the intervals. A person counts in an interval unless an earlier
    row of theirs (in the same stratum) also counts there, i.e. unless ``prev_end`` reaches the interval's
    start (its end, with full contribution: an earlier row counting there covers it too)."""
    full = spec.type == "period" and spec.full_contribution
    outcomes = outcomes_of(context, spec.outcomes)
    strata_cols = "".join(f", r.{c}" for c in strata.columns.values())
    clip_start = "CASE WHEN r.cs > i.s THEN r.cs ELSE i.s END"
    joined = (
        f"FROM {rows} r JOIN {intervals} i ON i.denominator_cohort_id = r.denominator_cohort_id AND {_overlap(spec)}"
    )
    cases = f"""(
  SELECT i.interval_id, r.subject_id, {clip_start} AS ccs{strata_cols}
  FROM (SELECT r.*, o.outcome_id, CASE WHEN o.os > r.cs THEN o.os ELSE r.cs END AS ss,
               CASE WHEN o.oe < r.ce THEN o.oe ELSE r.ce END AS se
        FROM {rows} r JOIN ({outcome_rows_sql(context, outcomes)}) o
          ON o.subject_id = r.subject_id AND o.os <= r.ce AND o.oe >= r.cs) r
  JOIN {intervals} i ON i.denominator_cohort_id = r.denominator_cohort_id AND i.outcome_id = r.outcome_id
   AND {_overlap(spec)} AND r.ss <= i.e AND r.se >= i.s)"""
    parts = []
    for group in strata.groups:
        name, level = strata.label_sql(group, "c")
        keys = "c.interval_id" + "".join(f", {col}" for col in strata.group_by(group, "c"))
        labels = f"{name} AS strata_name, {level} AS strata_level"
        if spec.level == "person":
            prev_end = f"r.prev_end_{strata.partitions().index(strata.partition_of(group))}"
            first = f"CASE WHEN {prev_end} IS NULL OR {prev_end} < {'i.e' if full else 'i.s'} THEN 1 ELSE 0 END"
            parts.append(
                f"SELECT 'denominator' AS kind, c.interval_id, {labels}, sum(c.first) AS n "
                f"FROM (SELECT i.interval_id, {first} AS first{strata_cols} {joined}) c GROUP BY {keys}"
            )
            unique = f"SELECT DISTINCT interval_id, subject_id{strata_cols.replace('r.', '')} FROM {cases} r"
        else:
            # A record is a person's row clipped to the interval, with its strata: identical ones count once.
            parts.append(
                f"SELECT 'denominator' AS kind, c.interval_id, {labels}, count(*) AS n "
                f"FROM (SELECT DISTINCT i.interval_id, r.subject_id, {clip_start} AS ccs{strata_cols} {joined}) c "
                f"GROUP BY {keys}"
            )
            unique = f"SELECT DISTINCT interval_id, subject_id, ccs{strata_cols.replace('r.', '')} FROM {cases} r"
        parts.append(
            f"SELECT 'outcome' AS kind, c.interval_id, {labels}, count(*) AS n FROM ({unique}) c GROUP BY {keys}"
        )
    return " UNION ALL ".join(parts)


def attrition_sql(spec: PrevalenceSpec, rows: str, intervals: str) -> str:
    """Per (denominator cohort, interval unit): records and subjects overlapping the span of the intervals (2)
    and, with full contribution, covering an interval (3). Records are distinct (person, entry, exit)."""
    parts = [
        f"""
SELECT 'span' AS kind, b.denominator_cohort_id, b.analysis_interval,
       sum(CASE WHEN r.first_record THEN 1 ELSE 0 END) AS records,
       sum(CASE WHEN r.prev_end IS NULL OR r.prev_end < b.s THEN 1 ELSE 0 END) AS subjects
FROM {rows} r JOIN (SELECT denominator_cohort_id, analysis_interval, min(s) AS s, max(e) AS e FROM {intervals}
                    GROUP BY denominator_cohort_id, analysis_interval) b
  ON b.denominator_cohort_id = r.denominator_cohort_id AND r.ce >= b.s AND r.cs <= b.e
GROUP BY b.denominator_cohort_id, b.analysis_interval"""
    ]
    if spec.type == "period" and spec.full_contribution:
        parts.append(
            f"""
SELECT 'covering' AS kind, denominator_cohort_id, analysis_interval,
       sum(CASE WHEN first_record THEN 1 ELSE 0 END) AS records, count(DISTINCT subject_id) AS subjects
FROM (SELECT DISTINCT i.denominator_cohort_id, i.analysis_interval, r.rid, r.subject_id, r.first_record
      FROM {rows} r JOIN (SELECT DISTINCT denominator_cohort_id, analysis_interval, s, e FROM {intervals}) i
        ON i.denominator_cohort_id = r.denominator_cohort_id AND r.cs <= i.s AND r.ce >= i.e) c
GROUP BY denominator_cohort_id, analysis_interval"""
        )
    return " UNION ALL ".join(parts)


def estimate_prevalence(context: StudyContext, den: Denominator, spec: PrevalenceSpec) -> list[ResultTable]:
    runner = context.runner
    strata = strata_of(spec.strata, spec.include_overall_strata)
    outcomes = outcomes_of(context, spec.outcomes)
    names = {o.cohort_definition_id: o.name for o in outcomes}
    starting = {}
    for den_id in sorted(den.spans):
        records, subjects = den.counts(den_id)
        starting[den_id] = {"r1": records, "s1": subjects}
    chosen = [
        (den_id, o.cohort_definition_id, unit, interval)
        for den_id, (first, last) in sorted(den.spans.items())
        for o in outcomes
        for unit in spec.interval
        for interval in prevalence_intervals(spec, unit, first, last)
    ]
    rows = context.temp_name("prevalence_rows")
    intervals = context.temp_name("prevalence_intervals")
    runner.register(intervals, intervals_table(chosen))
    try:
        runner.materialize(rows, rows_sql(context, den, strata))
        found = runner.query(counts_sql(context, spec, strata, rows, intervals)).to_pylist()
        reached = runner.query(attrition_sql(spec, rows, intervals)).to_pylist()
    finally:
        runner.drop(rows)
        runner.drop(intervals)
    cells: dict[tuple, dict] = {}
    for r in found:
        den_id, outcome_id, unit, interval = chosen[int(r["interval_id"])]
        cell = cells.setdefault(
            (int(r["interval_id"]), r["strata_name"], r["strata_level"]),
            {"denominator_cohort_id": den_id, "outcome_id": outcome_id, "analysis_interval": unit,
             "s": interval.start, "e": interval.end, "strata_name": r["strata_name"],
             "strata_level": r["strata_level"], "denominator_count": 0, "outcome_count": 0},
        )  # fmt: skip
        cell[f"{r['kind']}_count"] = int(r["n"])
    steps: dict[tuple, dict] = {}
    for r in reached:
        step = "2" if r["kind"] == "span" else "3"
        for o in outcomes:  # the intervals do not depend on the outcome
            key = (int(r["denominator_cohort_id"]), o.cohort_definition_id, r["analysis_interval"])
            steps.setdefault(
                key, dict(zip(("denominator_cohort_id", "outcome_id", "analysis_interval"), key, strict=True))
            )
            steps[key].update({f"r{step}": r["records"], f"s{step}": r["subjects"]})
    return [
        ResultTable(
            "prevalence",
            _prevalence_table(den, names, spec, chosen, list(cells.values())),
            counts=PREVALENCE_COUNTS,
            plot="prevalence",
            structure=PREVALENCE_STRUCTURE,
            description=f"{spec.type.capitalize()} prevalence by denominator cohort, outcome, interval and stratum "
            "(Wilson 95% confidence intervals).",
        ),
        ResultTable(
            "prevalence_attrition",
            _attrition_table(den, names, spec, starting, list(steps.values())),
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
                reason_steps = [(reason, source, step) for step, reason in reasons]
                out += outcome_attrition_rows(
                    den, cohort.cohort_definition_id, (outcome_id, outcome_name), unit, reason_steps
                )
    return pa.Table.from_pylist(out, schema=OUTCOME_ATTRITION_SCHEMA)
