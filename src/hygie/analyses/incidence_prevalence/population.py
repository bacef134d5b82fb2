"""What incidence and prevalence share: the denominator rows with their strata, the outcome cohorts, and the
table of calendar intervals per (denominator cohort, outcome cohort) pair.

Strata are columns of the denominator rows, fixed at entry: ``sex`` (the person's sex, Male or Female) and the
name of any study cohort (``yes`` when the person has a record of that cohort starting on or before the
denominator entry, else ``no``). A stratum is a list of such columns; its rows are labelled
``strata_name`` = the column names joined by " &&& " and ``strata_level`` = their values joined the same way;
the whole population is ``overall`` / ``overall``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from hygie.analyses.base import StudyContext
from hygie.analyses.incidence_prevalence.denominators import Denominator
from hygie.analyses.incidence_prevalence.intervals import Interval
from hygie.errors import HygieError
from hygie.sql import literal

STRATA_SEPARATOR = " &&& "


@dataclass(frozen=True)
class Outcome:
    name: str
    cohort_definition_id: int


@dataclass(frozen=True)
class Strata:
    """The strata of an analysis: the SQL column of each strata variable, and the groups to report."""

    columns: dict[str, str]  # strata variable -> column of the analysis rows
    groups: tuple[tuple[str, ...], ...]  # () is the overall population

    def label_sql(self, group: tuple[str, ...], alias: str = "r") -> tuple[str, str]:
        """SQL of (strata_name, strata_level) for one group."""
        if not group:
            return "'overall'", "'overall'"
        name = literal(STRATA_SEPARATOR.join(group))
        parts = [f"{alias}.{self.columns[v]}" for v in group]
        if len(parts) == 1:
            return name, parts[0]
        joined = f", {literal(STRATA_SEPARATOR)}, ".join(parts)
        return name, f"concat({joined})"

    def group_by(self, group: tuple[str, ...], alias: str = "r") -> list[str]:
        return [f"{alias}.{self.columns[v]}" for v in group]

    def partition_of(self, group: tuple[str, ...]) -> tuple[str, ...]:
        """The columns that can differ between the rows of one person within a group's stratum: the study
        cohort flags (sex is the same on every row of a person)."""
        return tuple(self.columns[v] for v in group if v != "sex")

    def partitions(self) -> list[tuple[str, ...]]:
        """The distinct ``partition_of`` of the groups (one window per partition counts distinct persons)."""
        return list(dict.fromkeys(self.partition_of(g) for g in self.groups))


def strata_of(strata: Sequence[Sequence[str]], include_overall: bool) -> Strata:
    """The strata variables of an analysis and the groups to report (the overall population first)."""
    variables: list[str] = []
    for group in strata:
        if not group:
            raise HygieError("strata: an empty list of columns; remove it or name columns such as sex")
        for v in group:
            if v not in variables:
                variables.append(v)
    columns = {v: f"strata_{i}" for i, v in enumerate(variables)}
    groups: list[tuple[str, ...]] = [()] if include_overall or not strata else []
    groups += [tuple(g) for g in strata]
    return Strata(columns, tuple(groups))


def denominator_rows_sql(context: StudyContext, den: Denominator, strata: Strata) -> str:
    """The denominator rows (``denominator_cohort_id, rid, subject_id, cs, ce`` and the strata columns)."""
    items, joins = [], []
    for i, (variable, column) in enumerate(strata.columns.items()):
        if variable == "sex":
            items.append(f"d.person_sex AS {column}")
            continue
        try:
            cohort_id = context.cohort(variable).cohort_definition_id
        except KeyError:
            known = ", ".join(["sex", *sorted(context.cohorts)])
            raise HygieError(f"strata: unknown column {variable!r} (use one of: {known})") from None
        alias = f"k{i}"
        joins.append(
            f"LEFT JOIN (SELECT subject_id, min(cohort_start_date) AS first_start FROM {context.cohort_table} "
            f"WHERE cohort_definition_id = {int(cohort_id)} GROUP BY subject_id) {alias} "
            f"ON {alias}.subject_id = d.subject_id"
        )
        items.append(
            f"CASE WHEN {alias}.first_start IS NOT NULL AND {alias}.first_start <= d.cohort_start_date "
            f"THEN 'yes' ELSE 'no' END AS {column}"
        )
    extra = "".join(f", {item}" for item in items)
    return (
        "SELECT d.cohort_definition_id AS denominator_cohort_id, d.rid, "
        f"d.subject_id, d.cohort_start_date AS cs, d.cohort_end_date AS ce{extra} "
        f"FROM {den.rows} d {' '.join(joins)}"
    )


def outcomes_of(context: StudyContext, names: Sequence[str]) -> list[Outcome]:
    outcomes = []
    for name in names:
        try:
            outcomes.append(Outcome(name, context.cohort(name).cohort_definition_id))
        except KeyError as e:
            raise HygieError(f"outcomes: {e.args[0]}") from None
    return outcomes


def outcome_rows_sql(context: StudyContext, outcomes: Sequence[Outcome]) -> str:
    ids = ", ".join(str(int(o.cohort_definition_id)) for o in outcomes)
    return (
        "SELECT cohort_definition_id AS outcome_id, subject_id, cohort_start_date AS os, cohort_end_date AS oe "
        f"FROM {context.cohort_table} WHERE cohort_definition_id IN ({ids})"
    )


INTERVAL_SCHEMA = pa.schema(
    [
        ("interval_id", pa.int64()),
        ("denominator_cohort_id", pa.int64()),
        ("outcome_id", pa.int64()),
        ("analysis_interval", pa.string()),
        ("s", pa.date32()),
        ("e", pa.date32()),
    ]
)


def intervals_table(rows: list[tuple[int, int, str, Interval]]) -> pa.Table:
    """The intervals, numbered by their position in ``rows`` (``interval_id``): results are grouped by that
    number alone and labelled in Python."""
    return pa.Table.from_pylist(
        [
            {
                "interval_id": k,
                "denominator_cohort_id": d,
                "outcome_id": o,
                "analysis_interval": unit,
                "s": i.start,
                "e": i.end,
            }
            for k, (d, o, unit, i) in enumerate(rows)
        ],
        schema=INTERVAL_SCHEMA,
    )
