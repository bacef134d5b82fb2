"""Circe semantics, one rule per test (docs/circe-cohort-semantics.md §2): tiny tables in, cohort rows out."""

from __future__ import annotations

import pytest
from spec_helpers import VOCABULARY, D, concept, concept_set, condition, definition, drug, period, person, run
from spec_helpers import cohort as rows_of

from hygie.cohorts import compile as compile_module

COND = [{"ConditionOccurrence": {"CodesetId": 0}}]


def test_first_event_enters_and_exit_is_the_end_of_the_observation_period():
    tables = {
        "person": [person(1), person(2)],
        "observation_period": [period(1, "2000-01-01", "2010-12-31"), period(2, "2000-01-01", "2005-06-30")],
        "condition_occurrence": [
            condition(1, 100, "2003-05-01"),
            condition(1, 100, "2001-02-01"),
            condition(2, 100, "2004-01-01"),
        ],
    }
    assert rows_of(tables, definition(COND)) == [
        (1, D("2001-02-01"), D("2010-12-31")),
        (2, D("2004-01-01"), D("2005-06-30")),
    ]


def test_events_outside_observation_or_too_close_to_its_start_are_not_index_events():
    tables = {
        "person": [person(1), person(2)],
        "observation_period": [period(1, "2000-01-01", "2010-12-31"), period(2, "2000-01-01", "2010-12-31")],
        "condition_occurrence": [
            condition(1, 100, "1999-06-01"),  # before observation
            condition(1, 100, "2000-03-01"),  # only 60 days of prior observation
            condition(1, 100, "2001-03-01"),
            condition(2, 100, "2000-02-01"),
        ],
    }
    circe = definition(COND, primary_options={"ObservationWindow": {"PriorDays": 365, "PostDays": 0}})
    assert rows_of(tables, circe) == [(1, D("2001-03-01"), D("2010-12-31"))]


def test_concept_sets_take_valid_descendants_mapped_sources_and_subtract_exclusions():
    vocabulary = {
        "concept": [concept(100), concept(101), concept(102, "D"), concept(103), concept(500)],
        "concept_ancestor": [
            {"ancestor_concept_id": 100, "descendant_concept_id": d, "min_levels_of_separation": 1,
             "max_levels_of_separation": 1}
            for d in (100, 101, 102, 103)
        ],
        "concept_relationship": [
            {"concept_id_1": 500, "concept_id_2": 101, "relationship_id": "Maps to",
             "valid_start_date": D("2000-01-01"), "valid_end_date": D("2099-01-01")},
        ],
    }  # fmt: skip
    sets = [
        {
            "id": 0,
            "name": "with descendants",
            "expression": {
                "items": [
                    {"concept": {"CONCEPT_ID": 100}, "includeDescendants": True, "includeMapped": True},
                    {"concept": {"CONCEPT_ID": 103}, "isExcluded": True},
                ]
            },
        }
    ]
    tables = {
        **vocabulary,
        "person": [person(p) for p in (1, 2, 3, 4, 5)],
        "observation_period": [period(p, "2000-01-01", "2010-12-31") for p in (1, 2, 3, 4, 5)],
        "condition_occurrence": [
            condition(1, 101, "2001-01-01"),  # valid descendant
            condition(2, 102, "2001-01-01"),  # invalid descendant: no
            condition(3, 103, "2001-01-01"),  # excluded: no
            condition(4, 999, "2001-01-01", condition_source_concept_id=500),  # source, not matched on concept
            condition(5, 500, "2001-01-01"),  # a source concept that maps into the set
        ],
    }
    assert [r[0] for r in rows_of(tables, definition(COND, sets))] == [1, 5]


def test_inclusion_rules_keep_events_passing_every_rule_and_report_subjects_after_each_rule():
    prior_condition = {
        "Type": "ALL",
        "CriteriaList": [
            {
                "Criteria": {"ConditionOccurrence": {"CodesetId": 1}},
                "StartWindow": {"Start": {"Days": 365, "Coeff": -1}, "End": {"Days": 1, "Coeff": -1}},
                "Occurrence": {"Type": 2, "Count": 1},
            }
        ],
    }
    male = {"Type": "ALL", "DemographicCriteriaList": [{"Gender": [{"CONCEPT_ID": 8507}]}]}
    tables = {
        "person": [person(1), person(2, gender=8532), person(3)],
        "observation_period": [period(p, "2000-01-01", "2010-12-31") for p in (1, 2, 3)],
        "condition_occurrence": [
            condition(1, 200, "2004-06-01"),
            condition(1, 100, "2005-01-01"),
            condition(2, 200, "2004-06-01"),
            condition(2, 100, "2005-01-01"),
            condition(3, 200, "2002-01-01"),  # more than 365 days before
            condition(3, 100, "2005-01-01"),
        ],
    }
    circe = definition(
        COND,
        InclusionRules=[{"name": "prior 200", "expression": prior_condition}, {"name": "male", "expression": male}],
    )
    result = run(tables, circe)
    assert [r["subject_id"] for r in result.rows.to_pylist()] == [1]
    assert [(r.name, r.subjects) for r in result.inclusion_rules] == [("prior 200", 2), ("male", 1)]
    assert result.mask_counts == {1: 1, 2: 1, 3: 1}


def test_exactly_zero_occurrences_requires_absence_in_the_window():
    no_prior = {
        "Type": "ALL",
        "CriteriaList": [
            {
                "Criteria": {"ConditionOccurrence": {"CodesetId": 1}},
                "StartWindow": {"Start": {"Coeff": -1}, "End": {"Days": 0, "Coeff": 1}},
                "Occurrence": {"Type": 0, "Count": 0},
            }
        ],
    }
    tables = {
        "person": [person(1), person(2)],
        "observation_period": [period(p, "2000-01-01", "2010-12-31") for p in (1, 2)],
        "condition_occurrence": [
            condition(1, 100, "2005-01-01"),
            condition(2, 100, "2005-01-01"),
            condition(2, 200, "2003-01-01"),
        ],
    }
    circe = definition(COND, InclusionRules=[{"name": "new", "expression": no_prior}])
    assert [r[0] for r in rows_of(tables, circe)] == [1]


def test_date_offset_exit_is_capped_by_the_observation_period_and_drops_exits_before_entry():
    tables = {
        "person": [person(1), person(2)],
        "observation_period": [period(1, "2000-01-01", "2010-12-31"), period(2, "2000-01-01", "2005-01-05")],
        "condition_occurrence": [condition(1, 100, "2005-01-01"), condition(2, 100, "2005-01-01")],
    }
    plus_ten = definition(COND, EndStrategy={"DateOffset": {"DateField": "StartDate", "Offset": 10}})
    assert rows_of(tables, plus_ten) == [(1, D("2005-01-01"), D("2005-01-11")), (2, D("2005-01-01"), D("2005-01-05"))]
    minus_one = definition(COND, EndStrategy={"DateOffset": {"DateField": "StartDate", "Offset": -1}})
    assert rows_of(tables, minus_one) == []


def test_custom_era_exit_follows_continuous_exposure_bridging_gaps():
    sets = [concept_set(0, 100), concept_set(1, 200)]
    tables = {
        "person": [person(1)],
        "observation_period": [period(1, "2000-01-01", "2010-12-31")],
        "drug_exposure": [
            drug(1, 200, "2005-01-01", "2005-01-30"),
            drug(1, 200, "2005-02-10", "2005-03-01"),  # 11 days after: bridged by 15 gap days
            drug(1, 200, "2005-06-01", "2005-06-30"),  # a new era
        ],
    }
    circe = definition(
        [{"DrugExposure": {"CodesetId": 1}}],
        sets,
        EndStrategy={"CustomEra": {"DrugCodesetId": 1, "GapDays": 15, "Offset": 7}},
    )
    assert rows_of(tables, circe) == [(1, D("2005-01-01"), D("2005-03-08"))]


@pytest.mark.parametrize("inline_ids", [2000, 0], ids=["sets written into the SQL", "sets read from a table"])
def test_custom_era_reads_exposures_by_concept_or_by_source_concept(monkeypatch, inline_ids):
    monkeypatch.setattr(compile_module, "INLINE_IDS", inline_ids)
    sets = [concept_set(0, 100), concept_set(1, 200)]
    tables = {
        "person": [person(1)],
        "observation_period": [period(1, "2000-01-01", "2010-12-31")],
        "drug_exposure": [
            drug(1, 200, "2005-01-01", "2005-01-30", drug_source_concept_id=200),  # matches by both
            drug(1, 999, "2005-02-05", "2005-02-20", drug_source_concept_id=200),  # its source code matches
            drug(1, 999, "2005-03-01", "2005-04-30", drug_source_concept_id=0),  # by neither: would extend the era
        ],
    }
    circe = definition(
        [{"DrugExposure": {"CodesetId": 1}}],
        sets,
        EndStrategy={"CustomEra": {"DrugCodesetId": 1, "GapDays": 10, "Offset": 0}},
    )
    assert rows_of(tables, circe) == [(1, D("2005-01-01"), D("2005-02-20"))]


def test_censoring_event_ends_the_cohort_early():
    tables = {
        "person": [person(1)],
        "observation_period": [period(1, "2000-01-01", "2010-12-31")],
        "condition_occurrence": [condition(1, 100, "2005-01-01"), condition(1, 200, "2006-07-01")],
    }
    circe = definition(COND, CensoringCriteria=[{"ConditionOccurrence": {"CodesetId": 1}}])
    assert rows_of(tables, circe) == [(1, D("2005-01-01"), D("2006-07-01"))]


def test_era_pad_collapses_periods_separated_by_less_than_the_pad():
    tables = {
        "person": [person(1)],
        "observation_period": [period(1, "2000-01-01", "2010-12-31")],
        "condition_occurrence": [
            condition(1, 100, "2005-01-01"),
            condition(1, 100, "2005-01-20"),
            condition(1, 100, "2005-06-01"),
        ],
    }
    every_event = {
        "primary_options": {"PrimaryCriteriaLimit": {"Type": "All"}},
        "ExpressionLimit": {"Type": "All"},
        "EndStrategy": {"DateOffset": {"DateField": "StartDate", "Offset": 5}},
    }
    assert rows_of(tables, definition(COND, CollapseSettings={"CollapseType": "ERA", "EraPad": 14}, **every_event)) == [
        (1, D("2005-01-01"), D("2005-01-25")),
        (1, D("2005-06-01"), D("2005-06-06")),
    ]


def test_censor_window_clamps_dates_and_drops_periods_outside_it():
    tables = {
        "person": [person(1), person(2)],
        "observation_period": [period(1, "2000-01-01", "2010-12-31"), period(2, "2000-01-01", "2001-12-31")],
        "condition_occurrence": [condition(1, 100, "2001-06-01"), condition(2, 100, "2001-06-01")],
    }
    circe = definition(COND, CensorWindow={"StartDate": "2002-01-01", "EndDate": "2008-12-31"})
    result = run(tables, circe)
    assert [tuple(r.values()) for r in result.rows.to_pylist()] == [(1, D("2002-01-01"), D("2008-12-31"))]
    assert result.censor_window_lost == 1


def test_qualified_limit_applies_only_with_additional_criteria():
    tables = {
        "person": [person(1)],
        "observation_period": [period(1, "2000-01-01", "2010-12-31")],
        "condition_occurrence": [condition(1, 100, "2002-01-01"), condition(1, 100, "2004-01-01")],
    }
    all_events = {"primary_options": {"PrimaryCriteriaLimit": {"Type": "All"}}, "ExpressionLimit": {"Type": "All"}}
    last_without_additional = definition(COND, QualifiedLimit={"Type": "Last"}, **all_events)
    assert rows_of(tables, last_without_additional) == [(1, D("2002-01-01"), D("2010-12-31"))]
    anything = {"Type": "ALL", "DemographicCriteriaList": [{"Age": {"Value": 0, "Op": "gte"}}]}
    last_with_additional = definition(COND, QualifiedLimit={"Type": "Last"}, AdditionalCriteria=anything, **all_events)
    assert rows_of(tables, last_with_additional) == [(1, D("2004-01-01"), D("2010-12-31"))]


def test_restrict_visit_requires_the_same_visit():
    visits = [
        {"visit_occurrence_id": 900, "person_id": 1, "visit_concept_id": 9201, "visit_start_date": D("2005-01-01"),
         "visit_end_date": D("2005-01-03"), "visit_type_concept_id": 32817},
        {"visit_occurrence_id": 901, "person_id": 2, "visit_concept_id": 9201, "visit_start_date": D("2005-01-01"),
         "visit_end_date": D("2005-01-03"), "visit_type_concept_id": 32817},
    ]  # fmt: skip
    same_visit_drug = {
        "Type": "ALL",
        "CriteriaList": [
            {
                "Criteria": {"DrugExposure": {"CodesetId": 1}},
                "StartWindow": {"Start": {"Days": 0, "Coeff": -1}, "End": {"Days": 5, "Coeff": 1}},
                "RestrictVisit": True,
                "Occurrence": {"Type": 2, "Count": 1},
            }
        ],
    }
    tables = {
        "person": [person(1), person(2)],
        "observation_period": [period(p, "2000-01-01", "2010-12-31") for p in (1, 2)],
        "visit_occurrence": visits,
        "condition_occurrence": [
            condition(1, 100, "2005-01-01", visit_occurrence_id=900),
            condition(2, 100, "2005-01-01", visit_occurrence_id=901),
        ],
        "drug_exposure": [
            drug(1, 200, "2005-01-02", visit_occurrence_id=900),
            drug(2, 200, "2005-01-02", visit_occurrence_id=None),
        ],
    }
    circe = definition(COND, InclusionRules=[{"name": "same visit", "expression": same_visit_drug}])
    assert [r[0] for r in rows_of(tables, circe)] == [1]


def test_measurement_value_ranges_filter_events():
    measurements = [
        {"measurement_id": i, "person_id": p, "measurement_concept_id": 300, "measurement_date": D("2005-01-01"),
         "measurement_type_concept_id": 32817, "value_as_number": v}
        for i, (p, v) in enumerate([(1, 7.5), (2, 6.0), (3, None)], start=1)
    ]  # fmt: skip
    tables = {
        "person": [person(p) for p in (1, 2, 3)],
        "observation_period": [period(p, "2000-01-01", "2010-12-31") for p in (1, 2, 3)],
        "measurement": measurements,
    }
    circe = definition(
        [{"Measurement": {"CodesetId": 2, "ValueAsNumber": {"Value": 6.5, "Op": "gt"}}}],
        [concept_set(2, 300)],
    )
    assert [r[0] for r in rows_of(tables, circe)] == [1]


def test_age_is_year_of_index_minus_year_of_birth():
    tables = {
        "person": [person(1, year_of_birth=1960), person(2, year_of_birth=1970)],
        "observation_period": [period(p, "2000-01-01", "2010-12-31") for p in (1, 2)],
        "condition_occurrence": [condition(1, 100, "2005-01-01"), condition(2, 100, "2005-12-31")],
    }
    over_40 = {"Type": "ALL", "DemographicCriteriaList": [{"Age": {"Value": 40, "Op": "gt"}}]}
    circe = definition(COND, InclusionRules=[{"name": "age > 40", "expression": over_40}])
    assert [r[0] for r in rows_of(tables, circe)] == [1]  # 2005 - 1960 = 45; 2005 - 1970 = 35


def test_text_filters_match_literally_even_with_like_wildcards():
    tables = {
        "person": [person(p) for p in (1, 2, 3)],
        "observation_period": [period(p, "2000-01-01", "2010-12-31") for p in (1, 2, 3)],
        "condition_occurrence": [
            condition(1, 100, "2005-01-01", stop_reason="100% resolved"),
            condition(2, 100, "2005-01-01", stop_reason="1000 resolved"),
            condition(3, 100, "2005-01-01"),
        ],
    }
    starts = definition([{"ConditionOccurrence": {"CodesetId": 0, "StopReason": {"Text": "100%", "Op": "startsWith"}}}])
    assert [r[0] for r in rows_of(tables, starts)] == [1]
    lacks = definition([{"ConditionOccurrence": {"CodesetId": 0, "StopReason": {"Text": "0%", "Op": "!contains"}}}])
    assert [r[0] for r in rows_of(tables, lacks)] == [2]  # a missing stop reason matches no text filter


def test_abnormal_measurements_are_outside_their_range_or_flagged_abnormal():
    measurements = [
        {"measurement_id": i, "person_id": p, "measurement_concept_id": 300, "measurement_date": D("2005-01-01"),
         "measurement_type_concept_id": 32817, "value_as_number": v, "range_low": 3.0, "range_high": 6.0,
         "value_as_concept_id": flag}
        for i, (p, v, flag) in enumerate([(1, 7.5, None), (2, 5.0, None), (3, None, 4155143)], start=1)
    ]  # fmt: skip
    tables = {
        "person": [person(p) for p in (1, 2, 3)],
        "observation_period": [period(p, "2000-01-01", "2010-12-31") for p in (1, 2, 3)],
        "measurement": measurements,
    }
    circe = definition([{"Measurement": {"CodesetId": 2, "Abnormal": True}}], [concept_set(2, 300)])
    assert [r[0] for r in rows_of(tables, circe)] == [1, 3]


def test_place_of_service_is_the_visit_care_site_place():
    def visit(visit_id: int, person_id: int, care_site: int | None) -> dict:
        return {"visit_occurrence_id": visit_id, "person_id": person_id, "visit_concept_id": 9201,
                "visit_start_date": D("2005-01-01"), "visit_end_date": D("2005-01-02"),
                "visit_type_concept_id": 32817, "care_site_id": care_site}  # fmt: skip

    tables = {
        "concept": [*VOCABULARY, concept(8717)],  # a concept set only holds concepts the vocabulary has
        "person": [person(p) for p in (1, 2, 3)],
        "observation_period": [period(p, "2000-01-01", "2010-12-31") for p in (1, 2, 3)],
        "care_site": [
            {"care_site_id": 50, "place_of_service_concept_id": 8717},  # inpatient hospital
            {"care_site_id": 51, "place_of_service_concept_id": 8756},
        ],
        "visit_occurrence": [visit(1, 1, 50), visit(2, 2, 51), visit(3, 3, None)],
    }
    inpatient_site = [{"VisitOccurrence": {"PlaceOfService": [{"CONCEPT_ID": 8717}]}}]
    assert [r[0] for r in rows_of(tables, definition(inpatient_site))] == [1]
    other_sites = [{"VisitOccurrence": {"PlaceOfServiceCS": {"CodesetId": 5, "IsExclusion": True}}}]
    assert [r[0] for r in rows_of(tables, definition(other_sites, [concept_set(5, 8717)]))] == [2]
