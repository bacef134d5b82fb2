"""Reading Circe JSON: what is accepted, and errors that name the file, the JSON path and the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hygie.cohorts.circe import (
    CohortExpression,
    DefinitionError,
    UnsupportedFeature,
    circe_alias,
    parse_expression,
    read_definition,
)
from hygie.cohorts.compile import Dialect
from hygie.cohorts.service import CohortDefinition, compile_batch
from hygie.errors import HygieError

DATA = Path(__file__).parents[1] / "data" / "cohorts"
MINIMAL = {"PrimaryCriteria": {"CriteriaList": [{"ConditionOccurrence": {"CodesetId": 0}}]}}


def compile_one(data: dict, source: str = "def.json") -> None:
    definition = CohortDefinition("def", parse_expression(data, source), source)
    compile_batch([definition], "p", "codesets", Dialect())


def test_aliases_follow_circe_spelling():
    assert circe_alias("condition_type_cs") == "ConditionTypeCS"
    assert circe_alias("occurrence_start_date") == "OccurrenceStartDate"


def test_defaults_match_circe():
    e = parse_expression(MINIMAL)
    assert (e.primary_criteria.primary_criteria_limit.type, e.qualified_limit.type, e.expression_limit.type) == (
        "First",
        "First",
        "First",
    )
    assert e.collapse_settings.era_pad == 0
    assert e.end_strategy is None


@pytest.mark.parametrize("path", sorted(DATA.rglob("*.json")), ids=lambda p: p.name)
def test_every_saved_definition_round_trips_through_the_model(path):
    expression = read_definition(path)
    assert CohortExpression.model_validate(expression.to_json()) == expression


def test_invalid_json_names_the_file_and_position(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"PrimaryCriteria": ')
    with pytest.raises(DefinitionError) as e:
        read_definition(bad)
    assert str(bad) in str(e.value) and "invalid JSON at line 1" in str(e.value)


def test_unknown_attribute_is_an_error_with_its_json_path():
    data = json.loads(json.dumps(MINIMAL))
    data["PrimaryCriteria"]["CriteriaList"][0]["ConditionOccurrence"]["Colour"] = "red"
    with pytest.raises(DefinitionError) as e:
        parse_expression(data, "x.json")
    assert str(e.value).startswith("x.json: at $.PrimaryCriteria.CriteriaList[0].ConditionOccurrence.Colour:")


def test_a_criterion_names_exactly_one_domain():
    data = {"PrimaryCriteria": {"CriteriaList": [{"ConditionOccurrence": {}, "DrugEra": {}}]}}
    with pytest.raises(DefinitionError, match=r"\$\.PrimaryCriteria\.CriteriaList\[0\]: .*exactly one domain"):
        parse_expression(data, "x.json")


def test_wrong_types_are_reported_at_their_path():
    data = {"PrimaryCriteria": {"CriteriaList": [{"DrugEra": {"CodesetId": "zero"}}]}}
    with pytest.raises(DefinitionError, match=r"CriteriaList\[0\]\.DrugEra\.CodesetId"):
        parse_expression(data, "x.json")


@pytest.mark.parametrize(
    ("criterion", "path", "reason"),
    [
        ({"VisitOccurrence": {"PlaceOfServiceLocation": 1}}, "PlaceOfServiceLocation", "not supported"),
        ({"DrugExposure": {"EffectiveDrugDose": {"Value": 1, "Op": "gt"}}}, "EffectiveDrugDose", "not supported"),
        ({"LocationRegion": {"CodesetId": 1}}, "LocationRegion", "not supported"),
        ({"ObservationPeriod": {"UserDefinedPeriod": {"StartDate": "2000-01-01"}}}, "UserDefinedPeriod", "not supp"),
        ({"DrugExposure": {"OccurrenceEndDate": {"Value": "2000-01-01", "Op": "gt"}}}, "OccurrenceEndDate", "defect"),
        ({"DrugEra": {"GapDays": {"Value": 1, "Op": "gt"}}}, "DrugEra.GapDays", "upstream defect"),
        ({"Specimen": {"SpecimenSourceConcept": 1}}, "SpecimenSourceConcept", "no source concept"),
    ],
)
def test_unsupported_features_are_refused_by_name(criterion, path, reason):
    data = {"PrimaryCriteria": {"CriteriaList": [criterion]}}
    with pytest.raises(UnsupportedFeature) as e:
        compile_one(data)
    message = str(e.value)
    assert message.startswith("def.json: at $.PrimaryCriteria.CriteriaList[0].")
    assert path in message and reason in message


def test_refused_demographic_race_concept_set_names_its_path():
    rule = {"DemographicCriteriaList": [{"RaceCS": {"CodesetId": 0}}]}
    data = {**MINIMAL, "InclusionRules": [{"name": "r", "expression": rule}]}
    where = r"InclusionRules\[0\]\.expression\.DemographicCriteriaList\[0\]\.RaceCS"
    with pytest.raises(UnsupportedFeature, match=where):
        compile_one(data)


def test_group_counts_are_required_for_at_least():
    rule = {"Type": "AT_LEAST", "DemographicCriteriaList": [{"Age": {"Value": 1, "Op": "gt"}}]}
    with pytest.raises(UnsupportedFeature, match=r"InclusionRules\[0\]\.expression\.Count"):
        compile_one({**MINIMAL, "InclusionRules": [{"name": "r", "expression": rule}]})


def test_invalid_dates_are_reported():
    criterion = {"ConditionOccurrence": {"OccurrenceStartDate": {"Value": "soon", "Op": "gt"}}}
    data = {"PrimaryCriteria": {"CriteriaList": [criterion]}}
    with pytest.raises(UnsupportedFeature, match="ISO dates"):
        compile_one(data)


def test_cohort_names_must_be_safe_file_names():
    with pytest.raises(HygieError, match="invalid cohort name"):
        CohortDefinition("../escape", parse_expression(MINIMAL))
