"""A small hand-made CDM and study files for the study tests: 20 persons, 14 with a GI bleed (16 records), 3 with
a myocardial infarction; small enough to read, large enough to have counts above and below the masking limit."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cdm_files import CONCEPT, write_cdm

GI_BLEED, MI = 192671, 4329847
PERSONS = 20


def _person() -> str:
    lines = ["person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id"]
    lines += [f"{p},{8507 if p % 2 else 8532},{1940 + p},0,0" for p in range(1, PERSONS + 1)]
    return "\n".join(lines) + "\n"


def _observation_period() -> str:
    lines = [
        "observation_period_id,person_id,observation_period_start_date,observation_period_end_date,"
        "period_type_concept_id"
    ]
    lines += [f"{p},{p},2000-01-01,2019-12-31,44814724" for p in range(1, PERSONS + 1)]
    return "\n".join(lines) + "\n"


def _conditions() -> str:
    lines = ["condition_occurrence_id,person_id,condition_concept_id,condition_start_date,condition_type_concept_id"]
    rows = [(p, GI_BLEED, f"2010-{1 + p % 12:02d}-{1 + p:02d}") for p in range(1, 15)]
    rows += [(1, GI_BLEED, "2015-03-03"), (2, GI_BLEED, "2016-04-04")]  # two persons bleed twice
    rows += [(p, MI, "2012-06-01") for p in (15, 16, 17)]
    lines += [f"{i},{p},{c},{d},32020" for i, (p, c, d) in enumerate(rows, start=1)]
    return "\n".join(lines) + "\n"


MI_CONCEPT = (
    f"{MI}\tAcute myocardial infarction\tCondition\tSNOMED\tClinical Finding\tS\t57054005\t19700101\t20991231\t\n"
)


def write_small_cdm(folder: Path) -> Path:
    return write_cdm(
        folder,
        {
            "person.csv": _person(),
            "observation_period.csv": _observation_period(),
            "condition_occurrence.csv": _conditions(),
            "CONCEPT.csv": CONCEPT + MI_CONCEPT,
        },
    )


def circe_condition(concept_id: int, name: str) -> dict:
    """All occurrences of one condition concept, each a one-day cohort entry."""
    return {
        "ConceptSets": [{"id": 0, "name": name, "expression": {"items": [{"concept": {"CONCEPT_ID": concept_id}}]}}],
        "PrimaryCriteria": {
            "CriteriaList": [{"ConditionOccurrence": {"CodesetId": 0}}],
            "ObservationWindow": {"PriorDays": 0, "PostDays": 0},
            "PrimaryCriteriaLimit": {"Type": "All"},
        },
        "QualifiedLimit": {"Type": "All"},
        "ExpressionLimit": {"Type": "All"},
        "EndStrategy": {"DateOffset": {"DateField": "StartDate", "Offset": 1}},
        "CollapseSettings": {"CollapseType": "ERA", "EraPad": 0},
    }


STUDY = """\
name: small-study
description: counts on a hand-made CDM
cohorts:
  gi_bleed: {circe: cohorts/gi_bleed.json}
  mi: {circe: cohorts/mi.json}
  listed: {file: listed.csv, cohort_definition_id: 7}
analyses:
  - cohort_counts: {}
  - cohort_counts:
      cohorts: [mi, listed]
"""

LISTED = """\
cohort_definition_id,subject_id,cohort_start_date,cohort_end_date
7,1,2010-01-01,2010-12-31
7,2,2011-01-01,2011-12-31
7,2,2012-01-01,2012-12-31
8,3,2012-01-01,2012-12-31
"""


def write_study(folder: Path, text: str = STUDY, **files: str) -> Path:
    """The study file and what it names (the two Circe cohorts and the cohort table file) in ``folder``."""
    (folder / "cohorts").mkdir(parents=True, exist_ok=True)
    (folder / "cohorts" / "gi_bleed.json").write_text(json.dumps(circe_condition(GI_BLEED, "gi bleed")))
    (folder / "cohorts" / "mi.json").write_text(json.dumps(circe_condition(MI, "mi")))
    (folder / "listed.csv").write_text(LISTED)
    for name, content in files.items():
        (folder / name).write_text(content)
    path = folder / "study.yaml"
    path.write_text(text)
    return path
