"""Incidence and prevalence on the GiBleed release: identical results on DuckDB and Spark, and the regression
figure of docs/gibleed-reference.md Q10 (320.108 GI bleeds per 100,000 person-years; not published upstream).

The study cohorts are generated once on DuckDB (cohort generation has its own Spark tests) and the same cohort
table is given to both engines.
"""

from __future__ import annotations

import pyarrow as pa

from hygie import datasets
from hygie.analyses.base import StudyCohort, StudyContext, StudyDefinitions
from hygie.analyses.incidence_prevalence import IncidenceAnalysis, PrevalenceAnalysis
from hygie.analyses.incidence_prevalence.spec import DenominatorSpec, IncidenceSpec, PrevalenceSpec
from hygie.cohorts.service import CohortDefinition, DuckDBRunner, SparkRunner, run_batch
from hygie.engine.duckdb import DuckDBEngine
from hygie.engine.spark import release_tables

GI_BLEED = 192671
# Q10's outcome: every GI bleed record, starting and ending on its start date.
GI_BLEED_RECORDS = f"""
SELECT CAST(3 AS BIGINT) AS cohort_definition_id, CAST(co.person_id AS BIGINT) AS subject_id,
       co.condition_start_date AS cohort_start_date, co.condition_start_date AS cohort_end_date
FROM condition_occurrence co JOIN concept_ancestor ca ON co.condition_concept_id = ca.descendant_concept_id
WHERE ca.ancestor_concept_id = {GI_BLEED}"""

STUDY = StudyDefinitions(
    denominators={
        "everyone": DenominatorSpec(),
        "by_age_and_sex": DenominatorSpec(age_groups=[(0, 64), (65, 150)], sex=["Male", "Female"]),
    }
)
ANALYSES = [
    (IncidenceAnalysis(), IncidenceSpec(denominator="everyone", outcomes=["gi_bleed_records"], interval="overall")),
    (
        IncidenceAnalysis(),
        IncidenceSpec(
            denominator="by_age_and_sex",
            outcomes=["gi_bleed", "gi_bleed_records"],
            interval=["years", "overall"],
            outcome_washout=365,
            repeated_events=True,
            strata=[["celecoxib_age40_male"]],
        ),
    ),
    (
        PrevalenceAnalysis(),
        PrevalenceSpec(denominator="everyone", outcomes=["gi_bleed"], type="period", interval="years"),
    ),
    (
        PrevalenceAnalysis(),
        PrevalenceSpec(denominator="by_age_and_sex", outcomes=["gi_bleed_records"], interval="years", strata=[["sex"]]),
    ),
]


def study_cohorts(engine: DuckDBEngine) -> pa.Table:
    folder = datasets.get("gibleed").folder.parent / "cohorts"
    definitions = [CohortDefinition.from_file(folder / f"{n}.json") for n in ("gi_bleed", "celecoxib_age40_male")]
    runner = DuckDBRunner(engine.con)
    parts = []
    for cohort_id, result in enumerate(run_batch(runner, definitions), start=1):
        rows = result.rows
        parts.append(rows.add_column(0, "cohort_definition_id", pa.array([cohort_id] * rows.num_rows, pa.int64())))
    parts.append(runner.query(GI_BLEED_RECORDS).cast(parts[0].schema))
    return pa.concat_tables(parts)


def run_all(runner) -> dict[str, list[list[dict]]]:
    cohorts = {
        name: StudyCohort(name, i, "test")
        for i, name in enumerate(("gi_bleed", "celecoxib_age40_male", "gi_bleed_records"), start=1)
    }
    context = StudyContext(runner=runner, cohorts=cohorts)
    out: dict[str, list[list[dict]]] = {}
    for analysis, spec in ANALYSES:
        for table in analysis.run(context, spec, STUDY):
            out.setdefault(table.name, []).append(table.rows.to_pylist())
    return out


def test_gibleed_incidence_and_prevalence_are_identical_on_duckdb_and_spark(spark, gibleed, gibleed_settings):
    with DuckDBEngine(gibleed, gibleed_settings) as engine:
        cohort_table = study_cohorts(engine)
        runner = DuckDBRunner(engine.con)
        runner.register("study_cohort", cohort_table)
        on_duckdb = run_all(runner)
    spark_runner = SparkRunner(spark, {**release_tables(gibleed, gibleed_settings), "study_cohort": cohort_table})
    try:
        on_spark = run_all(spark_runner)
    finally:
        spark_runner.close()

    (overall,) = on_duckdb["incidence"][0]
    assert overall["incidence_start_date"].isoformat() == "1908-09-22"
    assert overall["incidence_end_date"].isoformat() == "2019-07-03"
    assert (overall["denominator_count"], overall["person_days"], overall["outcome_count"]) == (2694, 54654874, 479)
    assert (overall["person_years"], overall["incidence_100000_pys"]) == (149636.89, 320.108)
    assert len(on_duckdb["incidence"][1]) > 100 and len(on_duckdb["prevalence"][1]) > 100
    assert {r["strata_level"] for r in on_duckdb["prevalence"][1]} == {"overall", "Male", "Female"}
    assert on_spark == on_duckdb
