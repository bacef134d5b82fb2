"""`cdm load` on small hand-made folders: what is accepted, and how every bad input is refused."""

from __future__ import annotations

import datetime as dt

import pytest

from hygie.engine import DuckDBEngine
from hygie.errors import ConflictError, InputError
from hygie.ingest.cdm_load import load_cdm
from hygie.releases import ReleaseStore
from tests.cdm_files import OBSERVATION_PERIOD, PERSON, write_cdm


def test_valid_folder_loads_with_athena_vocabulary(tmp_path, settings):
    release = load_cdm(write_cdm(tmp_path / "cdm"), "tiny", settings, synthetic=True)
    m = release.manifest
    assert (m.tables["person"].rows, m.tables["concept"].rows, m.tables["death"].rows) == (3, 3, 0)
    with DuckDBEngine(release, settings) as engine:
        names = dict(engine.sql("SELECT concept_id, concept_name FROM concept").fetchall())
        dates = engine.sql("SELECT min(valid_start_date), max(valid_end_date) FROM concept").fetchone()
    assert names[8532] == 'FEMALE "F"'
    assert dates == (dt.date(1970, 1, 1), dt.date(2099, 12, 31))
    assert {u.concept_id for u in m.unknown_concepts} == {44814724, 32020}


def test_optional_columns_may_be_absent_and_are_reported(tmp_path, settings):
    release = load_cdm(write_cdm(tmp_path / "cdm"), "tiny", settings, synthetic=False)
    assert any("person.csv: optional column(s) absent" in w for w in release.manifest.warnings)
    assert release.manifest.synthetic is False


def _refused(tmp_path, settings, match: str, **files) -> InputError:
    store = ReleaseStore(settings)
    before = store.names()
    with pytest.raises(InputError, match=match) as info:
        load_cdm(write_cdm(tmp_path / "cdm", **files), "bad", settings, synthetic=True)
    assert store.names() == before  # nothing published
    staging = settings.staging_dir
    assert not staging.exists() or not any(staging.iterdir())  # nothing left half-written
    return info.value


def test_empty_folder(tmp_path, settings):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no CDM table file"):
        load_cdm(tmp_path / "empty", "bad", settings, synthetic=True)


def test_unknown_table_file(tmp_path, settings):
    _refused(tmp_path, settings, r"patients\.csv: 'patients' is not an OMOP CDM table", patients__csv="a,b\n1,2\n")


def test_missing_required_column(tmp_path, settings):
    text = "person_id,gender_concept_id,race_concept_id,ethnicity_concept_id\n1,8507,0,0\n"
    _refused(tmp_path, settings, r"person\.csv, row 0: required column\(s\) missing: year_of_birth", person__csv=text)


def test_unknown_column(tmp_path, settings):
    text = PERSON.replace("ethnicity_concept_id\n", "ethnicity_concept_id,nickname\n").replace(",0,0\n", ",0,0,x\n")
    _refused(tmp_path, settings, r"unknown column\(s\) for CDM table person: nickname", person__csv=text)


def test_wrong_type_names_file_row_and_column(tmp_path, settings):
    text = PERSON.replace("2,8532,1961", "2,8532,nineteen")
    error = _refused(tmp_path, settings, "not a 32-bit integer", person__csv=text)
    [problem] = error.problems
    assert (problem.file, problem.row, problem.column) == ("person.csv", 2, "year_of_birth")
    assert "nineteen" not in str(error)  # values never echoed: they may be identifying


def test_bad_date(tmp_path, settings):
    text = OBSERVATION_PERIOD.replace("2005-06-01", "2005-13-45")
    error = _refused(tmp_path, settings, "not a date", observation_period__csv=text)
    assert (error.problems[0].row, error.problems[0].column) == (2, "observation_period_start_date")


def test_missing_required_value(tmp_path, settings):
    text = PERSON.replace("3,8532,1975", "3,,1975")
    error = _refused(tmp_path, settings, "required value is missing", person__csv=text)
    assert (error.problems[0].row, error.problems[0].column) == (3, "gender_concept_id")


def test_duplicate_primary_key(tmp_path, settings):
    text = PERSON + "2,8507,1980,0,0\n"
    error = _refused(tmp_path, settings, "duplicate primary key", person__csv=text)
    assert (error.problems[0].row, error.problems[0].column) == (4, "person_id")


def test_duplicate_person_is_refused_even_when_duplicate_keys_are_allowed(tmp_path, settings):
    with pytest.raises(InputError, match="duplicate primary key"):
        load_cdm(
            write_cdm(tmp_path / "cdm", person__csv=PERSON + "2,8507,1980,0,0\n"),
            "bad",
            settings,
            synthetic=True,
            allow_duplicate_keys=True,
        )


def test_duplicate_event_ids_can_be_kept_and_flagged(tmp_path, settings):
    text = OBSERVATION_PERIOD.replace("3,3,2010", "2,3,2010")
    release = load_cdm(
        write_cdm(tmp_path / "cdm", observation_period__csv=text),
        "dup",
        settings,
        synthetic=True,
        allow_duplicate_keys=True,
    )
    entry = release.manifest.tables["observation_period"]
    assert (entry.rows, entry.flagged_rows) == (3, 2)


def test_truncated_csv(tmp_path, settings):
    text = PERSON[:-6]  # the last row is cut in the middle
    _refused(tmp_path, settings, r"person\.csv: cannot be read", person__csv=text)


def test_truncated_parquet(tmp_path, settings):
    import duckdb

    duckdb.sql("COPY (SELECT 1 AS person_id) TO '" + str(tmp_path / "p.parquet") + "'")
    data = (tmp_path / "p.parquet").read_bytes()
    _refused(
        tmp_path,
        settings,
        r"person\.parquet: not a readable Parquet file",
        person__csv=None,
        person__parquet=data[: len(data) // 2],
    )


def test_wrong_delimiter(tmp_path, settings):
    _refused(tmp_path, settings, "containing ';'", person__csv=PERSON.replace(",", ";"))


def test_not_utf8(tmp_path, settings):
    _refused(tmp_path, settings, "not UTF-8", person__csv="person_id,gender\xe9\n".encode("latin-1"))


def test_same_table_twice(tmp_path, settings):
    tsv = PERSON.replace(",", "\t")
    _refused(tmp_path, settings, r"table 'person' is also in", PERSON__csv=PERSON, person__tsv=tsv)


def test_impossible_dates_are_rejected_with_reason_and_kept_aside(tmp_path, settings):
    text = OBSERVATION_PERIOD.replace("3,3,2010-01-01,2018-12-31", "3,3,2010-01-01,2009-12-31")
    release = load_cdm(write_cdm(tmp_path / "cdm", observation_period__csv=text), "r", settings, synthetic=True)
    entry = release.manifest.tables["observation_period"]
    assert (entry.rows, entry.rejected_rows) == (2, 1)
    with DuckDBEngine(release, settings) as engine:
        from hygie.engine.duckdb import parquet_source, register_key

        register_key(engine.con, "r", release.data_key(settings))
        row = engine.sql(
            f"SELECT source_file, source_row, check_name, reason, record->>'person_id' "
            f"FROM {parquet_source(str(release.path / 'rejects.parquet'), 'r')}"
        ).fetchall()
    assert row == [
        (
            "observation_period.csv",
            3,
            "end_before_start",
            "observation_period_end_date is before observation_period_start_date",
            "3",
        )
    ]


def test_future_dates_are_rejected(tmp_path, settings):
    text = OBSERVATION_PERIOD.replace("2019-12-31", "2031-01-01", 1)
    release = load_cdm(
        write_cdm(tmp_path / "cdm", observation_period__csv=text),
        "r",
        settings,
        synthetic=True,
        today=dt.date(2026, 1, 1),
    )
    assert release.manifest.tables["observation_period"].rejected_rows == 1


def test_deposit_manifest_is_checked(tmp_path, settings):
    folder = write_cdm(tmp_path / "cdm")
    (folder / "MANIFEST.csv").write_text(
        "table,rows,sha256\nperson,4,\nobservation_period,3,\ncondition_occurrence,2,\nconcept,3,\n"
    )
    with pytest.raises(InputError, match=r"3 rows read but MANIFEST\.csv says 4"):
        load_cdm(folder, "bad", settings, synthetic=True)
    (folder / "MANIFEST.csv").write_text("table,rows,sha256\nperson,3,00ff\n")
    with pytest.raises(InputError, match="sha256 differs") as info:
        load_cdm(folder, "bad", settings, synthetic=True)
    assert "not listed in MANIFEST.csv" in str(info.value)


def test_releases_are_immutable(tmp_path, settings):
    folder = write_cdm(tmp_path / "cdm")
    first = load_cdm(folder, "tiny", settings, synthetic=True)
    with pytest.raises(ConflictError, match="already exists"):
        load_cdm(folder, "tiny", settings, synthetic=True)
    assert ReleaseStore(settings).get("tiny").manifest == first.manifest
    second = load_cdm(folder, "tiny-2", settings, synthetic=True)
    assert second.manifest.sequence == first.manifest.sequence + 1


def test_cdm53_columns_are_renamed_to_54(tmp_path, settings):
    visits = (
        "visit_occurrence_id,person_id,visit_concept_id,visit_start_date,visit_end_date,visit_type_concept_id,"
        "admitting_source_concept_id,discharge_to_concept_id\n"
        "1,1,9201,2010-01-01,2010-01-03,32035,8870,8536\n"
    )
    release = load_cdm(write_cdm(tmp_path / "cdm", visit_occurrence__csv=visits), "v53", settings, synthetic=True)
    with DuckDBEngine(release, settings) as engine:
        row = engine.sql("SELECT admitted_from_concept_id, discharged_to_concept_id FROM visit_occurrence").fetchone()
    assert row == (8870, 8536)
    lineage = {e.table: e.source_cdm_version for e in release.manifest.lineage}
    assert lineage["visit_occurrence"] == "5.3"
    assert release.manifest.cdm_version == "5.4"


def test_parquet_input_is_typed_and_fractional_ids_refused(tmp_path, settings):
    import duckdb

    good = tmp_path / "good.parquet"
    duckdb.sql(
        "COPY (SELECT 1::DOUBLE AS person_id, 8507 AS gender_concept_id, '1950' AS year_of_birth, "
        f"0 AS race_concept_id, 0 AS ethnicity_concept_id) TO '{good}'"
    )
    release = load_cdm(
        write_cdm(tmp_path / "ok", person__csv=None, person__parquet=good.read_bytes()), "pq", settings, synthetic=True
    )
    with DuckDBEngine(release, settings) as engine:
        assert engine.sql("SELECT person_id, year_of_birth FROM person").fetchone() == (1, 1950)
    bad = tmp_path / "bad.parquet"
    duckdb.sql(
        "COPY (SELECT 1.5::DOUBLE AS person_id, 8507 AS gender_concept_id, 1950 AS year_of_birth, "
        f"0 AS race_concept_id, 0 AS ethnicity_concept_id) TO '{bad}'"
    )
    error = _refused(tmp_path, settings, "not an integer", person__csv=None, person__parquet=bad.read_bytes())
    assert (error.problems[0].file, error.problems[0].row, error.problems[0].column) == (
        "person.parquet",
        1,
        "person_id",
    )


def test_errors_late_in_a_large_file_name_the_right_row(tmp_path, settings):
    rows = ["person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id"]
    rows += [f"{i},8507,{1950 + i % 50},0,0" for i in range(1, 300_001)]
    rows[250_001] = "250001,8507,19x0,0,0"
    error = _refused(tmp_path, settings, "not a 32-bit integer", person__csv="\n".join(rows) + "\n")
    assert [(p.row, p.column) for p in error.problems] == [(250_001, "year_of_birth")]


def test_rejected_rows_late_in_a_large_file_name_the_right_row(tmp_path, settings):
    rows = [
        "observation_period_id,person_id,observation_period_start_date,observation_period_end_date,"
        "period_type_concept_id"
    ]
    rows += [f"{i},{i},2001-01-01,2002-01-01,44814724" for i in range(1, 200_001)]
    rows[180_000] = "180000,1,2005-01-01,2002-01-01,44814724"
    release = load_cdm(
        write_cdm(tmp_path / "cdm", observation_period__csv="\n".join(rows) + "\n"), "big", settings, synthetic=True
    )
    with DuckDBEngine(release, settings) as engine:
        from hygie.engine.duckdb import parquet_source, register_key

        register_key(engine.con, "r", release.data_key(settings))
        found = engine.sql(
            f"SELECT source_row, record->>'observation_period_id' "
            f"FROM {parquet_source(str(release.path / 'rejects.parquet'), 'r')} WHERE action = 'reject'"
        ).fetchall()
    assert found == [(180_000, "180000")]


def test_rows_of_an_unknown_person_or_before_birth_are_flagged_and_kept(tmp_path, settings):
    from hygie.releases.store import read_rejects

    conditions = (
        "condition_occurrence_id,person_id,condition_concept_id,condition_start_date,condition_type_concept_id\n"
        "1,1,192671,2010-03-04,32020\n"
        "2,99,192671,2012-07-08,32020\n"  # no such person
        "3,2,192671,1960-01-01,32020\n"  # person 2 was born in 1961
        "4,99,192671,1900-01-01,32020\n"  # no such person (so no birth to be before)
    )
    release = load_cdm(
        write_cdm(tmp_path / "cdm", condition_occurrence__csv=conditions), "flags", settings, synthetic=True
    )
    entry = release.manifest.tables["condition_occurrence"]
    assert (entry.rows, entry.flagged_rows, entry.rejected_rows) == (4, 3, 0)
    flags = {(r["source_row"], r["check_name"]) for r in read_rejects(release, settings, table="condition_occurrence")}
    assert flags == {(2, "orphan"), (3, "before_birth"), (4, "orphan")}
