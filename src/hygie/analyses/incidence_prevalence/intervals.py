"""Calendar intervals of incidence and period prevalence, and the time points of point prevalence (pure Python).

Units are calendar years, quarters and months, ISO weeks (Monday to Sunday), or "overall". A study window
[first, last] is cut into the units that overlap it, each clipped to the window; with
``complete_database_intervals`` only the units the window covers entirely are kept ("overall" is never
filtered). Point prevalence takes one day per unit (its start, middle or end) inside the window.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

UNITS = ("years", "quarters", "months", "weeks")


@dataclass(frozen=True)
class Interval:
    start: dt.date
    end: dt.date


def add_years(day: dt.date, years: int) -> dt.date:
    """``day`` plus whole years; 29 February becomes 28 February in a common year (as DuckDB and Spark do)."""
    year = day.year + years
    try:
        return day.replace(year=year)
    except ValueError:
        return day.replace(year=year, day=28)


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` plus whole months, clamped to the last day of the target month."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return dt.date(year, month + 1, min(day.day, _month_length(year, month + 1)))


def _month_length(year: int, month: int) -> int:
    following = dt.date(year + (month == 12), month % 12 + 1, 1)
    return (following - dt.timedelta(days=1)).day


def unit_start(day: dt.date, unit: str) -> dt.date:
    """The first day of the unit containing ``day``."""
    if unit == "years":
        return dt.date(day.year, 1, 1)
    if unit == "quarters":
        return dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    if unit == "months":
        return dt.date(day.year, day.month, 1)
    if unit == "weeks":
        return day - dt.timedelta(days=day.weekday())  # ISO weeks start on Monday
    raise ValueError(f"unknown interval {unit!r}: use one of {', '.join(UNITS)}")


def next_unit(start: dt.date, unit: str) -> dt.date:
    """The first day of the unit after the one starting on ``start``."""
    if unit == "years":
        return dt.date(start.year + 1, 1, 1)
    if unit == "quarters":
        return add_months(start, 3)
    if unit == "months":
        return add_months(start, 1)
    if unit == "weeks":
        return start + dt.timedelta(days=7)
    raise ValueError(f"unknown interval {unit!r}: use one of {', '.join(UNITS)}")


def units(first: dt.date, last: dt.date, unit: str) -> list[Interval]:
    """The whole units overlapping [first, last], unclipped."""
    out = []
    start = unit_start(first, unit)
    while start <= last:
        following = next_unit(start, unit)
        out.append(Interval(start, following - dt.timedelta(days=1)))
        start = following
    return out


def study_intervals(first: dt.date, last: dt.date, unit: str, complete_database_intervals: bool) -> list[Interval]:
    """The intervals of incidence and period prevalence over the window [first, last]."""
    if first > last:
        return []
    if unit == "overall":
        return [Interval(first, last)]
    out = []
    for whole in units(first, last, unit):
        clipped = Interval(max(whole.start, first), min(whole.end, last))
        if complete_database_intervals and clipped != whole:
            continue
        out.append(clipped)
    return out


def time_points(first: dt.date, last: dt.date, unit: str, time_point: str) -> list[Interval]:
    """The days of point prevalence (one per unit from the unit containing ``first``) inside [first, last]."""
    if unit == "overall":
        raise ValueError("point prevalence needs calendar intervals: 'overall' applies to period prevalence")
    if first > last:
        return []
    out = []
    for whole in units(first, last, unit):
        day = _point(whole, unit, time_point)
        if first <= day <= last:
            out.append(Interval(day, day))
    return out


def _point(whole: Interval, unit: str, time_point: str) -> dt.date:
    if time_point == "start":
        return whole.start
    if time_point == "end":
        return whole.end
    if time_point != "middle":
        raise ValueError(f"unknown time point {time_point!r}: use start, middle or end")
    if unit == "weeks":
        return whole.start + dt.timedelta(days=3)
    if unit == "months":
        return whole.start.replace(day=15)
    if unit == "quarters":
        return add_months(whole.start, 1) + dt.timedelta(days=14)
    return whole.start.replace(month=7, day=1)
