"""Cohort rows come back ordered by subject, then start date, whatever order the engine returned them in."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from hygie.cohorts.service import COHORT_SCHEMA, sort_rows


def _rows(subjects: list[int], starts: list[int]) -> pa.Table:
    days = pa.array(starts, pa.int32()).cast(pa.date32())
    return pa.table([pa.array(subjects, pa.int64()), days, days], schema=COHORT_SCHEMA)


def _two_column_sort(rows: pa.Table) -> pa.Table:
    return rows.sort_by([("subject_id", "ascending"), ("cohort_start_date", "ascending")])


@pytest.mark.parametrize("n", [0, 1, 2, 1000])
def test_rows_are_ordered_by_subject_then_start_including_dates_before_1970(n):
    rng = np.random.default_rng(n)
    pairs = {(int(p), int(s)) for p, s in zip(rng.integers(0, 40, n), rng.integers(-40_000, 40_000, n), strict=True)}
    order = rng.permutation(len(pairs))
    listed = [sorted(pairs)[i] for i in order]
    rows = _rows([p for p, _ in listed], [s for _, s in listed])
    result = sort_rows(rows)
    assert result.equals(_two_column_sort(rows))
    assert [(r["subject_id"], r["cohort_start_date"]) for r in result.to_pylist()] == [
        (p, _rows([p], [s])["cohort_start_date"][0].as_py()) for p, s in sorted(pairs)
    ]


def test_subject_ids_beyond_31_bits_or_negative_are_ordered_too():
    rows = _rows([2**40, -5, 7, 2**40], [3, 1, 2, 1])
    assert sort_rows(rows)["subject_id"].to_pylist() == [-5, 7, 2**40, 2**40]
    assert sort_rows(rows)["cohort_start_date"].cast(pa.int32()).to_pylist() == [1, 2, 1, 3]
