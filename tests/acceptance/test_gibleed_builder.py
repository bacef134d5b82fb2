"""The Python cohort builder reproduces the published GiBleed cohorts, through the notebook API."""

from __future__ import annotations

from pathlib import Path

from hygie import cohorts
from hygie.cohorts import builder as cb

DATA = Path(__file__).parents[1] / "data" / "cohorts" / "cohortgenerator"

celecoxib = cb.concepts("Celecoxib", 1118084)
first_celecoxib_era = cb.entry(cb.drug_era(celecoxib)).first_event()


def test_builder_cohorts_match_the_published_json_cohorts(gibleed, gibleed_settings):
    results = cohorts.generate(
        gibleed.name,
        {
            "built_age40_male": first_celecoxib_era.require("Age > 40", cb.age() > 40).require(
                "Gender = MALE", cb.gender(cb.MALE)
            ),
            "built_censored": first_celecoxib_era.between(start="2000-01-01"),
            "json_age40_male": DATA / "celecoxibAge40Male.json",
        },
        settings=gibleed_settings,
        store=False,
    )
    built, published = results["built_age40_male"], results["json_age40_male"]
    assert built.to_arrow().equals(published.to_arrow())
    assert [(r.name, r.subjects) for r in built.inclusion_rules] == [("Age > 40", 569), ("Gender = MALE", 266)]
    assert (results["built_censored"].subjects, results["built_censored"].censor_window_lost) == (1750, 50)
    frame = built.to_pandas()
    assert list(frame.columns) == ["subject_id", "cohort_start_date", "cohort_end_date"]
    assert len(frame) == 266
