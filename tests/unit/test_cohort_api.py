"""The notebook API ``hygie.cohorts``: definitions in any form, one batch, results by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hygie import cohorts
from hygie.cohorts import builder as cb
from hygie.cohorts.circe import CohortExpression
from hygie.cohorts.memory import cdm_connection
from hygie.cohorts.service import CohortDefinition, DuckDBRunner, run_batch
from hygie.errors import HygieError

DATA = Path(__file__).parents[1] / "data" / "cohorts" / "cdmconnector"


def test_every_form_of_a_definition_gives_the_same_model():
    path = DATA / "GiBleed_default.json"
    from_path = cohorts.as_expression(path)
    assert isinstance(from_path, CohortExpression)
    assert cohorts.as_expression(str(path)) == from_path
    assert cohorts.as_expression(json.loads(path.read_text())) == from_path
    assert cohorts.as_expression(from_path) is from_path
    built = cb.entry(cb.condition(cb.concepts("bleed", 192671)))
    assert cohorts.as_expression(built) == built.to_circe()


def test_cohort_names_in_a_batch_must_be_unique():
    expression = cohorts.as_expression(DATA / "GiBleed_default.json")
    con = cdm_connection({})
    try:
        with pytest.raises(HygieError, match="share the name"):
            run_batch(DuckDBRunner(con), [CohortDefinition("a", expression), CohortDefinition("a", expression)])
    finally:
        con.close()


def test_an_empty_cdm_gives_empty_cohorts_with_zero_counts():
    definition = CohortDefinition("x", cohorts.as_expression(DATA / "GIBleed_male.json"))
    con = cdm_connection({})
    try:
        (result,) = run_batch(DuckDBRunner(con), [definition])
    finally:
        con.close()
    assert (result.records, result.subjects, result.qualified_events) == (0, 0, 0)
    assert [r.subjects for r in result.inclusion_rules] == [0, 0]
    assert list(result.to_pandas().columns) == ["subject_id", "cohort_start_date", "cohort_end_date"]
    assert result.warnings == [
        "concept set 0 ('Gastrointestinal hemorrhage'): concept id(s) 192671 are not in the release's vocabulary "
        "and match nothing"
    ]


def test_generate_by_release_name_uses_hygie_home(settings):
    with pytest.raises(HygieError, match="no release named 'nowhere'"):
        cohorts.generate("nowhere", {"x": DATA / "GiBleed_default.json"}, settings=settings)
