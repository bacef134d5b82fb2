"""Row-level plausibility checks of CDM tables, defined once as data.

Each check is a SQL predicate over a staged table; ``record_issues`` evaluates them all in one scan into the
``_issues`` table. A ``reject`` check puts the row aside (in the release's
rejects file, with its content and the reason); a ``flag`` check keeps the row and reports it. Structural
problems (unreadable file, wrong type, missing required value, duplicate key) are not here: they stop
the load (see ``cdm_load``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import duckdb

from hygie.cdm.schema import Table
from hygie.ingest.staging import StagedTable
from hygie.releases.manifest import UnknownConcept
from hygie.sql import literal

if TYPE_CHECKING:
    from hygie.releases import ReleaseBuilder

Action = Literal["reject", "flag"]

EARLIEST_DATE = dt.date(1800, 1, 1)
MAX_UNKNOWN_CONCEPTS = 1000
ISSUE_COLUMNS = (
    "table_name VARCHAR, source_file VARCHAR, source_row BIGINT, check_name VARCHAR, action VARCHAR, "
    "column_name VARCHAR, reason VARCHAR, record JSON"
)


@dataclass(frozen=True)
class RowCheck:
    name: str
    action: Action
    column: str
    predicate: str  # SQL, true for a row with the problem (alias `t`); may use the person's row as `p`
    reason: str


# The person of a row, for the checks that need it: a LEFT JOIN on a key made unique (the highest year of birth of
# a repeated id is the one an EXISTS over its rows would test), rather than correlated EXISTS subqueries, which
# cost DuckDB a distinct of the correlated column per scan (decision 0017).
PERSON_OF_ROW = (
    "LEFT JOIN (SELECT person_id, max(year_of_birth) AS year_of_birth, true AS found FROM _person GROUP BY 1) p "
    "ON p.person_id = t.person_id"
)


def _date_pairs(table: Table) -> list[tuple[str, str]]:
    """(start, end) date columns of a table, found by name: x_start_date/x_end_date, procedure_date/_end_date."""
    names = set(table.column_names)
    pairs = []
    for col in table.columns:
        if col.base_type != "date":
            continue
        if col.name.endswith("_start_date"):
            end = col.name[: -len("_start_date")] + "_end_date"
        elif col.name.endswith("_date") and not col.name.endswith("_end_date"):
            end = col.name[: -len("_date")] + "_end_date"
        else:
            continue
        if end in names:
            pairs.append((col.name, end))
    return pairs


FLAG_CHECKS = ("orphan", "before_birth", "duplicate_key")


def row_checks(
    table: Table, *, today: dt.date, has_person: bool, stage: str, duplicate_keys_allowed: bool = False
) -> list[RowCheck]:
    """The checks that apply to ``table``, staged as the SQL table ``stage`` (aliased ``t``)."""
    if table.is_vocabulary or table.group in ("results", "metadata"):
        return []
    checks: list[RowCheck] = []
    pk = table.primary_key
    if pk is not None and duplicate_keys_allowed and table.name != "person":  # else duplicates are refused
        checks.append(
            RowCheck(
                "duplicate_key",
                "flag",
                pk.name,
                f'"{pk.name}" IN (SELECT "{pk.name}" FROM "{stage}" GROUP BY 1 HAVING count(*) > 1)',
                f"{pk.name} is not unique",
            )
        )
    for start, end in _date_pairs(table):
        checks.append(RowCheck("end_before_start", "reject", end, f'"{end}" < "{start}"', f"{end} is before {start}"))
    for col in table.columns:
        if col.is_date:
            checks.append(
                RowCheck(
                    "implausible_date",
                    "reject",
                    col.name,
                    f"CAST(\"{col.name}\" AS DATE) NOT BETWEEN DATE '{EARLIEST_DATE}' AND DATE '{today}'",
                    f"{col.name} is before {EARLIEST_DATE} or in the future",
                )
            )
    if table.name == "person":
        checks.append(
            RowCheck(
                "implausible_year_of_birth",
                "reject",
                "year_of_birth",
                f"year_of_birth NOT BETWEEN {EARLIEST_DATE.year} AND {today.year}",
                f"year_of_birth is before {EARLIEST_DATE.year} or in the future",
            )
        )
    elif table.has_person_id and has_person:
        checks.append(
            RowCheck(
                "orphan",
                "flag",
                "person_id",
                "p.found IS NULL",
                "person_id has no row in person",
            )
        )
        first_date = next((c.name for c in table.columns if c.base_type == "date"), None)
        if first_date is not None:
            checks.append(
                RowCheck(
                    "before_birth",
                    "flag",
                    first_date,
                    f'coalesce(year(t."{first_date}") < p.year_of_birth, false)',
                    f"{first_date} is before the person's year of birth",
                )
            )
    return checks


def record_issues(
    con: duckdb.DuckDBPyConnection,
    staged: StagedTable,
    today: dt.date,
    *,
    has_person: bool,
    duplicate_keys_allowed: bool,
) -> tuple[int, int]:
    """Record the table's row-level issues in ``_issues`` in one scan; return (rejected, flagged-and-kept)."""
    checks = row_checks(
        staged.table,
        today=today,
        has_person=has_person,
        stage=staged.stage,
        duplicate_keys_allowed=duplicate_keys_allowed,
    )
    if not checks:
        return 0, 0
    # One scan evaluates every check; a row yields one issue per failed check.
    hits = ", ".join(f"CASE WHEN {c.predicate} THEN {i} END" for i, c in enumerate(checks))
    person = PERSON_OF_ROW if any(c.name in ("orphan", "before_birth") for c in checks) else ""
    con.execute(
        f"CREATE TEMP TABLE _hits AS SELECT _row, unnest(list_filter([{hits}], x -> x IS NOT NULL)) AS check_index "
        f'FROM "{staged.stage}" t {person} WHERE ' + " OR ".join(f"({c.predicate})" for c in checks)
    )
    catalogue = ", ".join(
        f"({i}, {literal(c.name)}, {literal(c.action)}, {literal(c.column)}, {literal(c.reason)})"
        for i, c in enumerate(checks)
    )
    # SQL literals rather than bound parameters: binding makes DuckDB's Python client import pandas (seconds).
    table, file = literal(staged.table.name), literal(staged.source.display)
    con.execute(
        f"INSERT INTO _issues SELECT {table}, {file}, h._row, k.name, k.action, k.col, k.reason, "
        f"CASE WHEN k.action = 'reject' THEN to_json(t) END "
        f"FROM _hits h JOIN (VALUES {catalogue}) k(i, name, action, col, reason) ON k.i = h.check_index "
        f'JOIN "{staged.stage}" t ON t._row = h._row'
    )
    con.execute("DROP TABLE _hits")
    rejected, flagged = con.execute(
        "SELECT count(DISTINCT source_row) FILTER (action = 'reject'), "
        "count(DISTINCT source_row) FILTER (action = 'flag' AND source_row NOT IN "
        f"(SELECT source_row FROM _issues WHERE table_name = {table} AND action = 'reject')) "
        f"FROM _issues WHERE table_name = {table}"
    ).fetchone()
    for name, n in con.execute(
        f"SELECT check_name, count(*) FROM _issues WHERE table_name = {table} GROUP BY 1 ORDER BY 1"
    ).fetchall():
        action = "flagged (kept)" if name in FLAG_CHECKS else "rejected"
        staged.notes.append(f"{staged.source.display}: {n} row(s) {action}: {name}")
    return rejected, flagged


def unknown_concepts(con: duckdb.DuckDBPyConnection, staged: StagedTable) -> list[UnknownConcept]:
    """Concept ids the table uses that the release's vocabulary lacks (0, "no concept", is not reported)."""
    if staged.table.is_vocabulary:
        return []
    # Only the columns the source gives values to: the others are NULL in every row.
    supplied = set(staged.supplied)
    columns = [c.name for c in staged.table.columns if c.is_concept and c.name in supplied]
    if not columns:
        return []
    # One scan counts the values of every concept column (a grouping set per column); only those few
    # distinct values are then looked up in the vocabulary.
    quoted = [f'"{c}"' for c in columns]
    every = (1 << len(columns)) - 1
    value = " ".join(f"WHEN {every ^ (1 << (len(columns) - 1 - i))} THEN {q}" for i, q in enumerate(quoted))
    which = " ".join(f"WHEN {every ^ (1 << (len(columns) - 1 - i))} THEN {i}" for i in range(len(columns)))
    rows = con.execute(
        f"WITH counts AS (SELECT grouping_id({', '.join(quoted)}) AS g, {', '.join(quoted)}, count(*) AS n "
        f'FROM "{staged.stage}" GROUP BY GROUPING SETS ({", ".join(f"({q})" for q in quoted)})), '
        f"v AS (SELECT CASE g {which} END AS i, CASE g {value} END AS concept_id, n FROM counts) "
        "SELECT i, concept_id, n FROM v WHERE concept_id <> 0 AND NOT EXISTS "
        "(SELECT 1 FROM _concept k WHERE k.concept_id = v.concept_id) ORDER BY i, n DESC, concept_id"
    ).fetchall()
    return [UnknownConcept(staged.table.name, columns[i], int(cid), int(n)) for i, cid, n in rows]


def concept_warnings(builder: ReleaseBuilder, has_vocabulary: bool) -> list[str]:
    if not has_vocabulary:
        return ["no concept table in this release: concept ids were not checked against a vocabulary"]
    found = builder.unknown_concepts
    if not found:
        return []
    warnings = [
        f"{len(found)} concept id(s) used by {sum(u.rows for u in found)} row value(s) are absent from the "
        "vocabulary (see unknown_concepts)"
    ]
    if len(found) > MAX_UNKNOWN_CONCEPTS:
        builder.unknown_concepts = sorted(found, key=lambda u: -u.rows)[:MAX_UNKNOWN_CONCEPTS]
        warnings.append(f"unknown_concepts lists the {MAX_UNKNOWN_CONCEPTS} most used of {len(found)}")
    return warnings
