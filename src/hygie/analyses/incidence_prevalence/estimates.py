"""Rates, proportions and their 95% confidence intervals, rounded as IncidencePrevalence rounds them.

Incidence: person_years = round(person_days / 365.25, 3); the rate and the exact Poisson limits use that
*rounded* figure (as the R package does). Prevalence: Wilson score interval with z = qnorm(0.975).
"""

from __future__ import annotations

import math

from scipy.stats import chi2, norm

DAYS_PER_YEAR = 365.25
PER = 100_000


def person_years(person_days: int) -> float:
    return round(person_days / DAYS_PER_YEAR, 3)


def incidence_rate(outcomes: int, years: float) -> float:
    """Outcomes per 100,000 person-years (``years`` is the rounded person_years)."""
    return round(outcomes / years * PER, 3)


def poisson_ci(outcomes: int, years: float) -> tuple[float, float]:
    """Exact (Garwood) 95% limits of the rate per 100,000 person-years."""
    lower = 0.0 if outcomes == 0 else chi2.ppf(0.025, 2 * outcomes) / 2
    upper = chi2.ppf(0.975, 2 * (outcomes + 1)) / 2
    return round(float(lower) / years * PER, 3), round(float(upper) / years * PER, 3)


def prevalence(outcomes: int, denominator: int) -> float | None:
    """The proportion, or None when nobody is in the denominator (R gives NaN)."""
    if denominator == 0:
        return None
    return round(outcomes / denominator, 5)


def wilson_ci(outcomes: int, denominator: int) -> tuple[float | None, float | None]:
    """Wilson score 95% interval of a proportion."""
    if denominator == 0:
        return None, None
    z = float(norm.ppf(0.975))
    p = outcomes / denominator
    centre = p + z * z / (2 * denominator)
    half = z * math.sqrt(p * (1 - p) / denominator + z * z / (4 * denominator * denominator))
    scale = 1 + z * z / denominator
    # + 0.0: a limit a rounding error below zero prints as 0.0, not -0.0
    return round((centre - half) / scale, 5) + 0.0, round((centre + half) / scale, 5) + 0.0
