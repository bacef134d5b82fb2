"""A small generation, end to end: layout, determinism, loading with ``cdm load``, FHIR validity, privacy, truth."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from hygie.config import Settings
from hygie.ingest.cdm_load import load_cdm
from hygie.synth.config import SynthConfig
from hygie.synth.generate import generate
from hygie.synth.identities import nir_is_valid
from hygie.synth.vocabulary import all_concepts
from hygie.synth.writers.fhir import NIR_SYSTEM, RESOURCE_TYPES

PATIENTS = 1500
SEED = 7


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synth") / "out"
    generate(SynthConfig(patients=PATIENTS, seed=SEED), folder)
    return folder


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


_TEXT = ("nir", "postcode", "family_name", "given_name", "birth_date")


def _read(path: Path) -> dict[str, list]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pydict()
    with path.open() as f:
        header = f.readline().replace('"', "").strip().split(",")
    types = {c: pa.string() for c in header if c.endswith("_source_value") or c in _TEXT}
    options = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
    return pacsv.read_csv(path, convert_options=options).to_pydict()


def test_layout_keeps_identities_and_truth_out_of_the_clinical_folders(out: Path) -> None:
    assert sorted(p.name for p in out.iterdir()) == ["site_a", "site_b", "site_c", "site_d", "truth", "vocabulary"]
    for site, fmt in (("site_a", ".csv"), ("site_b", ".parquet"), ("site_d", ".csv")):
        assert sorted(p.name for p in (out / site).iterdir()) == ["cdm", "identities.csv"]
        files = {p.name for p in (out / site / "cdm").iterdir()}
        assert "MANIFEST.csv" in files
        assert {f"person{fmt}", f"visit_occurrence{fmt}", f"drug_exposure{fmt}", f"measurement{fmt}"} <= files
    fhir = out / "site_c" / "fhir"
    assert sorted(p.name for p in fhir.iterdir()) == sorted([*(f"{r}.ndjson" for r in RESOURCE_TYPES), "manifest.json"])
    manifest = json.loads((fhir / "manifest.json").read_text())
    for entry in manifest["output"]:
        assert sum(1 for _ in (fhir / entry["url"]).open()) == entry["count"]
    assert {p.name for p in (out / "truth").iterdir()} == {"truth.json", "linkage.csv", "nsaid_cohort.csv"}


def test_same_seed_gives_identical_files_and_another_seed_does_not(out: Path, tmp_path: Path) -> None:
    generate(SynthConfig(patients=PATIENTS, seed=SEED), tmp_path / "again")
    assert _digests(tmp_path / "again") == _digests(out)
    generate(SynthConfig(patients=PATIENTS, seed=SEED + 1), tmp_path / "other")
    other = _digests(tmp_path / "other")
    assert other["site_a/identities.csv"] != _digests(out)["site_a/identities.csv"]


@pytest.mark.parametrize("site", ["site_a", "site_b", "site_d"])
def test_omop_sites_load_with_cdm_load(out: Path, settings: Settings, site: str) -> None:
    release = load_cdm(out / site / "cdm", f"synth-{site}", settings, synthetic=True)
    m = release.manifest
    assert m.synthetic and m.rejected_rows == 0 and m.flagged_rows == 0
    with (out / site / "cdm" / "MANIFEST.csv").open() as f:
        declared = {r["table"]: int(r["rows"]) for r in csv.DictReader(f)}
    for table, rows in declared.items():
        assert m.tables[table].rows == rows, table
    assert declared["person"] > 0 and declared["measurement"] > declared["person"]


def test_vocabulary_folder_loads_and_covers_every_concept_of_site_a(
    out: Path, settings: Settings, tmp_path: Path
) -> None:
    vocab = load_cdm(out / "vocabulary", "synth-vocabulary", settings, synthetic=True)
    assert vocab.manifest.tables["concept"].rows == len(all_concepts())
    # Site a with the vocabulary in the same folder: no concept id is unknown.
    combined = tmp_path / "combined"
    combined.mkdir()
    for folder in (out / "site_a" / "cdm", out / "vocabulary"):
        for p in folder.glob("*.csv"):
            if p.name != "MANIFEST.csv":
                shutil.copy(p, combined / p.name)
    release = load_cdm(combined, "synth-a-with-vocabulary", settings, synthetic=True)
    assert release.manifest.unknown_concepts == []


def test_site_d_carries_source_codes_only(out: Path) -> None:
    codes = {(c.vocabulary, c.code) for c in all_concepts()}
    for table, prefix in (
        ("condition_occurrence", "condition"),
        ("drug_exposure", "drug"),
        ("measurement", "measurement"),
    ):
        rows = _read(out / "site_d" / "cdm" / f"{table}.csv")
        assert set(rows[f"{prefix}_concept_id"]) == {0}
        assert set(rows[f"{prefix}_source_concept_id"]) == {0}
        vocab = {"condition": "ICD10", "drug": "ATC", "measurement": "LOINC"}[prefix]
        assert {(vocab, v) for v in rows[f"{prefix}_source_value"]} <= codes
    standard = _read(out / "site_a" / "cdm" / "condition_occurrence.csv")
    assert 0 not in set(standard["condition_concept_id"])
    assert {("ICD10", v) for v in standard["condition_source_value"]} <= codes


def _fhir_lines(out: Path, resource: str) -> list[dict]:
    with (out / "site_c" / "fhir" / f"{resource}.ndjson").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_fhir_export_is_valid_r4_with_resolvable_references(out: Path) -> None:
    from fhir.resources.R4B import get_fhir_model_class

    resources = {r: _fhir_lines(out, r) for r in RESOURCE_TYPES}
    for name, items in resources.items():
        assert items, name
        model = get_fhir_model_class(name)
        # Every Patient, and a spread of the other resources (validation costs about 1 ms per resource).
        step = 1 if name == "Patient" else max(1, len(items) // 400)
        for item in items[::step]:
            assert item["resourceType"] == name
            model.model_validate(item)
    patients = {p["id"] for p in resources["Patient"]}
    encounters = {e["id"] for e in resources["Encounter"]}
    for name, items in resources.items():
        if name == "Patient":
            continue
        for item in items:
            ref = item["subject"]["reference"]
            assert ref.startswith("Patient/") and ref.removeprefix("Patient/") in patients
            enc = item.get("encounter", item.get("context"))
            if enc is not None:
                assert enc["reference"].removeprefix("Encounter/") in encounters
    nirs = [i["value"] for p in resources["Patient"] for i in p["identifier"] if i["system"] == NIR_SYSTEM]
    assert nirs and all(nir_is_valid(n) for n in nirs)
    assert 0.05 < 1 - len(nirs) / len(patients) < 0.30  # missing NIR: 15% configured


def test_clinical_tables_never_contain_identities(out: Path) -> None:
    identities = {}
    for site in ("site_a", "site_b", "site_d"):
        identities[site] = _read(out / site / "identities.csv")
        ids = identities[site]
        assert set(ids) == {"local_id", "nir", "family_name", "given_name", "birth_date", "sex", "postcode"}
        present = [n for n in ids["nir"] if n is not None]
        assert all(nir_is_valid(n) for n in present)
    secrets = set()
    for ids in identities.values():
        secrets |= {str(v) for v in ids["nir"] if v is not None}
        secrets |= set(ids["family_name"]) | set(ids["given_name"]) | {str(v) for v in ids["postcode"]}
    for site in ("site_a", "site_b", "site_d"):
        for path in (out / site / "cdm").iterdir():
            if path.name == "MANIFEST.csv":
                continue
            table = _read(path)
            for column, values in table.items():
                strings = {str(v) for v in values if isinstance(v, str)}
                leaked = strings & secrets
                assert not leaked, (path.name, column, sorted(leaked)[:3])
    # And no identity column name in any CDM file.
    for site in ("site_a", "site_d"):
        for path in (out / site / "cdm").glob("*.csv"):
            header = path.open().readline()
            assert "nir" not in header.lower().replace('"', "").split(",")
            assert "family_name" not in header


def test_linkage_ground_truth_matches_the_sites(out: Path) -> None:
    link = _read(out / "truth" / "linkage.csv")
    n = len(link["site"])
    assert len(set(zip(link["site"], link["local_id"], strict=True))) == n
    for site in ("a", "b", "d"):
        ids = _read(out / f"site_{site}" / "identities.csv")
        mine = {lid for s, lid in zip(link["site"], link["local_id"], strict=True) if s == site}
        assert set(ids["local_id"]) == mine
        missing = {lid for lid, nir in zip(ids["local_id"], ids["nir"], strict=True) if nir is None}
        flagged = {
            lid
            for s, lid, m in zip(link["site"], link["local_id"], link["missing_nir"], strict=True)
            if s == site and m
        }
        assert missing == flagged
    fhir_ids = {int(p["id"]) for p in _fhir_lines(out, "Patient")}
    assert fhir_ids == {lid for s, lid in zip(link["site"], link["local_id"], strict=True) if s == "c"}
    persons = {}
    for s, key in zip(link["site"], link["person_key"], strict=True):
        persons.setdefault(key, set()).add(s)
    assert len(persons) == PATIENTS
    shared = sum(1 for v in persons.values() if len(v) >= 2) / PATIENTS
    assert 0.05 < shared < 0.16  # about 10% configured
    truth = json.loads((out / "truth" / "truth.json").read_text())
    assert truth["linkage"]["persons"] == PATIENTS
    assert truth["hazard_ratios"][0]["planted"] == 1.5
    assert {c["outcome"] for c in truth["negative_controls"]} == {"mi", "stroke", "aki"}
    assert {r["outcome"] for r in truth["incidence_per_100000_person_years"]} >= {"mi", "stroke", "aki", "t2d"}


def test_two_workers_write_the_same_files_as_one(out: Path, tmp_path: Path) -> None:
    generate(SynthConfig(patients=PATIENTS, seed=SEED), tmp_path / "two", workers=2)
    assert _digests(tmp_path / "two") == _digests(out)


@pytest.mark.parametrize("site", ["site_a", "site_b"])
def test_records_fall_in_the_site_observation_periods_and_reference_its_visits(out: Path, site: str) -> None:
    import duckdb

    folder = out / site / "cdm"
    ext = "parquet" if site == "site_b" else "csv"
    con = duckdb.connect()
    for table in (
        "person",
        "observation_period",
        "visit_occurrence",
        "condition_occurrence",
        "drug_exposure",
        "measurement",
        "procedure_occurrence",
        "death",
    ):
        reader = "read_parquet" if ext == "parquet" else "read_csv_auto"
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM {reader}('{folder / f'{table}.{ext}'}')")
    persons = con.execute("SELECT count(*), count(DISTINCT person_id) FROM person").fetchone()
    assert persons[0] == persons[1]
    # One observation period per person at each site.
    assert con.execute("SELECT count(*) FROM observation_period").fetchone()[0] == persons[0]
    assert (
        con.execute("SELECT count(*) FROM person p ANTI JOIN observation_period o USING (person_id)").fetchone()[0] == 0
    )
    for table, date in (
        ("visit_occurrence", "visit_start_date"),
        ("condition_occurrence", "condition_start_date"),
        ("drug_exposure", "drug_exposure_start_date"),
        ("measurement", "measurement_date"),
        ("procedure_occurrence", "procedure_date"),
        ("death", "death_date"),
    ):
        outside = con.execute(
            f"SELECT count(*) FROM {table} t JOIN observation_period o USING (person_id) "
            f"WHERE t.{date} NOT BETWEEN o.observation_period_start_date AND o.observation_period_end_date"
        ).fetchone()[0]
        assert outside == 0, table
    for table in ("condition_occurrence", "drug_exposure", "measurement", "procedure_occurrence"):
        dangling = con.execute(
            f"SELECT count(*) FROM {table} t WHERE t.visit_occurrence_id IS NOT NULL AND NOT EXISTS "
            f"(SELECT 1 FROM visit_occurrence v WHERE v.visit_occurrence_id = t.visit_occurrence_id "
            f"AND v.person_id = t.person_id)"
        ).fetchone()[0]
        assert dangling == 0, table


def test_site_d_has_no_concept_anywhere(out: Path) -> None:
    for table, columns in (
        ("person", ("gender_concept_id",)),
        ("visit_occurrence", ("visit_concept_id", "visit_type_concept_id")),
        ("measurement", ("unit_concept_id", "measurement_type_concept_id")),
    ):
        rows = _read(out / "site_d" / "cdm" / f"{table}.csv")
        for c in columns:
            assert set(rows[c]) == {0}, (table, c)
    visits = _read(out / "site_d" / "cdm" / "visit_occurrence.csv")
    assert set(visits["visit_source_value"]) == {"CONS", "HOSP", "URG"}
    units = _read(out / "site_d" / "cdm" / "measurement.csv")
    assert {"umol/L", "%"} <= set(units["unit_source_value"])


@pytest.mark.parametrize(("outcome", "icd10"), [("mi", "I21.9"), ("stroke", "I64"), ("aki", "N17.9")])
def test_every_planted_outcome_event_is_in_exactly_one_site(out: Path, outcome: str, icd10: str) -> None:
    truth = json.loads((out / "truth" / "truth.json").read_text())
    planted_events = sum(r["events"] for r in truth["incidence_per_100000_person_years"] if r["outcome"] == outcome)
    found = 0
    for site in ("site_a", "site_d"):
        found += _read(out / site / "cdm" / "condition_occurrence.csv")["condition_source_value"].count(icd10)
    found += (
        pq.read_table(out / "site_b" / "cdm" / "condition_occurrence.parquet")
        .column("condition_source_value")
        .to_pylist()
        .count(icd10)
    )
    found += sum(1 for c in _fhir_lines(out, "Condition") if c["code"]["coding"][0]["code"] == icd10)
    assert planted_events > 0
    assert found == planted_events


@pytest.mark.parametrize("patients", [1, 3])
def test_tiny_populations_leave_some_sites_empty_but_valid(tmp_path: Path, settings: Settings, patients: int) -> None:
    summary = generate(SynthConfig(patients=patients, seed=42), tmp_path / "tiny")
    assert sum(1 for n in summary["persons_per_site"].values() if n == 0) >= 1
    for site in ("site_a", "site_b", "site_d"):
        release = load_cdm(tmp_path / "tiny" / site / "cdm", f"tiny-{site}", settings, synthetic=True)
        assert release.manifest.tables["person"].rows == summary["persons_per_site"][site]
    link = _read(tmp_path / "tiny" / "truth" / "linkage.csv")
    assert len(set(link["person_key"])) == patients


def test_a_failed_generation_leaves_nothing_behind(tmp_path: Path) -> None:
    broken = SynthConfig(patients=50, seed=1, incidence={})  # no planted rates: the first chunk fails
    with pytest.raises(KeyError):
        generate(broken, tmp_path / "failed")
    assert list((tmp_path / "failed").iterdir()) == []


def test_fhir_identities_are_only_in_patient_resources(out: Path) -> None:
    patients = _fhir_lines(out, "Patient")
    secrets = set()
    for p in patients:
        secrets |= {i["value"] for i in p["identifier"] if i["system"] == NIR_SYSTEM}
        secrets |= {p["name"][0]["family"], *p["name"][0]["given"], p["address"][0]["postalCode"], p["birthDate"]}
    secrets -= {p["id"] for p in patients}
    # Dates of birth are dates like any other: compare names, NIRs and postcodes only.
    secrets -= {d for d in secrets if len(d) == 10 and d[4] == "-"}
    string = re.compile(r'"((?:[^"\\]|\\.)*)"')
    record_id = re.compile(r'^\{"resourceType":"\w+","id":"\d+",')  # record numbers can equal a postcode
    for resource in RESOURCE_TYPES:
        if resource == "Patient":
            continue
        with (out / "site_c" / "fhir" / f"{resource}.ndjson").open(encoding="utf-8") as f:
            for line in f:
                found = set(string.findall(record_id.sub("{", line))) & secrets
                assert not found, (resource, sorted(found)[:3])
