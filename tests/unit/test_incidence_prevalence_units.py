"""Calendar intervals, time points and confidence intervals of incidence and prevalence (pure functions)."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from scipy.stats import chi2, norm

from hygie.analyses.incidence_prevalence import estimates
from hygie.analyses.incidence_prevalence.intervals import Interval, add_years, study_intervals, time_points

D = dt.date.fromisoformat


def spans(intervals: list[Interval]) -> list[tuple[str, str]]:
    return [(i.start.isoformat(), i.end.isoformat()) for i in intervals]


def test_years_are_clipped_to_the_window_unless_only_complete_ones_are_kept():
    assert spans(study_intervals(D("2010-03-02"), D("2012-06-01"), "years", False)) == [
        ("2010-03-02", "2010-12-31"),
        ("2011-01-01", "2011-12-31"),
        ("2012-01-01", "2012-06-01"),
    ]
    assert spans(study_intervals(D("2010-03-02"), D("2012-06-01"), "years", True)) == [("2011-01-01", "2011-12-31")]
    assert spans(study_intervals(D("2010-01-01"), D("2010-12-31"), "years", True)) == [("2010-01-01", "2010-12-31")]


def test_quarters_and_months_follow_the_calendar():
    assert spans(study_intervals(D("2011-11-15"), D("2012-05-01"), "quarters", False)) == [
        ("2011-11-15", "2011-12-31"),
        ("2012-01-01", "2012-03-31"),
        ("2012-04-01", "2012-05-01"),
    ]
    months = study_intervals(D("2012-01-01"), D("2012-12-31"), "months", True)
    assert len(months) == 12
    assert spans(months)[1] == ("2012-02-01", "2012-02-29")  # leap year


def test_weeks_are_iso_weeks_from_monday_to_sunday():
    weeks = study_intervals(D("2012-12-26"), D("2013-01-13"), "weeks", True)
    # 2012-12-31 is a Monday in ISO week 1 of 2013: it starts a week of its own (no calendar-year label).
    assert spans(weeks) == [("2012-12-31", "2013-01-06"), ("2013-01-07", "2013-01-13")]
    assert all(i.start.isoweekday() == 1 and (i.end - i.start).days == 6 for i in weeks)
    assert spans(study_intervals(D("2012-12-26"), D("2013-01-13"), "weeks", False))[0] == ("2012-12-26", "2012-12-30")


def test_overall_is_the_whole_window_and_never_filtered():
    assert spans(study_intervals(D("2010-03-02"), D("2010-03-05"), "overall", True)) == [("2010-03-02", "2010-03-05")]
    assert study_intervals(D("2010-03-05"), D("2010-03-02"), "overall", True) == []


@pytest.mark.parametrize(
    ("unit", "point", "expected"),
    [
        ("years", "start", ["2011-01-01", "2012-01-01"]),
        ("years", "middle", ["2010-07-01", "2011-07-01", "2012-07-01"]),
        ("years", "end", ["2010-12-31", "2011-12-31"]),
        ("quarters", "middle", ["2012-02-15", "2012-05-15"]),
        ("months", "middle", ["2012-04-15", "2012-05-15"]),
        ("weeks", "start", ["2012-05-28"]),
        ("weeks", "middle", ["2012-05-24", "2012-05-31"]),
        ("weeks", "end", ["2012-05-27"]),
    ],
)
def test_point_prevalence_days(unit, point, expected):
    first, last = (D("2010-03-02"), D("2012-08-01")) if unit == "years" else (D("2012-01-20"), D("2012-06-01"))
    if unit in ("months", "weeks"):
        first = D("2012-03-20") if unit == "months" else D("2012-05-22")
    got = [i.start.isoformat() for i in time_points(first, last, unit, point)]
    assert got[-len(expected) :] == expected if unit == "months" else got == expected
    assert all(i.start == i.end for i in time_points(first, last, unit, point))


def test_point_prevalence_refuses_overall():
    with pytest.raises(ValueError, match="calendar intervals"):
        time_points(D("2010-01-01"), D("2011-01-01"), "overall", "start")


def test_adding_years_to_29_february():
    assert add_years(D("2000-02-29"), 1) == D("2001-02-28")
    assert add_years(D("2000-02-29"), 4) == D("2004-02-29")


@pytest.mark.parametrize("events", [0, 1, 2, 5, 30, 479])
def test_poisson_limits_are_the_exact_garwood_limits(events):
    years = 12.345
    lower, upper = estimates.poisson_ci(events, years)
    # closed forms: for n = 0 the lower limit is 0 and the upper is -ln(0.025); in general chi-square quantiles
    expected_lower = 0.0 if events == 0 else chi2.ppf(0.025, 2 * events) / 2 / years * 1e5
    expected_upper = chi2.ppf(0.975, 2 * events + 2) / 2 / years * 1e5
    assert lower == pytest.approx(expected_lower, abs=5e-4)
    assert upper == pytest.approx(expected_upper, abs=5e-4)
    if events == 0:
        assert upper == pytest.approx(-math.log(0.025) / years * 1e5, abs=5e-4)
    if events == 1:
        assert lower == pytest.approx(-math.log(0.975) / years * 1e5, abs=5e-4)


def test_incidence_uses_the_rounded_person_years():
    years = estimates.person_years(543)
    assert years == 1.487
    assert estimates.incidence_rate(1, years) == 67249.496
    assert estimates.poisson_ci(1, years) == (1702.61, 374690.208)


@pytest.mark.parametrize(("cases", "n"), [(0, 1), (0, 2), (1, 2), (3, 10), (10, 10), (17, 250)])
def test_wilson_limits(cases, n):
    z = norm.ppf(0.975)
    p = cases / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    lower, upper = estimates.wilson_ci(cases, n)
    assert lower == pytest.approx(centre - half, abs=5e-6)
    assert upper == pytest.approx(centre + half, abs=5e-6)
    assert estimates.prevalence(cases, n) == round(p, 5)


def test_wilson_reference_values_and_empty_denominator():
    assert estimates.wilson_ci(1, 2) == (0.09453, 0.90547)
    assert estimates.wilson_ci(0, 2) == (0.0, 0.65762)
    assert estimates.wilson_ci(0, 1) == (0.0, 0.79345)
    assert estimates.wilson_ci(0, 0) == (None, None)
    assert estimates.prevalence(0, 0) is None
