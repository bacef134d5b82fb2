"""A project's scope narrows what the engine shows: tables, a time window, sites, and patients who objected."""

from __future__ import annotations

import datetime as dt

import pytest

from hygie.cohorts.service import open_runner
from hygie.engine.duckdb import DuckDBEngine
from hygie.engine.scope import DataScope
from hygie.errors import HygieError
from hygie.ingest.build import build_release
from hygie.ingest.cdm_load import load_cdm
from tests.cdm_files import write_cdm
from tests.unit.test_release_build import hub  # noqa: F401 - fixture: two sites' deposits


@pytest.fixture
def release(settings, tmp_path):
    return load_cdm(write_cdm(tmp_path / "cdm"), "scoped", settings, synthetic=True)


def count(engine: DuckDBEngine, sql: str) -> int:
    return engine.sql(sql).fetchone()[0]


def test_no_scope_shows_everything(release, settings):
    with DuckDBEngine(release, settings, scope=DataScope()) as engine:
        assert count(engine, "SELECT count(*) FROM person") == 3
        assert count(engine, "SELECT count(*) FROM condition_occurrence") == 2
        assert "condition_occurrence" in engine.tables()


def test_tables_outside_the_scope_do_not_exist(release, settings):
    scope = DataScope(tables=frozenset({"drug_exposure"}))
    with DuckDBEngine(release, settings, scope=scope) as engine:
        assert "condition_occurrence" not in engine.tables()
        assert {"person", "observation_period", "concept"} <= set(engine.tables())
        with pytest.raises(Exception, match="condition_occurrence"):
            engine.sql("SELECT count(*) FROM condition_occurrence").fetchone()
    with pytest.raises(HygieError, match="outside the project's approved scope"):
        scope.view_sql("condition_occurrence", "x", release.manifest)


def test_window_keeps_records_starting_inside_and_clips_observation(release, settings):
    scope = DataScope(window=(dt.date(2011, 1, 1), dt.date(2018, 6, 30)))
    with DuckDBEngine(release, settings, scope=scope) as engine:
        # 2010-03-04 is before the window, 2012-07-08 inside.
        assert count(engine, "SELECT count(*) FROM condition_occurrence") == 1
        periods = engine.sql(
            "SELECT person_id, observation_period_start_date::VARCHAR, observation_period_end_date::VARCHAR "
            "FROM observation_period ORDER BY 1"
        ).fetchall()
        assert periods == [
            (1, "2011-01-01", "2018-06-30"),
            (2, "2011-01-01", "2018-06-30"),
            (3, "2011-01-01", "2018-06-30"),
        ]
        assert count(engine, "SELECT count(*) FROM person") == 3  # persons stay


def test_opted_out_persons_vanish_from_every_table(release, settings):
    scope = DataScope(excluded_persons=frozenset({1}))
    with DuckDBEngine(release, settings, scope=scope) as engine:
        assert count(engine, "SELECT count(*) FROM person WHERE person_id = 1") == 0
        assert count(engine, "SELECT count(*) FROM observation_period WHERE person_id = 1") == 0
        assert count(engine, "SELECT count(*) FROM condition_occurrence") == 1


def test_spark_sees_the_same_scoped_rows(release, settings, spark):
    from hygie.engine.spark import SparkEngine

    scope = DataScope(excluded_persons=frozenset({2}), window=(None, dt.date(2011, 12, 31)))
    with SparkEngine(release, settings, session=spark, scope=scope) as engine:
        rows = engine.runner.query("SELECT person_id FROM condition_occurrence").to_pylist()
        assert rows == [{"person_id": 1}]
    runner, opened = open_runner(release, settings, "duckdb", scope)
    try:
        assert runner.query("SELECT person_id FROM condition_occurrence").to_pylist() == [{"person_id": 1}]
    finally:
        opened.close()


def test_site_scope_hides_records_of_other_sites(hub, settings):  # noqa: F811
    release = build_release("two-sites", settings)
    with DuckDBEngine(release, settings) as engine:
        assert count(engine, "SELECT count(*) FROM condition_occurrence") == 5
    with DuckDBEngine(release, settings, scope=DataScope(sites=frozenset({"site-a"}))) as engine:
        assert count(engine, "SELECT count(*) FROM condition_occurrence") == 1  # site A recorded one condition
        assert count(engine, "SELECT count(*) FROM person") == 4  # persons and their periods are not per site
    with DuckDBEngine(release, settings, scope=DataScope(sites=frozenset({"elsewhere"}))) as engine:
        assert count(engine, "SELECT count(*) FROM condition_occurrence") == 0
