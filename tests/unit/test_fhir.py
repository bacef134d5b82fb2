"""FHIR R4 Bulk Data deposits: resources become OMOP rows, identities become tokens, odd exports still load."""

from __future__ import annotations

import json

import pytest

from hygie.engine.duckdb import DuckDBEngine
from hygie.errors import InputError
from hygie.identity import nir_key
from hygie.ingest.deposit import ingest
from hygie.ingest.sites import SiteRegistry
from hygie.ingest.vocabulary import install_vocabulary
from tests.cdm_files import write_cdm
from tests.unit.test_vocabulary import CONCEPT, RELATIONSHIP

NIR = "2850599123456" + f"{nir_key('2850599123456'):02d}"
UUID = "5f1e2d3c-0000-4000-8000-000000000001"

# Synthea-like: urn:uuid references, several codings (the first one unknown), a medicationReference.
RESOURCES = {
    "Patient": [
        {
            "resourceType": "Patient",
            "id": UUID,
            "gender": "female",
            "birthDate": "1985-03-07",
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": NIR}],
            "name": [{"family": "Dupont", "given": ["Émilie"]}],
            "address": [{"postalCode": "54000"}],
        },
        {
            "resourceType": "Patient",
            "id": "p2",
            "gender": "male",
            "birthDate": "1950-12-01",
            "deceasedDateTime": "2023-05-01T10:00:00+01:00",
        },
    ],
    "Encounter": [
        {
            "resourceType": "Encounter",
            "id": "e1",
            "class": {"code": "EMER"},
            "subject": {"reference": f"urn:uuid:{UUID}"},
            "period": {"start": "2020-01-02T08:00:00Z", "end": "2020-01-03"},
        },
    ],
    "Condition": [
        {
            "resourceType": "Condition",
            "id": "c1",
            "subject": {"reference": f"urn:uuid:{UUID}"},
            "encounter": {"reference": "Encounter/e1"},
            "onsetDateTime": "2020-01-02",
            "code": {
                "coding": [
                    {"system": "http://example.org/local", "code": "GI"},
                    {"system": "http://hl7.org/fhir/sid/icd-10", "code": "K92.2"},
                ]
            },
        },
        {
            "resourceType": "Condition",
            "id": "c2",
            "subject": {"reference": "Patient/p2"},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "X00"}]},
        },
    ],
    "Medication": [
        {
            "resourceType": "Medication",
            "id": "m1",
            "code": {"coding": [{"system": "http://www.whocc.no/atc", "code": "M01AH01"}]},
        },
    ],
    "MedicationRequest": [
        {
            "resourceType": "MedicationRequest",
            "id": "r1",
            "subject": {"reference": "Patient/p2"},
            "medicationReference": {"reference": "Medication/m1"},
            "authoredOn": "2019-06-01",
            "dispenseRequest": {"expectedSupplyDuration": {"value": 30}},
        },
    ],
    "Observation": [
        {
            "resourceType": "Observation",
            "id": "o1",
            "subject": {"reference": "Patient/p2"},
            "category": [{"coding": [{"code": "laboratory"}]}],
            "effectiveDateTime": "2019-06-02",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
            "valueQuantity": {"value": 88.5, "unit": "umol/L", "code": "umol/L"},
        },
    ],
    "AllergyIntolerance": [{"resourceType": "AllergyIntolerance", "id": "a1"}],
}


@pytest.fixture
def export(tmp_path):
    folder = tmp_path / "site_c" / "fhir"
    folder.mkdir(parents=True)
    for resource, items in RESOURCES.items():
        (folder / f"{resource}.ndjson").write_text("".join(json.dumps(i) + "\n" for i in items))
    return folder.parent


@pytest.fixture
def site(settings, tmp_path):
    install_vocabulary(
        write_cdm(tmp_path / "athena", {"CONCEPT.csv": CONCEPT, "CONCEPT_RELATIONSHIP.csv": RELATIONSHIP}),
        "v1",
        settings,
    )
    return SiteRegistry(settings).add("site-c", "fhir")


def test_fhir_export_becomes_a_deposit(site, export, settings):
    deposit = ingest(site, export, settings, synthetic=True).deposit
    m = deposit.manifest
    assert (m.tables["person"].rows, m.tables["visit_occurrence"].rows, m.tables["death"].rows) == (2, 1, 1)
    assert m.tables["identity_tokens"].rows == 2
    with DuckDBEngine(deposit, settings) as engine:
        conditions = engine.sql(
            "SELECT condition_concept_id, condition_source_value, visit_occurrence_id IS NOT NULL "
            "FROM condition_occurrence ORDER BY condition_start_date NULLS LAST"
        ).fetchall()
        assert conditions[0] == (192671, "K92.2", True)  # second coding mapped; the visit resolved
        drug = engine.sql("SELECT drug_concept_id, days_supply, drug_source_value FROM drug_exposure").fetchone()
        assert drug == (1118084, 30, "M01AH01")  # through the Medication resource
        lab = engine.sql("SELECT value_as_number, unit_source_value FROM measurement").fetchone()
        assert lab == (88.5, "umol/L")
        assert engine.sql("SELECT visit_concept_id FROM visit_occurrence").fetchone()[0] == 9203
        periods = engine.sql("SELECT count(*) FROM observation_period").fetchone()[0]
        assert periods == 2
        everything = str([engine.sql(f'SELECT * FROM "{t}"').fetchall() for t in engine.tables()])
    for identifier in (NIR, "Dupont", "DUPONT", UUID, "54000"):
        assert identifier not in everything
    warnings = "\n".join(m.warnings)
    assert "FHIR resource types not mapped (counted, not loaded): AllergyIntolerance 1" in warnings
    assert "FHIR resources set aside for want of a date or a patient: Condition 1" in warnings
    # Converted on the deposit's own connection: the lineage names the converted table, not a temporary file.
    lineage = {e.table: (e.source, e.source_format) for e in m.lineage}
    assert lineage["measurement"] == ("measurement (converted from FHIR)", "fhir")
    assert not ingest(site, export, settings, synthetic=True).created  # idempotent


def test_malformed_ndjson_names_the_file_and_line(site, export, settings):
    (export / "fhir" / "Condition.ndjson").write_text('{"resourceType": "Condition", "id": "x"\n')
    with pytest.raises(InputError, match=r"Condition\.ndjson: not valid NDJSON: .*line") as info:
        ingest(site, export, settings)
    assert str(export) not in str(info.value)  # file name only


def test_export_without_patients_is_refused(site, export, settings):
    (export / "fhir" / "Patient.ndjson").unlink()
    with pytest.raises(InputError, match=r"no Patient\.ndjson"):
        ingest(site, export, settings)


def test_wrong_resource_type_in_a_file(site, export, settings):
    (export / "fhir" / "Encounter.ndjson").write_text(json.dumps(RESOURCES["Patient"][1]) + "\n")
    with pytest.raises(InputError, match=r"Encounter\.ndjson: 1 line\(s\) are not Encounter resources"):
        ingest(site, export, settings)


def _write(export, resource: str, lines: list[str]) -> None:
    (export / "fhir" / f"{resource}.ndjson").write_text("".join(line + "\n" for line in lines))


def test_unknown_fields_numbers_and_blank_lines_are_read_like_the_fields_hygie_knows(site, export, settings):
    """Real exports carry fields hygie does not read (extensions, display, userSelected...), numbers where
    text is read (a numeric id or code) and blank lines: none of them changes what is loaded."""
    observation = dict(RESOURCES["Observation"][0])
    observation.update(
        id=12,  # a number: read as its text
        extension=[{"url": "http://example.org/x", "valueBoolean": True}],
        code={"coding": [{"system": "http://loinc.org", "code": "2160-0", "display": "Creatinine", "userSelected": 1}]},
        valueQuantity={"value": 88.5, "unit": "umol/L", "code": "umol/L", "comparator": {"odd": [1, 2]}},
    )
    _write(export, "Observation", ["", json.dumps(observation, indent=None, separators=(", ", ": ")), "   "])
    deposit = ingest(site, export, settings, synthetic=True).deposit
    with DuckDBEngine(deposit, settings) as engine:
        lab = engine.sql("SELECT measurement_source_value, value_as_number, unit_source_value FROM measurement")
        assert lab.fetchall() == [("2160-0", 88.5, "umol/L")]


def test_a_field_of_the_wrong_json_type_names_file_line_and_field(site, export, settings):
    """Text where FHIR has an object (a reference written as a bare string) is an error, not a silent loss of
    the patient; the message names the line (blank lines counted) and the field, never the value."""
    good = RESOURCES["Observation"][0]
    bad = {**good, "id": "o2", "subject": "Patient/p2-secret"}
    _write(export, "Observation", [json.dumps(good), "", json.dumps(bad)])
    with pytest.raises(InputError) as info:
        ingest(site, export, settings)
    assert str(info.value) == "Observation.ndjson, row 3, column 'subject': expected an object, found text"
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(
    ("change", "column", "reason"),
    [
        ({"code": {"coding": {"system": "http://loinc.org", "code": "2160-0"}}}, "code.coding", "expected a list"),
        ({"code": {"coding": ["2160-0"]}}, "code.coding", "expected an object, found text"),
        ({"valueQuantity": [88.5]}, "valueQuantity", "expected an object, found a list"),
    ],
)
def test_codings_and_quantities_of_the_wrong_shape_are_named(site, export, settings, change, column, reason):
    _write(export, "Observation", [json.dumps({**RESOURCES["Observation"][0], **change})])
    with pytest.raises(InputError, match=rf"Observation\.ndjson, row 1, column '{column}': {reason}"):
        ingest(site, export, settings)


def test_a_repeated_key_is_named(site, export, settings):
    line = json.dumps(RESOURCES["Patient"][1])[:-1] + ', "gender": "female"}'
    _write(export, "Patient", [json.dumps(RESOURCES["Patient"][0]), line])
    with pytest.raises(InputError, match=r"Patient\.ndjson, row 2, column 'gender': the key appears more than once"):
        ingest(site, export, settings)


def test_keys_are_matched_as_written(site, export, settings):
    """FHIR keys are case-sensitive: ``Subject`` is not ``subject``, so the condition has no patient and is
    set aside (counted), not attached to someone."""
    condition = {**RESOURCES["Condition"][0]}
    condition["Subject"] = condition.pop("subject")
    _write(export, "Condition", [json.dumps(condition)])
    deposit = ingest(site, export, settings, synthetic=True).deposit
    assert "FHIR resources set aside for want of a date or a patient: Condition 1" in "\n".join(
        deposit.manifest.warnings
    )
    assert deposit.manifest.tables["condition_occurrence"].rows == 0


def test_record_ids_follow_the_files(site, export, settings):
    """Record ids are numbered in file order (resource type, then line), so that the same export always gives
    the same rows the same ids, whatever order parallel joins produce rows in."""
    base = RESOURCES["Observation"][0]
    subjects = ["Patient/p2", f"urn:uuid:{UUID}"]
    lines = [
        json.dumps({**base, "id": f"o{i}", "subject": {"reference": subjects[i % 2]}, "valueQuantity": {"value": i}})
        for i in range(3000)
    ]
    _write(export, "Observation", lines)
    deposit = ingest(site, export, settings, synthetic=True).deposit
    with DuckDBEngine(deposit, settings) as engine:
        values = engine.sql("SELECT value_as_number FROM measurement ORDER BY measurement_id").fetchall()
    assert [v for (v,) in values] == [float(i) for i in range(3000)]


def test_an_error_in_the_second_file_of_a_resource_type_names_that_file(site, export, settings):
    base = RESOURCES["Observation"][0]
    _write(export, "Observation", [json.dumps({**base, "id": f"o{i}"}) for i in range(5)])
    (export / "fhir" / "Observation-2.ndjson").write_text(
        "".join(json.dumps({**base, "id": f"p{i}"}) + "\n" for i in range(4))
        + json.dumps({**base, "id": "bad", "encounter": ["Encounter/e1"]})
        + "\n"
    )
    with pytest.raises(InputError, match=r"^Observation-2\.ndjson, row 5, column 'encounter': expected an object"):
        ingest(site, export, settings)


def test_ids_follow_the_files_across_files_and_resource_types(site, export, settings):
    """Ids number (resource type, line): a second file of a type continues the first, rows of one type split
    between tables (observations by category) keep the numbers of their lines, and no two rows of the deposit's
    event tables share an id."""
    base = RESOURCES["Observation"][0]
    lab = [json.dumps({**base, "valueQuantity": {"value": i}}) for i in range(5)]
    other = {**base, "category": [{"coding": [{"code": "social-history"}]}]}
    _write(export, "Observation", [*lab[:3], json.dumps({**other, "valueQuantity": {"value": 100}})])
    (export / "fhir" / "Observation_2.ndjson").write_text("".join(line + "\n" for line in lab[3:]))  # after, by name
    deposit = ingest(site, export, settings, synthetic=True).deposit
    with DuckDBEngine(deposit, settings) as engine:
        labs = engine.sql("SELECT measurement_id, value_as_number FROM measurement ORDER BY measurement_id").fetchall()
        (observation_id,) = engine.sql("SELECT observation_id FROM observation").fetchone()
        conditions = [i for (i,) in engine.sql("SELECT condition_occurrence_id FROM condition_occurrence").fetchall()]
    assert [v for _, v in labs] == [0.0, 1.0, 2.0, 3.0, 4.0]  # the second file after the first
    ids = [i for i, _ in labs]
    assert ids == sorted(ids) and len({*ids, observation_id, *conditions}) == len(ids) + 1 + len(conditions)
    assert ids[2] < observation_id < ids[3]  # the observation is line 4 of the same resource type
    assert max(ids) < 2**48  # below the deposit index of a release's ids (ingest.quality.ID_BITS)


def test_events_referring_to_a_shared_encounter_id_stay_one_row(site, export, settings):
    """Two Encounters with one id (a faulty export) are two visits, but an event referring to that id is one
    row, attached to the first of them."""
    first = RESOURCES["Encounter"][0]
    second = {**first, "class": {"code": "AMB"}, "period": {"start": "2021-05-05"}}
    _write(export, "Encounter", [json.dumps(first), json.dumps(second)])
    deposit = ingest(site, export, settings, synthetic=True).deposit
    m = deposit.manifest
    assert (m.tables["visit_occurrence"].rows, m.tables["condition_occurrence"].rows) == (2, 1)
    with DuckDBEngine(deposit, settings) as engine:
        visit = engine.sql(
            "SELECT v.visit_concept_id FROM condition_occurrence c JOIN visit_occurrence v USING (visit_occurrence_id)"
        ).fetchall()
    assert visit == [(9203,)]  # the first encounter (EMER), not the second (AMB)


def test_the_first_mapped_coding_wins_else_the_first(site, export, settings):
    """Among several codings, the first that maps to a standard concept is chosen (whatever its place), else
    the first coding is kept as the source value with concept 0; one coding is looked up alone."""
    base = {k: v for k, v in RESOURCES["Condition"][0].items() if k != "encounter"}
    unknown = {"system": "http://example.org/local", "code": "GI"}
    icd = {"system": "http://hl7.org/fhir/sid/icd-10", "code": "K92.2"}
    unmapped = {"system": "http://hl7.org/fhir/sid/icd-10", "code": "X00"}
    codings = [[unknown, unmapped, icd], [unmapped, unknown], [icd], [unknown]]
    _write(
        export,
        "Condition",
        [
            json.dumps({**base, "onsetDateTime": f"2020-01-0{i + 1}", "code": {"coding": c}})
            for i, c in enumerate(codings)
        ],
    )
    deposit = ingest(site, export, settings, synthetic=True).deposit
    with DuckDBEngine(deposit, settings) as engine:
        rows = engine.sql(
            "SELECT condition_source_value, condition_concept_id, condition_source_concept_id "
            "FROM condition_occurrence ORDER BY condition_start_date"
        ).fetchall()
    assert rows == [
        ("K92.2", 192671, 2000000001),
        ("X00", 0, 0),
        ("K92.2", 192671, 2000000001),
        ("GI", 0, 0),
    ]


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/p-1",
        "urn:uuid:5f1e2d3c-0000-4000-8000-000000000001",
        "p-1",
        "Encounter/e/1",
        "urn:uuid:Patient/1",
        "Practitioner/9",
        "http://example.org/fhir/Patient/1",
        "/x",
        "Pat1/x",
        "Patient/",
        "urn:uuid:",
        "",
        "é/x",
        "patient/1",
        None,
    ],
)
def test_references_are_read_like_the_pattern(reference):
    """The id in a reference is what remains once an optional ``urn:uuid:`` then an optional ``Letters/`` are
    removed; the shortcuts for common forms give what the pattern gives."""
    import duckdb

    from hygie.sources.fhir import _REF_PATTERN, _ref

    con = duckdb.connect()
    fast, pattern = con.execute(
        f"SELECT {_ref('r')}, regexp_replace(r, ?, '') FROM (SELECT ?::VARCHAR AS r)", [_REF_PATTERN, reference]
    ).fetchone()
    assert fast == pattern
    if reference in ("Patient/p-1", "p-1"):
        assert fast == "p-1"


def test_a_condition_without_a_code_is_kept_with_concept_zero(site, export, settings):
    """``Condition.code`` is optional in FHIR: left out, or an empty list of codings, the condition is kept with
    concept 0 (like an unmapped code), not refused."""
    base = {k: v for k, v in RESOURCES["Condition"][0].items() if k != "code"}
    without = [json.dumps({**base, "id": "c1"}), json.dumps({**base, "id": "c2", "code": {"coding": []}})]
    _write(export, "Condition", without)
    deposit = ingest(site, export, settings, synthetic=True).deposit
    with DuckDBEngine(deposit, settings) as engine:
        rows = engine.sql(
            "SELECT condition_concept_id, condition_source_value FROM condition_occurrence ORDER BY 1"
        ).fetchall()
    assert rows == [(0, None), (0, None)]
