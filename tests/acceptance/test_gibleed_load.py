"""GiBleed, the bundled OHDSI sample, loads completely and its quirks are reported, not lost."""

from __future__ import annotations

import csv
import json

import pytest

from hygie import datasets
from hygie.cdm import cdm_schema
from hygie.engine import DuckDBEngine
from hygie.releases.summary import summarise


def _expected_rows() -> dict[str, int]:
    with (datasets.get("gibleed").folder / "MANIFEST.csv").open() as f:
        return {r["table"]: int(r["rows"]) for r in csv.DictReader(f)}


def test_every_table_keeps_all_its_rows(gibleed):
    release = gibleed
    tables = release.manifest.tables
    for table, rows in _expected_rows().items():
        if table == "cohort_attribute":  # CDM 5.3 only, empty: recorded as not carried
            assert rows == 0
            assert any("cohort_attribute" in w for w in release.manifest.warnings)
            continue
        assert tables[table].rows == rows, table
        assert tables[table].rejected_rows == 0, table


def test_release_is_cdm54_with_every_table(gibleed):
    release = gibleed
    assert release.manifest.cdm_version == "5.4"
    assert set(release.manifest.tables) == set(cdm_schema("5.4").tables)
    assert release.manifest.synthetic is True
    assert release.verify() == []


def test_persons_by_sex(gibleed, gibleed_settings):
    release, settings = gibleed, gibleed_settings
    with DuckDBEngine(release, settings) as engine:
        counts = dict(engine.sql("SELECT gender_concept_id, count(*) FROM person GROUP BY 1").fetchall())
        assert engine.sql("SELECT count(*) FROM person").fetchone()[0] == 2694
    assert counts == {8507: 1321, 8532: 1373}


def test_orphan_observation_periods_are_flagged_and_kept(gibleed, gibleed_settings):
    release, settings = gibleed, gibleed_settings
    entry = release.manifest.tables["observation_period"]
    assert entry.rows == 5343
    assert entry.flagged_rows == 2649
    with DuckDBEngine(release, settings) as engine:
        key = release.data_key(settings)
        from hygie.engine.duckdb import parquet_source, register_key

        register_key(engine.con, "rejects", key)
        orphans = engine.sql(
            f"SELECT count(*) FROM {parquet_source(str(release.path / release.manifest.rejects_file), 'rejects')} "
            "WHERE table_name = 'observation_period' AND check_name = 'orphan' AND action = 'flag'"
        ).fetchone()[0]
        missing = engine.sql(
            "SELECT count(*) FROM observation_period o ANTI JOIN person p USING (person_id)"
        ).fetchone()[0]
    assert orphans == missing == 2649


def test_unknown_concepts_are_warnings_with_counts(gibleed):
    release = gibleed
    unknown = release.manifest.unknown_concepts
    drug_type = sum(u.rows for u in unknown if u.table == "drug_exposure" and u.column == "drug_type_concept_id")
    assert drug_type > 60_000  # GiBleed's vocabulary subset lacks its own drug type concepts
    person_cols = {u.column for u in unknown if u.table == "person"}
    assert {"race_concept_id", "ethnicity_concept_id"} <= person_cols
    assert all(u.concept_id != 0 for u in unknown)


def test_lineage_names_every_input_file_with_its_digest(gibleed):
    release = gibleed
    expected = {r["table"]: r for r in csv.DictReader((datasets.get("gibleed").folder / "MANIFEST.csv").open())}
    lineage = {e.table: e for e in release.manifest.lineage}
    assert set(lineage) == set(expected)
    for table, e in lineage.items():
        assert e.source_sha256 == expected[table]["sha256"]
        assert e.source == f"{table}.parquet"
    assert lineage["visit_occurrence"].source_cdm_version == "5.3"


def test_summary(gibleed, gibleed_settings):
    release, settings = gibleed, gibleed_settings
    with DuckDBEngine(release, settings) as engine:
        s = summarise(engine)
    assert s["persons"] == 2694
    assert {r["sex"]: r["persons"] for r in s["persons_by_sex"]} == {"FEMALE": 1373, "MALE": 1321}
    assert s["observation"]["persons"] == 2694
    assert s["observation"]["person_years"] == pytest.approx(159335.8)
    top_conditions = s["top_concepts"]["condition_occurrence"]
    assert len(top_conditions) == 10 and top_conditions[0]["records"] >= top_conditions[-1]["records"]
    json.dumps(s, default=str)  # the --json output is serialisable
