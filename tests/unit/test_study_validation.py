"""Study files: what is accepted, and errors that name the file, the line, the key path and the reason."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from hygie.analyses.base import Spec
from hygie.analyses.incidence_prevalence.spec import IncidenceSpec, PrevalenceSpec
from hygie.analyses.registry import analyses
from hygie.cli.study import schema_text
from hygie.studies import StudyFileError, load_study
from hygie.studies.model import CirceCohort, FileCohort, PythonCohort
from tests.study_files import STUDY, write_study

DOCS_SCHEMA = Path(__file__).parents[2] / "docs" / "study-schema.json"


class _Kind:
    """A kind known only by its study-file model (validation needs no more)."""

    def __init__(self, key: str, spec: type[Spec]) -> None:
        self.key, self.spec = key, spec

    def run(self, context, spec, study):  # pragma: no cover - never run: validation only
        raise NotImplementedError


ISSUE_EXAMPLE = """\
name: gi-bleed-incidence
cohorts:
  gi_bleed: {circe: cohorts/gi_bleed.json}
  outcome_table: {file: outcome.csv, cohort_definition_id: 1}
denominators:
  general:
    cohort_date_range: [2010-01-01, null]      # null = from the data
    age_groups: [[0, 150], [0, 64], [65, 150]]
    sex: [Both, Male, Female]
    days_prior_observation: [0, 365]
    requirement_interactions: true
    # target: {cohort: some_cohort, requirements_at_entry: true, time_at_risk: [0, inf]}
analyses:
  - incidence:
      denominator: general
      outcomes: [gi_bleed]
      interval: [years, overall]               # years | quarters | months | weeks | overall
      complete_database_intervals: true
      outcome_washout: inf                     # days, or inf
      repeated_events: false
      # censor: {cohort: death, cohort_definition_id: 1}
  - prevalence:
      denominator: general
      outcomes: [gi_bleed]
      type: period                             # point | period
      interval: years
      time_point: start                        # point prevalence only
      full_contribution: false
      complete_database_intervals: true        # period prevalence only
      level: person                            # person | record
"""
OUTCOME_CSV = "cohort_definition_id,subject_id,cohort_start_date,cohort_end_date\n1,1,2010-01-01,2010-01-02\n"


def incidence_kinds() -> dict:
    """The registry, plus incidence and prevalence by their study-file models where not registered yet."""
    kinds = dict(analyses())
    kinds.setdefault("incidence", _Kind("incidence", IncidenceSpec))
    kinds.setdefault("prevalence", _Kind("prevalence", PrevalenceSpec))
    return kinds


def problems(path: Path, **kwargs) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(StudyFileError) as caught:
        load_study(path, **kwargs)
    for p in caught.value.problems:
        assert p.file == str(path) or p.file.endswith((".csv", ".parquet", ".json"))
    return [(p.line, p.key, p.reason) for p in caught.value.problems]


def test_the_issue_example_is_accepted_as_is(tmp_path):
    path = write_study(tmp_path, ISSUE_EXAMPLE, **{"outcome.csv": OUTCOME_CSV})
    study = load_study(path, kinds=incidence_kinds())
    assert list(study.cohorts) == ["gi_bleed", "outcome_table"]
    assert [a.kind for a in study.analyses] == ["incidence", "prevalence"]
    incidence = study.analyses[0].spec
    assert incidence.outcome_washout == float("inf") and incidence.interval == ["years", "overall"]
    assert study.denominators["general"].age_groups == [(0, 150), (0, 64), (65, 150)]
    assert study.cohorts["outcome_table"].rows.num_rows == 1


def test_relative_paths_are_relative_to_the_study_file(tmp_path, monkeypatch):
    write_study(tmp_path / "deep" / "folder")
    monkeypatch.chdir(tmp_path)  # the working directory does not matter
    study = load_study(Path("deep/folder/study.yaml"))
    assert study.cohorts["gi_bleed"].label == "circe:gi_bleed.json"
    assert study.cohorts["listed"].rows.num_rows == 3  # rows of cohort_definition_id 7 only
    assert study.file == (tmp_path / "deep" / "folder" / "study.yaml")
    assert len(study.sha256) == 64


def test_unknown_keys_are_errors_with_their_lines(tmp_path):
    text = STUDY.replace("description:", "descripton:").replace(
        "  - cohort_counts: {}", "  - cohort_counts: {colors: 3}"
    )
    found = problems(write_study(tmp_path, text))
    assert (2, "descripton", "unknown key (allowed: name, description, cohorts, denominators, analyses)") in found
    assert (8, "analyses[0].cohort_counts.colors", "unknown key (allowed: cohorts)") in found
    assert len(found) == 2


def test_unknown_analysis_kind_names_the_index_and_the_known_kinds(tmp_path):
    text = STUDY + "  - incidense:\n      denominator: general\n"
    found = problems(write_study(tmp_path, text))
    known = ", ".join(sorted(analyses()))
    assert found == [(11, "analyses[2].incidense", f"unknown analysis kind 'incidense' (known kinds: {known})")]


def test_unknown_cohort_and_denominator_references(tmp_path):
    path = write_study(
        tmp_path,
        ISSUE_EXAMPLE.replace("outcomes: [gi_bleed]", "outcomes: [gi_bled]", 1).replace(
            "denominator: general", "denominator: generale", 1
        ),
        **{"outcome.csv": OUTCOME_CSV},
    )
    found = problems(path, kinds=incidence_kinds())
    assert (
        15,
        "analyses[0].incidence.denominator",
        "unknown denominator 'generale' (the study defines: general)",
    ) in found
    assert (
        16,
        "analyses[0].incidence.outcomes[0]",
        "unknown cohort 'gi_bled' (the study defines: gi_bleed, outcome_table)",
    ) in found
    assert len(found) == 2


def test_denominator_target_cohort_is_checked(tmp_path):
    text = ISSUE_EXAMPLE.replace("    # target: {cohort: some_cohort", "    target: {cohort: some_cohort")
    found = problems(write_study(tmp_path, text, **{"outcome.csv": OUTCOME_CSV}), kinds=incidence_kinds())
    assert found == [
        (
            12,
            "denominators.general.target.cohort",
            "unknown cohort 'some_cohort' (the study defines: gi_bleed, outcome_table)",
        )
    ]


def test_strata_columns_must_be_sex_or_study_cohorts(tmp_path):
    text = ISSUE_EXAMPLE.replace(
        "      repeated_events: false\n",
        "      repeated_events: false\n      strata: [[sex], [sex, gi_bleed], [smoker]]\n",
    ).replace("# person | record\n", "# person | record\n      strata:\n        - [outcome_table, sexe]\n")
    found = problems(write_study(tmp_path, text, **{"outcome.csv": OUTCOME_CSV}), kinds=incidence_kinds())
    assert found == [
        (
            21,
            "analyses[0].incidence.strata[2][0]",
            "unknown strata column 'smoker' (use sex or a study cohort: gi_bleed, outcome_table)",
        ),
        (
            33,
            "analyses[1].prevalence.strata[0][1]",
            "unknown strata column 'sexe' (use sex or a study cohort: gi_bleed, outcome_table)",
        ),
    ]
    valid = text.replace("[smoker]", "[outcome_table]").replace("sexe]", "sex]")
    study = load_study(write_study(tmp_path, valid, **{"outcome.csv": OUTCOME_CSV}), kinds=incidence_kinds())
    assert study.analyses[0].spec.strata == [["sex"], ["sex", "gi_bleed"], ["outcome_table"]]


def test_bad_dates_and_values_are_reported_together(tmp_path):
    text = (
        ISSUE_EXAMPLE.replace("[2010-01-01, null]", "[2010-13-01, null]")
        .replace("sex: [Both, Male, Female]", "sex: [Both, Mal]")
        .replace("outcome_washout: inf", "outcome_washout: -3")
    )
    found = problems(write_study(tmp_path, text, **{"outcome.csv": OUTCOME_CSV}), kinds=incidence_kinds())
    lines = {(line, key) for line, key, _ in found}
    assert lines == {
        (7, "denominators.general.cohort_date_range[0]"),
        (9, "denominators.general.sex[1]"),
        (19, "analyses[0].incidence.outcome_washout"),
    }
    reasons = {key: reason for _, key, reason in found}
    assert "date" in reasons["denominators.general.cohort_date_range[0]"]
    assert "whole number of days" in reasons["analyses[0].incidence.outcome_washout"]


def test_missing_required_keys(tmp_path):
    found = problems(write_study(tmp_path, "description: no name\ncohorts: {}\nanalyses: []\n"))
    keys = {key for _, key, _ in found}
    assert keys == {"name", "cohorts", "analyses"}
    assert (1, "name", "required key is missing") in found


def test_yaml_syntax_error_names_the_line(tmp_path):
    found = problems(write_study(tmp_path, "name: x\ncohorts:\n  a: {circe: a.json\nanalyses: []\n"))
    assert len(found) == 1 and found[0][0] == 4 and found[0][2].startswith("invalid YAML")


def test_duplicate_keys_are_errors(tmp_path):
    text = STUDY.replace("  mi: {circe: cohorts/mi.json}\n", "  mi: {circe: cohorts/mi.json}\n  mi: {circe: x.json}\n")
    assert problems(write_study(tmp_path, text)) == [(6, "cohorts.mi", "duplicate key 'mi'")]


def test_cohort_sources_are_checked(tmp_path):
    text = STUDY.replace("cohorts/mi.json", "cohorts/missing.json").replace(
        "  listed:", "  both: {circe: a.json, file: b.csv}\n  bad-name: {circe: a.json}\n  listed:"
    )
    found = problems(write_study(tmp_path, text))
    assert (5, "cohorts.mi.circe", f"no such file: {tmp_path / 'cohorts' / 'missing.json'}") in found
    assert any(line == 6 and key == "cohorts.both" and "one of" in reason for line, key, reason in found)
    assert any(
        line == 7 and key == "cohorts.bad-name" and "invalid cohort name" in reason for line, key, reason in found
    )


def test_cohort_table_file_errors_name_file_row_and_column(tmp_path):
    bad = (
        "cohort_definition_id,subject_id,cohort_start_date,cohort_end_date\n"
        "7,1,2010-01-01,2010-12-31\n7,x,2010-02-30,2010-12-31\n7,3,2011-01-01,2010-12-31\n"
    )
    found = problems(write_study(tmp_path, STUDY, **{"listed.csv": bad}))
    ((line, key, reason),) = found
    assert (line, key) == (6, "cohorts.listed.file")
    csv = tmp_path / "listed.csv"
    assert f"{csv}, row 2, column 'subject_id': is not a whole number" in reason
    assert f"{csv}, row 2, column 'cohort_start_date': is not a date (YYYY-MM-DD)" in reason
    fixed = bad.replace("7,x,2010-02-30", "7,2,2010-02-03")
    ((_, _, reason),) = problems(write_study(tmp_path, STUDY, **{"listed.csv": fixed}))
    assert f"{csv}, row 3, column 'cohort_end_date': is before cohort_start_date" in reason


def test_cohort_table_file_needs_its_columns_and_one_id(tmp_path):
    text = STUDY.replace("{file: listed.csv, cohort_definition_id: 7}", "{file: listed.csv}")
    ((_, key, reason),) = problems(write_study(tmp_path, text))
    assert key == "cohorts.listed.file" and "holds cohort_definition_id 7, 8" in reason
    ((_, _, reason),) = problems(write_study(tmp_path, STUDY, **{"listed.csv": "subject_id,start\n1,2\n"}))
    assert "missing column(s) cohort_definition_id, cohort_start_date, cohort_end_date" in reason


def test_cohort_table_file_in_parquet(tmp_path):
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table(
            {
                "cohort_definition_id": [1, 1],
                "subject_id": [5, 6],
                "cohort_start_date": [dt.date(2010, 1, 1), dt.date(2011, 1, 1)],
                "cohort_end_date": [dt.date(2010, 2, 1), dt.date(2011, 2, 1)],
            }
        ),
        tmp_path / "rows.parquet",
    )
    text = STUDY.replace("{file: listed.csv, cohort_definition_id: 7}", "{file: rows.parquet}")
    study = load_study(write_study(tmp_path, text))
    assert study.cohorts["listed"].rows.column("subject_id").to_pylist() == [5, 6]


BUILDER = """\
from hygie.cohorts import builder as cb

def bleeds():
    return cb.entry(cb.condition(cb.concepts("gi bleed", 192671))).first_event()

def not_a_cohort():
    return 42

def broken():
    raise RuntimeError("no such concept")
"""


def test_python_builder_cohorts(tmp_path):
    text = STUDY.replace("{circe: cohorts/mi.json}", "{python: builders/cohorts.py:bleeds}")
    (tmp_path / "builders").mkdir()
    (tmp_path / "builders" / "cohorts.py").write_text(BUILDER)
    study = load_study(write_study(tmp_path, text))
    assert study.cohorts["mi"].expression is not None and study.cohorts["mi"].label == "python:cohorts.py:bleeds"
    for function, expected in [
        ("not_a_cohort", "returned int"),
        ("broken", "raised RuntimeError: no such concept"),
        ("absent", "has no function 'absent'"),
    ]:
        path = write_study(
            tmp_path, STUDY.replace("{circe: cohorts/mi.json}", f"{{python: builders/cohorts.py:{function}}}")
        )
        ((line, key, reason),) = problems(path)
        assert (line, key) == (5, "cohorts.mi.python") and expected in reason


def test_schema_is_published_in_step_with_the_models():
    assert DOCS_SCHEMA.read_text() == schema_text(), "run: hygie study schema --out docs/study-schema.json"


def test_schema_accepts_a_study_and_rejects_an_unknown_kind(tmp_path):
    schema = json.loads(schema_text())
    data = yaml.safe_load(STUDY)
    jsonschema.validate(data, schema)
    data["analyses"].append({"incidense": {}})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


def test_cohort_models_are_one_key_each():
    assert CirceCohort(circe="a.json").circe == "a.json"
    with pytest.raises(ValueError, match=r"csv or a \.parquet"):
        FileCohort(file="rows.txt")
    with pytest.raises(ValueError, match=r"module\.py:function"):
        PythonCohort(python="module.py")


def test_several_errors_are_reported_at_once_in_one_message(tmp_path):
    text = textwrap.dedent("""\
        name: x
        cohorts:
          a: {circe: nowhere.json}
        analyses:
          - cohort_counts: {cohorts: [b]}
          - nothing: {}
        """)
    path = write_study(tmp_path, text)
    with pytest.raises(StudyFileError) as caught:
        load_study(path)
    message = str(caught.value)
    assert message.splitlines()[0] == "the study file has 3 problem(s):"
    assert f"{path}, line 3, cohorts.a.circe: no such file" in message
    assert f"{path}, line 5, analyses[0].cohort_counts.cohorts[0]: unknown cohort 'b' (the study defines: a)" in message
    assert f"{path}, line 6, analyses[1].nothing: unknown analysis kind 'nothing'" in message


ODD = """\
name: odd
cohorts:
  a: {file: rows.csv, cohort_definition_id: x}
  b: 3
denominators:
  d:
    age_groups: [[0, 150], [1]]
    target: {cohort: a, time_at_risk: [0, x]}
    days_prior_observation: 5
analyses:
  - cohort_counts: {cohorts: a}
  - cohort_counts:
  - [1]
"""


def test_odd_shapes_are_explained_in_line_order(tmp_path):
    found = problems(write_study(tmp_path, ODD))
    assert [(line, key) for line, key, _ in found] == [
        (3, "cohorts.a.cohort_definition_id"),
        (4, "cohorts.b"),
        (7, "denominators.d.age_groups[1]"),
        (8, "denominators.d.target.time_at_risk"),
        (9, "denominators.d.days_prior_observation"),
        (11, "analyses[0].cohort_counts.cohorts"),
        (13, "analyses[2]"),
    ]
    reasons = [reason for _, _, reason in found]
    assert reasons[2] == "too few values (value 2 is missing)"
    assert reasons[3] == "must be a whole number of days or inf"
    assert reasons[6].startswith("an analysis is a mapping with one key")
