"""FHIR R4 Bulk Data (NDJSON, one or more files per resource type) -> OMOP CDM 5.4 tables + identities.

Resources are parsed by DuckDB (``read_json`` with declared columns: parallel, no Python per line), each line
once and straight into typed columns: only the fields a mapping uses (``FIELDS``) are kept, in a narrow table per
resource type, so neither the documents nor repeated JSON parsing cost memory or time at scale. Keys are
matched as written (FHIR is case-sensitive); unknown fields are ignored; a number or an object where text is
expected is read as its JSON text; a field whose JSON type cannot be what FHIR says (text where an object or a
list is expected, a repeated key) stops the deposit with its file, line and field. Mapping:
Patient -> person (+ death from deceasedDateTime) and the identity records (never into a table);
Encounter -> visit_occurrence; Condition -> condition_occurrence, or the table of its standard concept's
domain; MedicationRequest / MedicationAdministration / MedicationStatement / Immunization -> drug_exposure
(``medicationReference`` resolved through Medication resources); Observation -> measurement or observation
by domain, values and units kept; Procedure -> procedure_occurrence. Observation periods span each patient's
first to last recorded date. References may be ``Patient/<id>`` or ``urn:uuid:<id>``. Each CodeableConcept
may carry several codings: the first whose code maps to a standard concept wins, else the first coding is
kept as source value with concept id 0. Resource types with no mapping are counted and reported.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from hygie.errors import InputError, Problem
from hygie.sources.fhir_shape import CODINGS, IDENTIFIERS, JSON, Node, fhir_shape, read_problem
from hygie.sql import ident, literal

NIR_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"  # INS-NIR, the French national health number

# FHIR code systems -> OMOP vocabulary ids.
CODE_SYSTEMS = {
    "http://hl7.org/fhir/sid/icd-10": "ICD10",
    "http://hl7.org/fhir/sid/icd-10-fr": "ICD10",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD10CM",
    "http://snomed.info/sct": "SNOMED",
    "http://loinc.org": "LOINC",
    "http://www.whocc.no/atc": "ATC",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://hl7.org/fhir/sid/cvx": "CVX",
    "urn:oid:1.2.250.1.213.2.5": "CCAM",
    "http://unitsofmeasure.org": "UCUM",
}
ENCOUNTER_CLASSES = {"AMB": 9202, "IMP": 9201, "ACUTE": 9201, "NONAC": 9201, "EMER": 9203, "HH": 581476}
GENDERS = {"male": 8507, "female": 8532}
EHR = 32817  # type concept: EHR
SUPPORTED = {
    "Patient",
    "Encounter",
    "Condition",
    "MedicationRequest",
    "MedicationAdministration",
    "MedicationStatement",
    "Immunization",
    "Observation",
    "Procedure",
    "Medication",
}
# The resources read into drug_exposure (a Medication only through the others' medicationReference).
DRUG_RESOURCES = ("Medication", "MedicationRequest", "MedicationAdministration", "MedicationStatement", "Immunization")


@dataclass
class FhirExtract:
    """The converted tables (DuckDB temp tables on the connection) and what was left aside."""

    tables: dict[str, str]  # CDM table -> temp table name
    identities: list[dict[str, str | None]]
    resources: Counter[str] = field(default_factory=Counter)
    unsupported: Counter[str] = field(default_factory=Counter)  # resource type -> lines not mapped
    without_date_or_patient: Counter[str] = field(default_factory=Counter)  # resource type -> events set aside


def _files(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("*.ndjson")):
        resource = re.split(r"[.\-_]", path.name, maxsplit=1)[0]
        found.setdefault(resource, []).append(path)
    if not found:
        raise InputError(Problem(folder.name, "no FHIR NDJSON file (<ResourceType>.ndjson) in the folder"))
    return found


# The fields each resource type's mapping reads: column -> JSON path (``$.a.b``, ``[0]`` for a list's first
# item), read as text, or (path, type) for lists of codings and identifiers (typed) and JSON kept as is.
Field = str | tuple[str, Node]
_COMMON: dict[str, Field] = {
    "id": "$.id",
    "resource_type": "$.resourceType",
    "subject": "$.subject.reference",
    "encounter": "$.encounter.reference",
    "context": "$.context.reference",
}
_MEDICATION: dict[str, Field] = {
    "medication_reference": "$.medicationReference.reference",
    "coding": ("$.medicationCodeableConcept.coding", CODINGS),
    "effective_date_time": "$.effectiveDateTime",
    "effective_start": "$.effectivePeriod.start",
    "effective_end": "$.effectivePeriod.end",
}
FIELDS: dict[str, dict[str, Field]] = {
    "Patient": {
        "id": "$.id",
        "resource_type": "$.resourceType",
        "gender": "$.gender",
        "birth_date": "$.birthDate",
        "deceased_date_time": "$.deceasedDateTime",
        "identifier": ("$.identifier", IDENTIFIERS),
        "family_name": "$.name[0].family",
        "given_name": "$.name[0].given[0]",
        "postcode": "$.address[0].postalCode",
    },
    "Encounter": {
        **_COMMON,
        "class_code": "$.class.code",
        "period_start": "$.period.start",
        "period_end": "$.period.end",
    },
    "Condition": {
        **_COMMON,
        "coding": ("$.code.coding", CODINGS),
        "onset_date_time": "$.onsetDateTime",
        "recorded_date": "$.recordedDate",
        "onset_start": "$.onsetPeriod.start",
        "onset_end": "$.onsetPeriod.end",
        "abatement_date_time": "$.abatementDateTime",
    },
    "Procedure": {
        **_COMMON,
        "coding": ("$.code.coding", CODINGS),
        "performed_date_time": "$.performedDateTime",
        "performed_start": "$.performedPeriod.start",
        "performed_end": "$.performedPeriod.end",
    },
    "Medication": {"id": "$.id", "resource_type": "$.resourceType", "coding": ("$.code.coding", CODINGS)},
    "MedicationRequest": {
        **_COMMON,
        **_MEDICATION,
        "validity_start": "$.dispenseRequest.validityPeriod.start",
        "validity_end": "$.dispenseRequest.validityPeriod.end",
        "authored_on": "$.authoredOn",
        "supply_days": "$.dispenseRequest.expectedSupplyDuration.value",
    },
    "MedicationAdministration": {**_COMMON, **_MEDICATION},
    "MedicationStatement": {**_COMMON, **_MEDICATION},
    "Immunization": {
        **_COMMON,
        "coding": ("$.vaccineCode.coding", CODINGS),
        "occurrence_date_time": "$.occurrenceDateTime",
    },
    "Observation": {
        **_COMMON,
        "coding": ("$.code.coding", CODINGS),
        "effective_date_time": "$.effectiveDateTime",
        "effective_start": "$.effectivePeriod.start",
        "issued": "$.issued",
        "quantity_value": "$.valueQuantity.value",
        "quantity_code": "$.valueQuantity.code",
        "quantity_unit": "$.valueQuantity.unit",
        "value_string": "$.valueString",
        "value_text": "$.valueCodeableConcept.text",
        "value_code": "$.valueCodeableConcept.coding[0].code",
        # Kept as JSON: a category is a measurement's when any of its texts is "laboratory" or "vital-signs".
        "category": ("$.category", JSON),
    },
}


def _objects(con: duckdb.DuckDBPyConnection, files: list[Path], resource: str) -> str:
    """A temp table of one resource type's fields (``FIELDS``), one row per line, in file order; every line
    is checked to be that type. Each document is parsed once, into the declared columns only."""
    name = f"_fhir_{resource.lower()}"
    paths = "[" + ", ".join(literal(str(p)) for p in files) + "]"
    shape = fhir_shape(FIELDS[resource])
    columns = ", ".join(f"{expr} AS {ident(c)}" for c, expr in shape.selects.items())
    declared = ", ".join(f"{literal(k)}: {literal(node.sql_type())}" for k, node in shape.root.children.items())
    try:
        con.execute(
            f"CREATE TEMP TABLE {name} AS SELECT {columns} FROM read_json({paths}, format = 'newline_delimited', "
            f"records = true, columns = {{{declared}}})"
        )
    except duckdb.Error as e:
        raise InputError(read_problem(e, files, shape.root)) from None
    wrong = con.execute(
        f"SELECT count(*) FROM {name} WHERE resource_type IS DISTINCT FROM {literal(resource)}"
    ).fetchone()[0]
    if wrong:
        raise InputError(Problem(files[0].name, f"{wrong} line(s) are not {resource} resources"))
    return name


def _ref(expr: str) -> str:
    """The id in a reference: ``Patient/123``, ``urn:uuid:abc`` or a bare id."""
    return f"regexp_replace({expr}, '^(?:urn:uuid:)?(?:[A-Za-z]+/)?', '')"  # one regex: the costliest per-row step


def _coded(con: duckdb.DuckDBPyConnection, objects: str, name: str) -> None:
    """``name``: per resource id, the chosen coding of the resource's CodeableConcept (its ``coding`` field):
    source code, vocabulary, source concept, standard concept and its domain."""
    systems = ", ".join(f"({literal(k)}, {literal(v)})" for k, v in CODE_SYSTEMS.items())
    # The first mapped coding, else the first coding, is chosen per resource by an aggregate (arg_min), not by
    # sorting every coding in a window.
    con.execute(f"""
        CREATE TEMP TABLE {name} AS
        WITH codings AS (
            SELECT id, position, coding.system AS system, coding.code AS code
            FROM (SELECT id, generate_subscripts(coding, 1) AS position, unnest(coding) AS coding FROM {objects})
        ),
        known AS (
            SELECT c.*, s.vocabulary_id FROM codings c LEFT JOIN (VALUES {systems}) s(system, vocabulary_id)
            USING (system)
        ),
        mapped AS (
            SELECT k.id, k.position, k.code, k.vocabulary_id, m.source_concept_id, m.concept_id, m.domain_id
            FROM known k LEFT JOIN _source_map m ON m.vocabulary_id = k.vocabulary_id AND m.concept_code = k.code
        ),
        chosen AS (
            SELECT id, arg_min({{'source_value': code, 'vocabulary_id': vocabulary_id,
                                 'source_concept_id': source_concept_id, 'concept_id': concept_id,
                                 'domain_id': domain_id}}, (concept_id IS NULL, position, concept_id)) AS c
            FROM mapped GROUP BY id
        )
        SELECT id, c.source_value, c.vocabulary_id, coalesce(c.source_concept_id, 0) AS source_concept_id,
               coalesce(c.concept_id, 0) AS concept_id, c.domain_id
        FROM chosen
    """)


def convert(con: duckdb.DuckDBPyConnection, folder: Path) -> FhirExtract:
    """Convert a Bulk Data export into temp tables on ``con`` (which must hold ``_source_map``)."""
    files = _files(folder)
    extract = FhirExtract(tables={}, identities=[])
    objects: dict[str, str] = {}
    for resource, paths in files.items():
        if resource not in SUPPORTED:
            extract.unsupported[resource] = sum(sum(1 for _ in p.open()) for p in paths)
            continue
        objects[resource] = _objects(con, paths, resource)
        extract.resources[resource] = con.execute(f"SELECT count(*) FROM {objects[resource]}").fetchone()[0]
    if "Patient" not in objects:
        raise InputError(Problem(folder.name, "no Patient.ndjson: every other resource refers to patients"))
    _patients(con, objects["Patient"], extract)
    _encounters(con, objects.get("Encounter"), extract)
    _drop_parsed(con, objects, ("Patient", "Encounter"))
    events = []
    if "Condition" in objects:
        _coded(con, objects["Condition"], "_code_condition")
        events.append(
            (
                "Condition",
                objects["Condition"],
                "_code_condition",
                "condition_occurrence",
                "coalesce(onset_date_time, recorded_date, onset_start)",
                "coalesce(abatement_date_time, onset_end)",
            )
        )
    if "Procedure" in objects:
        _coded(con, objects["Procedure"], "_code_procedure")
        events.append(
            (
                "Procedure",
                objects["Procedure"],
                "_code_procedure",
                "procedure_occurrence",
                "coalesce(performed_date_time, performed_start)",
                "performed_end",
            )
        )
    _drugs(con, objects, extract)
    _drop_parsed(con, objects, DRUG_RESOURCES)
    _observations(con, objects.get("Observation"), events, extract)
    _events(con, events, extract)
    # What is left of the parsed resources (the events' were dropped once mapped; types not mapped at all).
    _drop_parsed(con, objects, tuple(objects))
    _observation_periods(con, extract)
    return extract


def _drop_parsed(con: duckdb.DuckDBPyConnection, objects: dict[str, str], resources: tuple[str, ...]) -> None:
    """Free the parsed tables of ``resources`` once mapped, so that the parsed resources, the events and the CDM
    tables are not all in memory at once."""
    for resource in resources:
        if resource in objects:
            con.execute(f"DROP TABLE IF EXISTS {objects.pop(resource)}")


def _date(expr: str) -> str:
    return f"TRY_CAST(left({expr}, 10) AS DATE)"


def _patients(con: duckdb.DuckDBPyConnection, patients: str, extract: FhirExtract) -> None:
    con.execute(f"""
        CREATE TEMP TABLE _omop_person AS
        SELECT id AS person_id,
               coalesce(CASE gender WHEN 'male' THEN 8507 WHEN 'female' THEN 8532 END, 0) AS gender_concept_id,
               year({_date("birth_date")}) AS year_of_birth, month({_date("birth_date")}) AS month_of_birth,
               day({_date("birth_date")}) AS day_of_birth, 0 AS race_concept_id, 0 AS ethnicity_concept_id,
               gender AS gender_source_value,
               {_date("deceased_date_time")} AS death_date
        FROM {patients}
    """)
    missing_birth = con.execute("SELECT count(*) FROM _omop_person WHERE year_of_birth IS NULL").fetchone()[0]
    if missing_birth:
        raise InputError(Problem("Patient.ndjson", f"{missing_birth} patient(s) without a valid birthDate"))
    extract.tables["person"] = "_omop_person"
    con.execute("""
        CREATE TEMP TABLE _omop_death AS SELECT person_id, death_date, 32817 AS death_type_concept_id
        FROM _omop_person WHERE death_date IS NOT NULL
    """)
    extract.tables["death"] = "_omop_death"
    rows = con.execute(f"""
        SELECT id,
               list_filter(identifier, i -> i.system = {literal(NIR_SYSTEM)})[1].value,
               family_name, given_name, birth_date,
               CASE gender WHEN 'male' THEN 'M' WHEN 'female' THEN 'F' END,
               postcode
        FROM {patients}
    """).fetchall()
    keys = ("local_id", "nir", "family_name", "given_name", "birth_date", "sex", "postcode")
    extract.identities = [dict(zip(keys, row, strict=True)) for row in rows]


def _encounters(con: duckdb.DuckDBPyConnection, encounters: str | None, extract: FhirExtract) -> None:
    if encounters is None:  # an empty visit table, so that other resources can always look visits up
        encounters = (
            "(SELECT NULL::VARCHAR AS id, NULL::VARCHAR AS subject, NULL::VARCHAR AS class_code, "
            "NULL::VARCHAR AS period_start, NULL::VARCHAR AS period_end WHERE false)"
        )
    classes = ", ".join(f"({literal(k)}, {v})" for k, v in ENCOUNTER_CLASSES.items())
    con.execute(f"""
        CREATE TEMP TABLE _omop_visit_occurrence AS
        SELECT row_number() OVER (ORDER BY id) AS visit_occurrence_id, id AS fhir_id,
               {_ref("subject")} AS person_id,
               coalesce(k.concept_id, 0) AS visit_concept_id,
               {_date("period_start")} AS visit_start_date,
               coalesce({_date("period_end")}, {_date("period_start")}) AS visit_end_date,
               {EHR} AS visit_type_concept_id, class_code AS visit_source_value
        FROM {encounters} LEFT JOIN (VALUES {classes}) k(code, concept_id) ON k.code = class_code
    """)
    extract.tables["visit_occurrence"] = "_omop_visit_occurrence"


# Record ids follow the files: resource type, then line (the row of the parsed table); a visit resolved twice
# (two encounters with one id) breaks the tie. Numbering rows as they come out of parallel joins would give
# the same rows different ids from one run to the next.
FILE_ORDER = "ORDER BY _part, _position, visit_occurrence_id"
MEDICATION_REFERENCE = "medication_reference"
ENCOUNTER_REFERENCE = "coalesce(encounter, context)"


def _drugs(con: duckdb.DuckDBPyConnection, objects: dict[str, str], extract: FhirExtract) -> None:
    parts = []
    if "Medication" in objects:
        _coded(con, objects["Medication"], "_code_medication")
    for resource, start, end in (
        (
            "MedicationRequest",
            "coalesce(validity_start, authored_on)",
            "validity_end",
        ),
        (
            "MedicationAdministration",
            "coalesce(effective_date_time, effective_start)",
            "effective_end",
        ),
        (
            "MedicationStatement",
            "coalesce(effective_date_time, effective_start)",
            "effective_end",
        ),
        ("Immunization", "occurrence_date_time", "NULL"),
    ):
        if resource not in objects:
            continue
        part = len(parts)
        table = f"_code_{resource.lower()}"
        _coded(con, objects[resource], table)
        via_reference = (
            f"LEFT JOIN _code_medication med ON med.id = {_ref(MEDICATION_REFERENCE)}"
            if "Medication" in objects and resource != "Immunization"
            else ""
        )
        pick = "coalesce(c.{0}, med.{0})" if via_reference else "c.{0}"
        supply = "TRY_CAST(supply_days AS INTEGER)" if (resource == "MedicationRequest") else "NULL"
        parts.append(f"""
            SELECT {_ref("subject")} AS person_id,
                   {pick.format("concept_id")} AS drug_concept_id,
                   {_date(start)} AS drug_exposure_start_date,
                   coalesce({_date(end)}, {_date(start)}) AS drug_exposure_end_date,
                   {EHR} AS drug_type_concept_id, {supply} AS days_supply,
                   v.visit_occurrence_id,
                   {pick.format("source_value")} AS drug_source_value,
                   {pick.format("source_concept_id")} AS drug_source_concept_id,
                   {part} AS _part, r.rowid AS _position
            FROM {objects[resource]} r LEFT JOIN {table} c ON c.id = r.id {via_reference}
            LEFT JOIN _omop_visit_occurrence v ON v.fhir_id = {_ref(ENCOUNTER_REFERENCE)}
        """)
    if parts:
        con.execute(
            f"CREATE TEMP TABLE _omop_drug_exposure AS SELECT row_number() OVER ({FILE_ORDER}) AS drug_exposure_id, "
            "* EXCLUDE (_part, _position) FROM (" + " UNION ALL ".join(parts) + ")"
        )
        extract.tables["drug_exposure"] = "_omop_drug_exposure"
    for resource in ("medication", "medicationrequest", "medicationadministration", "medicationstatement"):
        con.execute(f"DROP TABLE IF EXISTS _code_{resource}")
    con.execute("DROP TABLE IF EXISTS _code_immunization")


# Where an event goes: the domain of its standard concept, else its resource's default table.
DOMAIN_TABLES = {
    "Condition": "condition_occurrence",
    "Procedure": "procedure_occurrence",
    "Measurement": "measurement",
    "Observation": "observation",
}


def _observations(
    con: duckdb.DuckDBPyConnection, observations: str | None, events: list[tuple], extract: FhirExtract
) -> None:
    if observations is None:
        return
    _coded(con, observations, "_code_observation")
    events.append(
        (
            "Observation",
            observations,
            "_code_observation",
            None,
            "coalesce(effective_date_time, effective_start, issued)",
            "NULL",
        )
    )


# An Observation's value, unit and whether it is a measurement (a laboratory or vital-signs category).
OBSERVATION_VALUES = """TRY_CAST(quantity_value AS DOUBLE) AS value_as_number,
    coalesce(value_string, value_text, value_code) AS value_as_string,
    coalesce(quantity_code, quantity_unit) AS unit_source_value,
    (contains(CAST(category AS VARCHAR), '"laboratory"')
     OR contains(CAST(category AS VARCHAR), '"vital-signs"')) AS is_measurement"""


def _events(con: duckdb.DuckDBPyConnection, events: list[tuple], extract: FhirExtract) -> None:
    """Conditions, procedures and observations, routed to their table by the domain of their concept."""
    parts = []
    for part, (resource, objects, codes, default_table, start, end) in enumerate(events):
        values = (
            OBSERVATION_VALUES
            if resource == "Observation"
            else "NULL::DOUBLE AS value_as_number, NULL::VARCHAR AS value_as_string, "
            "NULL::VARCHAR AS unit_source_value, NULL::BOOLEAN AS is_measurement"
        )
        parts.append(f"""
            SELECT {literal(resource)} AS resource, r.id AS fhir_id,
                   {_ref("subject")} AS person_id,
                   c.concept_id, c.domain_id, c.source_value, c.source_concept_id,
                   {_date(start)} AS start_date, {_date(end)} AS end_date, v.visit_occurrence_id,
                   {values}, {literal(default_table or "")} AS default_table, {part} AS _part, r.rowid AS _position
            FROM {objects} r LEFT JOIN {codes} c ON c.id = r.id
            LEFT JOIN _omop_visit_occurrence v ON v.fhir_id = {_ref(ENCOUNTER_REFERENCE)}
        """)
    if not parts:
        return
    con.execute(f"""
        CREATE TEMP TABLE _fhir_events AS
        SELECT *, coalesce(
            CASE domain_id {" ".join(f"WHEN {literal(d)} THEN {literal(t)}" for d, t in DOMAIN_TABLES.items())} END,
            nullif(default_table, ''),
            CASE WHEN is_measurement THEN 'measurement' ELSE 'observation' END) AS target
        FROM ({" UNION ALL ".join(parts)})
    """)
    for _, objects, codes, *_ in events:  # mapped: the parsed resources are no longer needed
        con.execute(f"DROP TABLE {objects}")
        con.execute(f"DROP TABLE {codes}")
    units = (
        "(SELECT concept_code AS unit_code, min(concept_id) AS unit_concept_id FROM _source_map "
        "WHERE vocabulary_id = 'UCUM' GROUP BY 1)"
    )
    shapes = {
        "condition_occurrence": """row_number() OVER ({order}) AS condition_occurrence_id, person_id,
            concept_id AS condition_concept_id, start_date AS condition_start_date, end_date AS condition_end_date,
            {ehr} AS condition_type_concept_id, visit_occurrence_id, source_value AS condition_source_value,
            source_concept_id AS condition_source_concept_id""",
        "procedure_occurrence": """row_number() OVER ({order}) AS procedure_occurrence_id, person_id,
            concept_id AS procedure_concept_id, start_date AS procedure_date, end_date AS procedure_end_date,
            {ehr} AS procedure_type_concept_id, visit_occurrence_id, source_value AS procedure_source_value,
            source_concept_id AS procedure_source_concept_id""",
        "measurement": """row_number() OVER ({order}) AS measurement_id, person_id,
            concept_id AS measurement_concept_id, start_date AS measurement_date,
            {ehr} AS measurement_type_concept_id, value_as_number,
            coalesce(u.unit_concept_id, 0) AS unit_concept_id, visit_occurrence_id,
            source_value AS measurement_source_value, source_concept_id AS measurement_source_concept_id,
            unit_source_value, value_as_string AS value_source_value""",
        "observation": """row_number() OVER ({order}) AS observation_id, person_id,
            concept_id AS observation_concept_id, start_date AS observation_date,
            {ehr} AS observation_type_concept_id, value_as_number, value_as_string,
            coalesce(u.unit_concept_id, 0) AS unit_concept_id, visit_occurrence_id,
            source_value AS observation_source_value, source_concept_id AS observation_source_concept_id,
            unit_source_value""",
    }
    for table, shape in shapes.items():
        con.execute(f"""
            CREATE TEMP TABLE _omop_{table} AS SELECT {shape.format(ehr=EHR, order=FILE_ORDER)}
            FROM _fhir_events e LEFT JOIN {units} u ON u.unit_code = e.unit_source_value
            WHERE target = {literal(table)} AND start_date IS NOT NULL AND person_id IS NOT NULL
        """)
        extract.tables[table] = f"_omop_{table}"
    for resource, n in con.execute(
        "SELECT resource, count(*) FROM _fhir_events WHERE start_date IS NULL OR person_id IS NULL GROUP BY 1"
    ).fetchall():
        extract.without_date_or_patient[resource] += n
    con.execute("DROP TABLE _fhir_events")


def _observation_periods(con: duckdb.DuckDBPyConnection, extract: FhirExtract) -> None:
    """A FHIR export has no observation period: each patient is observed from first to last recorded date."""
    spans = []
    for table, start, end in (
        ("visit_occurrence", "visit_start_date", "visit_end_date"),
        ("condition_occurrence", "condition_start_date", "condition_end_date"),
        ("procedure_occurrence", "procedure_date", "procedure_end_date"),
        ("drug_exposure", "drug_exposure_start_date", "drug_exposure_end_date"),
        ("measurement", "measurement_date", "measurement_date"),
        ("observation", "observation_date", "observation_date"),
    ):
        if table in extract.tables:
            spans.append(f"SELECT person_id, {start} AS s, coalesce({end}, {start}) AS e FROM {extract.tables[table]}")
    if not spans:
        return
    con.execute(f"""
        CREATE TEMP TABLE _omop_observation_period AS
        SELECT row_number() OVER (ORDER BY person_id) AS observation_period_id, person_id,
               min(s) AS observation_period_start_date, greatest(max(e), max(s)) AS observation_period_end_date,
               {EHR} AS period_type_concept_id
        FROM ({" UNION ALL ".join(spans)}) WHERE s IS NOT NULL GROUP BY person_id
    """)
    extract.tables["observation_period"] = "_omop_observation_period"
