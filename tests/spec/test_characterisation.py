"""Characterisation on hand-made CDMs: every number below is derived by hand from the rows (ages on birthdays,
window edges, per-entry counting, the SMD formulas), on DuckDB and on Spark."""

from __future__ import annotations

import math
import statistics
from typing import Any

import pytest
from analysis_helpers import ENGINES, D, concept, rows_of, study, visit
from pydantic import ValidationError
from spec_helpers import condition, drug, period

from hygie.analyses.characterisation import Characterisation, CharacterisationSpec
from hygie.analyses.registry import analyses
from hygie.analyses.sql_parts import smd_binary, smd_continuous

HYPERTENSION, DIABETES, ASTHMA = 100, 200, 300
CELECOXIB, DICLOFENAC = 1118084, 1124300
INPATIENT, OUTPATIENT = 9201, 9202


def person(person_id: int, gender: int, year: int, month: int | None = None, day: int | None = None) -> dict:
    return {"person_id": person_id, "gender_concept_id": gender, "year_of_birth": year, "month_of_birth": month,
            "day_of_birth": day, "race_concept_id": 0, "ethnicity_concept_id": 0}  # fmt: skip


VOCABULARY = [
    concept(HYPERTENSION, "Hypertension"),
    concept(DIABETES, "Diabetes"),
    concept(ASTHMA, "Asthma"),
    concept(CELECOXIB, "celecoxib"),
    concept(DICLOFENAC, "diclofenac"),
    concept(INPATIENT, "Inpatient Visit"),
    concept(OUTPATIENT, "Outpatient Visit"),
]

TABLES: dict[str, list[dict[str, Any]]] = {
    "concept": VOCABULARY,
    "person": [
        person(1, 8507, 1950, 6, 15),
        person(2, 8532, 1980),  # born 1980-01-01 (month and day missing)
        person(3, 8532, 2005, 12, 31),
        person(4, 8507, 1930),
        person(5, 0, 1990),  # sex unknown
    ],
    "observation_period": [
        period(1, "2000-01-01", "2020-12-31"),
        period(2, "2005-03-01", "2020-12-31"),
        period(3, "2010-01-01", "2020-12-31"),
        period(4, "2015-01-01", "2020-12-31"),
        period(5, "2016-01-01", "2020-12-31"),
    ],
    "condition_occurrence": [
        # person 1, cohort a start 2010-06-14
        condition(1, HYPERTENSION, "2009-06-14"),  # day -365: first day of the long window
        condition(1, DIABETES, "2010-05-01"),  # day -44
        condition(1, DIABETES, "2010-06-13"),  # day -1: in both windows (and counted once)
        condition(1, DIABETES, "2010-06-14"),  # day 0: in no window
        condition(1, ASTHMA, "2009-06-13"),  # day -366: out
        # person 2, cohort a start 2010-01-01
        condition(2, DIABETES, "2009-12-01"),  # day -31
        condition(2, HYPERTENSION, "2009-12-02"),  # day -30: first day of the short window
        # person 3, cohort a start 2020-12-30
        condition(3, HYPERTENSION, "2020-12-30"),  # day 0: out
        condition(3, 0, "2020-12-01"),  # unmapped: never a covariate
        # person 4, cohort b start 2016-01-01
        condition(4, HYPERTENSION, "2015-06-01"),
    ],
    "drug_exposure": [  # drug_era is empty: drugs come from the exposures, which count when they overlap
        drug(1, CELECOXIB, "2010-05-01", "2010-06-20"),  # spans the cohort start
        drug(2, CELECOXIB, "2008-12-01", None, days_supply=31),  # ends 2008-12-31, the day before day -365
        drug(3, DICLOFENAC, "2019-01-01", "2019-12-31"),  # ends on day -365 (2020 is a leap year)
    ],
    "visit_occurrence": [
        visit(1, OUTPATIENT, "2010-01-01", 1),
        visit(1, OUTPATIENT, "2010-02-01", 2),
        visit(1, INPATIENT, "2010-06-14", 3),  # day 0: out of the visit window
        visit(2, OUTPATIENT, "2009-01-01", 4),  # day -365: in
        visit(4, INPATIENT, "2015-12-31", 5),
    ],
}
COHORTS = {
    "a": [(1, "2010-06-14", "2010-12-31"), (2, "2010-01-01", "2010-12-31"), (3, "2020-12-30", "2020-12-31")],
    "b": [(4, "2016-01-01", "2016-12-31"), (5, "2017-01-01", "2017-12-31"), (1, "2012-01-01", "2012-12-31")],
}
AGES_A = [59, 30, 14]  # the day before the 60th birthday; the 30th birthday (imputed 1 January); before the 15th
AGES_B = [86, 27, 61]


def run(engine: tuple[str, Any], spec: dict, tables: dict = TABLES, cohorts: dict = COHORTS) -> list:
    parsed = CharacterisationSpec.model_validate(spec)
    with study(*engine, tables, cohorts) as context:
        return Characterisation().run(context, parsed, study=None)  # type: ignore[arg-type]


def pick(rows: list[dict], cohort: str, covariate_type: str, name: str, window: str | None = None) -> dict:
    found = [
        r
        for r in rows
        if (r["cohort_name"], r["covariate_type"], r["covariate_name"]) == (cohort, covariate_type, name)
        and (window is None or r["window"] == window)
    ]
    assert len(found) == 1, (cohort, covariate_type, name, window, found)
    return found[0]


def shares(rows: list[dict], cohort: str, covariate_type: str) -> dict:
    return {
        (r["covariate_name"], r["window"]): (r["count"], round(r["percent"], 6))
        for r in rows
        if (r["cohort_name"], r["covariate_type"]) == (cohort, covariate_type)
    }


def pct(n: int, d: int) -> float:
    return round(100 * n / d, 6)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> tuple[str, Any]:
    """The engine's name and, for Spark, the session (started only when a Spark test runs)."""
    return request.param, request.getfixturevalue("spark") if request.param == "spark" else None


def test_table_one_and_smd(engine: tuple[str, Any]) -> None:
    tables = run(
        engine,
        {"cohorts": ["a", "b"], "compare": ["a", "b"], "windows": [[-365, -1], [-30, -1]]},
    )
    assert [t.name for t in tables] == ["characterisation", "characterisation_smd"]
    rows = rows_of(tables, "characterisation")
    assert pick(rows, "a", "cohort", "subjects")["count"] == 3
    assert pick(rows, "a", "cohort", "records")["count"] == 3

    age = pick(rows, "a", "age", "age (years)")
    assert age["count"] == 3
    assert age["mean"] == pytest.approx(statistics.mean(AGES_A))
    assert age["sd"] == pytest.approx(statistics.stdev(AGES_A))
    assert (age["median"], age["q1"], age["q3"]) == pytest.approx((30, 22, 44.5))  # 14 + 16/2, 30 + 29/2
    assert shares(rows, "a", "age_group") == {
        ("0 to 17", None): (1, pct(1, 3)),
        ("18 to 44", None): (1, pct(1, 3)),
        ("45 to 64", None): (1, pct(1, 3)),
        ("65 to 74", None): (0, 0.0),
        ("75 to 84", None): (0, 0.0),
        ("85 or older", None): (0, 0.0),
        ("unknown", None): (0, 0.0),
    }
    assert shares(rows, "b", "age_group")[("85 or older", None)] == (1, pct(1, 3))  # born 1930-01-01, 86 on the day
    assert shares(rows, "a", "sex") == {
        ("Male", None): (1, pct(1, 3)),
        ("Female", None): (2, pct(2, 3)),
        ("other or unknown", None): (0, 0.0),
    }
    assert shares(rows, "b", "sex")[("other or unknown", None)] == (1, pct(1, 3))

    prior_a = [(D("2010-06-14") - D("2000-01-01")).days, (D("2010-01-01") - D("2005-03-01")).days,
               (D("2020-12-30") - D("2010-01-01")).days]  # fmt: skip
    prior = pick(rows, "a", "prior_observation", "prior observation (days)")
    assert prior["mean"] == pytest.approx(statistics.mean(prior_a))
    assert prior["sd"] == pytest.approx(statistics.stdev(prior_a))
    assert prior["median"] == pytest.approx(statistics.median(prior_a))
    assert pick(rows, "b", "prior_observation", "prior observation (days)")["median"] == 366  # 365, 366, 4383

    # visits in [-365, -1]: outpatient 2, 1, 0 per entry of a; inpatient 1, 0, 0 per entry of b
    outpatient = pick(rows, "a", "visits", "Outpatient Visit")
    assert (outpatient["count"], outpatient["mean"], outpatient["sd"]) == (2, pytest.approx(1), pytest.approx(1))
    assert outpatient["window"] == "-365 to -1"
    assert not [r for r in rows if r["cohort_name"] == "a" and r["covariate_name"] == "Inpatient Visit"]
    inpatient = pick(rows, "b", "visits", "Inpatient Visit")
    assert (inpatient["count"], inpatient["mean"]) == (1, pytest.approx(1 / 3))
    assert inpatient["sd"] == pytest.approx(math.sqrt(1 / 3))

    assert shares(rows, "a", "condition") == {
        ("Hypertension", "-365 to -1"): (2, pct(2, 3)),  # persons 1 (day -365) and 2
        ("Diabetes", "-365 to -1"): (2, pct(2, 3)),
        ("Diabetes", "-30 to -1"): (1, pct(1, 3)),  # person 1 (day -1); person 2's is day -31
        ("Hypertension", "-30 to -1"): (1, pct(1, 3)),  # person 2 (day -30)
    }
    assert shares(rows, "a", "drug") == {
        ("celecoxib", "-365 to -1"): (1, pct(1, 3)),  # person 1 only: person 2's exposure ended on day -366
        ("celecoxib", "-30 to -1"): (1, pct(1, 3)),
        ("diclofenac", "-365 to -1"): (1, pct(1, 3)),  # ends on day -365
    }
    assert pick(rows, "a", "condition", "Hypertension", "-365 to -1")["concept_id"] == HYPERTENSION
    assert shares(rows, "b", "condition") == {("Hypertension", "-365 to -1"): (1, pct(1, 3))}

    smd = {(r["covariate_type"], r["covariate_name"], r["window"]): r for r in rows_of(tables, "characterisation_smd")}
    age_smd = smd[("age", "age (years)", None)]
    expected = (statistics.mean(AGES_A) - statistics.mean(AGES_B)) / math.sqrt(
        (statistics.variance(AGES_A) + statistics.variance(AGES_B)) / 2
    )
    assert age_smd["smd"] == pytest.approx(expected)
    assert (age_smd["value_a"], age_smd["value_b"]) == pytest.approx((103 / 3, 58))
    assert smd[("sex", "Male", None)]["smd"] == pytest.approx(-1 / math.sqrt(2))  # 1/3 vs 2/3
    assert smd[("sex", "Female", None)]["smd"] == pytest.approx(2)  # 2/3 vs 0: (2/3) / sqrt((2/9) / 2)
    assert smd[("sex", "other or unknown", None)]["smd"] == pytest.approx(-1)
    assert smd[("condition", "Hypertension", "-365 to -1")]["smd"] == pytest.approx(1 / math.sqrt(2))
    diabetes = smd[("condition", "Diabetes", "-365 to -1")]  # absent from b: 0 there
    assert (diabetes["count_a"], diabetes["count_b"], diabetes["value_b"]) == (2, 0, 0.0)
    assert diabetes["smd"] == pytest.approx((2 / 3) / math.sqrt((2 / 9) / 2))
    assert smd[("visits", "Outpatient Visit", "-365 to -1")]["smd"] == pytest.approx(math.sqrt(2))  # 1 (sd 1) vs 0
    assert smd[("age_group", "65 to 74", None)]["smd"] == 0.0
    assert not [k for k in smd if k[0] == "cohort"]


def test_entries_drug_eras_domains_and_min_prevalence(engine: tuple[str, Any]) -> None:
    """A person entering twice counts twice (per entry); entries without observation or birth year; drug eras
    replace exposures when present; the threshold drops rare concepts per cohort."""
    era = {"drug_era_id": 1, "person_id": 1, "drug_concept_id": DICLOFENAC, "drug_era_start_date": D("2009-01-01"),
           "drug_era_end_date": D("2009-06-14"), "drug_exposure_count": 2, "gap_days": 0}  # fmt: skip
    procedure = {"procedure_occurrence_id": 1, "person_id": 1, "procedure_concept_id": ASTHMA,
                 "procedure_date": D("2011-12-31"), "procedure_type_concept_id": 32817}  # fmt: skip
    no_birth_year = {**person(6, 8532, 0), "year_of_birth": None}
    tables = {
        **TABLES,
        "person": [*TABLES["person"], no_birth_year],
        "drug_era": [era],
        "procedure_occurrence": [procedure],
    }
    cohorts = {
        "twice": [(1, "2010-06-14", "2010-12-31"), (1, "2012-01-01", "2012-12-31")],
        # person 5 enters before their observation starts; person 6 has no year of birth and no observation
        "unobserved": [(5, "2015-06-01", "2015-06-30"), (6, "2012-01-01", "2012-01-31")],
    }
    spec = {"cohorts": ["twice", "unobserved"], "domains": ["condition", "drug", "procedure"], "min_prevalence": 0.5}
    rows = rows_of(run(engine, spec, tables, cohorts), "characterisation")
    age = pick(rows, "unobserved", "age", "age (years)")
    assert (age["count"], age["mean"], age["median"]) == (1, 25, 25)  # person 5 only
    assert pick(rows, "unobserved", "age_group", "unknown")["count"] == 1
    assert shares(rows, "unobserved", "sex") == {
        ("Male", None): (0, 0.0),
        ("Female", None): (1, 50.0),
        ("other or unknown", None): (1, 50.0),
    }
    prior = pick(rows, "unobserved", "prior_observation", "prior observation (days)")
    assert (prior["count"], prior["mean"], prior["median"]) == (0, None, None)
    assert pick(rows, "twice", "cohort", "subjects")["count"] == 1
    assert pick(rows, "twice", "cohort", "records")["count"] == 2
    assert pick(rows, "twice", "age", "age (years)")["mean"] == pytest.approx(60)  # 59 and 61
    assert pick(rows, "twice", "sex", "Male")["count"] == 2
    assert shares(rows, "twice", "condition") == {
        ("Hypertension", "-365 to -1"): (1, 50.0),  # the first entry only
        ("Diabetes", "-365 to -1"): (1, 50.0),
    }
    # the era of the first entry's window (ends on day 0: still overlapping), the exposure not used
    assert shares(rows, "twice", "drug") == {("diclofenac", "-365 to -1"): (1, 50.0)}
    assert shares(rows, "twice", "procedure") == {("Asthma", "-365 to -1"): (1, 50.0)}  # day -1 of the second

    rare = run(engine, {"cohorts": ["a"], "min_prevalence": 0.5})
    kept = {r["covariate_name"] for r in rows_of(rare, "characterisation") if r["covariate_type"] == "drug"}
    assert kept == set()  # celecoxib and diclofenac each in 1 of 3 entries (33%)
    conditions = {r["covariate_name"] for r in rows_of(rare, "characterisation") if r["covariate_type"] == "condition"}
    assert conditions == {"Hypertension", "Diabetes"}  # 2 of 3


def test_study_file_section_is_validated() -> None:
    assert analyses()["characterisation"].spec is CharacterisationSpec
    spec = CharacterisationSpec.model_validate({"cohorts": ["a"]})
    assert (spec.windows, spec.domains, spec.visit_window) == ([(-365, -1)], ["condition", "drug"], (-365, -1))
    for bad, reason in [
        ({"cohorts": []}, "at least 1"),
        ({"cohorts": ["a"], "windows": [[-1, -30]]}, "must not be after"),
        ({"cohorts": ["a"], "windows": [[-30.5, -1]]}, "whole numbers"),
        ({"cohorts": ["a"], "compare": ["a", "b"]}, "b must also be listed"),
        ({"cohorts": ["a"], "domains": ["device"]}, "condition"),
        ({"cohorts": ["a"], "domains": ["drug", "drug"]}, "listed twice"),
        ({"cohorts": ["a"], "min_prevalence": 5}, "less than or equal to 1"),
        ({"cohorts": ["a"], "window": [[-1, 0]]}, "Extra inputs"),
    ]:
        with pytest.raises(ValidationError, match=reason):
            CharacterisationSpec.model_validate(bad)


def test_smd_formulas() -> None:
    assert smd_binary(0.5, 0.5) == 0.0
    assert smd_binary(0.6, 0.4) == pytest.approx(0.2 / math.sqrt((0.24 + 0.24) / 2))
    assert smd_binary(1.0, 0.0) is None  # no pooled variance: undefined
    assert smd_continuous(10, 2, 8, 4) == pytest.approx(2 / math.sqrt(10))
    assert smd_continuous(3, None, 3, None) == 0.0
