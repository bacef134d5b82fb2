"""SQL fragments and small statistics shared by the characterisation and drug utilisation analyses.

Every fragment is engine-neutral SQL text; what differs between DuckDB and Spark goes through ``Dialect``.
Per-person values stay in the engine: these fragments aggregate them, and only the aggregates reach Python.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from hygie.cohorts.compile import Dialect

QUANTILES = (("median", 0.5), ("q1", 0.25), ("q3", 0.75))
STAT_COLUMNS = ("mean", "sd", "median", "q1", "q3")


def summary_sql(dialect: Dialect, value_sql: str, prefix: str) -> str:
    """Aggregate columns ``<prefix>_n`` (non-null values), ``_mean``, ``_sd`` (sample), ``_median``, ``_q1``,
    ``_q3``: exact quantiles (linear interpolation between order statistics) on every engine."""
    value = f"CAST({value_sql} AS DOUBLE)"
    parts = [
        f"COUNT({value_sql}) AS {prefix}_n",
        f"AVG({value}) AS {prefix}_mean",
        f"STDDEV_SAMP({value}) AS {prefix}_sd",
    ]
    parts += [f"{dialect.quantile(value, q)} AS {prefix}_{name}" for name, q in QUANTILES]
    return ", ".join(parts)


def summary_values(row: dict[str, object], prefix: str) -> dict[str, object]:
    """The ``summary_sql`` columns of one result row, keyed ``count``, ``mean``, ``sd``, ``median``, ``q1``,
    ``q3``."""
    out: dict[str, object] = {"count": int(row[f"{prefix}_n"] or 0)}  # type: ignore[call-overload]
    for name in STAT_COLUMNS:
        value = row[f"{prefix}_{name}"]
        out[name] = None if value is None else float(value)  # type: ignore[arg-type]
    return out


def age_sql(date_sql: str, person: str = "p") -> str:
    """Age in completed years on ``date_sql``; the date of birth is ``year_of_birth`` with a missing month or
    day taken as 1 (as in docs/incidence-prevalence.md)."""
    month, day = f"COALESCE({person}.month_of_birth, 1)", f"COALESCE({person}.day_of_birth, 1)"
    return (
        f"(year({date_sql}) - {person}.year_of_birth - CASE WHEN month({date_sql}) < {month} OR "
        f"(month({date_sql}) = {month} AND dayofmonth({date_sql}) < {day}) THEN 1 ELSE 0 END)"
    )


def exposure_end_sql(dialect: Dialect, alias: str = "de") -> str:
    """A drug exposure's last day: its end date, else start + days supply - 1 (CDM 5.4 convention), else its
    start date."""
    start = f"{alias}.drug_exposure_start_date"
    supplied = dialect.add_days(start, f"{alias}.days_supply - 1")
    return f"COALESCE({alias}.drug_exposure_end_date, CASE WHEN {alias}.days_supply >= 1 THEN {supplied} END, {start})"


def in_list(values: Sequence[int]) -> str:
    """``(1, 2, 3)`` for whole numbers (never user text)."""
    return "(" + ", ".join(str(int(v)) for v in values) + ")"


def mean_sd_from_sums(n: int, total: float, total_sq: float) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of ``n`` values from their sum and sum of squares (values absent from
    the sums count as zeros)."""
    if n <= 0:
        return None, None
    mean = total / n
    if n == 1:
        return mean, None
    variance = max((total_sq - n * mean * mean) / (n - 1), 0.0)
    return mean, math.sqrt(variance)


def smd_binary(p1: float, p2: float) -> float | None:
    """Standardised mean difference of two proportions: (p1 - p2) / sqrt((p1(1-p1) + p2(1-p2)) / 2).

    Equal proportions give 0; different proportions with a zero pooled variance (0 versus 1) give None."""
    return _smd(p1 - p2, (p1 * (1 - p1) + p2 * (1 - p2)) / 2)


def smd_continuous(m1: float, s1: float | None, m2: float, s2: float | None) -> float | None:
    """Standardised mean difference of two means: (m1 - m2) / sqrt((s1² + s2²) / 2); a missing SD (one value)
    counts as 0."""
    return _smd(m1 - m2, ((s1 or 0.0) ** 2 + (s2 or 0.0) ** 2) / 2)


def _smd(difference: float, pooled_variance: float) -> float | None:
    if difference == 0:
        return 0.0
    if pooled_variance <= 0:
        return None
    return difference / math.sqrt(pooled_variance)
