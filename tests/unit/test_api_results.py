"""Result pages draw the study report's own SVG figures from an output folder's manifest and tables."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.parquet as pq

from hygie.api.results import read_output


def write_output(folder, *, synthetic: bool, flags: list[dict]) -> None:
    folder.mkdir(parents=True)
    start = dt.date(2020, 1, 1)
    incidence = pa.table(
        {
            "analysis_id": [1] * 6,
            "outcome_cohort_name": ["gi_bleed"] * 6,
            "denominator_sex": ["Female"] * 3 + ["Male"] * 3,
            "incidence_start_date": [start.replace(year=2020 + i % 3) for i in range(6)],
            "incidence_100000_pys": [120.0, 130.5, None, 98.0, 101.0, 97.5],
            "incidence_100000_pys_95ci_lower": [100.0, 110.0, None, 80.0, 85.0, 82.0],
            "incidence_100000_pys_95ci_upper": [140.0, 150.0, None, 120.0, 119.0, 115.0],
        }
    )
    km = pa.table({"analysis_id": [2] * 4, "outcome_cohort_name": ["mi"] * 4, "group": ["a", "a", "b", "b"],
                   "time": [0, 30, 0, 30], "survival": [1.0, 0.9, 1.0, 0.8]})  # fmt: skip
    pq.write_table(incidence, folder / "incidence.parquet")
    pq.write_table(km, folder / "km.parquet")
    manifest = {
        "release": {"synthetic": synthetic},
        "disclosure": "exempt: synthetic release" if synthetic else {"policy": {"min_count": 1, "max_masked": 10}},
        "tables": {
            "incidence": {"plot": "incidence", "description": "per 100,000 person-years", "disclosure_flags": flags},
            "km": {"plot": "km", "description": "", "disclosure_flags": []},
        },
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_incidence_over_time_and_km_curves_are_drawn_as_inline_svg(tmp_path):
    flag = {"table": "incidence", "column": "incidence_100000_pys", "rule": "small count", "cells": 1}
    write_output(tmp_path / "out", synthetic=False, flags=[flag])
    view = read_output(tmp_path / "out")
    assert view is not None and view.mask == "<11" and not view.synthetic
    tables = {t.name: t for t in view.tables}
    incidence = tables["incidence"]
    assert len(incidence.figures) == 1 and incidence.figures[0].count("<polyline") >= 2  # one line per sex
    assert "sex=Female" in incidence.figures[0] and "sex=Male" in incidence.figures[0]
    assert "<script" not in incidence.figures[0] and "style=" not in incidence.figures[0]
    assert incidence.flags == [flag] and incidence.rows[2][4] is None  # the masked cell stays empty
    assert len(tables["km"].figures) == 1 and "survival" in tables["km"].figures[0]


def test_a_folder_without_a_study_manifest_has_no_view(tmp_path):
    assert read_output(tmp_path) is None
