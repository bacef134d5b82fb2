"""The Python builder: each construct compiles to the Circe it names, and runs (DuckDB = reference)."""

from __future__ import annotations

from spec_helpers import D, condition, drug, period, person, run

from hygie.cohorts import builder as cb
from hygie.cohorts.circe import parse_expression

bleed = cb.concepts("bleed", 100)
nsaid = cb.concepts("nsaid", 200, descendants=True)


def test_builder_json_is_circe_that_reads_back_to_the_same_model():
    visit_soon = cb.visit().at_least(1, within=cb.after(30))
    any_bleed = cb.condition(bleed).at_least(1, within=cb.anytime())
    cohort = (
        cb.entry(cb.drug(nsaid))
        .with_observation(prior_days=365)
        .qualified_by(cb.age().between(18, 64))
        .require("no prior bleed", cb.condition(bleed).none(within=cb.before()))
        .require("a visit or a bleed", visit_soon | any_bleed)
        .exit_when_exposure_ends(nsaid, gap_days=30)
        .censor_on(cb.condition(bleed))
        .era_pad(7)
    )
    data = cohort.to_json()
    assert parse_expression(data) == cohort.to_circe()
    assert data["ConceptSets"][0]["name"] == "nsaid" and data["ConceptSets"][1]["name"] == "bleed"
    assert data["EndStrategy"] == {"CustomEra": {"DrugCodesetId": 0, "GapDays": 30, "Offset": 0}}
    assert data["InclusionRules"][1]["expression"]["Type"] == "ANY"
    window = data["InclusionRules"][0]["expression"]["CriteriaList"][0]["StartWindow"]
    assert window["Start"] == {"Coeff": -1} and window["End"] == {"Days": 0, "Coeff": 1}


def test_new_user_design_with_washout_and_exit_at_end_of_exposure():
    tables = {
        "person": [person(1), person(2), person(3)],
        "observation_period": [period(p, "2000-01-01", "2010-12-31") for p in (1, 2, 3)],
        "drug_exposure": [
            drug(1, 200, "2005-01-01", "2005-01-31"),
            drug(1, 200, "2005-02-15", "2005-03-15"),  # within 30 gap days: same exposure
            drug(2, 200, "2000-03-01", "2000-03-31"),  # less than 365 days of prior observation
            drug(3, 200, "2006-01-01", "2006-01-31"),
        ],
        "condition_occurrence": [condition(3, 100, "2005-06-01")],  # a bleed before: not a new user without bleed
    }
    cohort = (
        cb.entry(cb.drug(nsaid))
        .with_observation(prior_days=365)
        .require("no prior bleed", cb.condition(bleed).none(within=cb.before()))
        .exit_when_exposure_ends(nsaid, gap_days=30)
    )
    result = run(tables, cohort.to_json())
    assert [tuple(r.values()) for r in result.rows.to_pylist()] == [(1, D("2005-01-01"), D("2005-03-15"))]
    assert [(r.name, r.subjects) for r in result.inclusion_rules] == [("no prior bleed", 1)]


def test_rules_combine_with_and_or_and_age_comparisons():
    tables = {
        "person": [person(1, 1950), person(2, 1990), person(3, 1950, gender=8532)],
        "observation_period": [period(p, "2000-01-01", "2010-12-31") for p in (1, 2, 3)],
        "condition_occurrence": [condition(p, 100, "2005-01-01") for p in (1, 2, 3)],
    }
    older_men = cb.entry(cb.condition(bleed)).require("older man", (cb.age() >= 50) & cb.gender(cb.MALE))
    assert [r["subject_id"] for r in run(tables, older_men.to_json()).rows.to_pylist()] == [1]
    older_or_women = cb.entry(cb.condition(bleed)).require("either", (cb.age() >= 50) | cb.gender(cb.FEMALE))
    assert [r["subject_id"] for r in run(tables, older_or_women.to_json()).rows.to_pylist()] == [1, 3]


def test_fixed_exit_and_all_events():
    tables = {
        "person": [person(1)],
        "observation_period": [period(1, "2000-01-01", "2010-12-31")],
        "condition_occurrence": [condition(1, 100, "2005-01-01"), condition(1, 100, "2006-01-01")],
    }
    cohort = cb.entry(cb.condition(bleed)).all_events().exit_after(days=30)
    assert [tuple(r.values()) for r in run(tables, cohort.to_json()).rows.to_pylist()] == [
        (1, D("2005-01-01"), D("2005-01-31")),
        (1, D("2006-01-01"), D("2006-01-31")),
    ]
