"""The general rules hold beyond the scenarios: on random small populations and random settings, the SQL engine
(DuckDB) gives exactly the result tables of the row-by-row reference implementation (``reference.py``).

``ip_helpers.analyse`` runs both and requires equal tables (incidence or prevalence, their attrition, the
denominator settings and attrition). Spark runs the same SQL; the spec tests and GiBleed check it.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parents[1] / "spec"))

from ip_helpers import FEMALE, MALE, Cdm, analyse

from hygie.analyses.incidence_prevalence.spec import (
    CensorSpec,
    DenominatorSpec,
    IncidenceSpec,
    PrevalenceSpec,
    TargetSpec,
)

FIRST = dt.date(2008, 1, 1)
SPAN_DAYS = 5 * 365


def day(offset: int) -> dt.date:
    return FIRST + dt.timedelta(days=offset)


@st.composite
def populations(draw: st.DrawFn) -> Cdm:
    """Up to six persons (some without a usable sex or year of birth), up to two observation periods each,
    outcomes (some before or after observation, some long), a target, a censor and a strata cohort."""
    cdm = Cdm()
    for pid in range(1, draw(st.integers(1, 6)) + 1):
        gender = draw(st.sampled_from([MALE, MALE, FEMALE, FEMALE, 0]))
        year = draw(st.one_of(st.integers(1995, 2012), st.just(None))) if draw(st.booleans()) else 2000
        month = draw(st.one_of(st.none(), st.integers(1, 12)))
        birth_day = draw(st.one_of(st.none(), st.integers(1, 28)))
        cdm.persons.append((pid, gender, year, month, birth_day))
        cursor = draw(st.integers(0, 400))
        for _ in range(draw(st.integers(0, 2))):
            length = draw(st.integers(0, 900))
            cdm.periods.append((pid, day(cursor), day(cursor + length)))
            cursor += length + draw(st.integers(1, 300))
        for name, most in (("outcome", 4), ("other", 2), ("target", 2), ("strat", 1), ("censor", 1)):
            for _ in range(draw(st.integers(0, most))):
                start = draw(st.integers(-100, SPAN_DAYS))
                length = draw(st.sampled_from([0, 0, 1, 3, 20, 200]))
                cdm.cohorts.setdefault(name, []).append((pid, day(start), day(start + length)))
    for name in ("outcome", "other", "target", "strat", "censor"):
        cdm.cohorts.setdefault(name, [])
    return cdm


@st.composite
def denominators(draw: st.DrawFn) -> DenominatorSpec:
    ages = draw(st.lists(st.sampled_from([(0, 150), (0, 9), (8, 12), (10, 19), (13, 13)]), min_size=1, max_size=2))
    sexes = draw(st.lists(st.sampled_from(["Both", "Male", "Female"]), min_size=1, max_size=2, unique=True))
    priors = draw(st.lists(st.sampled_from([0, 30, 365]), min_size=1, max_size=2, unique=True))
    start = draw(st.one_of(st.none(), st.integers(0, 700).map(day)))
    end = draw(st.one_of(st.none(), st.integers(800, SPAN_DAYS).map(day)))
    target = None
    if draw(st.integers(0, 3)) == 0:
        tar_end = draw(st.sampled_from([float("inf"), 30, 400]))
        target = TargetSpec(
            cohort="target",
            requirements_at_entry=draw(st.booleans()),
            time_at_risk=(draw(st.sampled_from([0, 0, 10])), tar_end),
        )
    return DenominatorSpec(
        cohort_date_range=(start, end),
        age_groups=list(dict.fromkeys(ages)),
        sex=sexes,
        days_prior_observation=priors,
        requirement_interactions=draw(st.booleans()),
        target=target,
    )


STRATA = st.sampled_from([[], [], [["sex"]], [["strat"]], [["sex", "strat"], ["sex"]]])
INTERVALS = st.lists(st.sampled_from(["years", "quarters", "months", "weeks", "overall"]), min_size=1, max_size=2)


@st.composite
def incidence_specs(draw: st.DrawFn) -> IncidenceSpec:
    return IncidenceSpec(
        denominator="d",
        outcomes=draw(st.sampled_from([["outcome"], ["outcome", "other"]])),
        interval=list(dict.fromkeys(draw(INTERVALS))),
        complete_database_intervals=draw(st.booleans()),
        outcome_washout=draw(st.sampled_from([0, 1, 7, 30, 365, "inf"])),
        repeated_events=draw(st.booleans()),
        censor=CensorSpec(cohort="censor") if draw(st.booleans()) else None,
        strata=draw(STRATA),
        include_overall_strata=draw(st.booleans()),
    )


@st.composite
def prevalence_specs(draw: st.DrawFn) -> PrevalenceSpec:
    kind = draw(st.sampled_from(["point", "period"]))
    intervals = draw(INTERVALS)
    if kind == "point":
        intervals = [i for i in intervals if i != "overall"] or ["years"]
    return PrevalenceSpec(
        denominator="d",
        outcomes=draw(st.sampled_from([["outcome"], ["outcome", "other"]])),
        type=kind,
        interval=list(dict.fromkeys(intervals)),
        time_point=draw(st.sampled_from(["start", "middle", "end"])),
        full_contribution=draw(st.booleans()),
        complete_database_intervals=draw(st.booleans()),
        level=draw(st.sampled_from(["person", "record"])),
        strata=draw(STRATA),
        include_overall_strata=draw(st.booleans()),
    )


def one_record_per_person(cdm: Cdm) -> Cdm:
    seen: set[int] = set()
    cdm.cohorts["censor"] = [r for r in cdm.cohorts["censor"] if not (r[0] in seen or seen.add(r[0]))]
    return cdm


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(cdm=populations(), denominator=denominators(), spec=incidence_specs())
def test_incidence_engine_agrees_with_the_reference(cdm, denominator, spec):
    tables = analyse("duckdb", one_record_per_person(cdm), spec, denominator)  # asserts the agreement
    assert set(tables) == {"incidence", "incidence_attrition", "denominator_settings", "denominator_attrition"}


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(cdm=populations(), denominator=denominators(), spec=prevalence_specs())
def test_prevalence_engine_agrees_with_the_reference(cdm, denominator, spec):
    tables = analyse("duckdb", cdm, spec, denominator)  # asserts the agreement
    assert set(tables) == {"prevalence", "prevalence_attrition", "denominator_settings", "denominator_attrition"}
