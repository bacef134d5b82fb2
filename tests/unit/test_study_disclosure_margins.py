"""Incidence on a non-synthetic release: a masked stratum cannot be recomputed from Both minus the other sex."""

from __future__ import annotations

import pyarrow.csv as pacsv

from hygie.ingest.cdm_load import load_cdm
from hygie.studies import run_study
from tests.cdm_files import write_cdm
from tests.integration.test_jobs_airlock import BLEED, population

STUDY = """\
name: margins
cohorts:
  bleed: {circe: bleed.json}
denominators:
  all: {sex: [Both, Male, Female]}
analyses:
  - incidence: {denominator: all, outcomes: [bleed], interval: overall, outcome_washout: inf}
"""


def test_secondary_suppression_protects_the_sex_margin(settings, tmp_path):
    import json

    # 40 persons (odd ids are men); every man in 1..25 has a bleed, and only women 2, 4 and 6 do.
    files = population(40, 25)
    rows = files["condition_occurrence.csv"].splitlines()
    kept = [rows[0]] + [r for r in rows[1:] if int(r.split(",")[1]) % 2 == 1 or int(r.split(",")[1]) <= 6]
    files["condition_occurrence.csv"] = "\n".join(kept) + "\n"  # 13 men, 3 women with a bleed
    release = load_cdm(write_cdm(tmp_path / "cdm", files), "real", settings, synthetic=False)
    (tmp_path / "bleed.json").write_text(json.dumps(BLEED))
    (tmp_path / "study.yaml").write_text(STUDY)
    run = run_study(tmp_path / "study.yaml", release, settings, out=tmp_path / "out")
    table = pacsv.read_csv(tmp_path / "out" / "incidence.csv").to_pylist()
    outcomes = {r["sex"]: r["outcome_count"] for r in table}
    assert outcomes["Female"] is None  # 3: masked
    assert outcomes["Both"] is None or outcomes["Male"] is None  # else Both - Male gives the women's 3 back
    assert {f.rule for f in run.flags} >= {"primary", "secondary"}
