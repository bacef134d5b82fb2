"""Running a study end to end on a small hand-made CDM: outputs, manifest, disclosure, atomic output folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hygie.analyses.base import ResultTable, Spec, StudyContext, StudyDefinitions
from hygie.analyses.registry import analyses
from hygie.config import Settings
from hygie.errors import ConflictError, HygieError
from hygie.ingest.cdm_load import load_cdm
from hygie.releases import Release
from hygie.studies import StudyRun, load_study, run_study
from tests.study_files import write_small_cdm, write_study

COUNTS = {"gi_bleed": (14, 16), "mi": (3, 3), "listed": (2, 3)}  # subjects, records (see tests/study_files.py)


@pytest.fixture(scope="module")
def small_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("study_home")
    return Settings(home=home, master_key_file=home / "keys" / "master.key")


@pytest.fixture(scope="module")
def releases(small_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Release]:
    folder = write_small_cdm(tmp_path_factory.mktemp("cdm"))
    return {
        "synthetic": load_cdm(folder, "small-synthetic", small_settings, synthetic=True),
        "real": load_cdm(folder, "small-real", small_settings, synthetic=False),
    }


@pytest.fixture(scope="module")
def study_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_study(tmp_path_factory.mktemp("study"))


@pytest.fixture(scope="module")
def synthetic_run(releases, small_settings, study_file, tmp_path_factory) -> StudyRun:
    return run_study(study_file, releases["synthetic"], small_settings, out=tmp_path_factory.mktemp("o") / "run")


@pytest.fixture(scope="module")
def real_run(releases, small_settings, study_file, tmp_path_factory) -> StudyRun:
    return run_study(study_file, "small-real", small_settings, out=tmp_path_factory.mktemp("o") / "run")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_synthetic_run_writes_tables_manifest_and_report(synthetic_run: StudyRun, study_file: Path):
    out = synthetic_run.out
    assert sorted(p.name for p in out.iterdir()) == [
        "cohort_counts.csv",
        "cohort_counts.parquet",
        "manifest.json",
        "report.html",
    ]
    rows = read_csv(out / "cohort_counts.csv")
    # both analyses stacked, each row tagged with its analysis (1-based position in the file)
    assert [(r["analysis_id"], r["cohort_name"], r["number_subjects"], r["number_records"]) for r in rows] == [
        ("1", "gi_bleed", "14", "16"),
        ("1", "mi", "3", "3"),
        ("1", "listed", "2", "3"),
        ("2", "mi", "3", "3"),
        ("2", "listed", "2", "3"),
    ]
    assert pq.read_table(out / "cohort_counts.parquet").equals(synthetic_run.tables["cohort_counts"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == synthetic_run.manifest
    assert manifest["study"]["sha256"] == __import__("hashlib").sha256(study_file.read_bytes()).hexdigest()
    assert manifest["release"]["name"] == "small-synthetic" and manifest["release"]["synthetic"] is True
    assert len(manifest["release"]["manifest_sha256"]) == 64 and manifest["release"]["created_at"]
    assert manifest["disclosure"] == "exempt: synthetic release"
    assert manifest["engine"] == "duckdb" and set(manifest["versions"]) == {"hygie", "python", "duckdb", "pyspark"}
    assert manifest["started_at"] <= manifest["finished_at"]
    assert {c["name"]: (c["subjects"], c["records"]) for c in manifest["cohorts"]} == COUNTS
    assert [c["cohort_definition_id"] for c in manifest["cohorts"]] == [1, 2, 3]  # file order
    assert manifest["tables"]["cohort_counts"]["rows"] == 5
    assert manifest["tables"]["cohort_counts"]["disclosure_flags"] == []
    report = (out / "report.html").read_text()
    assert "SYNTHETIC RELEASE" in report and "http" not in report


def test_real_release_outputs_are_masked_and_the_flags_listed(real_run: StudyRun):
    rows = read_csv(real_run.out / "cohort_counts.csv")
    assert [(r["cohort_name"], r["number_subjects"], r["number_records"]) for r in rows] == [
        ("gi_bleed", "14", "16"),
        ("mi", "", ""),
        ("listed", "", ""),
        ("mi", "", ""),
        ("listed", "", ""),
    ]
    manifest = real_run.manifest
    policy = manifest["disclosure"]["policy"]
    assert (policy["min_count"], policy["max_masked"]) == (1, 10)
    assert {(f["table"], f["column"], f["cells"]) for f in manifest["disclosure"]["flags"]} == {
        ("cohort_counts", "number_subjects", 4),
        ("cohort_counts", "number_records", 4),
        ("study_cohorts", "number_subjects", 2),
        ("study_cohorts", "number_records", 2),
    }
    assert manifest["tables"]["cohort_counts"]["disclosure_flags"][0]["rule"]  # why, for the output checker
    # the manifest's own cohort counts are masked too
    assert {c["name"]: (c["subjects"], c["records"]) for c in manifest["cohorts"]} == {
        "gi_bleed": (14, 16),
        "mi": (None, None),
        "listed": (None, None),
    }
    report = real_run.report.read_text()
    assert "SYNTHETIC" not in report and "Disclosure control applied" in report
    assert report.count("&lt;11</td>") == 8 + 4


def test_no_output_carries_person_identifiers(synthetic_run: StudyRun, real_run: StudyRun):
    for run in (synthetic_run, real_run):
        for path in run.out.iterdir():
            if path.suffix == ".parquet":
                names = pq.read_schema(path).names
            elif path.suffix == ".csv":
                names = next(csv.reader(path.open()))
            else:
                names = []
            assert not {"subject_id", "person_id"} & set(names), path
        assert "subject_id" not in json.dumps(run.manifest)


def test_python_api_tables_and_pandas(synthetic_run: StudyRun):
    frame = synthetic_run.to_pandas("cohort_counts")
    assert list(frame["number_subjects"]) == [14, 3, 2, 3, 2]
    assert isinstance(synthetic_run.tables["cohort_counts"], pa.Table)
    with pytest.raises(KeyError, match="no result table 'nope'"):
        synthetic_run.to_pandas("nope")


class _LeakSpec(Spec):
    pass


class _Leak:
    """An analysis that (wrongly) returns person ids: the run must refuse to write it."""

    key: ClassVar[str] = "leak"
    spec: ClassVar[type[Spec]] = _LeakSpec

    def run(self, context: StudyContext, spec: Spec, study: StudyDefinitions) -> list[ResultTable]:
        rows = context.runner.query(f"SELECT DISTINCT subject_id FROM {context.cohort_table}")
        return [ResultTable("who", rows)]


def test_a_table_with_person_ids_fails_the_run_and_nothing_is_written(releases, small_settings, tmp_path):
    kinds = {**analyses(), "leak": _Leak()}
    study = write_study(
        tmp_path / "s", "name: leaky\ncohorts:\n  mi: {circe: cohorts/mi.json}\nanalyses:\n  - leak: {}\n"
    )
    out = tmp_path / "out"
    with pytest.raises(HygieError, match="result table 'who' carries subject_id: study results must be aggregate"):
        run_study(load_study(study, kinds=kinds), releases["synthetic"], small_settings, out=out, kinds=kinds)
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "s"]


def test_output_folder_is_replaced_only_with_force(releases, small_settings, study_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConflictError, match="exists and is not empty"):
        run_study(study_file, releases["synthetic"], small_settings, out=out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    run = run_study(study_file, releases["synthetic"], small_settings, out=out, force=True)
    assert "keep.txt" not in {p.name for p in out.iterdir()} and run.report.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or old folder left behind
    empty = tmp_path / "empty"
    empty.mkdir()
    run_study(study_file, releases["synthetic"], small_settings, out=empty)  # an empty folder is fine
    assert (empty / "manifest.json").is_file()


def test_a_failed_run_leaves_no_output(releases, small_settings, tmp_path):
    # the analysis fails inside the engine (an unknown cohort reaches it only if validation is bypassed)
    study = write_study(tmp_path / "s")
    loaded = load_study(study)
    broken = loaded.analyses[1].spec.model_copy(update={"cohorts": ["ghost"]})
    loaded.analyses[1] = type(loaded.analyses[1])("cohort_counts", broken)
    with pytest.raises(KeyError, match="unknown cohort 'ghost'"):
        run_study(loaded, releases["synthetic"], small_settings, out=tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_staging_is_removed_when_writing_fails(tmp_path):
    from hygie.studies.outputs import staged

    out = tmp_path / "out"
    with pytest.raises(RuntimeError), staged(out, force=False) as folder:
        (folder / "half.csv").write_text("a\n")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["../escape", "a/b", "manifest", "report", "", "1st"])
def test_result_table_names_must_be_plain_file_names(name):
    from hygie.studies.outputs import check_names

    with pytest.raises(HygieError, match="cannot be a file name"):
        check_names([ResultTable(name, pa.table({"n": [1]}))])


def test_person_id_in_any_case_is_refused():
    from hygie.studies.outputs import check_aggregate

    check_aggregate([ResultTable("fine", pa.table({"n": [1]}))])
    with pytest.raises(HygieError, match="result table 'rows' carries person_id"):
        check_aggregate([ResultTable("rows", pa.table({"Person_ID": [1]}))])
