"""DARWIN EU IncidencePrevalence's semantics as executable examples (docs/incidence-prevalence.md §4).

Every scenario runs on DuckDB and on Spark, and every run is also checked against the reference
implementation (``ip_helpers.analyse``). Values marked *(derived)* in the semantics note are asserted too.
"""

from __future__ import annotations

import datetime as dt

import pytest
from ip_helpers import Cdm, analyse_all, denominator_rows, of

from hygie.analyses.incidence_prevalence.spec import DenominatorSpec, IncidenceSpec, PrevalenceSpec, TargetSpec

D = dt.date.fromisoformat


class Engine:
    def __init__(self, name: str, spark: object) -> None:
        self.name, self.spark = name, spark

    def denominator(self, cdm: Cdm, **spec: object) -> list[tuple]:
        return denominator_rows(self.name, cdm, DenominatorSpec(**spec), self.spark)[0]

    def denominator_attrition(self, cdm: Cdm, **spec: object) -> list[dict]:
        return denominator_rows(self.name, cdm, DenominatorSpec(**spec), self.spark)[1]

    def incidence(self, cdm: Cdm, denominator: DenominatorSpec | None = None, **spec: object) -> dict:
        return self.incidences(cdm, [spec], denominator)[0]

    def incidences(self, cdm: Cdm, variants: list[dict], denominator: DenominatorSpec | None = None) -> list[dict]:
        """Several incidence analyses in one study run (one denominator)."""
        specs = [IncidenceSpec(**{"denominator": "d", "outcomes": ["outcome"], **v}) for v in variants]
        return analyse_all(self.name, cdm, specs, denominator, self.spark)

    def prevalences(self, cdm: Cdm, variants: list[dict], denominator: DenominatorSpec | None = None) -> list[dict]:
        specs = [PrevalenceSpec(**{"denominator": "d", "outcomes": ["outcome"], **v}) for v in variants]
        return analyse_all(self.name, cdm, specs, denominator, self.spark)


@pytest.fixture(params=["duckdb", "spark"])
def engine(request) -> Engine:
    return Engine(request.param, request.getfixturevalue("spark") if request.param == "spark" else None)


def count_by_cohort(rows: list[tuple]) -> dict[int, int]:
    out: dict[int, int] = {}
    for cohort_id, *_ in rows:
        out[cohort_id] = out.get(cohort_id, 0) + 1
    return out


# -- A. Denominator ---------------------------------------------------------------------------------------------


def test_a1_age_bounds(engine):
    cdm = Cdm()
    for pid, born in ((1, "2000-06-01"), (2, "2005-06-01"), (3, "2010-06-01")):
        cdm.person(pid, born).period(pid, "2010-01-01", "2015-06-01")
    rows = engine.denominator(cdm, age_groups=[(0, 150), (8, 150), (12, 150), (40, 150)])
    assert [count_by_cohort(rows).get(i, 0) for i in (1, 2, 3, 4)] == [3, 2, 1, 0]

    alone = Cdm().person(1, "2000-06-01").period(1, "2010-01-01", "2015-06-01")
    rows = engine.denominator(alone, age_groups=[(10, 150), (0, 10), (10, 10)])
    assert rows == [
        (1, 1, D("2010-06-01"), D("2015-06-01")),  # from the 10th birthday
        (2, 1, D("2010-01-01"), D("2011-05-31")),  # until the day before the 11th birthday
        (3, 1, D("2010-06-01"), D("2011-05-31")),
    ]


def test_a1_nobody_old_enough_is_reported_by_the_attrition(engine):
    cdm = Cdm()
    for pid, born in ((1, "2000-06-01"), (2, "2005-06-01"), (3, "2010-06-01")):
        cdm.person(pid, born).period(pid, "2010-01-01", "2015-06-01")
    reasons = {r["reason"]: r for r in engine.denominator_attrition(cdm, age_groups=[(40, 150)])}
    step = reasons["Cannot satisfy age criteria during the study period based on year of birth"]
    assert (step["number_subjects"], step["excluded_subjects"]) == (0, 3)


def test_a2_consecutive_age_groups(engine):
    cdm = Cdm().person(1, "2000-01-01").period(1, "2008-01-01", "2018-06-01")
    assert engine.denominator(cdm, age_groups=[(11, 12), (13, 14)]) == [
        (1, 1, D("2011-01-01"), D("2012-12-31")),
        (2, 1, D("2013-01-01"), D("2014-12-31")),
    ]


def test_a3_date_of_birth_imputation(engine):
    cdm = Cdm()
    for pid, (month, day) in enumerate(((3, 3), (None, 3), (3, None), (None, None)), start=1):
        cdm.person(pid, "2000-01-01", month=month, day=day).period(pid, "2010-01-01", "2015-06-01")
    rows = engine.denominator(cdm, age_groups=[(10, 100)])
    assert [(subject, start) for _, subject, start, _ in rows] == [
        (1, D("2010-03-03")),
        (2, D("2010-01-03")),
        (3, D("2010-03-01")),
        (4, D("2010-01-01")),
    ]


def test_a4_multiple_observation_periods(engine):
    cdm = Cdm().person(1, "2000-06-01").period(1, "2010-01-01", "2010-06-01").period(1, "2011-01-01", "2011-06-01")
    rows = engine.denominator(cdm)
    assert (len(rows), len({subject for _, subject, _, _ in rows})) == (2, 1)
    assert engine.denominator(cdm, cohort_date_range=(D("2011-01-01"), None)) == [
        (1, 1, D("2011-01-01"), D("2011-06-01"))
    ]
    assert engine.denominator(cdm, cohort_date_range=(None, D("2010-12-31"))) == [
        (1, 1, D("2010-01-01"), D("2010-06-01"))
    ]


def test_a5_target_cohort_with_requirements_at_entry(engine):
    cdm = (
        Cdm()
        .person(1, "2000-01-01")
        .person(2, "2000-01-01")
        .period(1, "2012-01-01", "2018-06-01")
        .period(2, "2013-01-04", "2018-06-01")
        .record("target", 1, "2012-01-05", "2018-06-01")
        .record("target", 2, "2013-01-05", "2018-06-01")
    )
    rows = engine.denominator(cdm, days_prior_observation=[0, 2, 4, 10], target=TargetSpec(cohort="target"))
    assert [count_by_cohort(rows).get(i, 0) for i in (1, 2, 3, 4)] == [2, 1, 1, 0]
    assert {start for _, subject, start, _ in rows if subject == 1} == {D("2012-01-05")}
    assert {start for _, subject, start, _ in rows if subject == 2} == {D("2013-01-05")}

    aged = (
        Cdm()
        .person(1, "2000-02-02")
        .period(1, "2005-01-01", "2018-06-01")
        .record("target", 1, "2010-01-01", "2018-06-01")
    )
    target = TargetSpec(cohort="target")
    assert engine.denominator(aged, age_groups=[(10, 100)], target=target) == []  # 9 years old at target entry
    rows = engine.denominator(aged, age_groups=[(9, 100), (10, 100)], target=target)
    assert count_by_cohort(rows) == {1: 1}


# -- B. Incidence -----------------------------------------------------------------------------------------------


def washout_ladder() -> Cdm:
    cdm = Cdm().person(1, "2000-01-01").period(1, "2010-01-01", "2012-12-31")
    for start, end in (
        ("2010-06-01", "2010-06-02"),
        ("2011-01-13", "2011-01-14"),
        ("2011-01-16", "2011-01-17"),
        ("2011-01-18", "2011-01-19"),
    ):
        cdm.record("outcome", 1, start, end)
    return cdm


LADDER = [
    (0, 4, [(2010, 1, 364), (2011, 3, 362), (2012, 0, 366)]),
    (1, 3, [(2010, 1, 363), (2011, 2, 359), (2012, 0, 366)]),
    (2, 2, [(2010, 1, 362), (2011, 1, 357), (2012, 0, 366)]),
    (365, 1, [(2010, 1, 152), (2012, 0, 347)]),  # at risk again from 2012-01-20
    ("inf", 1, [(2010, 1, 152)]),
]


def test_b1_outcome_washout_ladder(engine):
    person_days = {}
    variants = [
        {"outcome_washout": w, "repeated_events": True, "complete_database_intervals": False} for w, _, _ in LADDER
    ]
    results = engine.incidences(washout_ladder(), variants)
    for (washout, total, per_year), result in zip(LADDER, results, strict=True):
        rows = result["incidence"]
        assert sum(r["outcome_count"] for r in rows) == total, washout
        assert [(r["incidence_start_date"].year, r["outcome_count"], r["person_days"]) for r in rows] == per_year
        assert {r["analysis_outcome_washout"] for r in rows} == {str(washout)}
        person_days[washout] = sum(r["person_days"] for r in rows)
    assert of(rows, "incidence_start_date", "incidence_end_date") == [(D("2010-01-01"), D("2010-06-01"))]  # inf
    assert person_days["inf"] < person_days[365]


def test_b1_outcome_before_the_study_period_excludes_the_person(engine):
    cdm = (
        Cdm()
        .person(1, "2000-01-01")
        .period(1, "2009-01-01", "2012-12-31")
        .record("outcome", 1, "2009-12-31", "2010-06-02")
    )
    result = engine.incidence(
        cdm,
        DenominatorSpec(cohort_date_range=(D("2010-01-01"), None)),
        outcome_washout=36500,
        repeated_events=True,
        complete_database_intervals=False,
    )
    assert result["incidence"] == []


def test_b1_censor_cohort_as_the_package_applies_it(engine):
    """A censor cohort ends follow-up at its start. As in IncidencePrevalence (the note's step 2, checked against
    the package's code), the piece whose outcome falls after the censor date is dropped before the washout, so a
    person whose first outcome comes after their censoring contributes no time (decision 0008)."""
    cdm = (
        Cdm()
        .person(1, "2000-01-01")
        .period(1, "2010-01-01", "2010-12-31")
        .person(2, "2000-01-01")
        .period(2, "2010-01-01", "2010-12-31")
        .record("outcome", 1, "2010-09-01")
        .record("censor", 1, "2010-07-01")
        .record("censor", 2, "2010-07-01")
    )
    variants = [{"censor": {"cohort": "censor"}, "interval": "overall", "outcome_washout": w} for w in ("inf", 0)]
    for result in engine.incidences(cdm, variants):
        columns = ("incidence_start_date", "incidence_end_date", "denominator_count", "outcome_count", "person_days")
        assert of(result["incidence"], *columns) == [(D("2010-01-01"), D("2010-07-01"), 1, 0, 182)]
        assert {r["analysis_censor_cohort_name"] for r in result["incidence"]} == {"censor"}


def repeated_outcomes() -> Cdm:
    cdm = Cdm().person(1, "2000-01-01").period(1, "2010-01-01", "2012-06-01")
    for day in ("2010-02-05", "2010-02-08", "2010-02-20"):
        cdm.record("outcome", 1, day)
    return cdm


def test_b2_repeated_events_with_a_short_washout(engine):
    cases = [(0, False, "years", 1), (2, True, "years", 3), (10, True, "years", 2), ("inf", True, "years", 1),
             ("inf", True, "weeks", 1)]  # fmt: skip
    variants = [
        {"outcome_washout": w, "repeated_events": r, "interval": i, "complete_database_intervals": False}
        for w, r, i, _ in cases
    ]
    results = engine.incidences(repeated_outcomes(), variants)
    assert [sum(r["outcome_count"] for r in result["incidence"]) for result in results] == [c[3] for c in cases]
    assert of(results[0]["incidence"], "incidence_start_date", "incidence_end_date", "person_days") == [
        (D("2010-01-01"), D("2010-02-05"), 36)
    ]
    assert [r["person_days"] for r in results[1]["incidence"]] == [359, 365, 153]


def test_b3_person_days_under_an_age_window(engine):
    cdm = (
        Cdm()
        .person(1, "2000-07-01", "M")
        .period(1, "2007-01-01", "2022-12-31")
        .record("outcome", 1, "2021-06-27")
        .person(2, "1999-07-01", "F")
        .period(2, "2007-01-01", "2022-10-05")
    )
    rows = engine.incidence(cdm, DenominatorSpec(age_groups=[(20, 30)]), complete_database_intervals=False)["incidence"]
    assert of(rows, "incidence_start_date", "person_days", "denominator_count", "outcome_count") == [
        (D("2019-07-01"), 184, 1, 0),
        (D("2020-01-01"), 550, 2, 0),
        (D("2021-01-01"), 543, 2, 1),
        (D("2022-01-01"), 278, 1, 0),
    ]
    year_2021 = rows[2]
    assert year_2021["age_group"] == "20 to 30"
    assert year_2021["person_years"] == 1.487
    assert year_2021["incidence_100000_pys"] == 67249.496
    assert (year_2021["incidence_100000_pys_95ci_lower"], year_2021["incidence_100000_pys_95ci_upper"]) == (
        1702.61,
        374690.208,
    )


def overall_population() -> Cdm:
    return (
        Cdm()
        .person(1, "2000-01-01")
        .person(2, "2000-01-01")
        .period(1, "2005-01-15", "2007-05-01")
        .period(2, "2005-01-15", "2011-06-15")
        .record("outcome", 1, "2006-02-05")
        .record("outcome", 2, "2006-02-05")
        .record("outcome", 2, "2010-02-05")
    )


def test_b4_overall_interval_and_where_it_ends(engine):
    common = {"interval": "overall", "outcome_washout": 0, "complete_database_intervals": False}
    results = engine.incidences(
        overall_population(),
        [{**common, "repeated_events": False}, {**common, "repeated_events": True}],
        DenominatorSpec(cohort_date_range=(D("2007-01-01"), None)),
    )
    for result, (end, person_days) in zip(results, [("2010-02-05", 1253), ("2011-06-15", 1748)], strict=True):
        rows = result["incidence"]
        assert of(rows, "analysis_interval", "denominator_count", "incidence_start_date", "incidence_end_date") == [
            ("overall", 2, D("2007-01-01"), D(end))
        ]
        assert (rows[0]["person_days"], rows[0]["outcome_count"]) == (person_days, 1)


def test_b5_months_and_complete_database_intervals(engine):
    cdm = Cdm().person(1, "2000-01-01").period(1, "2010-01-15", "2010-12-15")
    for day in ("2010-02-05", "2010-02-08", "2010-02-20"):
        cdm.record("outcome", 1, day)
    common = {"interval": "months", "outcome_washout": 0, "repeated_events": True}
    results = engine.incidences(
        cdm, [{**common, "complete_database_intervals": False}, {**common, "complete_database_intervals": True}]
    )
    incomplete, complete = (r["incidence"] for r in results)
    assert len(incomplete) == 12
    assert (incomplete[0]["incidence_start_date"], incomplete[-1]["incidence_end_date"]) == (
        D("2010-01-15"),
        D("2010-12-15"),
    )
    assert [r["incidence_start_date"] for r in complete] == [D(f"2010-{m:02d}-01") for m in range(2, 12)]
    assert complete[0]["outcome_count"] == 3


# -- C. Prevalence ----------------------------------------------------------------------------------------------


def full_contribution_population() -> Cdm:
    cdm = Cdm()
    for pid, (start, end) in enumerate(
        (("2010-01-01", "2011-06-01"), ("2010-01-01", "2012-06-01"), ("2012-04-01", "2012-06-01")), start=1
    ):
        cdm.person(pid, "2000-01-01").period(pid, start, end)
    for day in ("2010-02-05", "2010-02-08", "2010-02-20"):
        cdm.record("outcome", 1, day)
    return cdm


def test_c1_full_contribution(engine):
    common = {"type": "period", "interval": "years", "complete_database_intervals": False}
    partial, full = engine.prevalences(
        full_contribution_population(), [{**common, "full_contribution": False}, {**common, "full_contribution": True}]
    )
    rows = partial["prevalence"]
    assert of(rows, "prevalence_start_date", "prevalence_end_date", "denominator_count", "outcome_count") == [
        (D("2010-01-01"), D("2010-12-31"), 2, 1),
        (D("2011-01-01"), D("2011-12-31"), 2, 0),
        (D("2012-01-01"), D("2012-06-01"), 2, 0),
    ]
    assert of(rows, "prevalence", "prevalence_95ci_lower", "prevalence_95ci_upper") == [
        (0.5, 0.09453, 0.90547),
        (0.0, 0.0, 0.65762),
        (0.0, 0.0, 0.65762),
    ]
    assert {(r["analysis_type"], r["analysis_level"]) for r in rows} == {("period", "person")}

    rows = full["prevalence"]
    assert [r["denominator_count"] for r in rows] == [2, 1, 1]
    assert of(rows, "prevalence", "prevalence_95ci_upper") == [(0.5, 0.90547), (0.0, 0.79345), (0.0, 0.79345)]
    (step,) = [
        r
        for r in full["prevalence_attrition"]
        if r["reason"] == "Do not satisfy full contribution requirement for an interval"
    ]
    assert step["excluded_subjects"] == 1


def test_c2_person_and_record_level(engine):
    cdm = (
        Cdm()
        .person(1, "2000-01-01")
        .period(1, "2000-06-01", "2005-07-01")
        .period(1, "2010-06-01", "2012-07-01")
        .record("outcome", 1, "2003-02-05", "2003-02-06")
        .record("outcome", 1, "2010-09-01", "2010-09-02")
        .person(2, "2000-01-01")
        .period(2, "2000-06-01", "2012-06-01")
        .person(3, "2000-01-01")
        .period(3, "2000-06-01", "2000-06-15")
    )
    levels = [("person", 3, 1), ("record", 4, 2)]
    results = engine.prevalences(cdm, [{"type": "period", "interval": "overall", "level": lv} for lv, _, _ in levels])
    for result, (level, denominator, outcomes) in zip(results, levels, strict=True):
        (row,) = result["prevalence"]
        assert (row["denominator_count"], row["outcome_count"]) == (denominator, outcomes)
        assert (row["prevalence_start_date"], row["prevalence_end_date"]) == (D("2000-06-01"), D("2012-07-01"))
        assert row["analysis_level"] == level
    assert results[1]["prevalence"][0]["prevalence"] == 0.5  # record level
