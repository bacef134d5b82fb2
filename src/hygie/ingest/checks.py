"""Row-level plausibility checks of CDM tables, defined once as data.

Each check is a SQL predicate over a staged table. A ``reject`` check puts the row aside (in the release's
rejects file, with its content and the reason); a ``flag`` check keeps the row and reports it. Structural
problems (unreadable file, wrong type, missing required value, duplicate key) are not here: they stop
the load (see ``cdm_load``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from hygie.cdm.schema import Table

Action = Literal["reject", "flag"]

EARLIEST_DATE = dt.date(1800, 1, 1)


@dataclass(frozen=True)
class RowCheck:
    name: str
    action: Action
    column: str
    predicate: str  # SQL, true for a row with the problem; may refer to the staged `person` as `_person`
    reason: str


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
                "NOT EXISTS (SELECT 1 FROM _person p WHERE p.person_id = t.person_id)",
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
                    f"EXISTS (SELECT 1 FROM _person p WHERE p.person_id = t.person_id "
                    f'AND year(t."{first_date}") < p.year_of_birth)',
                    f"{first_date} is before the person's year of birth",
                )
            )
    return checks
