"""Drug utilisation: users and new users by period, exposure and dose, treatment lines and switching, persistence.

The drugs are either ``ingredients`` (concept ids; a drug exposure belongs to an ingredient when its drug concept
is the ingredient or one of its descendants in ``concept_ancestor``), optionally restricted to the exposures of a
study ``cohort``'s persons that start within one of their cohort entries; or a ``cohort`` alone, whose entries
are the exposures (one "ingredient" named after the cohort).

* An exposure runs from its start date to its end date, else start + days supply - 1, else its start date.
* Episodes: a person's exposures to one ingredient, merged when one starts at most ``gap_era`` days after the
  last day of the episode so far (as OHDSI drug eras). Duration = last day - first day + 1.
* A new-use episode starts with at least ``new_user_washout`` days of prior observation and no exposure to the
  ingredient in the ``new_user_washout`` days before.
* Persistence at d days: among persons whose first new-use episode is followed for at least d days (observation
  from its start, start day included), those whose episode lasts at least d days.
* Treatment lines: persons whose first episode of any listed drug (``ingredients`` and ``switch_ingredients``) has
  the washout of prior observation; a new line starts at each episode of an ingredient other than the current
  line's (a switch or an add-on).
* Dose: quantity x ``drug_strength.amount_value`` in mg (mg, g or microgram units) where the drug and ingredient
  have exactly one such strength; every other record is counted in ``records_without_dose``, never dropped
  silently.
Only aggregates leave the engine. See docs/drug-utilisation.md and docs/decisions/0010.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from hygie.analyses.base import ResultTable, Spec, StudyContext, StudyDefinitions
from hygie.analyses.sql_parts import STAT_COLUMNS, exposure_end_sql, in_list, summary_sql, summary_values
from hygie.cohorts.compile import Dialect

MG_PER_UNIT = {8576: 1.0, 8504: 1000.0, 9655: 0.001}  # UCUM milligram, gram, microgram (amount_unit_concept_id)
COHORT_INGREDIENT = 0  # the ingredient id of a cohort-only study's "drug"


class DrugUtilisationSpec(Spec):
    """The ``drug_utilisation`` section of a study file."""

    cohort: str | None = None
    ingredients: list[int] | None = Field(default=None, min_length=1)
    interval: Literal["years", "quarters", "months"] = "years"
    new_user_washout: int = Field(default=365, ge=0)
    gap_era: int = Field(default=30, ge=0)
    persistence_days: list[int] = Field(default_factory=lambda: [90, 180, 365])
    lines: bool = False
    switch_ingredients: list[int] = Field(default_factory=list)
    switch_days: int = Field(default=90, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> DrugUtilisationSpec:
        if self.cohort is None and self.ingredients is None:
            raise ValueError("name the drugs: ingredients (concept ids), a cohort of drug users, or both")
        if any(d < 1 for d in self.persistence_days) or len(set(self.persistence_days)) != len(self.persistence_days):
            raise ValueError("persistence_days must be distinct whole numbers of days >= 1")
        ingredients = self.ingredients or []
        if len(set(ingredients)) != len(ingredients):
            raise ValueError("ingredients: a concept is listed twice")
        if self.lines and self.ingredients is None:
            raise ValueError("lines need ingredients (a cohort alone is one drug)")
        if self.switch_ingredients and not self.lines:
            raise ValueError("switch_ingredients are used by treatment lines: set lines: true")
        both = sorted(set(self.switch_ingredients) & set(ingredients))
        if both:
            raise ValueError(f"switch_ingredients repeat ingredients: {both}")
        return self


@dataclass(frozen=True)
class _Drug:
    concept_id: int
    name: str

    @property
    def public_id(self) -> int | None:
        return None if self.concept_id == COHORT_INGREDIENT else self.concept_id


BY_PERIOD_SCHEMA = pa.schema(
    [
        ("ingredient", pa.string()),
        ("ingredient_concept_id", pa.int64()),
        ("period_start", pa.date32()),
        ("period_end", pa.date32()),
        ("users", pa.int64()),
        ("new_users", pa.int64()),
    ]
)
SUMMARY_SCHEMA = pa.schema(
    [
        ("ingredient", pa.string()),
        ("ingredient_concept_id", pa.int64()),
        ("variable", pa.string()),
        ("count", pa.int64()),
        *[(name, pa.float64()) for name in STAT_COLUMNS],
    ]
)
PERSISTENCE_SCHEMA = pa.schema(
    [
        ("ingredient", pa.string()),
        ("ingredient_concept_id", pa.int64()),
        ("days", pa.int64()),
        ("persons_starting", pa.int64()),
        ("persons_followed", pa.int64()),
        ("persistent", pa.int64()),
        ("percent", pa.float64()),
    ]
)
LINES_SCHEMA = pa.schema(
    [
        ("line", pa.int64()),
        ("ingredient", pa.string()),
        ("ingredient_concept_id", pa.int64()),
        ("persons", pa.int64()),
        ("percent", pa.float64()),
    ]
)
SWITCH_SCHEMA = pa.schema(
    [
        ("from_ingredient", pa.string()),
        ("from_concept_id", pa.int64()),
        ("to_ingredient", pa.string()),
        ("to_concept_id", pa.int64()),
        ("persons", pa.int64()),
        ("switch_days", pa.int64()),
        ("persons_within_days", pa.int64()),
    ]
)


class DrugUtilisation:
    """How the study's drugs are used."""

    key: ClassVar[str] = "drug_utilisation"
    spec: ClassVar[type[Spec]] = DrugUtilisationSpec

    def run(self, context: StudyContext, spec: Spec, study: StudyDefinitions) -> list[ResultTable]:
        assert isinstance(spec, DrugUtilisationSpec)
        runner, d = context.runner, context.runner.dialect
        cohort_id = context.cohort(spec.cohort).cohort_definition_id if spec.cohort else None
        studied = spec.ingredients or [COHORT_INGREDIENT]
        exposures, episodes = context.temp_name("du_exposures"), context.temp_name("du_episodes")
        created: list[str] = []
        try:
            runner.materialize(exposures, exposures_sql(d, spec, context.cohort_table, cohort_id))
            created.append(exposures)
            runner.materialize(episodes, episodes_sql(d, exposures, spec.gap_era, spec.new_user_washout))
            created.append(episodes)
            drugs = self._drugs(context, spec)
            tables = [
                self._by_period(context, spec, episodes, drugs, studied, created),
                self._summary(context, exposures, episodes, drugs, studied),
                self._persistence(context, spec, episodes, drugs, studied, created),
            ]
            if spec.lines:
                tables += self._lines(context, spec, episodes, drugs)
        finally:
            for name in reversed(created):
                runner.drop(name)
        return tables

    # -- the result tables ------------------------------------------------------------------------------------

    def _drugs(self, context: StudyContext, spec: DrugUtilisationSpec) -> dict[int, _Drug]:
        if spec.ingredients is None:
            return {COHORT_INGREDIENT: _Drug(COHORT_INGREDIENT, str(spec.cohort))}
        ids = [*spec.ingredients, *spec.switch_ingredients]
        names = {
            int(r["concept_id"]): r["concept_name"]
            for r in context.runner.query(
                f"SELECT concept_id, MAX(concept_name) AS concept_name FROM concept WHERE concept_id IN {in_list(ids)} "
                "GROUP BY concept_id"
            ).to_pylist()
        }
        return {i: _Drug(i, names.get(i) or f"concept {i}") for i in ids}

    def _by_period(
        self,
        context: StudyContext,
        spec: DrugUtilisationSpec,
        episodes: str,
        drugs: dict[int, _Drug],
        studied: list[int],
        created: list[str],
    ) -> ResultTable:
        runner = context.runner
        (span,) = runner.query(
            f"SELECT MIN(start_date) AS first, MAX(end_date) AS last FROM {episodes} "
            f"WHERE ingredient_concept_id IN {in_list(studied)}"
        ).to_pylist()
        periods = list(calendar_periods(span["first"], span["last"], spec.interval)) if span["first"] else []
        counts: dict[tuple[int, dt.date], dict[str, Any]] = {}
        if periods:
            name = context.temp_name("du_periods")
            runner.register(
                name,
                pa.table(
                    {"period_start": [p[0] for p in periods], "period_end": [p[1] for p in periods]},
                    schema=pa.schema([("period_start", pa.date32()), ("period_end", pa.date32())]),
                ),
            )
            created.append(name)
            counts = {
                (r["ingredient_concept_id"], r["period_start"]): r
                for r in runner.query(by_period_sql(name, episodes, studied)).to_pylist()
            }
        rows = [
            {
                "ingredient": drugs[i].name,
                "ingredient_concept_id": drugs[i].public_id,
                "period_start": start,
                "period_end": end,
                "users": int(counts[(i, start)]["users"]) if (i, start) in counts else 0,
                "new_users": int(counts[(i, start)]["new_users"]) if (i, start) in counts else 0,
            }
            for i in studied
            for start, end in periods
        ]
        return ResultTable(
            "drug_use_by_period",
            pa.Table.from_pylist(rows, schema=BY_PERIOD_SCHEMA),
            counts={"users": (), "new_users": ()},
            description=f"Persons with an episode overlapping each {spec.interval[:-1]} (users) and persons starting a "
            f"new-use episode in it (washout {spec.new_user_washout} days, episodes joined across gaps of up to "
            f"{spec.gap_era} days).",
        )

    def _summary(
        self, context: StudyContext, exposures: str, episodes: str, drugs: dict[int, _Drug], studied: list[int]
    ) -> ResultTable:
        query = summary_query(context.runner.dialect, exposures, episodes, studied)
        found = {r["ingredient_concept_id"]: r for r in context.runner.query(query).to_pylist()}
        rows = [row for i in studied for row in _summary_rows(drugs[i], found.get(i))]
        return ResultTable(
            "drug_exposure_summary",
            pa.Table.from_pylist(rows, schema=SUMMARY_SCHEMA),
            counts={"count": STAT_COLUMNS},
            description="Per ingredient: persons, episodes and records; episode duration (days); days supply per "
            "record; cumulative dose per person (mg) over the records whose dose drug_strength gives, and the number "
            "of records without one.",
        )

    def _persistence(
        self,
        context: StudyContext,
        spec: DrugUtilisationSpec,
        episodes: str,
        drugs: dict[int, _Drug],
        studied: list[int],
        created: list[str],
    ) -> ResultTable:
        runner = context.runner
        name = context.temp_name("du_days")
        runner.register(name, pa.table({"days": pa.array(spec.persistence_days, pa.int32())}))
        created.append(name)
        found = {
            (r["ingredient_concept_id"], r["days"]): r
            for r in runner.query(persistence_sql(episodes, name, studied)).to_pylist()
        }
        rows = []
        for i in studied:
            for days in spec.persistence_days:
                r = found.get((i, days), {"starting": 0, "followed": 0, "persistent": 0})
                followed, persistent = int(r["followed"] or 0), int(r["persistent"] or 0)
                rows.append(
                    {
                        "ingredient": drugs[i].name,
                        "ingredient_concept_id": drugs[i].public_id,
                        "days": days,
                        "persons_starting": int(r["starting"] or 0),
                        "persons_followed": followed,
                        "persistent": persistent,
                        "percent": 100.0 * persistent / followed if followed else None,
                    }
                )
        return ResultTable(
            "persistence",
            pa.Table.from_pylist(rows, schema=PERSISTENCE_SCHEMA),
            counts={"persons_starting": (), "persons_followed": ("percent",), "persistent": ("percent",)},
            description="First new-use episode per person: among those observed for at least the given days from its "
            "start, the persons whose episode lasted at least that long.",
        )

    def _lines(
        self, context: StudyContext, spec: DrugUtilisationSpec, episodes: str, drugs: dict[int, _Drug]
    ) -> list[ResultTable]:
        found = context.runner.query(
            lines_query(context.runner.dialect, episodes, spec.new_user_washout, spec.switch_days)
        ).to_pylist()
        per_line = [r for r in found if r["kind"] == "line"]
        switches = [r for r in found if r["kind"] == "switch"]
        first = sum(int(r["persons"]) for r in per_line if r["line"] == 1)
        line_rows = [
            {
                "line": int(r["line"]),
                "ingredient": drugs[r["from_id"]].name,
                "ingredient_concept_id": r["from_id"],
                "persons": int(r["persons"]),
                "percent": 100.0 * int(r["persons"]) / first if first else None,
            }
            for r in sorted(per_line, key=lambda r: (int(r["line"]), -r["persons"], r["from_id"]))
        ]
        switch_rows = [
            {
                "from_ingredient": drugs[r["from_id"]].name,
                "from_concept_id": r["from_id"],
                "to_ingredient": drugs[r["to_id"]].name,
                "to_concept_id": r["to_id"],
                "persons": int(r["persons"]),
                "switch_days": spec.switch_days,
                "persons_within_days": int(r["within"] or 0),
            }
            for r in sorted(switches, key=lambda r: (-r["persons"], r["from_id"], r["to_id"]))
        ]
        return [
            ResultTable(
                "treatment_lines",
                pa.Table.from_pylist(line_rows, schema=LINES_SCHEMA),
                counts={"persons": ("percent",)},
                description="Persons by line of treatment and ingredient, among persons whose first episode of any "
                f"listed drug had {spec.new_user_washout} days of prior observation; percent of those persons.",
            ),
            ResultTable(
                "treatment_switching",
                pa.Table.from_pylist(switch_rows, schema=SWITCH_SCHEMA),
                counts={"persons": (), "persons_within_days": ()},
                description="Persons moving from one line's ingredient to the next line's; within_days: the next line "
                f"starts at most {spec.switch_days} days after the previous line's last day (or before it).",
            ),
        ]


# -- SQL ---------------------------------------------------------------------------------------------------------


def exposures_sql(d: Dialect, spec: DrugUtilisationSpec, cohort_table: str, cohort_id: int | None) -> str:
    """One row per exposure: person_id, ingredient_concept_id, drug_concept_id, start_date, end_date,
    days_supply, quantity."""
    if spec.ingredients is None:
        return (
            f"SELECT c.subject_id AS person_id, {COHORT_INGREDIENT} AS ingredient_concept_id, "
            "CAST(NULL AS INTEGER) AS drug_concept_id, c.cohort_start_date AS start_date, "
            "c.cohort_end_date AS end_date, CAST(NULL AS INTEGER) AS days_supply, CAST(NULL AS DOUBLE) AS quantity "
            f"FROM {cohort_table} c WHERE c.cohort_definition_id = {cohort_id}"
        )
    ids = in_list([*spec.ingredients, *spec.switch_ingredients])
    within = ""
    if cohort_id is not None:
        # cohort entries of one cohort never overlap, so an exposure joins at most one entry
        within = (
            f"JOIN {cohort_table} c ON c.cohort_definition_id = {cohort_id} AND c.subject_id = de.person_id "
            "AND de.drug_exposure_start_date >= c.cohort_start_date "
            "AND de.drug_exposure_start_date <= c.cohort_end_date"
        )
    return f"""
WITH codes AS (
  SELECT ancestor_concept_id AS ingredient_concept_id, descendant_concept_id AS drug_concept_id
  FROM concept_ancestor WHERE ancestor_concept_id IN {ids}
  UNION
  SELECT concept_id AS ingredient_concept_id, concept_id AS drug_concept_id FROM concept WHERE concept_id IN {ids}
)
SELECT de.person_id, codes.ingredient_concept_id, de.drug_concept_id, de.drug_exposure_start_date AS start_date,
  {exposure_end_sql(d, "de")} AS end_date, de.days_supply, CAST(de.quantity AS DOUBLE) AS quantity
FROM drug_exposure de JOIN codes ON codes.drug_concept_id = de.drug_concept_id
{within}"""


def episodes_sql(d: Dialect, exposures: str, gap_era: int, washout: int) -> str:
    """Episodes per (person, ingredient), numbered in time, with their duration, the observation period holding
    their start (if any) and whether they are new use."""
    person = "PARTITION BY person_id, ingredient_concept_id"
    new_use = (
        f"CASE WHEN op_start IS NOT NULL AND {d.day_diff('op_start', 'start_date')} >= {washout} AND "
        f"(previous_end IS NULL OR {d.day_diff('previous_end', 'start_date')} > {washout}) THEN 1 ELSE 0 END"
    )
    return f"""
WITH flagged AS (
  SELECT x.*, CASE WHEN start_date <= MAX({d.add_days("end_date", gap_era)}) OVER ({person}
    ORDER BY start_date, end_date ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) THEN 0 ELSE 1 END AS is_first
  FROM {exposures} x
),
numbered AS (
  SELECT f.*, SUM(is_first) OVER ({person} ORDER BY start_date, end_date ROWS UNBOUNDED PRECEDING) AS episode_no
  FROM flagged f
),
episodes AS (
  SELECT person_id, ingredient_concept_id, episode_no, MIN(start_date) AS start_date, MAX(end_date) AS end_date,
    COUNT(*) AS records
  FROM numbered GROUP BY person_id, ingredient_concept_id, episode_no
),
placed AS (
  SELECT e.*, LAG(e.end_date) OVER (PARTITION BY e.person_id, e.ingredient_concept_id ORDER BY e.episode_no)
    AS previous_end, op.observation_period_start_date AS op_start, op.observation_period_end_date AS op_end
  FROM episodes e LEFT JOIN observation_period op ON op.person_id = e.person_id
   AND e.start_date >= op.observation_period_start_date AND e.start_date <= op.observation_period_end_date
)
SELECT person_id, ingredient_concept_id, episode_no, start_date, end_date, records,
  {d.day_diff("start_date", "end_date")} + 1 AS duration,
  CASE WHEN op_end IS NULL THEN 0 ELSE {d.day_diff("start_date", "op_end")} + 1 END AS observed_days,
  CASE WHEN op_start IS NULL THEN NULL ELSE {d.day_diff("op_start", "start_date")} END AS prior_observation,
  {new_use} AS new_use
FROM placed"""


def by_period_sql(periods: str, episodes: str, studied: list[int]) -> str:
    return f"""
SELECT e.ingredient_concept_id, p.period_start, COUNT(DISTINCT e.person_id) AS users,
  COUNT(DISTINCT CASE WHEN e.new_use = 1 AND e.start_date >= p.period_start THEN e.person_id END) AS new_users
FROM {periods} p JOIN {episodes} e ON e.start_date <= p.period_end AND e.end_date >= p.period_start
WHERE e.ingredient_concept_id IN {in_list(studied)}
GROUP BY e.ingredient_concept_id, p.period_start"""


def summary_query(d: Dialect, exposures: str, episodes: str, studied: list[int]) -> str:
    """Per ingredient: persons, episodes, records and episode durations; days supply per record; per person the
    cumulative dose (mg) of the records with a known dose, and how many records have one."""
    factor = " ".join(f"WHEN {unit} THEN {mg}" for unit, mg in MG_PER_UNIT.items())
    return f"""
WITH strength AS (
  SELECT drug_concept_id, ingredient_concept_id, MAX(mg) AS mg FROM (
    SELECT drug_concept_id, ingredient_concept_id,
      amount_value * CASE amount_unit_concept_id {factor} END AS mg
    FROM drug_strength WHERE amount_value IS NOT NULL AND invalid_reason IS NULL
  ) s WHERE mg IS NOT NULL
  GROUP BY drug_concept_id, ingredient_concept_id HAVING COUNT(DISTINCT mg) = 1
),
dosed AS (
  SELECT x.person_id, x.ingredient_concept_id, x.days_supply,
    CASE WHEN x.quantity > 0 THEN x.quantity * s.mg END AS dose_mg
  FROM {exposures} x LEFT JOIN strength s ON s.drug_concept_id = x.drug_concept_id
   AND s.ingredient_concept_id = x.ingredient_concept_id
  WHERE x.ingredient_concept_id IN {in_list(studied)}
),
per_person AS (
  SELECT ingredient_concept_id, person_id, SUM(dose_mg) AS dose_mg FROM dosed
  GROUP BY ingredient_concept_id, person_id
),
records AS (
  SELECT ingredient_concept_id, COUNT(dose_mg) AS records_dosed, {summary_sql(d, "days_supply", "supply")}
  FROM dosed GROUP BY ingredient_concept_id
),
persons AS (
  SELECT ingredient_concept_id, {summary_sql(d, "dose_mg", "dose")} FROM per_person GROUP BY ingredient_concept_id
),
episodes AS (
  SELECT ingredient_concept_id, COUNT(DISTINCT person_id) AS persons, COUNT(*) AS episodes,
    SUM(records) AS records, {summary_sql(d, "duration", "duration")}
  FROM {episodes} WHERE ingredient_concept_id IN {in_list(studied)} GROUP BY ingredient_concept_id
)
SELECT e.*, r.records_dosed, r.supply_n, r.supply_mean, r.supply_sd, r.supply_median, r.supply_q1, r.supply_q3,
  p.dose_n, p.dose_mean, p.dose_sd, p.dose_median, p.dose_q1, p.dose_q3
FROM episodes e JOIN records r ON r.ingredient_concept_id = e.ingredient_concept_id
JOIN persons p ON p.ingredient_concept_id = e.ingredient_concept_id"""


def persistence_sql(episodes: str, days: str, studied: list[int]) -> str:
    return f"""
WITH starts AS (
  SELECT * FROM (
    SELECT e.*, ROW_NUMBER() OVER (PARTITION BY person_id, ingredient_concept_id ORDER BY start_date) AS k
    FROM {episodes} e WHERE new_use = 1 AND ingredient_concept_id IN {in_list(studied)}
  ) n WHERE k = 1
)
SELECT s.ingredient_concept_id, d.days, COUNT(*) AS starting,
  SUM(CASE WHEN s.observed_days >= d.days THEN 1 ELSE 0 END) AS followed,
  SUM(CASE WHEN s.observed_days >= d.days AND s.duration >= d.days THEN 1 ELSE 0 END) AS persistent
FROM starts s CROSS JOIN {days} d GROUP BY s.ingredient_concept_id, d.days"""


def lines_query(d: Dialect, episodes: str, washout: int, switch_days: int) -> str:
    """Rows ``kind = 'line'``: persons per (line, ingredient ``from_id``); rows ``kind = 'switch'``: persons moving
    from one line's ingredient to the next line's, and those whose next line starts at most ``switch_days`` after
    the previous line's last day. Among persons whose first episode of any listed drug had ``washout`` days of
    prior observation."""
    return f"""
WITH ordered AS (
  SELECT e.*, ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY start_date, ingredient_concept_id) AS k
  FROM {episodes} e
),
naive AS (SELECT person_id FROM ordered WHERE k = 1 AND prior_observation >= {washout}),
changes AS (
  SELECT o.*, CASE WHEN LAG(o.ingredient_concept_id) OVER (PARTITION BY o.person_id ORDER BY o.k)
    = o.ingredient_concept_id THEN 0 ELSE 1 END AS is_new_line
  FROM ordered o JOIN naive n ON n.person_id = o.person_id
),
numbered AS (
  SELECT c.*, SUM(is_new_line) OVER (PARTITION BY person_id ORDER BY k ROWS UNBOUNDED PRECEDING) AS line
  FROM changes c
),
lines AS (
  SELECT person_id, line, MIN(ingredient_concept_id) AS ingredient_concept_id, MIN(start_date) AS start_date,
    MAX(end_date) AS end_date
  FROM numbered GROUP BY person_id, line
),
pairs AS (
  SELECT a.person_id, a.ingredient_concept_id AS from_id, b.ingredient_concept_id AS to_id,
    CASE WHEN b.start_date <= {d.add_days("a.end_date", switch_days)} THEN 1 ELSE 0 END AS within
  FROM lines a JOIN lines b ON b.person_id = a.person_id AND b.line = a.line + 1
)
SELECT 'line' AS kind, CAST(line AS BIGINT) AS line, ingredient_concept_id AS from_id,
  CAST(NULL AS INTEGER) AS to_id, COUNT(*) AS persons, CAST(NULL AS BIGINT) AS within
FROM lines GROUP BY line, ingredient_concept_id
UNION ALL
SELECT 'switch' AS kind, CAST(NULL AS BIGINT) AS line, from_id, to_id, COUNT(DISTINCT person_id) AS persons,
  COUNT(DISTINCT CASE WHEN within = 1 THEN person_id END) AS within
FROM pairs GROUP BY from_id, to_id"""


# -- pure parts ----------------------------------------------------------------------------------------------------


def calendar_periods(first: dt.date, last: dt.date, interval: str) -> Iterator[tuple[dt.date, dt.date]]:
    """Calendar years, quarters or months from the one holding ``first`` to the one holding ``last``."""
    months = {"years": 12, "quarters": 3, "months": 1}[interval]
    start = dt.date(first.year, 1 + (first.month - 1) // months * months, 1)
    while start <= last:
        index = start.year * 12 + start.month - 1 + months
        following = dt.date(index // 12, index % 12 + 1, 1)
        yield start, following - dt.timedelta(days=1)
        start = following


def _summary_rows(drug: _Drug, found: dict[str, Any] | None) -> list[dict[str, Any]]:
    def row(variable: str, count: int, **stats: Any) -> dict[str, Any]:
        return {"ingredient": drug.name, "ingredient_concept_id": drug.public_id, "variable": variable,
                "count": count, **{s: stats.get(s) for s in STAT_COLUMNS}}  # fmt: skip

    def stats(prefix: str) -> dict[str, Any]:
        return summary_values(found, prefix) if found else {"count": 0}

    def number(column: str) -> int:
        return int(found[column] or 0) if found else 0

    records, supply = number("records"), stats("supply")
    return [
        row("persons", number("persons")),
        row("episodes", number("episodes")),
        row("records", records),
        row("episode_duration_days", **stats("duration")),
        row("days_supply", **supply),
        row("records_without_days_supply", records - supply["count"]),
        row("cumulative_dose_mg", **stats("dose")),
        row("records_without_dose", records - number("records_dosed")),
    ]
