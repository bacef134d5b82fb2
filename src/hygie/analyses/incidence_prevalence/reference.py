"""The oracle: a deliberately simple, row-by-row implementation of docs/incidence-prevalence.md §1 in Python.

It loops over persons, observation periods, outcome records and days, following the steps of the semantics
literally; the SQL engine must give the same result tables (property tests, spec tests). It is meant for
small populations only. The formatting of the result tables (labels, rounding, confidence intervals) is
shared with the engine; what this module checks is *who* counts, on *which days*.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hygie.analyses.incidence_prevalence import incidence as engine_incidence
from hygie.analyses.incidence_prevalence import prevalence as engine_prevalence
from hygie.analyses.incidence_prevalence.denominators import (
    FEMALE,
    MALE,
    Denominator,
    DenominatorCohort,
    _attrition_table,
    _settings,
    cohort_grid,
)
from hygie.analyses.incidence_prevalence.intervals import add_years, study_intervals
from hygie.analyses.incidence_prevalence.spec import DenominatorSpec, IncidenceSpec, PrevalenceSpec

ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Person:
    person_id: int
    gender_concept_id: int
    year_of_birth: int | None
    month_of_birth: int | None
    day_of_birth: int | None


@dataclass
class Population:
    persons: list[Person]
    periods: list[tuple[int, dt.date, dt.date]]  # (person_id, start, end)
    cohorts: dict[str, tuple[int, list[tuple[int, dt.date, dt.date]]]] = field(
        default_factory=dict
    )  # name -> (id, rows)

    def records(self, name: str, person_id: int) -> list[tuple[dt.date, dt.date]]:
        return sorted((s, e) for pid, s, e in self.cohorts[name][1] if pid == person_id)


def days(first: dt.date, last: dt.date) -> Iterator[dt.date]:
    day = first
    while day <= last:
        yield day
        day += ONE_DAY


# -- denominators -----------------------------------------------------------------------------------------------


@dataclass
class DenominatorResult:
    spec: DenominatorSpec
    cohorts: tuple[DenominatorCohort, ...]
    rows: list[tuple[int, int, dt.date, dt.date]]  # (cohort id, subject, start, end)
    start: dt.date | None
    end: dt.date | None
    common: dict[str, int]
    by_id: dict[int, dict[str, int]]

    def attrition(self, name: str) -> list[dict[str, Any]]:
        return _attrition_table(name, self.cohorts, self.common, self.by_id, self.spec).to_pylist()

    def as_engine(self, name: str) -> Denominator:
        """The same object the engine returns (its table name is meaningless here)."""
        return Denominator(
            name,
            self.spec,
            "",
            self.cohorts,
            self.start,
            self.end,
            _settings(name, self.cohorts, self.start, self.end, self.spec),
            _attrition_table(name, self.cohorts, self.common, self.by_id, self.spec),
        )


def _counter() -> dict[str, Any]:
    return {"records": 0, "subjects": set()}


def denominator(pop: Population, spec: DenominatorSpec) -> DenominatorResult:
    cohorts = cohort_grid(spec)
    start, end = spec.cohort_date_range
    if start is None:
        start = min((s for _, s, _ in pop.periods), default=None)
    if end is None:
        end = max((e for _, _, e in pop.periods), default=None)
    steps: dict[str, dict[str, Any]] = defaultdict(_counter)
    per_cohort: dict[int, dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(_counter))
    rows = []
    low = min(a for a, _ in spec.age_groups)
    high = max(b for _, b in spec.age_groups)
    target_name = spec.target.cohort if spec.target else None
    for person in pop.persons if start is not None and end is not None else []:  # no observation at all: nobody
        # one candidate per observation period, or per target record (with the period containing its start)
        if target_name is None:
            periods = [(s, e) for pid, s, e in pop.periods if pid == person.person_id] or [(None, None)]
            candidates = [(s, e, None) for s, e in periods]
        else:
            candidates = []
            for t_start, t_end in pop.records(target_name, person.person_id):
                containing = [(s, e) for pid, s, e in pop.periods if pid == person.person_id and s <= t_start <= e]
                for s, e in containing or [(None, None)]:
                    candidates.append((s, None if e is None else min(e, t_end), t_start))
        for op_start, op_end, t_start in candidates:

            def passed(step: str, counter: dict[str, Any] = steps, pid: int = person.person_id) -> None:
                counter[step]["records"] += 1
                counter[step]["subjects"].add(pid)

            passed("s1")
            if person.year_of_birth is None:
                continue
            passed("s2")
            if person.gender_concept_id not in (MALE, FEMALE):
                continue
            passed("s3")
            sex = "Male" if person.gender_concept_id == MALE else "Female"
            dob = dt.date(person.year_of_birth, person.month_of_birth or 1, person.day_of_birth or 1)
            if start is None or end is None:
                continue
            if not (add_years(dob, low) <= end and add_years(dob, high + 1) - ONE_DAY >= start):
                continue
            passed("s4")
            if op_start is None or op_start > end or op_end < start:
                continue
            passed("s5")
            for cohort in cohorts:
                counter = per_cohort[cohort.cohort_definition_id]
                age_start = add_years(dob, cohort.min_age)
                age_end = add_years(dob, cohort.max_age + 1) - ONE_DAY
                leave = min(age_end, op_end, end)
                if max(age_start, op_start, start) > leave:
                    continue
                passed("s6", counter)
                enter = max(age_start, op_start + dt.timedelta(days=cohort.days_prior_observation), start)
                if enter > leave:
                    continue
                passed("s7", counter)
                if cohort.sex != "Both" and cohort.sex != sex:
                    continue
                passed("s8", counter)
                if t_start is not None and spec.target is not None:
                    if spec.target.requirements_at_entry:
                        if enter > t_start:
                            continue
                        enter = t_start
                    else:
                        enter = max(enter, t_start)
                    tar_start, tar_end = spec.target.time_at_risk
                    if not math.isinf(tar_end):
                        leave = min(leave, t_start + dt.timedelta(days=int(tar_end)))
                    if tar_start != 0:
                        enter = t_start + dt.timedelta(days=int(tar_start))
                if enter > leave:
                    continue
                passed("s9", counter)
                rows.append((cohort.cohort_definition_id, person.person_id, enter, leave))
    common = {}
    for step in ("s1", "s2", "s3", "s4", "s5"):
        common[f"{step}_records"] = steps[step]["records"]
        common[f"{step}_subjects"] = len(steps[step]["subjects"])
    by_id = {
        cid: {f"{step}_{k}": (c["records"] if k == "records" else len(c["subjects"])) for step, c in counters.items()
              for k in ("records", "subjects")}
        for cid, counters in per_cohort.items()
    }  # fmt: skip
    return DenominatorResult(spec, cohorts, rows, start, end, common, by_id)


# -- shared pieces ----------------------------------------------------------------------------------------------


@dataclass
class Row:
    """A denominator row with its strata values."""

    cohort_id: int
    subject: int
    cs: dt.date
    ce: dt.date
    strata: dict[str, str]


def _rows(pop: Population, den: DenominatorResult, variables: list[str]) -> list[Row]:
    sexes = {p.person_id: ("Male" if p.gender_concept_id == MALE else "Female") for p in pop.persons}
    out = []
    for cid, pid, cs, ce in sorted(den.rows):
        values = {}
        for v in variables:
            if v == "sex":
                values[v] = sexes[pid]
            else:
                values[v] = "yes" if any(s <= cs for s, _ in pop.records(v, pid)) else "no"
        out.append(Row(cid, pid, cs, ce, values))
    return out


def _groups(strata: list[list[str]], include_overall: bool) -> list[tuple[str, ...]]:
    groups: list[tuple[str, ...]] = [()] if include_overall or not strata else []
    return groups + [tuple(g) for g in strata]


def _label(group: tuple[str, ...], values: dict[str, str]) -> tuple[str, str]:
    if not group:
        return "overall", "overall"
    return " &&& ".join(group), " &&& ".join(values[v] for v in group)


def _variables(strata: list[list[str]]) -> list[str]:
    out: list[str] = []
    for group in strata:
        out += [v for v in group if v not in out]
    return out


# -- incidence --------------------------------------------------------------------------------------------------


@dataclass
class Piece:
    rid: int
    row: Row
    outcome: int
    os: dt.date | None
    prev_oe: dt.date | None
    has_info: bool
    cs: dt.date
    ce: dt.date
    censor_ok: bool = False
    final_ok: bool = False


def incidence(pop: Population, den: DenominatorResult, spec: IncidenceSpec, name: str) -> dict[str, list[dict]]:
    rows = _rows(pop, den, _variables(spec.strata))
    censor = None
    if spec.censor is not None:
        censor = {pid: s for pid, s, _ in pop.cohorts[spec.censor.cohort][1]}
    pieces: list[Piece] = []
    for outcome in spec.outcomes:
        outcome_id = pop.cohorts[outcome][0]
        for rid, row in enumerate(rows, start=1):
            records = pop.records(outcome, row.subject)
            before = [r for r in records if r[0] < row.cs]
            latest = max((s for s, _ in before), default=None)
            chosen = sorted([r for r in before if r[0] == latest] + [r for r in records if row.cs <= r[0] <= row.ce])
            if not chosen:
                mine = [Piece(rid, row, outcome_id, None, None, False, row.cs, row.ce)]
            else:
                mine = [
                    Piece(rid, row, outcome_id, os, chosen[k - 1][1] if k else None, True, row.cs, row.ce)
                    for k, (os, _) in enumerate(chosen)
                ]
                mine.append(Piece(rid, row, outcome_id, None, chosen[-1][1], True, row.cs, row.ce))
            for p in mine:
                if censor is not None and p.row.subject in censor:
                    p.ce = min(p.ce, censor[p.row.subject])
                p.censor_ok = p.cs <= p.ce and (p.os is None or p.os <= p.ce)
                if p.os is not None:
                    p.ce = p.os
                if math.isinf(spec.outcome_washout):
                    p.final_ok = p.censor_ok and p.prev_oe is None and p.cs <= p.ce
                else:
                    if p.prev_oe is not None:
                        p.cs = max(p.cs, p.prev_oe + dt.timedelta(days=int(spec.outcome_washout) + 1))
                    p.final_ok = p.censor_ok and p.cs <= p.ce
            pieces += mine
    if not spec.repeated_events and not math.isinf(spec.outcome_washout):
        groups: dict[tuple, list[Piece]] = defaultdict(list)
        for p in pieces:
            if p.final_ok and p.has_info:
                groups[(p.row.cohort_id, p.outcome, p.row.subject)].append(p)
        for group in groups.values():
            if any(p.os is not None for p in group):
                first = min(p.cs for p in group)
                for p in group:
                    p.final_ok = p.cs == first
    # intervals from the counted pieces of each (denominator cohort, outcome) pair
    spans: dict[tuple[int, int], list[Piece]] = defaultdict(list)
    for p in pieces:
        if p.final_ok:
            spans[(p.row.cohort_id, p.outcome)].append(p)
    counts, complete = [], []
    for (cid, oid), counted in sorted(spans.items()):
        first, last = min(p.cs for p in counted), max(p.ce for p in counted)
        for unit in spec.interval:
            chosen = study_intervals(first, last, unit, spec.complete_database_intervals)
            if chosen:
                lo, hi = chosen[0].start, chosen[-1].end
                inside = [p for p in counted if p.ce >= lo and p.cs <= hi]
                complete.append({"denominator_cohort_id": cid, "outcome_id": oid, "analysis_interval": unit,
                                 "r4": len({p.rid for p in inside}),
                                 "s4": len({p.row.subject for p in inside})})  # fmt: skip
            for interval in chosen:
                for group in _groups(spec.strata, spec.include_overall_strata):
                    cells: dict[tuple[str, str], dict[str, Any]] = {}
                    for p in counted:
                        if p.ce < interval.start or p.cs > interval.end:
                            continue
                        cell = cells.setdefault(_label(group, p.row.strata), {"subjects": set(), "days": 0, "n": 0})
                        cell["subjects"].add(p.row.subject)
                        for day in days(max(p.cs, interval.start), min(p.ce, interval.end)):
                            cell["days"] += 1
                            cell["n"] += int(p.os == day)
                    for (strata_name, strata_level), cell in cells.items():
                        counts.append({"denominator_cohort_id": cid, "outcome_id": oid, "analysis_interval": unit,
                                       "s": interval.start, "e": interval.end, "strata_name": strata_name,
                                       "strata_level": strata_level, "denominator_count": len(cell["subjects"]),
                                       "person_days": cell["days"], "outcome_count": cell["n"]})  # fmt: skip
    steps = []
    for cid, oid in {(p.row.cohort_id, p.outcome) for p in pieces}:
        mine = [p for p in pieces if (p.row.cohort_id, p.outcome) == (cid, oid)]
        steps.append({
            "denominator_cohort_id": cid, "outcome_id": oid,
            "r1": len({p.rid for p in mine}), "s1": len({p.row.subject for p in mine}),
            "r2": len({p.rid for p in mine if p.censor_ok}), "s2": len({p.row.subject for p in mine if p.censor_ok}),
            "r3": len({p.rid for p in mine if p.final_ok}), "s3": len({p.row.subject for p in mine if p.final_ok}),
        })  # fmt: skip
    engine_den = den.as_engine(name)
    names = {pop.cohorts[o][0]: o for o in spec.outcomes}
    return {
        "incidence": engine_incidence._incidence_table(engine_den, names, spec, counts).to_pylist(),
        "incidence_attrition": engine_incidence._attrition_table(engine_den, names, spec, steps, complete).to_pylist(),
    }


# -- prevalence -------------------------------------------------------------------------------------------------


def prevalence(pop: Population, den: DenominatorResult, spec: PrevalenceSpec, name: str) -> dict[str, list[dict]]:
    rows = _rows(pop, den, _variables(spec.strata))
    full = spec.type == "period" and spec.full_contribution
    counts, chosen, steps = [], [], []
    starting: dict[int, dict[str, Any]] = {}
    for cohort in den.cohorts:
        mine = [r for r in rows if r.cohort_id == cohort.cohort_definition_id]
        if not mine:
            continue
        starting[cohort.cohort_definition_id] = {"r1": len(mine), "s1": len({r.subject for r in mine})}
        first, last = min(r.cs for r in mine), max(r.ce for r in mine)
        for outcome in spec.outcomes:
            oid = pop.cohorts[outcome][0]
            for unit in spec.interval:
                intervals = engine_prevalence.prevalence_intervals(spec, unit, first, last)
                chosen += [(cohort.cohort_definition_id, oid, unit, i) for i in intervals]
                if intervals:
                    lo, hi = intervals[0].start, intervals[-1].end
                    spanned = [r for r in mine if r.ce >= lo and r.cs <= hi]
                    covering = [r for r in spanned if any(r.cs <= i.start and r.ce >= i.end for i in intervals)]
                    steps.append({"denominator_cohort_id": cohort.cohort_definition_id, "outcome_id": oid,
                                  "analysis_interval": unit,
                                  "r2": len({(r.subject, r.cs, r.ce) for r in spanned}),
                                  "s2": len({r.subject for r in spanned}),
                                  "r3": len({(r.subject, r.cs, r.ce) for r in covering}),
                                  "s3": len({r.subject for r in covering})})  # fmt: skip
                for interval in intervals:
                    for group in _groups(spec.strata, spec.include_overall_strata):
                        cells: dict[tuple[str, str], dict[str, Any]] = {}
                        for r in mine:
                            if full and not (r.cs <= interval.start and r.ce >= interval.end):
                                continue
                            if r.ce < interval.start or r.cs > interval.end:
                                continue
                            ccs, cce = max(r.cs, interval.start), min(r.ce, interval.end)
                            has = any(
                                os <= day <= oe for day in days(ccs, cce) for os, oe in pop.records(outcome, r.subject)
                            )
                            cell = cells.setdefault(_label(group, r.strata), {"people": {}, "records": {}})
                            record = (r.subject, ccs, tuple(sorted(r.strata.items())))
                            cell["people"][r.subject] = cell["people"].get(r.subject, False) or has
                            cell["records"][record] = cell["records"].get(record, False) or has
                        for (strata_name, strata_level), cell in cells.items():
                            units = cell["people"] if spec.level == "person" else cell["records"]
                            counts.append({"denominator_cohort_id": cohort.cohort_definition_id, "outcome_id": oid,
                                           "analysis_interval": unit, "s": interval.start, "e": interval.end,
                                           "strata_name": strata_name, "strata_level": strata_level,
                                           "denominator_count": len(units),
                                           "outcome_count": sum(units.values())})  # fmt: skip
    engine_den = den.as_engine(name)
    names = {pop.cohorts[o][0]: o for o in spec.outcomes}
    return {
        "prevalence": engine_prevalence._prevalence_table(engine_den, names, spec, chosen, counts).to_pylist(),
        "prevalence_attrition": engine_prevalence._attrition_table(
            engine_den, names, spec, starting, steps
        ).to_pylist(),
    }


def run(
    pop: Population, spec: IncidenceSpec | PrevalenceSpec, den_spec: DenominatorSpec, name: str
) -> dict[str, list[dict]]:
    """The result tables of one analysis, as the engine names them (rows as dicts)."""
    den = denominator(pop, den_spec)
    tables = incidence(pop, den, spec, name) if isinstance(spec, IncidenceSpec) else prevalence(pop, den, spec, name)
    tables["denominator_settings"] = den.as_engine(name).settings.to_pylist()
    tables["denominator_attrition"] = den.attrition(name)
    return tables
