"""Characterisation ("Table 1"): who is in each cohort, and standardised mean differences between two cohorts.

Covariates are computed per cohort entry (a row of the cohort table), on its cohort start date:
* age in completed years (mean, SD, median, quartiles) and age groups; sex; days of prior observation (in the
  observation period holding the start date);
* visits whose start date falls in ``visit_window`` (days relative to the cohort start, both ends included),
  per visit concept: entries with at least one, and the mean and SD of the number of visits over all entries;
* per domain, window and concept: entries with a record of the concept in the window. A record is in a window
  when its date falls in it (for drugs: when the drug era, or the exposure if ``drug_era`` is empty, overlaps
  it). Concept 0 (unmapped) is left out; ancestors are not rolled up.
Percentages are over the cohort's entries, which are its persons when each person enters once (the usual case).
Per-entry values are computed in the engine; only aggregates come back. See docs/characterisation.md and
docs/decisions/0010-characterisation-and-drug-utilisation.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from hygie.analyses.base import ResultTable, Spec, StudyContext, StudyDefinitions
from hygie.analyses.sql_parts import (
    STAT_COLUMNS,
    age_sql,
    exposure_end_sql,
    in_list,
    mean_sd_from_sums,
    smd_binary,
    smd_continuous,
    summary_sql,
    summary_values,
)
from hygie.cohorts.compile import Dialect
from hygie.cohorts.service import SqlRunner

Domain = Literal["condition", "drug", "procedure", "measurement", "observation"]
Window = tuple[int, int]

AGE_GROUPS: tuple[tuple[str, int, int | None], ...] = (
    ("0 to 17", 0, 17),
    ("18 to 44", 18, 44),
    ("45 to 64", 45, 64),
    ("65 to 74", 65, 74),
    ("75 to 84", 75, 84),
    ("85 or older", 85, None),
)
SEXES = (("Male", 8507), ("Female", 8532))

# domain -> (table, concept column, first day, last day) of its records, on the alias ``t``
_SOURCES: dict[str, tuple[str, str, str, str]] = {
    "condition": ("condition_occurrence", "t.condition_concept_id", "t.condition_start_date", "t.condition_start_date"),
    "procedure": ("procedure_occurrence", "t.procedure_concept_id", "t.procedure_date", "t.procedure_date"),
    "measurement": ("measurement", "t.measurement_concept_id", "t.measurement_date", "t.measurement_date"),
    "observation": ("observation", "t.observation_concept_id", "t.observation_date", "t.observation_date"),
    "drug_era": ("drug_era", "t.drug_concept_id", "t.drug_era_start_date", "t.drug_era_end_date"),
}

SCHEMA = pa.schema(
    [
        ("cohort_name", pa.string()),
        ("cohort_definition_id", pa.int64()),
        ("covariate_type", pa.string()),
        ("covariate_name", pa.string()),
        ("concept_id", pa.int64()),
        ("window", pa.string()),
        ("count", pa.int64()),
        ("percent", pa.float64()),
        *[(name, pa.float64()) for name in STAT_COLUMNS],
    ]
)
SMD_SCHEMA = pa.schema(
    [
        ("covariate_type", pa.string()),
        ("covariate_name", pa.string()),
        ("concept_id", pa.int64()),
        ("window", pa.string()),
        ("cohort_a", pa.string()),
        ("count_a", pa.int64()),
        ("value_a", pa.float64()),
        ("cohort_b", pa.string()),
        ("count_b", pa.int64()),
        ("value_b", pa.float64()),
        ("smd", pa.float64()),
    ]
)
COUNTS = {"count": ("percent", *STAT_COLUMNS)}  # a masked count masks every statistic of its few contributors
SMD_COUNTS = {"count_a": ("value_a", "smd"), "count_b": ("value_b", "smd")}


def _window(value: object) -> Window:
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        low, high = value
        if low > high:
            raise ValueError(f"window [{low}, {high}]: the first day must not be after the last")
        return (low, high)
    raise ValueError("a window is [first day, last day] relative to the cohort start, whole numbers of days")


class CharacterisationSpec(Spec):
    """The ``characterisation`` section of a study file."""

    cohorts: list[str] = Field(min_length=1)
    compare: tuple[str, str] | None = None
    windows: list[Window] = Field(default_factory=lambda: [(-365, -1)], min_length=1)
    domains: list[Domain] = Field(default_factory=lambda: ["condition", "drug"])
    min_prevalence: float | None = Field(default=None, ge=0, le=1)  # a fraction: 0.01 keeps concepts in >= 1%
    visit_window: Window = (-365, -1)

    @field_validator("windows", mode="before")
    @classmethod
    def _windows(cls, value: object) -> object:
        if not isinstance(value, list):
            raise ValueError("windows must be a list of [first day, last day]")
        return [_window(v) for v in value]

    @field_validator("visit_window", mode="before")
    @classmethod
    def _visit_window(cls, value: object) -> object:
        return _window(value)

    @model_validator(mode="after")
    def _compare(self) -> CharacterisationSpec:
        if len(set(self.cohorts)) != len(self.cohorts):
            raise ValueError("cohorts: a cohort is listed twice")
        if len(set(self.windows)) != len(self.windows):
            raise ValueError("windows: a window is listed twice")
        if len(set(self.domains)) != len(self.domains):
            raise ValueError("domains: a domain is listed twice")
        if self.compare is not None:
            a, b = self.compare
            if a == b:
                raise ValueError("compare: name two different cohorts")
            missing = [n for n in (a, b) if n not in self.cohorts]
            if missing:
                raise ValueError(f"compare: {', '.join(missing)} must also be listed in cohorts")
        return self


def window_label(window: Window) -> str:
    return f"{window[0]} to {window[1]}"


@dataclass(frozen=True)
class _Cohort:
    name: str
    cohort_definition_id: int


class Characterisation:
    """Table 1 of each cohort, and SMDs between two of them."""

    key: ClassVar[str] = "characterisation"
    spec: ClassVar[type[Spec]] = CharacterisationSpec

    def run(self, context: StudyContext, spec: Spec, study: StudyDefinitions) -> list[ResultTable]:
        assert isinstance(spec, CharacterisationSpec)
        cohorts = [_Cohort(name, context.cohort(name).cohort_definition_id) for name in spec.cohorts]
        runner, dialect = context.runner, context.runner.dialect
        base, windows = context.temp_name("char_base"), context.temp_name("char_windows")
        created: list[str] = []
        try:
            runner.materialize(base, base_sql(dialect, context.cohort_table, [c.cohort_definition_id for c in cohorts]))
            created.append(base)
            runner.register(
                windows,
                pa.table(
                    {
                        "window_id": pa.array(range(len(spec.windows)), pa.int32()),
                        "lo": pa.array([w[0] for w in spec.windows], pa.int32()),
                        "hi": pa.array([w[1] for w in spec.windows], pa.int32()),
                    }
                ),
            )
            created.append(windows)
            drug_table = _drug_table(runner) if "drug" in spec.domains else None
            demographics = runner.query(demographics_sql(dialect, base)).to_pylist()
            visits = runner.query(visits_sql(dialect, base, spec.visit_window)).to_pylist()
            concepts = (
                runner.query(concepts_sql(dialect, base, windows, spec.domains, drug_table)).to_pylist()
                if spec.domains
                else []
            )
        finally:
            for name in created:
                runner.drop(name)
        rows = table_one(cohorts, demographics, visits, concepts, spec)
        source_note = f" Drugs from {drug_table}." if drug_table else ""
        tables = [
            ResultTable(
                "characterisation",
                pa.Table.from_pylist(rows, schema=SCHEMA),
                counts=COUNTS,
                description="Baseline characteristics per cohort entry; percent of the cohort's entries; windows in "
                "days relative to the cohort start, both ends included." + source_note,
            )
        ]
        if spec.compare is not None:
            a, b = (next(c for c in cohorts if c.name == n) for n in spec.compare)
            tables.append(
                ResultTable(
                    "characterisation_smd",
                    pa.Table.from_pylist(smd_rows(rows, a, b), schema=SMD_SCHEMA),
                    counts=SMD_COUNTS,
                    description=f"Standardised mean differences, {a.name} versus {b.name} (proportions for binary "
                    "covariates, means for continuous ones).",
                )
            )
        return tables


# -- SQL ---------------------------------------------------------------------------------------------------------


def base_sql(dialect: Dialect, cohort_table: str, cohort_ids: list[int]) -> str:
    """One row per cohort entry: sex, age and days of prior observation on the cohort start date."""
    prior = dialect.day_diff("op.observation_period_start_date", "c.cohort_start_date")
    return f"""
WITH entries AS (
  SELECT DISTINCT cohort_definition_id, subject_id, cohort_start_date, cohort_end_date FROM {cohort_table}
  WHERE cohort_definition_id IN {in_list(cohort_ids)}
),
prior AS (
  SELECT c.cohort_definition_id, c.subject_id, c.cohort_start_date, MAX({prior}) AS prior_observation
  FROM entries c JOIN observation_period op ON op.person_id = c.subject_id
   AND c.cohort_start_date >= op.observation_period_start_date
   AND c.cohort_start_date <= op.observation_period_end_date
  GROUP BY c.cohort_definition_id, c.subject_id, c.cohort_start_date
)
SELECT c.cohort_definition_id, c.subject_id, c.cohort_start_date, c.cohort_end_date, p.gender_concept_id,
  {age_sql("c.cohort_start_date")} AS age, pr.prior_observation
FROM entries c
LEFT JOIN person p ON p.person_id = c.subject_id
LEFT JOIN prior pr ON pr.cohort_definition_id = c.cohort_definition_id AND pr.subject_id = c.subject_id
 AND pr.cohort_start_date = c.cohort_start_date"""


def _age_group_case(low: int, high: int | None) -> str:
    upper = "" if high is None else f" AND age <= {high}"
    return f"SUM(CASE WHEN age >= {low}{upper} THEN 1 ELSE 0 END)"


def demographics_sql(dialect: Dialect, base: str) -> str:
    groups = ", ".join(f"{_age_group_case(low, high)} AS age_group_{i}" for i, (_, low, high) in enumerate(AGE_GROUPS))
    sexes = ", ".join(
        f"SUM(CASE WHEN gender_concept_id = {concept} THEN 1 ELSE 0 END) AS sex_{concept}" for _, concept in SEXES
    )
    return f"""
SELECT cohort_definition_id, COUNT(*) AS records, COUNT(DISTINCT subject_id) AS subjects,
  {summary_sql(dialect, "age", "age")}, {summary_sql(dialect, "prior_observation", "prior")},
  {groups}, SUM(CASE WHEN age IS NULL OR age < 0 THEN 1 ELSE 0 END) AS age_unknown, {sexes}
FROM {base} GROUP BY cohort_definition_id"""


def visits_sql(dialect: Dialect, base: str, window: Window) -> str:
    """Per cohort and visit concept: entries with >= 1 visit in the window, and the sum and sum of squares of
    the number of visits per entry (for the mean and SD over every entry)."""
    low, high = (dialect.add_days("b.cohort_start_date", d) for d in window)
    return f"""
SELECT v.cohort_definition_id, v.visit_concept_id, MAX(c.concept_name) AS concept_name, COUNT(*) AS entries,
  SUM(v.n) AS total, SUM(v.n * v.n) AS total_sq
FROM (
  SELECT b.cohort_definition_id, b.subject_id, b.cohort_start_date, vo.visit_concept_id, COUNT(*) AS n
  FROM {base} b JOIN visit_occurrence vo ON vo.person_id = b.subject_id
   AND vo.visit_start_date >= {low} AND vo.visit_start_date <= {high}
  GROUP BY b.cohort_definition_id, b.subject_id, b.cohort_start_date, vo.visit_concept_id
) v LEFT JOIN concept c ON c.concept_id = v.visit_concept_id
GROUP BY v.cohort_definition_id, v.visit_concept_id"""


def _drug_table(runner: SqlRunner) -> str:
    """Drug eras (ingredients) when the release has them, else the drug exposures as recorded."""
    present = runner.query("SELECT 1 AS present FROM drug_era LIMIT 1").num_rows
    return "drug_era" if present else "drug_exposure"


def _source(dialect: Dialect, domain: str, drug_table: str | None) -> tuple[str, str, str, str]:
    if domain != "drug":
        return _SOURCES[domain]
    if drug_table == "drug_era":
        return _SOURCES["drug_era"]
    return ("drug_exposure", "t.drug_concept_id", "t.drug_exposure_start_date", exposure_end_sql(dialect, "t"))


def concepts_sql(dialect: Dialect, base: str, windows: str, domains: list[str], drug_table: str | None) -> str:
    """Per cohort, window, domain and concept: the entries with a record of the concept in the window (records
    of one day in it, or spans overlapping it)."""
    low, high = dialect.add_days("b.cohort_start_date", "w.lo"), dialect.add_days("b.cohort_start_date", "w.hi")
    events = "\nUNION ALL\n".join(
        f"SELECT '{domain}' AS covariate_domain, t.person_id, {concept} AS concept_id, {start} AS start_date, "
        f"{end} AS end_date FROM {table} t WHERE {concept} <> 0"
        for domain in domains
        for table, concept, start, end in [_source(dialect, domain, drug_table)]
    )
    return f"""
WITH events AS (
{events}
),
hits AS (
  SELECT DISTINCT b.cohort_definition_id, b.subject_id, b.cohort_start_date, w.window_id, e.covariate_domain,
    e.concept_id
  FROM {base} b CROSS JOIN {windows} w JOIN events e ON e.person_id = b.subject_id
   AND e.start_date <= {high} AND e.end_date >= {low}
),
counted AS (
  SELECT cohort_definition_id, window_id, covariate_domain, concept_id, COUNT(*) AS entries FROM hits
  GROUP BY cohort_definition_id, window_id, covariate_domain, concept_id
)
SELECT h.cohort_definition_id, h.window_id, h.covariate_domain, h.concept_id, c.concept_name, h.entries
FROM counted h LEFT JOIN (SELECT concept_id, MAX(concept_name) AS concept_name FROM concept GROUP BY concept_id) c
 ON c.concept_id = h.concept_id"""


# -- Table 1 from the aggregates (pure) ---------------------------------------------------------------------------


def _row(cohort: _Cohort, covariate_type: str, name: str, **values: Any) -> dict[str, Any]:
    return {
        "cohort_name": cohort.name,
        "cohort_definition_id": cohort.cohort_definition_id,
        "covariate_type": covariate_type,
        "covariate_name": name,
        "concept_id": None,
        "window": None,
        "count": None,
        "percent": None,
        **{s: None for s in STAT_COLUMNS},
        **values,
    }


def _share(count: int, records: int) -> dict[str, Any]:
    return {"count": count, "percent": 100.0 * count / records if records else None}


def table_one(
    cohorts: list[_Cohort],
    demographics: list[dict[str, Any]],
    visits: list[dict[str, Any]],
    concepts: list[dict[str, Any]],
    spec: CharacterisationSpec,
) -> list[dict[str, Any]]:
    """The ``characterisation`` rows, cohort by cohort, from the aggregate query results."""
    by_cohort = {r["cohort_definition_id"]: r for r in demographics}
    rows: list[dict[str, Any]] = []
    for cohort in cohorts:
        rows.extend(_cohort_rows(cohort, by_cohort.get(cohort.cohort_definition_id), visits, concepts, spec))
    return rows


def _cohort_rows(
    cohort: _Cohort,
    demo: dict[str, Any] | None,
    visits: list[dict[str, Any]],
    concepts: list[dict[str, Any]],
    spec: CharacterisationSpec,
) -> Iterator[dict[str, Any]]:
    cid = cohort.cohort_definition_id
    records = int(demo["records"]) if demo else 0
    yield _row(cohort, "cohort", "subjects", count=int(demo["subjects"]) if demo else 0)
    yield _row(cohort, "cohort", "records", count=records)
    empty = {"count": 0, **{s: None for s in STAT_COLUMNS}}
    yield _row(cohort, "age", "age (years)", **(summary_values(demo, "age") if demo else empty))
    for i, (label, _, _) in enumerate(AGE_GROUPS):
        yield _row(cohort, "age_group", label, **_share(int(demo[f"age_group_{i}"]) if demo else 0, records))
    yield _row(cohort, "age_group", "unknown", **_share(int(demo["age_unknown"]) if demo else 0, records))
    known = 0
    for label, concept in SEXES:
        n = int(demo[f"sex_{concept}"]) if demo else 0
        known += n
        yield _row(cohort, "sex", label, concept_id=concept, **_share(n, records))
    yield _row(cohort, "sex", "other or unknown", **_share(records - known, records))
    yield _row(
        cohort, "prior_observation", "prior observation (days)", **(summary_values(demo, "prior") if demo else empty)
    )
    visit_label = window_label(spec.visit_window)
    mine = sorted((v for v in visits if v["cohort_definition_id"] == cid), key=lambda v: v["visit_concept_id"])
    for v in mine:
        mean, sd = mean_sd_from_sums(records, float(v["total"]), float(v["total_sq"]))
        name = v["concept_name"] or f"concept {v['visit_concept_id']}"
        yield _row(
            cohort,
            "visits",
            name,
            concept_id=int(v["visit_concept_id"]),
            window=visit_label,
            mean=mean,
            sd=sd,
            **_share(int(v["entries"]), records),
        )
    threshold = spec.min_prevalence
    mine = [c for c in concepts if c["cohort_definition_id"] == cid]
    order = {d: i for i, d in enumerate(spec.domains)}
    mine.sort(key=lambda c: (order[c["covariate_domain"]], c["window_id"], -c["entries"], c["concept_id"]))
    for c in mine:
        if threshold is not None and records and c["entries"] / records < threshold:
            continue
        yield _row(
            cohort,
            c["covariate_domain"],
            c["concept_name"] or f"concept {c['concept_id']}",
            concept_id=int(c["concept_id"]),
            window=window_label(spec.windows[c["window_id"]]),
            **_share(int(c["entries"]), records),
        )


_CONTINUOUS = {"age", "prior_observation", "visits"}


def smd_rows(rows: list[dict[str, Any]], a: _Cohort, b: _Cohort) -> list[dict[str, Any]]:
    """SMDs between cohorts ``a`` and ``b`` for every covariate of either (absent from one = 0 there).

    Binary covariates compare proportions of entries; age, prior observation and visit counts compare means.
    ``rows`` are already filtered by ``min_prevalence``: a concept kept in one cohort only counts as 0 in the
    other."""
    records = {
        c.cohort_definition_id: next(
            r["count"]
            for r in rows
            if r["cohort_definition_id"] == c.cohort_definition_id and r["covariate_name"] == "records"
        )
        for c in (a, b)
    }

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["covariate_type"], r["covariate_name"], r["concept_id"], r["window"])

    per = {c.cohort_definition_id: {key(r): r for r in rows if r["cohort_definition_id"] == c.cohort_definition_id}
           for c in (a, b)}  # fmt: skip
    keys = list(per[a.cohort_definition_id])
    keys += [k for k in per[b.cohort_definition_id] if k not in per[a.cohort_definition_id]]
    out = []
    for k in keys:
        if k[0] == "cohort":
            continue
        ra, rb = per[a.cohort_definition_id].get(k), per[b.cohort_definition_id].get(k)
        na, nb = records[a.cohort_definition_id], records[b.cohort_definition_id]
        if k[0] in _CONTINUOUS:
            va, sa = (ra["mean"], ra["sd"]) if ra else (0.0 if k[0] == "visits" else None, 0.0)
            vb, sb = (rb["mean"], rb["sd"]) if rb else (0.0 if k[0] == "visits" else None, 0.0)
            smd = smd_continuous(va, sa, vb, sb) if va is not None and vb is not None else None
        else:
            va = ra["count"] / na if ra and na else 0.0
            vb = rb["count"] / nb if rb and nb else 0.0
            smd = smd_binary(va, vb) if na and nb else None
        out.append(
            {
                "covariate_type": k[0],
                "covariate_name": k[1],
                "concept_id": k[2],
                "window": k[3],
                "cohort_a": a.name,
                "count_a": ra["count"] if ra else 0,
                "value_a": va,
                "cohort_b": b.name,
                "count_b": rb["count"] if rb else 0,
                "value_b": vb,
                "smd": smd,
            }
        )
    return out
