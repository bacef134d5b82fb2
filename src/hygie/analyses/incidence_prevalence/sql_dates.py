"""The date SQL incidence and prevalence need beyond ``Dialect`` (adding years, building a date of birth).

Both engines clamp 29 February to 28 February when adding years, as ``intervals.add_years`` does.
"""

from __future__ import annotations

import datetime as dt

from hygie.cohorts.compile import Dialect


def date_literal(day: dt.date) -> str:
    return f"DATE '{day.isoformat()}'"


def add_years(dialect: Dialect, date_sql: str, years_sql: str | int) -> str:
    if dialect.name == "spark":
        return f"add_months({date_sql}, 12 * CAST({years_sql} AS INT))"
    return f"CAST(({date_sql}) + INTERVAL (CAST({years_sql} AS INTEGER)) YEAR AS DATE)"


def date_of_birth(year_sql: str, month_sql: str, day_sql: str) -> str:
    """A missing month or day of birth counts as 1 (January, the first of the month)."""
    return (
        f"make_date(CAST({year_sql} AS INT), CAST(coalesce({month_sql}, 1) AS INT), "
        f"CAST(coalesce({day_sql}, 1) AS INT))"
    )
