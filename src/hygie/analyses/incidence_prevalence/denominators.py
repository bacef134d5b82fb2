"""Denominator cohorts (IncidencePrevalence's generateDenominatorCohortSet and its target variant), in SQL.

One candidate row per (person, observation period) — per (person, target record) for the target variant. For
each (age group, sex, days of prior observation) of the grid, a row enters at the latest of the birthday
starting the age group, the end of the prior observation and the study start, and leaves at the earliest of
the day before the birthday ending the age group, the end of observation (of the target record) and the study
end; it is kept when it enters on or before it leaves. Semantics: docs/incidence-prevalence.md.

The cohorts are computed once per study run and denominator name (``context.cache``) in three statements: the
candidate rows with the shared attrition steps; their expansion over the distinct (age group, prior observation)
requirements, kept in a temporary table of the runner; and one query of the attrition counts (per step level,
no ``count(DISTINCT)``) with each cohort's first entry and last exit. ``Denominator.rows`` selects the cohort
rows: ``rid`` (unique per row), ``cohort_definition_id, subject_id, cohort_start_date, cohort_end_date,
person_sex``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from dataclasses import dataclass, field

import pyarrow as pa

from hygie.analyses.base import ResultTable, StudyContext
from hygie.analyses.incidence_prevalence.spec import DenominatorSpec
from hygie.analyses.incidence_prevalence.sql_dates import birth_parts, birthday, date_literal, row_id
from hygie.errors import HygieError

MALE, FEMALE = 8507, 8532


@dataclass(frozen=True)
class DenominatorCohort:
    """One denominator cohort of a set: its id and its requirements."""

    cohort_definition_id: int
    min_age: int
    max_age: int
    sex: str  # Both, Male, Female
    days_prior_observation: int

    @property
    def age_group(self) -> str:
        return f"{self.min_age} to {self.max_age}"


@dataclass(frozen=True)
class Denominator:
    """A generated denominator set: the rows live in ``table`` (a temporary table of the study's runner)."""

    name: str
    spec: DenominatorSpec
    table: str
    cohorts: tuple[DenominatorCohort, ...]
    start_date: dt.date | None
    end_date: dt.date | None
    settings: pa.Table
    attrition: pa.Table
    spans: dict[int, tuple[dt.date, dt.date]] = field(default_factory=dict)  # cohort id -> (first entry, last exit)
    # No person has two rows in one cohort: rows count persons as they are (no deduplication needed).
    one_row_per_person: bool = False

    grid: str = ""  # SQL of the grid: cohort_definition_id, requirement_id, sex, ...

    @property
    def rows(self) -> str:
        """SQL of the cohort rows: the rows of ``table`` (one per candidate row and requirement) entering a cohort,
        for each cohort of the requirement and their sex; ``rid`` numbers (row, cohort) pairs uniquely."""
        width = len(self.cohorts) + 1
        return (
            f"(SELECT r.rid * {width} + g.cohort_definition_id AS rid, g.cohort_definition_id, r.subject_id, "
            "r.cohort_start_date, r.cohort_end_date, r.person_sex "
            f"FROM {self.table} r JOIN ({self.grid}) g ON g.requirement_id = r.requirement_id "
            "AND (g.sex = 'Both' OR g.sex = r.person_sex) WHERE r.lvl = 9)"
        )

    def counts(self, cohort_id: int) -> tuple[int, int]:
        """Records and subjects of one cohort (its last attrition step)."""
        steps = {(r["denominator_cohort_id"], r["reason_id"]): r for r in self.attrition.to_pylist()}
        last = max((r for (c, _), r in steps.items() if c == cohort_id), key=lambda r: r["reason_id"])
        return int(last["number_records"]), int(last["number_subjects"])

    def cohort_name(self, cohort_id: int) -> str:
        return f"{self.name}_{cohort_id}"

    def cohort(self, cohort_id: int) -> DenominatorCohort:
        return self.cohorts[cohort_id - 1]

    def result_tables(self) -> list[ResultTable]:
        return [
            ResultTable(
                "denominator_settings",
                self.settings,
                description="One row per denominator cohort: its age group, sex, prior observation and dates.",
            ),
            ResultTable(
                "denominator_attrition",
                self.attrition,
                counts=ATTRITION_COUNTS,
                plot="attrition",
                description="Persons and observation periods remaining after each requirement of the denominator.",
            ),
        ]


# A masked count must not be recoverable as (previous count - exclusions): the exclusions of a step are masked
# with its count. (Differences between rows remain a matter for secondary suppression.)
ATTRITION_COUNTS = {
    "number_records": ("excluded_records",),
    "number_subjects": ("excluded_subjects",),
    "excluded_records": (),
    "excluded_subjects": (),
}


def cohort_grid(spec: DenominatorSpec) -> tuple[DenominatorCohort, ...]:
    """The cohorts of a set, numbered over the nested grid: age group outermost, then sex, then prior
    observation. Without requirement interactions only the combinations varying one requirement at a time
    (the others at their first value) are kept, in the same order."""
    combos = []
    for (low, high), sex, prior in itertools.product(spec.age_groups, spec.sex, spec.days_prior_observation):
        if not spec.requirement_interactions:
            firsts = [
                (low, high) == tuple(spec.age_groups[0]),
                sex == spec.sex[0],
                prior == spec.days_prior_observation[0],
            ]
            if sum(firsts) < 2:
                continue
        combo = (low, high, sex, prior)
        if combo not in combos:
            combos.append(combo)
    return tuple(DenominatorCohort(i + 1, *combo) for i, combo in enumerate(combos))


def denominator(context: StudyContext, name: str, spec: DenominatorSpec) -> Denominator:
    """The denominator set ``name`` of the study, generated on first use and then reused."""
    key = ("denominator", name)
    cached = context.cache.get(key)
    if cached is None:
        cached = generate(context, name, spec)
        context.cache[key] = cached
    return cached


def study_period(context: StudyContext, spec: DenominatorSpec) -> tuple[dt.date | None, dt.date | None]:
    """The study period; a missing bound comes from *all* observation periods (persons absent from PERSON
    included, as in IncidencePrevalence)."""
    start, end = spec.cohort_date_range
    if start is None or end is None:
        row = context.runner.query(
            "SELECT min(observation_period_start_date) AS s, max(observation_period_end_date) AS e "
            "FROM observation_period"
        ).to_pylist()[0]
        start = start if start is not None else row["s"]
        end = end if end is not None else row["e"]
    return start, end


def generate(context: StudyContext, name: str, spec: DenominatorSpec) -> Denominator:
    runner = context.runner
    cohorts = cohort_grid(spec)
    start, end = study_period(context, spec)
    table = context.temp_name("denominator")
    # The same (age group, prior observation) serves every sex: dates are computed once per requirement.
    requirement_ids = {r: i for i, r in enumerate(dict.fromkeys(_requirement(c) for c in cohorts), start=1)}
    grid = _grid_sql(cohorts, requirement_ids)
    if start is None or end is None:  # no observation period at all
        runner.materialize(table, _empty_sql())
        attrition = _attrition_table(name, cohorts, {}, {}, spec)
        settings = _settings(name, cohorts, start, end, spec)
        return Denominator(name, spec, table, cohorts, start, end, settings, attrition, grid=grid)
    target_id = context.cohort(spec.target.cohort).cohort_definition_id if spec.target else None
    candidates = context.temp_name("denominator_candidates")
    try:
        runner.materialize(candidates, _candidates_sql(context, spec, start, end, target_id))
        runner.materialize(table, _requirements_sql(context, candidates, grid, spec, start, end, target_id))
        counts = runner.query(_counts_sql(candidates, table)).to_pylist()
    finally:
        runner.drop(candidates)
    common, by_requirement = _steps(counts)
    one_row_per_person = max((int(r["most"] or 0) for r in counts if r["level"] == "requirement"), default=0) <= 1
    by_id, spans = {}, {}
    for c in cohorts:
        sexes = ("Male", "Female") if c.sex == "Both" else (c.sex,)
        steps, first, last = _cohort_steps(by_requirement.get(requirement_ids[_requirement(c)], {}), sexes)
        by_id[c.cohort_definition_id] = steps
        if first is not None:
            spans[c.cohort_definition_id] = (first, last)
    return Denominator(
        name,
        spec,
        table,
        cohorts,
        start,
        end,
        _settings(name, cohorts, start, end, spec),
        _attrition_table(name, cohorts, common, by_id, spec),
        spans,
        one_row_per_person,
        grid,
    )


def _requirement(cohort: DenominatorCohort) -> tuple[int, int, int]:
    return (cohort.min_age, cohort.max_age, cohort.days_prior_observation)


def _grid_sql(cohorts: tuple[DenominatorCohort, ...], requirement_ids: dict[tuple[int, int, int], int]) -> str:
    """The cohorts of the grid as SQL literals (a few rows: no table to register)."""
    return " UNION ALL ".join(
        f"SELECT CAST({c.cohort_definition_id} AS BIGINT) AS cohort_definition_id, "
        f"CAST({requirement_ids[_requirement(c)]} AS BIGINT) AS requirement_id, "
        f"CAST({c.min_age} AS BIGINT) AS min_age, CAST({c.max_age + 1} AS BIGINT) AS max_age_plus_one, "
        f"'{c.sex}' AS sex, CAST({c.days_prior_observation} AS BIGINT) AS prior_days"
        for c in cohorts
    )


def _empty_sql() -> str:
    return (
        "SELECT CAST(NULL AS BIGINT) AS rid, CAST(NULL AS BIGINT) AS requirement_id, "
        "CAST(NULL AS BIGINT) AS subject_id, CAST(NULL AS STRING) AS person_sex, CAST(NULL AS INT) AS lvl, "
        "CAST(NULL AS DATE) AS cohort_start_date, CAST(NULL AS DATE) AS cohort_end_date "
        "FROM (SELECT 1 AS x) t WHERE 1 = 0"
    )


def _candidates_sql(
    context: StudyContext, spec: DenominatorSpec, start: dt.date, end: dt.date, target_id: int | None
) -> str:
    """Candidate rows with ``lvl``, the last of the steps every cohort shares that they pass (1: starting
    population; 2: year of birth; 3: sex; 4: age possible from the year of birth; 5: observation overlapping
    the study period), the date of birth as INT parts (``yob``, ``mob``, ``dday``) and the sex."""
    d = context.runner.dialect
    low = min(c[0] for c in spec.age_groups)
    high = max(c[1] for c in spec.age_groups)
    study_start, study_end = date_literal(start), date_literal(end)
    year, month, day = birth_parts("p.year_of_birth", "p.month_of_birth", "p.day_of_birth")
    person = f"p.person_id AS subject_id, p.gender_concept_id, {year} AS yob, {month} AS mob, {day} AS dday"
    if target_id is None:
        source = (
            f"SELECT {person}, op.observation_period_start_date AS op_start, "
            "op.observation_period_end_date AS op_end, CAST(NULL AS DATE) AS t_start "
            "FROM person p LEFT JOIN observation_period op ON op.person_id = p.person_id"
        )
    else:
        # Only observation periods containing a target entry; they end when the target record ends.
        source = (
            f"SELECT {person}, op.observation_period_start_date AS op_start, "
            "CASE WHEN op.person_id IS NULL THEN NULL "
            "ELSE least(op.observation_period_end_date, t.cohort_end_date) END AS op_end, "
            "t.cohort_start_date AS t_start "
            f"FROM person p JOIN {context.cohort_table} t ON t.subject_id = p.person_id "
            f"AND t.cohort_definition_id = {int(target_id)} "
            "LEFT JOIN observation_period op ON op.person_id = p.person_id "
            "AND t.cohort_start_date >= op.observation_period_start_date "
            "AND t.cohort_start_date <= op.observation_period_end_date"
        )
    last_day = d.add_days(birthday("yob", "mob", "dday", high + 1), -1)
    age_ok = f"{birthday('yob', 'mob', 'dday', low)} <= {study_end} AND {last_day} >= {study_start}"
    observed = f"op_start IS NOT NULL AND op_start <= {study_end} AND op_end >= {study_start}"
    # A NULL condition (a missing date) fails its step, as a filter would.
    level = (
        "CASE WHEN yob IS NULL THEN 1 "
        f"WHEN gender_concept_id IS NULL OR gender_concept_id NOT IN ({MALE}, {FEMALE}) THEN 2 "
        f"WHEN NOT coalesce({age_ok}, FALSE) THEN 3 WHEN NOT coalesce({observed}, FALSE) THEN 4 ELSE 5 END"
    )
    # Ages reached in the first and last years of observation in the study period (see _requirements_sql).
    first_year = d.year(f"greatest(op_start, {study_start})")
    last_year = d.year(f"least(op_end, {study_end})")
    return (
        f"SELECT c.subject_id, c.yob, c.mob, c.dday, c.op_start, c.op_end, c.t_start, {level} AS lvl, "
        f"CASE WHEN gender_concept_id = {MALE} THEN 'Male' WHEN gender_concept_id = {FEMALE} THEN 'Female' END "
        f"AS person_sex, {first_year} - yob AS first_age, {last_year} - yob AS last_age FROM ({source}) c"
    )


def _requirements_sql(
    context: StudyContext,
    candidates: str,
    grid: str,
    spec: DenominatorSpec,
    start: dt.date,
    end: dt.date,
    target_id: int | None,
) -> str:
    """Each candidate row that passed the shared steps, for each (age group, prior observation) whose age
    requirement it meets during the study period (step 6), with ``lvl``: 6, 7 when it also meets the prior
    observation requirement, 9 when it then enters a cohort of the requirement's sex (the target criteria and
    the observation left do not depend on sex); and its entry and exit dates.

    Whole years of birth discard most (row, requirement) pairs before any date is computed: a birthday of age
    ``a`` falls in year ``yob + a``, so an age group can only be met if ``yob + min_age`` is not after the
    last year of observation and ``yob + max_age + 1`` not before the first."""
    d = context.runner.dialect
    study_start, study_end = date_literal(start), date_literal(end)
    age_start = birthday("c.yob", "c.mob", "c.dday", "g.min_age")
    age_end = d.add_days(birthday("c.yob", "c.mob", "c.dday", "g.max_age_plus_one"), -1)
    # Requirements apply to the rows at level 5 (all shared steps passed): an equality the engines hash-join
    # on, the ages being checked on the pairs it makes and the dates computed on the pairs kept.
    requirements = f"SELECT DISTINCT 5 AS lvl, requirement_id, min_age, max_age_plus_one, prior_days FROM ({grid}) g"
    dated = (
        "SELECT g.requirement_id, c.subject_id, c.person_sex, c.t_start, c.op_start, g.prior_days, "
        f"{age_start} AS age_start, least({age_end}, c.op_end, {study_end}) AS ce "
        f"FROM {candidates} c JOIN ({requirements}) g "
        "ON g.lvl = c.lvl AND g.min_age <= c.last_age AND g.max_age_plus_one >= c.first_age"
    )
    aged = (
        "SELECT requirement_id, subject_id, person_sex, t_start, ce, "
        f"greatest(age_start, {d.add_days('op_start', 'prior_days')}, {study_start}) AS prior_start "
        f"FROM ({dated}) r "
        f"WHERE greatest(age_start, op_start, {study_start}) <= ce"  # rows failing only count as not passing s6
    )
    fs, fe = "r.prior_start", "r.ce"
    entry_ok = "TRUE"
    if target_id is not None and spec.target is not None:
        if spec.target.requirements_at_entry:
            entry_ok, fs = "r.prior_start <= r.t_start", "r.t_start"
        else:
            fs = "greatest(r.prior_start, r.t_start)"
        tar_start, tar_end = spec.target.time_at_risk
        if not math.isinf(tar_end):
            fe = f"least({fe}, {d.add_days('r.t_start', int(tar_end))})"
        if tar_start != 0:
            fs = d.add_days("r.t_start", int(tar_start))
    return (
        f"SELECT {row_id(d)} AS rid, r.requirement_id, r.subject_id, r.person_sex, "
        f"CASE WHEN r.prior_start <= r.ce AND {entry_ok} AND {fs} <= {fe} THEN 9 "
        "WHEN r.prior_start <= r.ce THEN 7 ELSE 6 END AS lvl, "
        f"{fs} AS cohort_start_date, {fe} AS cohort_end_date FROM ({aged}) r"
    )


def _levels(name: str, source: str, dates: bool) -> str:
    """Records and subjects per (``k``, ``sex``, ``lvl``): a record counts at its own level, a subject at the
    highest level of their records (steps are nested, so counting everything at or above a step gives the
    records and distinct subjects passing it, without ``count(DISTINCT)``, which Spark plans as an expensive
    expand). With ``dates``, the first entry and last exit of the rows at level 9; ``most``, the largest number
    of rows at level 9 of one subject."""
    first, last = "NULL", "NULL"
    if dates:
        first = "min(CASE WHEN lvl = 9 THEN cohort_start_date END)"
        last = "max(CASE WHEN lvl = 9 THEN cohort_end_date END)"
    return (
        f"SELECT '{name}' AS level, k, sex, lvl, count(*) AS records, CAST(0 AS BIGINT) AS subjects, "
        f"CAST({first} AS DATE) AS first, CAST({last} AS DATE) AS last, CAST(0 AS BIGINT) AS most "
        f"FROM ({source}) s GROUP BY k, sex, lvl "
        f"UNION ALL SELECT '{name}' AS level, k, sex, lvl, CAST(0 AS BIGINT) AS records, count(*) AS subjects, "
        "CAST(NULL AS DATE) AS first, CAST(NULL AS DATE) AS last, max(n9) AS most "
        f"FROM (SELECT k, sex, subject_id, max(lvl) AS lvl, sum(CASE WHEN lvl = 9 THEN 1 ELSE 0 END) AS n9 "
        f"FROM ({source}) s GROUP BY k, sex, subject_id) t GROUP BY k, sex, lvl"
    )


def _counts_sql(candidates: str, requirements: str) -> str:
    """Records and subjects per level: the shared steps, then per requirement and sex the age, prior
    observation and final steps; and the first entry and last exit per requirement and sex."""
    shared = f"SELECT CAST(0 AS BIGINT) AS k, CAST('' AS STRING) AS sex, subject_id, lvl FROM {candidates}"
    per_requirement = (
        "SELECT requirement_id AS k, person_sex AS sex, subject_id, lvl, cohort_start_date, cohort_end_date "
        f"FROM {requirements}"
    )
    return f"{_levels('shared', shared, False)} UNION ALL {_levels('requirement', per_requirement, True)}"


def _at_least(by_lvl: dict[int, list], step: int, i: int) -> int:
    return sum(v[i] for lvl, v in by_lvl.items() if lvl >= step)


def _steps(counts: list[dict]) -> tuple[dict, dict[int, dict[str, dict[int, list]]]]:
    """The ``s<step>_records`` and ``s<step>_subjects`` of the shared steps, and per requirement and sex the
    records, subjects, first entry and last exit at each level."""
    shared: dict[int, list] = {}
    by_requirement: dict[int, dict[str, dict[int, list]]] = {}
    for r in counts:
        if r["level"] == "shared":
            cell = shared.setdefault(int(r["lvl"]), [0, 0, None, None])
        else:
            cell = by_requirement.setdefault(int(r["k"]), {}).setdefault(r["sex"], {})
            cell = cell.setdefault(int(r["lvl"]), [0, 0, None, None])
        cell[0] += int(r["records"])
        cell[1] += int(r["subjects"])
        if r["first"] is not None:
            cell[2], cell[3] = r["first"], r["last"]
    common = {}
    if shared:  # no candidate at all: no counts (the attrition shows zeros)
        for step in range(1, 6):
            common[f"s{step}_records"] = _at_least(shared, step, 0)
            common[f"s{step}_subjects"] = _at_least(shared, step, 1)
    return common, by_requirement


def _cohort_steps(
    by_sex: dict[str, dict[int, list]], sexes: tuple[str, ...]
) -> tuple[dict[str, int], dt.date | None, dt.date | None]:
    """Steps 6 to 9 of a cohort from its requirement's levels: the age and prior observation steps count
    every sex (they come before the sex step), the sex and final steps only the cohort's sexes."""
    steps: dict[str, int] = {}
    for step, level, own in ((6, 6, False), (7, 7, False), (8, 7, True), (9, 9, True)):
        chosen = [by_lvl for sex, by_lvl in by_sex.items() if sex in sexes or not own]
        steps[f"s{step}_records"] = sum(_at_least(by_lvl, level, 0) for by_lvl in chosen)
        steps[f"s{step}_subjects"] = sum(_at_least(by_lvl, level, 1) for by_lvl in chosen)
    ends = [v for sex in sexes for v in [by_sex.get(sex, {}).get(9)] if v is not None and v[2] is not None]
    if not ends:
        return steps, None, None
    return steps, min(v[2] for v in ends), max(v[3] for v in ends)


COMMON_REASONS = (
    ("s1", "Starting population"),
    ("s2", "Missing year of birth"),
    ("s3", "Missing sex"),
    ("s4", "Cannot satisfy age criteria during the study period based on year of birth"),
    ("s5", "No observation time available during study period"),
)
COHORT_REASONS = (
    ("s6", "Doesn't satisfy age criteria during the study period"),
    ("s7", "Prior history requirement not fulfilled during study period"),
    ("s8", "Not {sex}"),
    ("s9", "No observation time available after applying age, prior observation and, if applicable, target criteria"),
)


def _attrition_table(
    name: str, cohorts: tuple[DenominatorCohort, ...], common: dict, by_id: dict, spec: DenominatorSpec
) -> pa.Table:
    rows = []
    for cohort in cohorts:
        own = by_id.get(cohort.cohort_definition_id, {})
        counts = {**common, **{k: v for k, v in own.items() if v is not None}}
        steps = []
        for reason_id, (flag, reason) in enumerate(COMMON_REASONS + COHORT_REASONS, start=1):
            if flag == "s8" and cohort.sex == "Both":
                continue  # no sex requirement, no step
            steps.append((reason_id, reason.format(sex=cohort.sex), flag))
        numbers = attrition_numbers(
            [(int(counts.get(f"{flag}_records") or 0), int(counts.get(f"{flag}_subjects") or 0)) for *_, flag in steps]
        )
        for (reason_id, reason, _), step_numbers in zip(steps, numbers, strict=True):
            rows.append(
                {
                    "denominator_cohort_id": cohort.cohort_definition_id,
                    "denominator_cohort_name": f"{name}_{cohort.cohort_definition_id}",
                    "reason_id": reason_id,
                    "reason": reason,
                    **step_numbers,
                }
            )
    return pa.Table.from_pylist(rows, schema=ATTRITION_SCHEMA)


def attrition_numbers(counts: list[tuple[int, int]]) -> list[dict[str, int]]:
    """The number and excluded columns of successive attrition steps, from (records, subjects) per step:
    exclusions are the differences to the step before (none at the first)."""
    previous = counts[:1] + counts[:-1]
    return [
        {
            "number_records": records,
            "number_subjects": subjects,
            "excluded_records": before_records - records,
            "excluded_subjects": before_subjects - subjects,
        }
        for (records, subjects), (before_records, before_subjects) in zip(counts, previous, strict=True)
    ]


ATTRITION_SCHEMA = pa.schema(
    [
        ("denominator_cohort_id", pa.int64()),
        ("denominator_cohort_name", pa.string()),
        ("reason_id", pa.int64()),
        ("reason", pa.string()),
        ("number_records", pa.int64()),
        ("number_subjects", pa.int64()),
        ("excluded_records", pa.int64()),
        ("excluded_subjects", pa.int64()),
    ]
)


# The attrition of an incidence or prevalence analysis: per denominator cohort, outcome and interval.
OUTCOME_ATTRITION_SCHEMA = pa.schema(
    [
        ("denominator_cohort_id", pa.int64()),
        ("outcome_cohort_id", pa.int64()),
        ("denominator_cohort_name", pa.string()),
        ("outcome_cohort_name", pa.string()),
        ("analysis_interval", pa.string()),
        ("reason_id", pa.int64()),
        ("reason", pa.string()),
        ("number_records", pa.int64()),
        ("number_subjects", pa.int64()),
        ("excluded_records", pa.int64()),
        ("excluded_subjects", pa.int64()),
    ]
)


def outcome_attrition_rows(
    den: Denominator, cohort_id: int, outcome: tuple[int, str], interval: str, steps: list[tuple[str, dict, str]]
) -> list[dict]:
    """The attrition rows of one denominator cohort, outcome and interval. ``steps``: for each reason in order,
    the reason, the counts row it reads and the step key of its ``r<step>``/``s<step>`` columns."""
    numbers = attrition_numbers(
        [(int(source.get(f"r{step}") or 0), int(source.get(f"s{step}") or 0)) for _, source, step in steps]
    )
    return [
        {
            "denominator_cohort_id": cohort_id,
            "outcome_cohort_id": outcome[0],
            "denominator_cohort_name": den.cohort_name(cohort_id),
            "outcome_cohort_name": outcome[1],
            "analysis_interval": interval,
            "reason_id": reason_id,
            "reason": reason,
            **step_numbers,
        }
        for reason_id, ((reason, _, _), step_numbers) in enumerate(zip(steps, numbers, strict=True), start=1)
    ]


def _settings(
    name: str,
    cohorts: tuple[DenominatorCohort, ...],
    start: dt.date | None,
    end: dt.date | None,
    spec: DenominatorSpec,
) -> pa.Table:
    target = spec.target
    tar = None
    if target is not None:
        low, high = target.time_at_risk
        tar = f"{int(low)} to {'inf' if math.isinf(high) else int(high)}"
    return pa.Table.from_pylist(
        [
            {
                "denominator_cohort_id": c.cohort_definition_id,
                "denominator_cohort_name": f"{name}_{c.cohort_definition_id}",
                "denominator_name": name,
                "age_group": c.age_group,
                "min_age": c.min_age,
                "max_age": c.max_age,
                "sex": c.sex,
                "days_prior_observation": c.days_prior_observation,
                "start_date": start,
                "end_date": end,
                "requirement_interactions": spec.requirement_interactions,
                "target_cohort_name": target.cohort if target else None,
                "requirements_at_entry": target.requirements_at_entry if target else None,
                "time_at_risk": tar,
            }
            for c in cohorts
        ],
        schema=pa.schema(
            [
                ("denominator_cohort_id", pa.int64()),
                ("denominator_cohort_name", pa.string()),
                ("denominator_name", pa.string()),
                ("age_group", pa.string()),
                ("min_age", pa.int64()),
                ("max_age", pa.int64()),
                ("sex", pa.string()),
                ("days_prior_observation", pa.int64()),
                ("start_date", pa.date32()),
                ("end_date", pa.date32()),
                ("requirement_interactions", pa.bool_()),
                ("target_cohort_name", pa.string()),
                ("requirements_at_entry", pa.bool_()),
                ("time_at_risk", pa.string()),
            ]
        ),
    )


def check_known(study_denominators: dict, name: str) -> DenominatorSpec:
    """The study's denominator ``name``, or an error listing the ones it defines."""
    spec = study_denominators.get(name)
    if spec is None:
        known = ", ".join(sorted(study_denominators)) or "none"
        raise HygieError(f"unknown denominator {name!r} (the study defines: {known})")
    if not isinstance(spec, DenominatorSpec):
        raise HygieError(f"denominator {name!r} is not a denominator definition")
    return spec
