"""Helpers of the incidence/prevalence spec tests: a tiny CDM (PERSON, OBSERVATION_PERIOD, the study's cohort
table) in, result tables out, on DuckDB or Spark — and the reference implementation must agree.

``Cdm`` holds persons, observation periods and named cohorts; ``analyse`` runs an incidence or prevalence spec
(with its denominator) on one engine, checks the oracle (``reference.py``) gives the same tables, and returns
each result table as a list of dicts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from hygie.analyses.base import StudyCohort, StudyContext, StudyDefinitions
from hygie.analyses.incidence_prevalence import reference
from hygie.analyses.incidence_prevalence.incidence import IncidenceAnalysis
from hygie.analyses.incidence_prevalence.prevalence import PrevalenceAnalysis
from hygie.analyses.incidence_prevalence.spec import DenominatorSpec, IncidenceSpec, PrevalenceSpec
from hygie.cohorts.service import DuckDBRunner, SparkRunner

D = dt.date.fromisoformat
MALE, FEMALE = 8507, 8532

PERSON = pa.schema(
    [
        ("person_id", pa.int64()),
        ("gender_concept_id", pa.int64()),
        ("year_of_birth", pa.int64()),
        ("month_of_birth", pa.int64()),
        ("day_of_birth", pa.int64()),
    ]
)
OBSERVATION_PERIOD = pa.schema(
    [
        ("observation_period_id", pa.int64()),
        ("person_id", pa.int64()),
        ("observation_period_start_date", pa.date32()),
        ("observation_period_end_date", pa.date32()),
    ]
)
COHORT = pa.schema(
    [
        ("cohort_definition_id", pa.int64()),
        ("subject_id", pa.int64()),
        ("cohort_start_date", pa.date32()),
        ("cohort_end_date", pa.date32()),
    ]
)


@dataclass
class Cdm:
    """Persons (id, gender, year, month, day), observation periods (id, start, end) and named cohorts
    ({name: [(id, start, end)]}; ids in the study's cohort table follow the order of the names)."""

    persons: list[tuple[int, int, int | None, int | None, int | None]] = field(default_factory=list)
    periods: list[tuple[int, dt.date, dt.date]] = field(default_factory=list)
    cohorts: dict[str, list[tuple[int, dt.date, dt.date]]] = field(default_factory=dict)

    def person(self, pid: int, born: str = "2000-01-01", sex: str = "M", *, month: Any = "", day: Any = "") -> Cdm:
        year, m, d = (int(x) for x in born.split("-"))
        gender = {"M": MALE, "F": FEMALE}.get(sex, 0)
        self.persons.append((pid, gender, year, m if month == "" else month, d if day == "" else day))
        return self

    def period(self, pid: int, start: str, end: str) -> Cdm:
        self.periods.append((pid, D(start), D(end)))
        return self

    def record(self, cohort: str, pid: int, start: str, end: str | None = None) -> Cdm:
        self.cohorts.setdefault(cohort, []).append((pid, D(start), D(end or start)))
        return self

    def ids(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.cohorts, start=1)}

    def arrow(self) -> dict[str, pa.Table]:
        person = pa.Table.from_pylist([dict(zip(PERSON.names, p, strict=True)) for p in self.persons], schema=PERSON)
        periods = pa.Table.from_pylist(
            [
                {"observation_period_id": i, "person_id": pid, "observation_period_start_date": s,
                 "observation_period_end_date": e}
                for i, (pid, s, e) in enumerate(self.periods, start=1)
            ],
            schema=OBSERVATION_PERIOD,
        )  # fmt: skip
        ids = self.ids()
        cohort = pa.Table.from_pylist(
            [
                {"cohort_definition_id": ids[name], "subject_id": pid, "cohort_start_date": s, "cohort_end_date": e}
                for name, rows in self.cohorts.items()
                for pid, s, e in rows
            ],
            schema=COHORT,
        )
        return {"person": person, "observation_period": periods, "study_cohort": cohort}


def context(engine: str, cdm: Cdm, spark: Any = None) -> tuple[StudyContext, Any]:
    """A study context over the CDM on ``engine``, and what to close afterwards."""
    tables = cdm.arrow()
    if engine == "duckdb":
        con = duckdb.connect(":memory:", config={"threads": 1})
        runner = DuckDBRunner(con)
        for name, table in tables.items():
            runner.register(name, table)
        closer: Any = con
    else:
        runner = SparkRunner(spark, tables)
        closer = runner
    cohorts = {name: StudyCohort(name, i, "python") for name, i in cdm.ids().items()}
    return StudyContext(runner=runner, cohorts=cohorts, engine=engine), closer


def analyse(
    engine: str,
    cdm: Cdm,
    spec: IncidenceSpec | PrevalenceSpec,
    denominator: DenominatorSpec | None = None,
    spark: Any = None,
) -> dict[str, list[dict[str, Any]]]:
    """Result tables of one analysis (rows as dicts), after checking the reference implementation agrees."""
    return analyse_all(engine, cdm, [spec], denominator, spark)[0]


def analyse_all(
    engine: str,
    cdm: Cdm,
    specs: list[IncidenceSpec | PrevalenceSpec],
    denominator: DenominatorSpec | None = None,
    spark: Any = None,
) -> list[dict[str, list[dict[str, Any]]]]:
    """Several analyses of one study run (they share the denominator, generated once), each checked against
    the reference implementation."""
    denominator = denominator or DenominatorSpec()
    ctx, closer = context(engine, cdm, spark)
    out = []
    try:
        for spec in specs:
            study = StudyDefinitions(denominators={spec.denominator: denominator})
            analysis = IncidenceAnalysis() if isinstance(spec, IncidenceSpec) else PrevalenceAnalysis()
            out.append({t.name: t.rows.to_pylist() for t in analysis.run(ctx, spec, study)})
    finally:
        closer.close()
    for spec, tables in zip(specs, out, strict=True):
        oracle = reference.run(reference_input(cdm), spec, denominator, spec.denominator)
        for name, rows in oracle.items():
            assert tables[name] == rows, f"{name}: the engine and the reference implementation disagree ({spec})"
    return out


def reference_input(cdm: Cdm) -> reference.Population:
    ids = cdm.ids()
    return reference.Population(
        persons=[reference.Person(*p) for p in cdm.persons],
        periods=list(cdm.periods),
        cohorts={name: (ids[name], list(rows)) for name, rows in cdm.cohorts.items()},
    )


def denominator_rows(
    engine: str, cdm: Cdm, spec: DenominatorSpec, spark: Any = None
) -> tuple[list[tuple], list[dict[str, Any]]]:
    """The denominator cohort rows (id, subject, start, end) and the attrition, checked against the reference."""
    from hygie.analyses.incidence_prevalence.denominators import denominator

    ctx, closer = context(engine, cdm, spark)
    try:
        den = denominator(ctx, "d", spec)
        rows = ctx.runner.query(
            f"SELECT cohort_definition_id, subject_id, cohort_start_date, cohort_end_date FROM {den.rows} "
            "ORDER BY cohort_definition_id, subject_id, cohort_start_date, cohort_end_date"
        ).to_pylist()
        attrition = den.attrition.to_pylist()
    finally:
        closer.close()
    out = [(r["cohort_definition_id"], r["subject_id"], r["cohort_start_date"], r["cohort_end_date"]) for r in rows]
    oracle = reference.denominator(reference_input(cdm), spec)
    assert out == sorted(oracle.rows), "the engine and the reference implementation disagree"
    assert attrition == oracle.attrition("d"), "attrition: the engine and the reference implementation disagree"
    return out, attrition


def of(rows: list[dict[str, Any]], *columns: str) -> list[tuple]:
    return [tuple(r[c] for c in columns) for r in rows]
