"""Data-quality checks of a release or a deposit, in the spirit of OHDSI's Data Quality Dashboard.

Each check is data: a category (conformance, completeness, plausibility), the table it looks at, SQL counting
the rows that fail it and the rows it applies to, and a threshold in percent. A check above its threshold is a
``warning``, or a ``fail`` when its severity is ``fatal`` (a build or deposit is then refused by callers that
enforce it). Thresholds and severities can be overridden per check (``QualityConfig``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import duckdb

from hygie.cdm.narrow import pad_views
from hygie.cdm.schema import cdm_schema
from hygie.errors import HygieError

if TYPE_CHECKING:
    from hygie.releases import ReleaseBuilder

ID_BITS = 48  # record ids of a built release: deposit index * 2**48 + the site's id (ingest.build)

Category = Literal["conformance", "completeness", "plausibility"]
Severity = Literal["warning", "fatal"]

# Event tables: (table, concept column, first date column, end date column or None).
EVENT_TABLES = (
    ("condition_occurrence", "condition_concept_id", "condition_start_date", "condition_end_date"),
    ("drug_exposure", "drug_concept_id", "drug_exposure_start_date", "drug_exposure_end_date"),
    ("procedure_occurrence", "procedure_concept_id", "procedure_date", "procedure_end_date"),
    ("measurement", "measurement_concept_id", "measurement_date", None),
    ("observation", "observation_concept_id", "observation_date", None),
    ("visit_occurrence", "visit_concept_id", "visit_start_date", "visit_end_date"),
    ("device_exposure", "device_concept_id", "device_exposure_start_date", "device_exposure_end_date"),
)

# Plausible lab values by LOINC code and unit: (code, unit, low, high). Outside: implausible.
LAB_RANGES = (
    # creatinine
    ("2160-0", "umol/L", 5, 3000),
    ("2160-0", "mg/dL", 0.05, 35),
    # HbA1c
    ("4548-4", "%", 2, 25),
    ("4548-4", "mmol/mol", 5, 250),
    # INR (dimensionless: written in several UCUM ways)
    ("6301-6", "{INR}", 0.5, 15),
    ("6301-6", "{ratio}", 0.5, 15),
    ("6301-6", "1", 0.5, 15),
    # potassium, sodium
    ("2823-3", "mmol/L", 1, 12),
    ("2951-2", "mmol/L", 90, 200),
    # glucose
    ("2345-7", "mmol/L", 0.5, 60),
    ("2345-7", "mg/dL", 10, 1100),
    # haemoglobin
    ("718-7", "g/dL", 2, 25),
    ("718-7", "g/L", 20, 250),
)


@dataclass(frozen=True)
class Check:
    name: str
    category: Category
    table: str
    description: str
    failing: str  # SQL: count of rows failing the check
    applicable: str  # SQL: count of rows the check applies to
    threshold_pct: float = 0.0
    severity: Severity = "warning"
    where: str | None = None  # set by ``_row_check``: ``failing`` counts the rows of ``table t`` where this holds
    joins: tuple[str, ...] = ()  # LEFT JOINs ``where`` needs (each to a table where the join key is unique)
    applicable_where: str | None = None  # ``_row_check``: ``applicable`` counts the rows where this holds
    none_failing_if: str | None = None  # SQL true when no row can fail: ``failing`` is then 0 without running it


# Lookups a row check may join: keys unique in both deposits (a repeated person_id is refused) and releases.
PERSON_OF_ROW = "LEFT JOIN person p ON p.person_id = t.person_id"
# A person's first death (a deposit may record several): one row per person, so a row is counted once.
DEATH_OF_ROW = (
    "LEFT JOIN (SELECT person_id, min(death_date) AS death_date FROM death GROUP BY 1) d ON d.person_id = t.person_id"
)
CONCEPT_OF = "LEFT JOIN concept c ON c.concept_id = t.{column}"


def _row_check(
    name: str,
    category: Category,
    table: str,
    description: str,
    where: str,
    applicable: str,
    joins: tuple[str, ...] = (),
    applicable_where: str | None = None,
    **options: object,
) -> Check:
    """A check counting the rows of ``table`` (alias ``t``) where ``where`` holds: ``run`` counts every such
    check of a table in one scan of it, instead of one scan per check. ``joins`` add at most one row each (a
    unique key), so that counting rows of the join counts rows of the table; joins, not correlated
    subqueries, which cost DuckDB a distinct of the correlated columns per scan. ``applicable_where``, if
    given, is what ``applicable`` counts, in the same scan (``applicable`` is then its SQL for the record)."""
    failing = f"SELECT count(*) FROM {table} t {' '.join(joins)} WHERE {where}"
    if applicable_where is not None:
        applicable = f"SELECT count(*) FROM {table} t {' '.join(joins)} WHERE {applicable_where}"
    return Check(
        name,
        category,
        table,
        description,
        failing,
        applicable,
        where=where,
        joins=joins,
        applicable_where=applicable_where,
        **options,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class Result:
    name: str
    category: str
    table: str
    description: str
    failing: int
    applicable: int
    percent: float
    threshold_pct: float
    severity: str
    status: str  # pass, warning, fail


@dataclass
class QualityConfig:
    """Per-check overrides: {name: {"threshold_pct": x, "severity": "fatal"|"warning"}}."""

    overrides: dict[str, dict[str, object]] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: Path) -> QualityConfig:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise HygieError(f"{path.name}: not a readable JSON quality configuration ({e})") from None
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise HygieError(f"{path.name}: expected {{check name: {{threshold_pct, severity}}}}")
        return cls(data)


def checks(tables: set[str], several_deposits: str | None = None) -> list[Check]:
    """The checks that apply to a database holding ``tables`` (CDM tables as views).

    ``several_deposits``: a relation whose ``person_id`` lists (at least) every person recorded by two deposits
    or more; a release build knows them from linkage, which spares the duplicate checks a grouping of every
    row by person. Without it, the checks find those persons in the rows."""
    out: list[Check] = []
    has = tables.__contains__
    if has("person") and has("observation_period"):
        out.append(
            Check(
                "person_without_observation_period",
                "completeness",
                "person",
                "persons with no observation period: invisible to every cohort",
                "SELECT count(*) FROM person p ANTI JOIN observation_period o USING (person_id)",
                "SELECT count(*) FROM person",
                threshold_pct=1.0,
            )
        )
        out.append(
            Check(
                "overlapping_observation_periods",
                "plausibility",
                "observation_period",
                "observation periods of a person that overlap",
                "SELECT count(*) FROM observation_period a JOIN observation_period b ON a.person_id = b.person_id "
                "AND a.observation_period_id < b.observation_period_id "
                "AND a.observation_period_start_date <= b.observation_period_end_date "
                "AND b.observation_period_start_date <= a.observation_period_end_date",
                "SELECT count(*) FROM observation_period",
                severity="fatal",
            )
        )
    if has("person") and has("concept"):
        out.append(
            Check(
                "gender_is_a_gender_concept",
                "conformance",
                "person",
                "gender_concept_id is 0 or a Gender concept",
                "SELECT count(*) FROM person p WHERE gender_concept_id <> 0 AND NOT EXISTS (SELECT 1 FROM concept c "
                "WHERE c.concept_id = p.gender_concept_id AND c.domain_id = 'Gender')",
                "SELECT count(*) FROM person",
            )
        )
    for table, concept, start, end in EVENT_TABLES:
        if not has(table):
            continue
        out.append(
            _row_check(
                f"{table}_unmapped",
                "completeness",
                table,
                f"rows whose {concept} is 0 (source code not mapped)",
                f"{concept} = 0",
                f"SELECT count(*) FROM {table}",
                threshold_pct=5.0,
            )
        )
        if has("concept"):
            out.append(
                _row_check(
                    f"{table}_standard_concepts",
                    "conformance",
                    table,
                    f"{concept} values that are not standard",
                    f"t.{concept} <> 0 AND c.standard_concept IS DISTINCT FROM 'S'",
                    f"SELECT count(*) FROM {table} WHERE {concept} <> 0",
                    (CONCEPT_OF.format(column=concept),),
                    applicable_where=f"t.{concept} <> 0",
                    threshold_pct=1.0,
                )
            )
        if has("person"):
            out.append(
                _row_check(
                    f"{table}_before_birth",
                    "plausibility",
                    table,
                    f"{start} before the person's year of birth",
                    f"year(t.{start}) < p.year_of_birth",
                    f"SELECT count(*) FROM {table}",
                    (PERSON_OF_ROW,),
                )
            )
        if has("death"):
            out.append(
                _row_check(
                    f"{table}_after_death",
                    "plausibility",
                    table,
                    f"{start} more than 30 days after death",
                    f"t.{start} > d.death_date + 30",
                    f"SELECT count(*) FROM {table}",
                    (DEATH_OF_ROW,),
                )
            )
        out.append(
            _row_check(
                f"{table}_future",
                "plausibility",
                table,
                f"{start} in the future",
                f"t.{start} > current_date",
                f"SELECT count(*) FROM {table}",
                severity="fatal",
            )
        )
        if end:
            out.append(
                _row_check(
                    f"{table}_end_before_start",
                    "plausibility",
                    table,
                    f"{end} before {start}",
                    f"t.{end} < t.{start}",
                    f"SELECT count(*) FROM {table}",
                    severity="fatal",
                )
            )
        if has("observation_period"):
            out.append(
                Check(  # an anti join: a person has several periods, and NOT EXISTS costs 6x more
                    f"{table}_outside_observation",
                    "plausibility",
                    table,
                    f"{start} outside every observation period",
                    f"SELECT count(*) FROM {table} t ANTI JOIN observation_period o ON o.person_id = t.person_id "
                    f"AND t.{start} BETWEEN o.observation_period_start_date AND o.observation_period_end_date",
                    f"SELECT count(*) FROM {table}",
                    threshold_pct=5.0,
                )
            )
        key = cdm_schema("5.4")[table].primary_key
        assert key is not None
        in_several_deposits = (
            f"SELECT person_id FROM {several_deposits}"
            if several_deposits
            else f"SELECT person_id FROM {table} WHERE {concept} <> 0 GROUP BY 1 "
            f"HAVING min({key.name} // {2**ID_BITS}) <> max({key.name} // {2**ID_BITS})"
        )
        out.append(
            Check(
                f"{table}_duplicate_across_sites",
                "plausibility",
                table,
                "the same person, concept and date recorded by two deposits (a record id says its deposit)",
                # Only persons recorded by two deposits can have such rows: they are found first (one group
                # per person), and only their rows are grouped by person, concept and date.
                f"SELECT count(*) FROM (SELECT person_id, {concept}, {start} FROM {table} t WHERE {concept} <> 0 "
                f"AND person_id IN ({in_several_deposits}) "
                # min <> max: the same as count(DISTINCT deposit) > 1 (ids are never null), at a fraction of
                # the cost of a distinct count per group.
                f"GROUP BY ALL HAVING min({key.name} // {2**ID_BITS}) <> max({key.name} // {2**ID_BITS}))",
                f"SELECT count(*) FROM {table}",
                threshold_pct=10.0,
                # Every row of one deposit (a deposit's own tables, a release of one site): no person can have
                # rows of two, which one pass over the ids shows, without grouping the rows by person.
                none_failing_if=f"SELECT coalesce(min({key.name} // {2**ID_BITS}) = max({key.name} // {2**ID_BITS}), "
                f"true) FROM {table}",
            )
        )
    if has("visit_occurrence"):
        out.append(
            Check(
                "overlapping_inpatient_stays",
                "plausibility",
                "visit_occurrence",
                "inpatient stays of a person that overlap (double counting of a stay?)",
                "SELECT count(*) FROM visit_occurrence a JOIN visit_occurrence b ON a.person_id = b.person_id "
                "AND a.visit_occurrence_id < b.visit_occurrence_id AND a.visit_concept_id = 9201 "
                "AND b.visit_concept_id = 9201 AND a.visit_start_date < b.visit_end_date "
                "AND b.visit_start_date < a.visit_end_date",
                "SELECT count(*) FROM visit_occurrence WHERE visit_concept_id = 9201",
                threshold_pct=1.0,
            )
        )
    if has("measurement"):
        # Both lab checks are row checks of measurement, counted in its one scan: a range is found by a LEFT
        # JOIN on (code, unit), unique in LAB_RANGES, and a known lab by a LEFT JOIN on its distinct codes.
        ranges = ", ".join(f"('{c}', '{u}', {lo}, {hi})" for c, u, lo, hi in LAB_RANGES)
        labs = (
            f"LEFT JOIN (VALUES {ranges}) r(code, unit, low, high) "
            "ON r.code = t.measurement_source_value AND r.unit = t.unit_source_value",
            f"LEFT JOIN (SELECT DISTINCT code FROM (VALUES {ranges}) l(code, unit, low, high)) k "
            "ON k.code = t.measurement_source_value",
        )
        out.append(
            _row_check(
                "implausible_lab_values",
                "plausibility",
                "measurement",
                "lab values outside physiological limits for their unit (creatinine, HbA1c, INR, K, Na, glucose, Hb)",
                "t.value_as_number NOT BETWEEN r.low AND r.high",
                "",
                labs[:1],
                applicable_where="r.code IS NOT NULL AND t.value_as_number IS NOT NULL",
                threshold_pct=0.5,
            )
        )
        out.append(
            _row_check(
                "lab_units_unknown",
                "conformance",
                "measurement",
                "values of the known labs with a unit not listed",
                "t.value_as_number IS NOT NULL AND k.code IS NOT NULL AND r.code IS NULL",
                "",
                labs,
                applicable_where="k.code IS NOT NULL",
                threshold_pct=1.0,
            )
        )
    return out


def run(
    con: duckdb.DuckDBPyConnection,
    tables: set[str],
    config: QualityConfig | None = None,
    *,
    several_deposits: str | None = None,
) -> list[Result]:
    config = config or QualityConfig()
    found = checks(tables, several_deposits)
    counted = _count_row_checks(con, found)
    applicable_counts: dict[str, int] = {}  # the same denominators recur (rows of a table): counted once
    results = []
    for check in found:
        override = config.overrides.get(check.name, {})
        threshold = float(override.get("threshold_pct", check.threshold_pct))  # type: ignore[arg-type]
        severity = str(override.get("severity", check.severity))
        if check.name in counted:
            failing = counted[check.name]
        elif check.none_failing_if is not None and con.execute(check.none_failing_if).fetchone()[0]:
            failing = 0
        else:
            failing = con.execute(check.failing).fetchone()[0]
        if check.applicable_where is not None:
            applicable = counted[f"{check.name}:applicable"]
        else:
            if check.applicable not in applicable_counts:
                applicable_counts[check.applicable] = con.execute(check.applicable).fetchone()[0]
            applicable = applicable_counts[check.applicable]
        percent = round(100 * failing / applicable, 3) if applicable else 0.0
        status = "pass" if percent <= threshold else ("fail" if severity == "fatal" else "warning")
        results.append(
            Result(
                check.name,
                check.category,
                check.table,
                check.description,
                failing,
                applicable,
                percent,
                threshold,
                severity,
                status,
            )
        )
    return results


def _count_row_checks(con: duckdb.DuckDBPyConnection, found: list[Check]) -> dict[str, int]:
    """Failing rows of every ``_row_check`` (``name``), and its applicable rows when it says which
    (``name:applicable``), one scan per table."""
    by_table: dict[str, list[tuple[str, str]]] = {}
    joins_of: dict[str, dict[str, None]] = {}
    for check in found:
        if check.where is None:
            continue
        counts = by_table.setdefault(check.table, [])
        counts.append((check.name, check.where))
        if check.applicable_where is not None:
            counts.append((f"{check.name}:applicable", check.applicable_where))
        joins_of.setdefault(check.table, {}).update(dict.fromkeys(check.joins))  # each lookup joined once
    counted: dict[str, int] = {}
    for table, group in by_table.items():
        counts = con.execute(
            "SELECT "
            + ", ".join(f"count_if({where})" for _, where in group)
            + f" FROM {table} t "
            + " ".join(joins_of[table])
        ).fetchone()
        counted.update({name: int(n or 0) for (name, _), n in zip(group, counts, strict=True)})  # NULL: no row
    return counted


def as_json(results: list[Result]) -> list[dict[str, object]]:
    return [asdict(r) for r in results]


def check_before_publishing(
    builder: ReleaseBuilder,
    config: QualityConfig | None = None,
    *,
    narrow: bool = False,
    several_deposits: str | None = None,
) -> list[Result]:
    """Run the checks on what a builder wrote; record them; refuse to publish if a fatal check fails.
    ``narrow``: the builder wrote only the columns that have a value (``cdm.narrow``); the checks see every
    CDM column. ``several_deposits``: see ``checks``."""
    views = builder.table_views()
    if narrow:
        pad_views(builder.con, {v: v for v in views})
    results = run(builder.con, views, config, several_deposits=several_deposits)
    builder.quality = as_json(results)
    failed = [r for r in results if r.status == "fail"]
    if failed:
        raise QualityError(
            "data-quality checks failed, nothing published:\n"
            + "\n".join(
                f"{r.name}: {r.failing} of {r.applicable} rows ({r.percent}%) - {r.description}" for r in failed
            )
        )
    return results


class QualityError(HygieError):
    """A fatal data-quality check failed."""


def html_report(name: str, results: list[dict[str, object]], *, synthetic: bool) -> str:
    from hygie.reports.html import page, table

    columns = [
        "status",
        "check",
        "category",
        "table",
        "failing",
        "applicable",
        "percent",
        "threshold_pct",
        "severity",
        "description",
    ]
    rows = [
        [
            r["status"],
            r["name"],
            r["category"],
            r["table"],
            r["failing"],
            r["applicable"],
            r["percent"],
            r["threshold_pct"],
            r["severity"],
            r["description"],
        ]
        for r in results
    ]
    counts = {s: sum(1 for r in results if r["status"] == s) for s in ("pass", "warning", "fail")}
    summary = f"<p>{counts['pass']} passed, {counts['warning']} warning(s), {counts['fail']} failed.</p>"
    return page(
        f"Data quality: {name}",
        [summary, table(columns, rows, status_column="status")],
        banner="SYNTHETIC data" if synthetic else None,
    )
