"""Cohort rows from a file (CSV or Parquet) in the OMOP cohort shape, checked row by row.

Errors name the file, the 1-based data row and the column, never the offending value (it may be a subject id).
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from hygie.analyses.base import COHORT_TABLE_COLUMNS
from hygie.cohorts.service import COHORT_SCHEMA
from hygie.errors import InputError, Problem

MAX_PROBLEMS = 20
_INTEGER = r"^\s*[0-9]+\s*$"
_DATE = r"^\s*[0-9]{4}-[0-9]{2}-[0-9]{2}\s*$"


def _as_text(path: Path) -> pa.Table:
    """Every column as text (so that one check path serves CSV and Parquet)."""
    if path.suffix.lower() == ".parquet":
        table = pq.read_table(path)
        return pa.table({name: pc.cast(table[name], pa.string()) for name in table.column_names})
    with path.open(newline="", encoding="utf-8-sig") as f:
        names = next(csv.reader(f), [])
    options = pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=True)
    return pacsv.read_csv(path, convert_options=options)


def read_cohort_file(path: Path, cohort_definition_id: int | None) -> pa.Table:
    """The rows of one cohort (``subject_id, cohort_start_date, cohort_end_date``) from a cohort table file."""
    file = str(path)
    if not path.is_file():
        raise InputError(Problem(file, "no such file"))
    try:
        text = _as_text(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(Problem(file, f"cannot be read as {path.suffix.lstrip('.').upper()}: {e}")) from None
    missing = [c for c in COHORT_TABLE_COLUMNS if c not in text.column_names]
    if missing:
        raise InputError(
            Problem(
                file, f"missing column(s) {', '.join(missing)}; a cohort table has {', '.join(COHORT_TABLE_COLUMNS)}"
            )
        )
    problems: list[Problem] = []
    for column in COHORT_TABLE_COLUMNS:
        values = text[column]
        pattern = _DATE if column.endswith("_date") else _INTEGER
        kind = "a date (YYYY-MM-DD)" if column.endswith("_date") else "a whole number"
        empty = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(values), ""), True)
        bad = pc.and_(pc.invert(empty), pc.invert(pc.match_substring_regex(values, pattern)))
        if column.endswith("_date"):
            bad = pc.or_(bad, pc.is_in(pc.utf8_trim_whitespace(values), _impossible_dates(values)))
        problems += _rows(file, column, empty, "is empty")
        problems += _rows(file, column, bad, f"is not {kind}")
    if problems:
        _raise(problems)
    ids = pc.cast(pc.utf8_trim_whitespace(text["cohort_definition_id"]), pa.int64())
    rows = pa.table(
        {
            "subject_id": pc.cast(pc.utf8_trim_whitespace(text["subject_id"]), pa.int64()),
            "cohort_start_date": _dates(text["cohort_start_date"]),
            "cohort_end_date": _dates(text["cohort_end_date"]),
        }
    )
    problems += _rows(
        file,
        "cohort_end_date",
        pc.less(rows["cohort_end_date"], rows["cohort_start_date"]),
        "is before cohort_start_date",
    )
    if problems:
        _raise(problems)
    present = sorted(pc.unique(ids).to_pylist())
    if cohort_definition_id is None:
        if len(present) > 1:
            raise InputError(
                Problem(
                    file,
                    f"holds cohort_definition_id {', '.join(map(str, present))}: "
                    "say which one with cohort_definition_id",
                    column="cohort_definition_id",
                )
            )
        return rows.cast(COHORT_SCHEMA)
    return rows.filter(pc.equal(ids, cohort_definition_id)).cast(COHORT_SCHEMA)


def _impossible_dates(values: pa.ChunkedArray) -> pa.Array:
    """Well-formed but impossible dates (2010-02-30), checked once per distinct value."""
    impossible = []
    for text in pc.unique(pc.utf8_trim_whitespace(values)).to_pylist():
        if text and len(text) == 10:
            try:
                dt.date.fromisoformat(text)
            except ValueError:
                impossible.append(text)
    return pa.array(impossible, pa.string())


def _dates(values: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.cast(pc.utf8_trim_whitespace(values), pa.date32())


def _rows(file: str, column: str, mask: pa.ChunkedArray, reason: str) -> list[Problem]:
    indexes = pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist()
    return [Problem(file, reason, row=i + 1, column=column) for i in indexes[: MAX_PROBLEMS + 1]]


def _raise(problems: list[Problem]) -> None:
    problems.sort(key=lambda p: (p.row or 0, COHORT_TABLE_COLUMNS.index(p.column) if p.column else 0))
    raise InputError(problems[:MAX_PROBLEMS], more=max(0, len(problems) - MAX_PROBLEMS))
