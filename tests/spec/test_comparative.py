"""The comparative study's populations on a tiny CDM, counted by hand: new users, washout, persons in both
cohorts, prior outcome, time at risk on treatment and intention to treat; the same on DuckDB and Spark.

Cohort 1 is the target (drug A users), 2 the comparator (drug B users), 3 the outcome. Everyone is observed
2015-01-01 to 2023-12-31 unless said otherwise. Days are counted from the index date (day 0); the risk window
starts on day 1 (the default) and ends on day 365.

| person | cohorts | what it tests |
|---|---|---|
| 1 | A 2020-01-01 to 2020-03-01 (and a later era), outcome 2020-05-01 (day 121) | event in ITT, not on treatment |
| 2 | A from 2020-01-01, observed from 2019-06-01 | 214 days of prior observation: not a new user |
| 3 | A 2020-02-01, B 2020-05-01 | in both cohorts: removed |
| 4 | B 2020-03-01 to 2020-04-30, observed until 2020-08-31 | censored at observation end (183) or exposure end (60) |
| 5 | B 2020-03-01, outcome 2019-12-01 | prior outcome: removed |
| 6 | B 2020-01-10 to 2020-02-10, outcome 2020-02-05 (day 26) | event in both designs |
| 7 | A 2020-04-01 to 2020-04-30 | 365 days at risk (ITT) or 29 (on treatment) |
| 8 | A 2020-05-01, outcome 2020-05-01 | outcome on day 0, before the risk window: removed |
| 9 | B 2020-06-01, observed until 2020-06-01 | no day at risk: removed |
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pytest

from hygie.analyses.base import COHORT_TABLE_COLUMNS, ResultTable, StudyCohort, StudyContext, StudyDefinitions
from hygie.analyses.comparative import ComparativeAnalysis, ComparativeSpec
from hygie.cohorts.memory import cdm_connection
from hygie.cohorts.service import DuckDBRunner, SparkRunner
from hygie.errors import HygieError

D = dt.date.fromisoformat
FULL = ("2015-01-01", "2023-12-31")
PERIODS = {2: ("2019-06-01", "2023-12-31"), 4: ("2015-01-01", "2020-08-31"), 9: ("2015-01-01", "2020-06-01")}
COHORTS = [  # (cohort, person, start, end)
    (1, 1, "2020-01-01", "2020-03-01"), (1, 1, "2020-06-01", "2020-07-01"), (3, 1, "2020-05-01", "2020-05-02"),
    (1, 2, "2020-01-01", "2020-02-01"),
    (1, 3, "2020-02-01", "2020-03-01"), (2, 3, "2020-05-01", "2020-06-01"),
    (2, 4, "2020-03-01", "2020-04-30"),
    (2, 5, "2020-03-01", "2020-04-01"), (3, 5, "2019-12-01", "2019-12-02"),
    (2, 6, "2020-01-10", "2020-02-10"), (3, 6, "2020-02-05", "2020-02-06"),
    (1, 7, "2020-04-01", "2020-04-30"),
    (1, 8, "2020-05-01", "2020-06-01"), (3, 8, "2020-05-01", "2020-05-02"),
    (2, 9, "2020-06-01", "2020-06-01"),
]  # fmt: skip
STUDY_COHORTS = {
    "drug_a": StudyCohort("drug_a", 1, "python"),
    "drug_b": StudyCohort("drug_b", 2, "python"),
    "bleed": StudyCohort("bleed", 3, "python"),
}


def _cdm() -> dict[str, list[dict[str, Any]]]:
    persons = range(1, 10)
    return {
        "person": [
            {"person_id": p, "gender_concept_id": 8507 if p % 2 else 8532, "year_of_birth": 1950 + p,
             "race_concept_id": 0, "ethnicity_concept_id": 0}
            for p in persons
        ],
        "observation_period": [
            {"observation_period_id": p, "person_id": p,
             "observation_period_start_date": D(PERIODS.get(p, FULL)[0]),
             "observation_period_end_date": D(PERIODS.get(p, FULL)[1]), "period_type_concept_id": 32817}
            for p in persons
        ],
        # A baseline condition for some persons (a covariate), one outside every window.
        "condition_occurrence": [
            {"condition_occurrence_id": i, "person_id": p, "condition_concept_id": 100,
             "condition_start_date": D(day), "condition_type_concept_id": 32817}
            for i, (p, day) in enumerate([(1, "2019-10-01"), (4, "2019-05-01"), (6, "2012-01-01")], 1)
        ],
        "concept": [
            {"concept_id": 100, "concept_name": "Some condition", "domain_id": "Condition", "vocabulary_id": "X",
             "concept_class_id": "X", "concept_code": "100", "valid_start_date": D("1970-01-01"),
             "valid_end_date": D("2099-12-31")}
        ],
    }  # fmt: skip


def _cohort_table() -> pa.Table:
    rows = [
        {"cohort_definition_id": c, "subject_id": p, "cohort_start_date": D(s), "cohort_end_date": D(e)}
        for c, p, s, e in COHORTS
    ]
    schema = pa.schema(
        [("cohort_definition_id", pa.int64()), ("subject_id", pa.int64()), ("cohort_start_date", pa.date32()),
         ("cohort_end_date", pa.date32())]
    )  # fmt: skip
    return pa.Table.from_pylist(rows, schema=schema).select(list(COHORT_TABLE_COLUMNS))


@contextmanager
def _duckdb() -> Iterator[StudyContext]:
    con = cdm_connection(_cdm())
    runner = DuckDBRunner(con)
    runner.register("study_cohort", _cohort_table())
    try:
        yield StudyContext(runner, STUDY_COHORTS, engine="duckdb")
    finally:
        con.close()


@contextmanager
def _spark(spark: Any) -> Iterator[StudyContext]:
    con = cdm_connection(_cdm())
    tables = {
        name: con.execute(f'SELECT * FROM "{name}"').to_arrow_table()
        for name in ("person", "observation_period", "condition_occurrence", "drug_exposure", "procedure_occurrence",
                     "concept")
    }  # fmt: skip
    con.close()
    runner = SparkRunner(spark, tables)
    runner.register("study_cohort", _cohort_table())
    try:
        yield StudyContext(runner, STUDY_COHORTS, engine="spark")
    finally:
        runner.drop("study_cohort")
        runner.close()


@pytest.fixture(params=["duckdb", "spark"])
def context(request: pytest.FixtureRequest) -> Iterator[StudyContext]:
    opened = _duckdb() if request.param == "duckdb" else _spark(request.getfixturevalue("spark"))
    with opened as study_context:
        yield study_context


def _run(context: StudyContext, **settings: Any) -> dict[str, ResultTable]:
    spec = ComparativeSpec.model_validate(
        {
            "target": "drug_a",
            "comparator": "drug_b",
            "outcomes": ["bleed"],
            "covariates": {"demographics": False},
            "propensity": {"strengths": [0.1]},  # one strength: nothing to cross-validate on nine persons
            **settings,
        }
    )
    return {t.name: t for t in ComparativeAnalysis().run(context, spec, StudyDefinitions())}


def _attrition(tables: dict[str, ResultTable]) -> list[tuple[str, int, int, int, int]]:
    rows = tables["comparative_attrition"].rows.to_pylist()
    by_step: dict[int, dict[str, Any]] = {}
    for r in rows:
        by_step.setdefault(r["step"], {"reason": r["reason"]})[r["group"]] = (
            r["number_subjects"],
            r["excluded_subjects"],
        )
    return [(s["reason"], *s["target"], *s["comparator"]) for _, s in sorted(by_step.items())]


def _crude(tables: dict[str, ResultTable]) -> dict[str, Any]:
    (row,) = [r for r in tables["comparative_estimates"].rows.to_pylist() if r["analysis"] == "crude"]
    return row


def test_new_users_washout_both_cohorts_prior_outcome_and_itt_time_at_risk(context: StudyContext) -> None:
    tables = _run(context)
    assert _attrition(tables) == [
        ("Persons in the exposure cohort", 5, 0, 5, 0),
        ("First exposure with at least 365 days of prior observation (new users)", 4, 1, 5, 0),
        ("Not in both exposure cohorts", 3, 1, 4, 1),
        ("No bleed before the risk window", 2, 1, 3, 1),
        ("At least one day at risk", 2, 0, 2, 1),
        ("Matched (1:1, caliper 0.2 SD of the logit PS)", 2, 0, 2, 0),
    ]
    crude = _crude(tables)
    # Target: person 1 (event day 121: days 1..121), person 7 (365 days). Comparator: person 4 (days 1..183),
    # person 6 (event day 26).
    assert (crude["target_subjects"], crude["target_events"], crude["target_days"]) == (2, 1, 121 + 365)
    assert (crude["comparator_subjects"], crude["comparator_events"], crude["comparator_days"]) == (2, 1, 183 + 26)
    km = [r for r in tables["comparative_km"].rows.to_pylist() if r["group"] == "comparator"]
    assert [(r["time"], r["n_at_risk"], r["survival"]) for r in km] == [(0, 2, 1.0), (26, 2, 0.5)]


def test_on_treatment_time_at_risk_stops_at_the_exposure_end(context: StudyContext) -> None:
    tables = _run(context, time_at_risk={"design": "on_treatment"})
    crude = _crude(tables)
    # Person 1's exposure ends on day 60 (2020 is a leap year), before the event on day 121; person 7 on day 29.
    assert (crude["target_subjects"], crude["target_events"], crude["target_days"]) == (2, 0, 60 + 29)
    # Person 4: exposure ends day 60; person 6: event on day 26, within the exposure (ends day 31).
    assert (crude["comparator_subjects"], crude["comparator_events"], crude["comparator_days"]) == (2, 1, 60 + 26)


def test_risk_window_from_day_0_keeps_an_outcome_on_the_index_day_as_an_event(context: StudyContext) -> None:
    tables = _run(context, time_at_risk={"start": 0, "end": 365}, washout_days=0, prior_outcome_washout=False)
    steps = _attrition(tables)
    # Person 2 is a new user without the washout; person 5 is kept despite the prior outcome.
    assert steps[1] == ("First exposure with at least 0 days of prior observation (new users)", 5, 0, 5, 0)
    assert [s[0] for s in steps] == [
        "Persons in the exposure cohort",
        "First exposure with at least 0 days of prior observation (new users)",
        "Not in both exposure cohorts",
        "At least one day at risk",
        "Matched (1:1, caliper 0.2 SD of the logit PS)",
    ]
    crude = _crude(tables)
    # Target: 1 (event day 121), 2 (365 days from 2020-01-01: days 0..365), 7 (0..365), 8 (event on day 0).
    assert (crude["target_subjects"], crude["target_events"]) == (4, 2)
    assert crude["target_days"] == 122 + 366 + 366 + 1
    # Comparator: 4 (0..183), 5 (0..365, no outcome in it), 6 (event day 26), 9 (day 0 only).
    assert (crude["comparator_subjects"], crude["comparator_events"]) == (4, 1)
    assert crude["comparator_days"] == 184 + 366 + 27 + 1


def test_covariates_are_baseline_records_only(context: StudyContext) -> None:
    tables = _run(context)
    balance = tables["comparative_balance"].rows.to_pylist()
    (row,) = balance
    assert row["covariate"] == "condition [-365, -1]: Some condition" and row["concept_id"] == 100
    # Person 1 (target) has it 92 days before index; person 4 (comparator) 305 days before; person 6's is years
    # before the window.
    assert (row["target_subjects_before"], row["comparator_subjects_before"]) == (1, 1)
    assert (row["target_mean_before"], row["comparator_mean_before"]) == (0.5, 0.5)


def test_the_spec_refuses_unclear_input() -> None:
    with pytest.raises(ValueError, match="target and comparator must be different"):
        ComparativeSpec.model_validate({"target": "a", "comparator": "a", "outcomes": ["o"]})
    with pytest.raises(ValueError, match="named twice"):
        ComparativeSpec.model_validate(
            {"target": "a", "comparator": "b", "outcomes": ["o"], "negative_controls": ["o"]}
        )
    with pytest.raises(ValueError, match=r"end \(5\) must not be before its start"):
        ComparativeSpec.model_validate(
            {"target": "a", "comparator": "b", "outcomes": ["o"], "time_at_risk": {"start": 10, "end": 5}}
        )
    with pytest.raises(ValueError, match="baseline windows must end on or before day 0"):
        ComparativeSpec.model_validate(
            {"target": "a", "comparator": "b", "outcomes": ["o"], "covariates": {"windows": [[-30, 10]]}}
        )
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        ComparativeSpec.model_validate({"target": "a", "comparator": "b", "outcomes": ["o"], "outcome": "o"})


def test_duckdb_and_spark_give_the_same_tables(spark: Any) -> None:
    settings = {"time_at_risk": {"start": 0, "end": 365}, "washout_days": 0, "covariates": {"demographics": True}}
    with _duckdb() as on_duckdb:
        duck = _run(on_duckdb, **settings)
    with _spark(spark) as on_spark:
        other = _run(on_spark, **settings)
    assert duck.keys() == other.keys()
    for name, table in duck.items():
        a, b = table.rows.to_pylist(), other[name].rows.to_pylist()
        assert len(a) == len(b), name
        for x, y in zip(a, b, strict=True):
            assert x.keys() == y.keys()
            for key in x:
                if isinstance(x[key], float):
                    assert y[key] == pytest.approx(x[key], rel=1e-9, abs=1e-12), (name, key)
                else:
                    assert x[key] == y[key], (name, key)


def test_an_empty_comparator_is_a_clear_error() -> None:
    cohorts = {**STUDY_COHORTS, "drug_c": StudyCohort("drug_c", 99, "python")}  # no rows
    spec = ComparativeSpec.model_validate({"target": "drug_a", "comparator": "drug_c", "outcomes": ["bleed"]})
    with _duckdb() as context:
        context.cohorts = cohorts
        with pytest.raises(HygieError, match="drug_a vs drug_c: no new users in the comparator"):
            ComparativeAnalysis().run(context, spec, StudyDefinitions())
        with pytest.raises(KeyError, match="unknown cohort 'nope'"):
            ComparativeAnalysis().run(context, spec.model_copy(update={"target": "nope"}), StudyDefinitions())
