"""Drug utilisation on a hand-made CDM: episodes across gaps (edges inclusive), new use after a washout, users by
period, durations, days supply, dose from drug_strength and quantity, persistence, lines and switching; every
number derived by hand from the rows, on DuckDB and on Spark."""

from __future__ import annotations

from typing import Any

import pytest
from analysis_helpers import ENGINES, D, concept, rows_of, study
from pydantic import ValidationError
from spec_helpers import drug, period, person

from hygie.analyses.drug_utilisation import DrugUtilisation, DrugUtilisationSpec, calendar_periods
from hygie.analyses.registry import analyses

A, B, C = 1118084, 1124300, 1177480  # celecoxib, diclofenac (studied); ibuprofen (a switch target)
A_200MG, B_50MG = 40001, 40002  # products of A and B
MG, G = 8576, 8504


def ancestor(ancestor_id: int, descendant_id: int) -> dict[str, Any]:
    return {"ancestor_concept_id": ancestor_id, "descendant_concept_id": descendant_id,
            "min_levels_of_separation": int(ancestor_id != descendant_id),
            "max_levels_of_separation": int(ancestor_id != descendant_id)}  # fmt: skip


def strength(drug_id: int, ingredient_id: int, amount: float, unit: int) -> dict[str, Any]:
    return {"drug_concept_id": drug_id, "ingredient_concept_id": ingredient_id, "amount_value": amount,
            "amount_unit_concept_id": unit, "valid_start_date": D("1970-01-01"),
            "valid_end_date": D("2099-12-31")}  # fmt: skip


TABLES: dict[str, list[dict[str, Any]]] = {
    "concept": [
        concept(A, "celecoxib", "Drug", "Ingredient"),
        concept(B, "diclofenac", "Drug", "Ingredient"),
        concept(C, "ibuprofen", "Drug", "Ingredient"),
        concept(A_200MG, "celecoxib 200 MG Oral Capsule", "Drug", "Clinical Drug"),
        concept(B_50MG, "diclofenac 50 MG Oral Tablet", "Drug", "Clinical Drug"),
    ],
    "concept_ancestor": [ancestor(A, A), ancestor(A, A_200MG), ancestor(B, B), ancestor(B, B_50MG), ancestor(C, C)],
    "drug_strength": [strength(A_200MG, A, 200, MG), strength(B_50MG, B, 0.05, G)],
    "person": [person(i) for i in (1, 2, 3, 4)],
    "observation_period": [
        period(1, "2015-01-01", "2020-12-31"),
        period(2, "2015-01-01", "2020-12-31"),
        period(3, "2017-06-01", "2020-12-31"),
        period(4, "2015-01-01", "2018-03-31"),
    ],
    "drug_exposure": [
        # person 1: one celecoxib episode (the second exposure starts exactly 30 days after the first's last day),
        # 2017-01-01..2017-03-30 = 89 days, 2 x 30 x 200 mg; then diclofenac 2017-04-15..2017-05-14, 60 x 50 mg
        drug(1, A_200MG, "2017-01-01", "2017-01-30", days_supply=30, quantity=30),
        drug(1, A_200MG, "2017-03-01", None, days_supply=30, quantity=30),
        drug(1, B_50MG, "2017-04-15", "2017-05-14", quantity=60),
        # person 2: two celecoxib episodes (the second starts 31 days after), no quantity: no dose; then ibuprofen
        drug(2, A_200MG, "2018-06-01", "2018-06-30", days_supply=30),
        drug(2, A_200MG, "2018-08-01", "2018-08-30"),
        drug(2, C, "2019-01-01", "2019-01-10"),
        # person 3: 92 days of prior observation, so not a new user in 2017; new again in 2019 (425 days later)
        drug(3, A, "2017-09-01", "2017-12-31"),
        drug(3, A, "2019-03-01", "2019-03-10"),
        # person 4: diclofenac 2017-12-01..2018-06-30 (212 days), observed until 2018-03-31 (121 days); quantity 0
        drug(4, B_50MG, "2017-12-01", "2018-06-30", quantity=0),
    ],
}


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> tuple[str, Any]:
    return request.param, request.getfixturevalue("spark") if request.param == "spark" else None


def run(engine: tuple[str, Any], spec: dict, cohorts: dict | None = None) -> dict[str, list[dict]]:
    parsed = DrugUtilisationSpec.model_validate(spec)
    with study(*engine, TABLES, cohorts or {}) as context:
        tables = DrugUtilisation().run(context, parsed, study=None)  # type: ignore[arg-type]
    return {t.name: rows_of(tables, t.name) for t in tables}


def summary(rows: list[dict], ingredient: str) -> dict[str, tuple]:
    return {
        r["variable"]: (r["count"], *(None if r[s] is None else round(r[s], 6) for s in ("mean", "median", "q1", "q3")))
        for r in rows
        if r["ingredient"] == ingredient
    }


def test_ingredients_with_lines_and_switching(engine: tuple[str, Any]) -> None:
    spec = {"ingredients": [A, B], "persistence_days": [30, 90], "lines": True, "switch_ingredients": [C]}
    result = run(engine, spec)
    assert set(result) == {"drug_use_by_period", "drug_exposure_summary", "persistence", "treatment_lines",
                           "treatment_switching"}  # fmt: skip

    by_period = {(r["ingredient"], r["period_start"].year): (r["users"], r["new_users"]) for r in
                 result["drug_use_by_period"]}  # fmt: skip
    assert by_period == {
        ("celecoxib", 2017): (2, 1),  # persons 1 and 3; person 3 had too little prior observation
        ("celecoxib", 2018): (1, 1),  # person 2 (two episodes, one person)
        ("celecoxib", 2019): (1, 1),  # person 3 again, after more than the washout
        ("diclofenac", 2017): (2, 2),
        ("diclofenac", 2018): (1, 0),  # person 4's episode runs into 2018
        ("diclofenac", 2019): (0, 0),
    }
    first = result["drug_use_by_period"][0]
    assert (first["period_start"], first["period_end"], first["ingredient_concept_id"]) == (
        D("2017-01-01"), D("2017-12-31"), A)  # fmt: skip

    celecoxib = summary(result["drug_exposure_summary"], "celecoxib")
    assert celecoxib["persons"][0] == 3
    assert celecoxib["episodes"][0] == 5
    assert celecoxib["records"][0] == 6
    assert celecoxib["episode_duration_days"] == (5, 56.2, 30, 30, 89)  # 10, 30, 30, 89, 122
    assert celecoxib["days_supply"] == (3, 30, 30, 30, 30)
    assert celecoxib["records_without_days_supply"][0] == 3
    assert celecoxib["cumulative_dose_mg"] == (1, 12000, 12000, 12000, 12000)  # person 1: 2 x 30 x 200 mg
    assert celecoxib["records_without_dose"][0] == 4  # person 2: no quantity; person 3: no strength for A itself
    diclofenac = summary(result["drug_exposure_summary"], "diclofenac")
    assert diclofenac["episode_duration_days"] == (2, 121, 121, 75.5, 166.5)  # 30 and 212
    assert diclofenac["cumulative_dose_mg"] == (1, 3000, 3000, 3000, 3000)  # 60 x 0.05 g
    assert diclofenac["records_without_dose"][0] == 1  # quantity 0

    persistence = {(r["ingredient"], r["days"]): (r["persons_starting"], r["persons_followed"], r["persistent"])
                   for r in result["persistence"]}  # fmt: skip
    assert persistence == {
        ("celecoxib", 30): (3, 3, 2),  # 89 and 30 days (the edge) last 30 days; 10 does not
        ("celecoxib", 90): (3, 3, 0),  # 89 < 90
        ("diclofenac", 30): (2, 2, 2),
        ("diclofenac", 90): (2, 2, 1),  # person 4 observed 121 days, on drug throughout
    }
    assert [r["percent"] for r in result["persistence"] if r["ingredient"] == "diclofenac"] == [100.0, 50.0]

    lines = {(r["line"], r["ingredient"]): (r["persons"], round(r["percent"], 6)) for r in result["treatment_lines"]}
    assert lines == {  # person 3 is not naive (92 days of prior observation before the first episode)
        (1, "celecoxib"): (2, round(200 / 3, 6)),
        (1, "diclofenac"): (1, round(100 / 3, 6)),
        (2, "diclofenac"): (1, round(100 / 3, 6)),
        (2, "ibuprofen"): (1, round(100 / 3, 6)),  # person 2: the two celecoxib episodes are one line
    }
    switches = {(r["from_ingredient"], r["to_ingredient"]): (r["persons"], r["persons_within_days"])
                for r in result["treatment_switching"]}  # fmt: skip
    assert switches == {("celecoxib", "diclofenac"): (1, 1), ("celecoxib", "ibuprofen"): (1, 0)}  # 16 and 124 days


def test_cohort_as_the_drug_and_cohort_restriction(engine: tuple[str, Any]) -> None:
    """A cohort alone: its entries are the exposures; with ingredients: exposures starting within an entry."""
    cohorts = {
        "users": [(1, "2017-01-01", "2017-01-31"), (1, "2017-02-15", "2017-03-01"), (3, "2017-07-01", "2017-07-01")],
        "early": [(1, "2017-01-01", "2017-02-28")],
    }
    alone = run(engine, {"cohort": "users", "interval": "quarters", "persistence_days": [60]}, cohorts)
    by_quarter = [(r["ingredient"], r["ingredient_concept_id"], r["period_start"], r["period_end"], r["users"],
                   r["new_users"]) for r in alone["drug_use_by_period"]]  # fmt: skip
    assert by_quarter == [
        ("users", None, D("2017-01-01"), D("2017-03-31"), 1, 1),
        ("users", None, D("2017-04-01"), D("2017-06-30"), 0, 0),
        ("users", None, D("2017-07-01"), D("2017-09-30"), 1, 0),  # person 3: one month of prior observation
    ]
    users = summary(alone["drug_exposure_summary"], "users")
    assert (users["persons"][0], users["episodes"][0], users["records"][0]) == (2, 2, 3)
    assert users["episode_duration_days"][:2] == (2, 30.5)  # 2017-01-01..2017-03-01 = 60 days (gap 14), and 1
    assert (users["days_supply"][0], users["records_without_dose"][0]) == (0, 3)
    assert [(r["persons_starting"], r["persistent"]) for r in alone["persistence"]] == [(1, 1)]

    within = run(engine, {"cohort": "early", "ingredients": [A, B], "interval": "months"}, cohorts)
    celecoxib = summary(within["drug_exposure_summary"], "celecoxib")
    assert (celecoxib["persons"][0], celecoxib["records"][0], celecoxib["episode_duration_days"][1]) == (1, 1, 30)
    assert summary(within["drug_exposure_summary"], "diclofenac")["persons"][0] == 0
    assert [r["period_start"] for r in within["drug_use_by_period"]][:1] == [D("2017-01-01")]
    assert len(within["drug_use_by_period"]) == 2  # January 2017 for each ingredient


def test_calendar_periods() -> None:
    assert list(calendar_periods(D("2019-11-15"), D("2020-02-01"), "quarters")) == [
        (D("2019-10-01"), D("2019-12-31")),
        (D("2020-01-01"), D("2020-03-31")),
    ]
    assert list(calendar_periods(D("2020-02-29"), D("2020-02-29"), "months")) == [(D("2020-02-01"), D("2020-02-29"))]
    assert len(list(calendar_periods(D("2015-06-01"), D("2024-01-01"), "years"))) == 10


def test_study_file_section_is_validated() -> None:
    assert analyses()["drug_utilisation"].spec is DrugUtilisationSpec
    spec = DrugUtilisationSpec.model_validate({"ingredients": [A]})
    assert (spec.new_user_washout, spec.gap_era, spec.persistence_days, spec.interval) == (365, 30, [90, 180, 365],
                                                                                          "years")  # fmt: skip
    for bad, reason in [
        ({}, "name the drugs"),
        ({"ingredients": []}, "at least 1"),
        ({"ingredients": [A], "gap_era": -1}, "greater than or equal to 0"),
        ({"ingredients": [A], "interval": "weeks"}, "years"),
        ({"ingredients": [A], "persistence_days": [0]}, "persistence_days"),
        ({"cohort": "users", "lines": True}, "lines need ingredients"),
        ({"ingredients": [A], "switch_ingredients": [C]}, "set lines: true"),
        ({"ingredients": [A], "lines": True, "switch_ingredients": [A]}, "repeat ingredients"),
        ({"ingredients": [A], "washout": 10}, "Extra inputs"),
    ]:
        with pytest.raises(ValidationError, match=reason):
            DrugUtilisationSpec.model_validate(bad)
