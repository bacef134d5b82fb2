"""Staging a CSV file: the typed read and the text read agree, and the shortcuts of the typed read (empty columns
not stored, primary keys checked with a bitmap) change no outcome."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hygie.cdm.schema import cdm_schema
from hygie.errors import InputError
from hygie.ingest import staging
from hygie.ingest.staging import stage_file
from hygie.sources.omop_files import SourceFile, relation_sql, sample_filled

CDM54, CDM53 = cdm_schema("5.4"), cdm_schema("5.3")
TYPES = {"BIGINT": "bigint", "INTEGER": "integer", "DOUBLE": "float", "DATE": "date", "TIMESTAMP": "datetime"}
TRICKY = [
    "1", "-1", "+1", " 1", "1 ", "01", "1.0", "1.5", "1e3", "0x10", "1_000", '"1,5"', "9223372036854775808",
    "2147483648", '""', '" "', "nan", "inf", "-inf", ".5", "5.", "1e400", "-0", "true", "1d",
    "2022-01-08", "2022-1-8", "20220108", "2022/01/08", "08/01/2022", "2022-02-30", "0000-01-01", "10000-01-01",
    "2022-01-08 10:11:12", "2022-01-08T10:11:12", "2022-01-08 10:11:12.5", "2022-01-08 10:11:12+02",
    "2022-01-08 10:11:12+02:00", "2022-01-08 10:11:12Z", "2022-01-08 10:11", "2022-01-08 25:00:00",
    "2022-01-08 BC", "2022-01-08 10:11:12 UTC", "infinity", "epoch", " 2022-01-08", '"2022-01-08 "', "12:00:00",
]  # fmt: skip


class _Column:
    def __init__(self, sql_type: str) -> None:
        self.sql_type, self.base_type = sql_type, TYPES[sql_type]


def _both_reads(folder: Path, value: str, sql_type: str) -> tuple[object, object]:
    """(typed read, text read + cast) of one value; 'refused' when the read fails or the value does not fit."""
    path = folder / "t.csv"
    path.write_text(f"a,b\n{value},x\n")
    con = duckdb.connect()
    source = SourceFile(path, "t", "csv", ",")
    try:
        typed = con.execute(f"SELECT a FROM ({relation_sql(source, ['a', 'b'], types={'a': sql_type})})").fetchone()
    except duckdb.Error:
        typed = "refused"
    cast = staging._cast("a", _Column(sql_type), "VARCHAR")  # type: ignore[arg-type]
    raw, converted = con.execute(f"SELECT a, {cast} FROM ({relation_sql(source, ['a', 'b'])})").fetchone()
    text = "refused" if raw is not None and converted is None else (converted,)
    return typed, text


def _same(typed: object, text: object) -> bool:
    if typed == "refused":
        return True  # the text read then decides, and locates the value if it does not fit
    nan = isinstance(text, tuple) and isinstance(text[0], float) and text[0] != text[0]
    return typed == text or (nan and isinstance(typed, tuple) and typed[0] != typed[0])


@pytest.mark.parametrize("sql_type", list(TYPES))
def test_a_typed_read_accepts_only_what_the_text_read_accepts_with_the_same_value(tmp_path, sql_type):
    disagreements = [(v, *r) for v in TRICKY if not _same(*(r := _both_reads(tmp_path, v, sql_type)))]
    assert disagreements == []
    # The typed read is not a no-op: it accepts the usual spellings.
    assert _both_reads(tmp_path, "2022-01-08", "DATE")[0] == (dt.date(2022, 1, 8),)


@settings(max_examples=150, deadline=None)
@given(value=st.text(alphabet="0123456789-+.:eE TZ", min_size=1, max_size=20), sql_type=st.sampled_from(list(TYPES)))
def test_typed_and_text_reads_agree_on_any_value(tmp_path_factory, value, sql_type):
    assert _same(*_both_reads(tmp_path_factory.mktemp("v"), value, sql_type))


def _stage(tmp_path: Path, name: str, text: str) -> tuple[duckdb.DuckDBPyConnection, staging.StagedTable]:
    path = tmp_path / f"{name}.csv"
    path.write_text(text)
    con = duckdb.connect()
    staged = stage_file(con, SourceFile(path, name, "csv", ","), CDM54, CDM53, allow_duplicate_keys=False)
    assert staged is not None
    return con, staged


def test_the_sample_sees_columns_filled_only_late_in_a_file(tmp_path):
    path = tmp_path / "drug_exposure.csv"
    rows = [f"{i},1,{i if i > 90_000 else ''},x" for i in range(1, 100_001)]
    path.write_text("drug_exposure_id,person_id,visit_occurrence_id,note\n" + "\n".join(rows) + "\n")
    columns = ["drug_exposure_id", "person_id", "visit_occurrence_id", "note"]
    assert sample_filled(SourceFile(path, "drug_exposure", "csv", ","), columns) == set(columns)


def test_a_column_the_sample_missed_is_found_and_kept(tmp_path, monkeypatch):
    n = 20
    rows = ["person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id,month_of_birth,location_id"]
    rows += [f"{i},8507,1950,0,0,,{7 if i == n else ''}" for i in range(1, n + 1)]
    # A sample that missed the one filled row (as a sample of a large file may): the empty check catches it.
    monkeypatch.setattr(staging, "sample_filled", lambda source, columns: set(columns[:5]))
    con, staged = _stage(tmp_path, "person", "\n".join(rows) + "\n")
    assert "location_id" in staged.supplied and "month_of_birth" not in staged.supplied
    assert con.execute(f'SELECT _row, location_id FROM "{staged.stage}" WHERE location_id IS NOT NULL').fetchall() == [
        (n, 7)
    ]
    assert con.execute(f'SELECT count(*), count(month_of_birth) FROM "{staged.stage}"').fetchone() == (n, 0)
    stored = {r[0] for r in con.execute(f'DESCRIBE "{staged.stored}"').fetchall()}
    assert "location_id" in stored and "_late" not in stored  # read again, with every column


def test_yyyymmdd_dates_and_bad_values_take_the_text_read(tmp_path):
    header = "observation_period_id,person_id,observation_period_start_date,observation_period_end_date,"
    header += "period_type_concept_id\n"
    con, staged = _stage(tmp_path, "observation_period", header + "1,1,20010203,2002-01-01,0\n")
    assert con.execute(f'SELECT observation_period_start_date FROM "{staged.stage}"').fetchone() == (
        dt.date(2001, 2, 3),
    )
    with pytest.raises(InputError, match="not a date") as info:
        _stage(tmp_path, "observation_period", header + "1,1,2001-02-03,2002-01-01,0\n2,1,2001-02-31,2002-01-01,0\n")
    assert [(p.row, p.column) for p in info.value.problems] == [(2, "observation_period_start_date")]


@pytest.mark.parametrize("start", [1, staging.MAX_BITMAP_KEYS * 2])  # within a bitmap's range, and beyond it
def test_repeated_keys_are_named_whatever_their_range(tmp_path, start):
    header = "condition_occurrence_id,person_id,condition_concept_id,condition_start_date,condition_type_concept_id\n"
    ids = [1, start + 7, start + 3, start + 7, start + 9]
    body = "".join(f"{i},1,0,2010-01-01,0\n" for i in ids)
    with pytest.raises(InputError, match="duplicate primary key: same condition_occurrence_id as row 2") as info:
        _stage(tmp_path, "condition_occurrence", header + body)
    assert [(p.row, p.column) for p in info.value.problems] == [(4, "condition_occurrence_id")]
    _, staged = _stage(tmp_path, "condition_occurrence", header + body.replace(f"{start + 7},", f"{start + 8},", 1))
    assert staged.rows == 5
