"""The SQL incidence and prevalence need beyond ``Dialect``: birthdays from the parts of a date of birth, and a
row identifier.

Birthdays are built with ``make_date`` from integer parts (both engines; about twice as fast on DuckDB as adding
an ``INTERVAL``), and 29 February becomes 28 February in a common year, as ``intervals.add_years`` does.
"""

from __future__ import annotations

import datetime as dt

from hygie.cohorts.compile import Dialect


def date_literal(day: dt.date) -> str:
    return f"DATE '{day.isoformat()}'"


def birth_parts(year_sql: str, month_sql: str, day_sql: str) -> tuple[str, str, str]:
    """Year, month and day of birth as INT; a missing month or day counts as 1 (January, the first)."""
    return (
        f"CAST({year_sql} AS INT)",
        f"CAST(coalesce({month_sql}, 1) AS INT)",
        f"CAST(coalesce({day_sql}, 1) AS INT)",
    )


def date_of_birth(year_sql: str, month_sql: str, day_sql: str) -> str:
    return f"make_date({', '.join(birth_parts(year_sql, month_sql, day_sql))})"


def birthday(year_sql: str, month_sql: str, day_sql: str, years_sql: str | int) -> str:
    """The date ``years_sql`` years after the date of birth given by INT parts (see ``birth_parts``)."""
    year = f"({year_sql} + CAST({years_sql} AS INT))"
    common = f"NOT ({year} % 4 = 0 AND ({year} % 100 <> 0 OR {year} % 400 = 0))"
    day = f"CASE WHEN {month_sql} = 2 AND {day_sql} = 29 AND {common} THEN 28 ELSE {day_sql} END"
    return f"make_date({year}, {month_sql}, {day})"


def row_id(dialect: Dialect) -> str:
    """A unique BIGINT per row of a statement (no ordering: neither engine sorts for it)."""
    if dialect.name == "spark":
        return "monotonically_increasing_id()"
    return "row_number() OVER ()"
