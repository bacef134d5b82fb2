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
kept as source value with concept id 0; a resource without any coding (an optional code left out) is kept with
concept id 0 too. Resource types with no mapping are counted and reported.

Record ids follow the files, without sorting: ``part * 2**40 + line``, where part numbers the resource types
mapped into a table and line is the resource's row in its type's files (in name order), from 1; visit ids are
the Encounter's line. A reference names one resource: when two Encounters (or two Medications) share an id,
both are loaded but a reference to that id resolves to the first, so that each event stays one row.

At scale (tens of millions of observations), one resource type is parsed at a time into a narrow table (the
row-wise mapping is done as the line is read: dates as dates, references as ids) and dropped once mapped;
conditions, procedures and observations are mapped into one events table whose rows the event tables are
views of, so that the memory a deposit holds is about one parsed type and the mapped rows
(docs/decisions/0024-fhir-conversion-at-scale.md).
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


@dataclass
class FhirExtract:
    """The converted tables (DuckDB temp tables or views on the connection) and what was left aside."""

    tables: dict[str, str]  # CDM table -> temp table or view
    identities: list[dict[str, str | None]]
    resources: Counter[str] = field(default_factory=Counter)
    unsupported: Counter[str] = field(default_factory=Counter)  # resource type -> lines not mapped
    without_date_or_patient: Counter[str] = field(default_factory=Counter)  # resource type -> events set aside
    backing: dict[str, str] = field(default_factory=dict)  # view in ``tables`` -> the temp table it reads


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
_COMMON: dict[str, Field] = {  # an event's own id is not read: nothing refers to it, its line numbers it
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
        "id": "$.id",
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


# Record ids follow the files: ``part * 2**PART_BITS + line`` where part numbers the resource types mapped into
# one table and line is the row of the parsed resource type (its files in order, then their lines), from 1.
# No sort is needed, and the same export always gives the same rows the same ids, whatever order parallel
# joins produce rows in. Release builds put the deposit index above bit 48 (``ingest.quality.ID_BITS``): a few
# parts of up to 2**40 lines each stay below it.
PART_BITS = 40


def _record_id(part: int, alias: str = "r") -> str:
    return f"({part} * {2**PART_BITS} + {alias}.rowid + 1)"


def _date(expr: str) -> str:
    return f"TRY_CAST(left({expr}, 10) AS DATE)"


# Reference prefixes read without a regular expression (the common forms); other forms go through _REF_PATTERN.
_REF_PATTERN = "^(?:urn:uuid:)?(?:[A-Za-z]+/)?"
_REF_TYPES = ("Patient", "Encounter", "Medication")


def _ref(expr: str) -> str:
    """The id in a reference: ``Patient/123``, ``urn:uuid:abc`` or a bare id (``_REF_PATTERN`` removed). The
    common forms are cut at a known length; only the others pay for the regular expression."""
    cases = " ".join(
        f"WHEN starts_with({expr}, {literal(t + '/')}) THEN substr({expr}, {len(t) + 2})" for t in _REF_TYPES
    )
    return (
        f"CASE WHEN starts_with({expr}, 'urn:uuid:') AND NOT contains({expr}, '/') THEN substr({expr}, 10) {cases} "
        f"WHEN NOT contains({expr}, '/') THEN {expr} ELSE regexp_replace({expr}, {literal(_REF_PATTERN)}, '') END"
    )


# A CodeableConcept's codings, kept per parsed row: the first coding (system, code) and how many there are;
# the list itself only when there are several (most resources have one: no list, no per-coding row to group).
CODING_COLUMNS = {
    "_codings": "len(coding)",
    "_system": "coding[1].system",
    "_code": "coding[1].code",
    "_coding_list": "CASE WHEN len(coding) > 1 THEN coding END",
}
ENCOUNTER_REFERENCE = _ref("coalesce(encounter, context)")

# What each resource type's parsed row keeps: column -> SQL over its ``FIELDS``, computed as the line is read
# (dates as dates, references as ids), so that the parsed tables are narrow.
ROWS: dict[str, dict[str, str]] = {
    "Patient": {c: c for c in FIELDS["Patient"] if c != "resource_type"},
    "Encounter": {
        "id": "id",
        "person_id": _ref("subject"),
        "class_code": "class_code",
        "start_date": _date("period_start"),
        "end_date": f"coalesce({_date('period_end')}, {_date('period_start')})",
    },
    "Medication": {"id": "id", **CODING_COLUMNS},
    "Condition": {
        "person_id": _ref("subject"),
        "encounter_id": ENCOUNTER_REFERENCE,
        **CODING_COLUMNS,
        "start_date": _date("coalesce(onset_date_time, recorded_date, onset_start)"),
        "end_date": _date("coalesce(abatement_date_time, onset_end)"),
    },
    "Procedure": {
        "person_id": _ref("subject"),
        "encounter_id": ENCOUNTER_REFERENCE,
        **CODING_COLUMNS,
        "start_date": _date("coalesce(performed_date_time, performed_start)"),
        "end_date": _date("performed_end"),
    },
    "Observation": {
        "person_id": _ref("subject"),
        "encounter_id": ENCOUNTER_REFERENCE,
        **CODING_COLUMNS,
        "start_date": _date("coalesce(effective_date_time, effective_start, issued)"),
        "value_as_number": "TRY_CAST(quantity_value AS DOUBLE)",
        "value_as_string": "coalesce(value_string, value_text, value_code)",
        "unit_source_value": "coalesce(quantity_code, quantity_unit)",
        # A measurement: a laboratory or vital-signs category (any of the category's texts).
        "is_measurement": """(contains(CAST(category AS VARCHAR), '"laboratory"')
            OR contains(CAST(category AS VARCHAR), '"vital-signs"'))""",
    },
}
_DRUG_ROWS = {"person_id": _ref("subject"), "encounter_id": ENCOUNTER_REFERENCE, **CODING_COLUMNS}
_MEDICATION_ROWS = {**_DRUG_ROWS, "medication_id": _ref("medication_reference")}
for _resource, _start, _end in (
    ("MedicationRequest", "coalesce(validity_start, authored_on)", "validity_end"),
    ("MedicationAdministration", "coalesce(effective_date_time, effective_start)", "effective_end"),
    ("MedicationStatement", "coalesce(effective_date_time, effective_start)", "effective_end"),
):
    ROWS[_resource] = {
        **_MEDICATION_ROWS,
        "start_date": _date(_start),
        "end_date": f"coalesce({_date(_end)}, {_date(_start)})",
        "days_supply": "TRY_CAST(supply_days AS INTEGER)" if _resource == "MedicationRequest" else "NULL::INTEGER",
    }
ROWS["Immunization"] = {
    **_DRUG_ROWS,
    "medication_id": "NULL::VARCHAR",
    "start_date": _date("occurrence_date_time"),
    "end_date": _date("occurrence_date_time"),
    "days_supply": "NULL::INTEGER",
}


def _objects(con: duckdb.DuckDBPyConnection, files: list[Path], resource: str, extract: FhirExtract) -> str:
    """A temp table of one resource type's rows (``ROWS`` over its ``FIELDS``), one row per line, in file order
    (its rowid numbers the lines); every line is checked to be that type. Each document is parsed once, into
    the declared columns only."""
    name = f"_fhir_{resource.lower()}"
    paths = "[" + ", ".join(literal(str(p)) for p in files) + "]"
    shape = fhir_shape(FIELDS[resource])
    columns = ", ".join(f"{expr} AS {ident(c)}" for c, expr in shape.selects.items())
    declared = ", ".join(f"{literal(k)}: {literal(node.sql_type())}" for k, node in shape.root.children.items())
    rows = ", ".join(f"{expr} AS {ident(c)}" for c, expr in ROWS[resource].items())
    try:
        con.execute(
            f"CREATE TEMP TABLE {name} AS SELECT {rows}, resource_type IS DISTINCT FROM {literal(resource)} AS _other "
            f"FROM (SELECT {columns} FROM read_json({paths}, format = 'newline_delimited', records = true, "
            f"columns = {{{declared}}}))"
        )
    except duckdb.Error as e:
        raise InputError(read_problem(e, files, shape.root)) from None
    lines, wrong = con.execute(f"SELECT count(*), count_if(_other) FROM {name}").fetchone()
    if wrong:
        con.execute(f"DROP TABLE {name}")
        raise InputError(Problem(files[0].name, f"{wrong} line(s) are not {resource} resources"))
    extract.resources[resource] = lines
    return name


def _code_map(con: duckdb.DuckDBPyConnection) -> None:
    """``_fhir_code_map``: (coding system, code) -> its standard concept (the lowest of several), source concept
    and domain, for the code systems hygie knows (``CODE_SYSTEMS``); a code not there is not mapped."""
    systems = ", ".join(f"({literal(k)}, {literal(v)})" for k, v in CODE_SYSTEMS.items())
    con.execute(f"""
        CREATE TEMP TABLE _fhir_code_map AS
        SELECT s.system, m.concept_code AS code,
               arg_min(m.source_concept_id, (m.concept_id, m.source_concept_id)) AS source_concept_id,
               min(m.concept_id) AS concept_id,
               arg_min(m.domain_id, (m.concept_id, m.source_concept_id)) AS domain_id
        FROM (VALUES {systems}) s(system, vocabulary_id) JOIN _source_map m ON m.vocabulary_id = s.vocabulary_id
        GROUP BY s.system, m.concept_code
    """)


def _coded(con: duckdb.DuckDBPyConnection, parsed: str) -> tuple[str, dict[str, str]]:
    """The chosen coding of each row of ``parsed``: the first coding that maps to a standard concept, else the
    first coding (its code kept as source value, concept 0); none (NULL) when there is no coding, which the
    tables' statements make concept 0 once a Medication had its chance. Returns the joins
    to add to ``FROM parsed r`` and the expressions (source_value, source_concept_id, concept_id, domain_id).

    A row with one coding (most) is looked up directly; only rows with several are unnested and grouped, by
    row (``<parsed>_multi``, keyed by the parsed row's rowid)."""
    multi = f"{parsed}_multi"
    con.execute(f"""
        CREATE TEMP TABLE {multi} AS
        SELECT _row, arg_min({{'source_value': k.coding.code, 'source_concept_id': coalesce(m.source_concept_id, 0),
                               'concept_id': coalesce(m.concept_id, 0), 'domain_id': m.domain_id}},
                             (m.concept_id IS NULL, k.position)) AS c
        FROM (SELECT rowid AS _row, generate_subscripts(_coding_list, 1) AS position, unnest(_coding_list) AS coding
              FROM {parsed} WHERE _coding_list IS NOT NULL) k
        LEFT JOIN _fhir_code_map m ON m.system = k.coding.system AND m.code = k.coding.code
        GROUP BY _row
    """)
    joins = (
        "LEFT JOIN _fhir_code_map d ON d.system = r._system AND d.code = r._code "
        f"LEFT JOIN {multi} mc ON mc._row = r.rowid"
    )
    one = "r._codings = 1"
    exprs = {
        "source_value": f"CASE WHEN {one} THEN r._code ELSE mc.c.source_value END",
        "source_concept_id": f"CASE WHEN {one} THEN coalesce(d.source_concept_id, 0) ELSE mc.c.source_concept_id END",
        "concept_id": f"CASE WHEN {one} THEN coalesce(d.concept_id, 0) ELSE mc.c.concept_id END",
        "domain_id": f"CASE WHEN {one} THEN d.domain_id ELSE mc.c.domain_id END",
    }
    return joins, exprs


def _drop_coded(con: duckdb.DuckDBPyConnection, parsed: str) -> None:
    """Free a parsed resource type once mapped, with the codings table ``_coded`` made for it."""
    con.execute(f"DROP TABLE {parsed}; DROP TABLE {parsed}_multi")


def _append(con: duckdb.DuckDBPyConnection, table: str, select: str, exists: bool) -> None:
    """Add the rows of ``select`` to the temp table ``table``, creating it from them the first time."""
    con.execute(f"INSERT INTO {table} BY NAME {select}" if exists else f"CREATE TEMP TABLE {table} AS {select}")


def convert(con: duckdb.DuckDBPyConnection, folder: Path) -> FhirExtract:
    """Convert a Bulk Data export into temp tables and views on ``con`` (which must hold ``_source_map``).

    One resource type is parsed at a time and dropped once mapped, so that at most one parsed type, the
    events mapped so far and the CDM tables are in memory at once."""
    files = _files(folder)
    extract = FhirExtract(tables={}, identities=[])
    for resource, paths in files.items():
        if resource not in SUPPORTED:
            extract.unsupported[resource] = sum(sum(1 for _ in p.open()) for p in paths)
    if "Patient" not in files:
        raise InputError(Problem(folder.name, "no Patient.ndjson: every other resource refers to patients"))
    _code_map(con)
    patients = _objects(con, files["Patient"], "Patient", extract)
    _patients(con, patients, extract)
    con.execute(f"DROP TABLE {patients}")
    _encounters(con, files, extract)
    _drugs(con, files, extract)
    _events(con, files, extract)
    _observation_periods(con, extract)
    con.execute("DROP TABLE _fhir_code_map")
    return extract


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


def _encounters(con: duckdb.DuckDBPyConnection, files: dict[str, list[Path]], extract: FhirExtract) -> None:
    """visit_occurrence, numbered by line; ``_fhir_visits``: each encounter id -> its visit, the first when
    several encounters share an id (so that an event referring to it stays one row)."""
    classes = " ".join(f"WHEN {literal(k)} THEN {v}" for k, v in ENCOUNTER_CLASSES.items())
    if "Encounter" in files:
        encounters = _objects(con, files["Encounter"], "Encounter", extract)
        con.execute(f"""
            CREATE TEMP TABLE _omop_visit_occurrence AS
            SELECT r.rowid + 1 AS visit_occurrence_id, id AS fhir_id, person_id,
                   coalesce(CASE class_code {classes} END, 0) AS visit_concept_id,
                   start_date AS visit_start_date, end_date AS visit_end_date,
                   {EHR} AS visit_type_concept_id, class_code AS visit_source_value
            FROM {encounters} r
        """)
        con.execute(f"DROP TABLE {encounters}")
    else:  # an empty visit table, so that other resources can always look visits up
        con.execute("""
            CREATE TEMP TABLE _omop_visit_occurrence (visit_occurrence_id BIGINT, fhir_id VARCHAR, person_id VARCHAR,
                visit_concept_id INTEGER, visit_start_date DATE, visit_end_date DATE, visit_type_concept_id INTEGER,
                visit_source_value VARCHAR)
        """)
    extract.tables["visit_occurrence"] = "_omop_visit_occurrence"
    con.execute("""
        CREATE TEMP TABLE _fhir_visits AS
        SELECT fhir_id, min(visit_occurrence_id) AS visit_occurrence_id FROM _omop_visit_occurrence
        WHERE fhir_id IS NOT NULL GROUP BY fhir_id
    """)


VISIT_JOIN = "LEFT JOIN _fhir_visits v ON v.fhir_id = r.encounter_id"
DRUG_PARTS = ("MedicationRequest", "MedicationAdministration", "MedicationStatement", "Immunization")


def _drugs(con: duckdb.DuckDBPyConnection, files: dict[str, list[Path]], extract: FhirExtract) -> None:
    """drug_exposure; a ``medicationReference`` is resolved through the Medication of that id (the first when
    several share it)."""
    medications = "Medication" in files
    if medications:
        parsed = _objects(con, files["Medication"], "Medication", extract)
        joins, coded = _coded(con, parsed)
        chosen = ", ".join(f"{literal(k)}: {v}" for k, v in coded.items())
        con.execute(f"""
            CREATE TEMP TABLE _fhir_medications AS
            SELECT r.id, arg_min({{{chosen}}}, r.rowid) AS c FROM {parsed} r {joins} GROUP BY r.id
        """)
        _drop_coded(con, parsed)
    created = False
    for part, resource in enumerate(DRUG_PARTS):
        if resource not in files:
            continue
        parsed = _objects(con, files[resource], resource, extract)
        joins, coded = _coded(con, parsed)
        if medications and resource != "Immunization":
            joins += " LEFT JOIN _fhir_medications med ON med.id = r.medication_id"
            pick = {k: f"coalesce({v}, med.c.{k})" for k, v in coded.items()}
        else:
            pick = coded
        select = f"""
            SELECT {_record_id(part)} AS drug_exposure_id, r.person_id,
                   coalesce({pick["concept_id"]}, 0) AS drug_concept_id,
                   r.start_date AS drug_exposure_start_date, r.end_date AS drug_exposure_end_date,
                   {EHR} AS drug_type_concept_id, r.days_supply, v.visit_occurrence_id,
                   {pick["source_value"]} AS drug_source_value,
                   coalesce({pick["source_concept_id"]}, 0) AS drug_source_concept_id
            FROM {parsed} r {joins} {VISIT_JOIN}
        """
        _append(con, "_omop_drug_exposure", select, created)
        created = True
        _drop_coded(con, parsed)
    if medications:
        con.execute("DROP TABLE _fhir_medications")
    if created:
        extract.tables["drug_exposure"] = "_omop_drug_exposure"


# Where an event goes: the domain of its standard concept, else its resource's default table (an Observation:
# measurement when it is one, else observation). The events table holds the table's index in TARGETS.
TARGETS = ("condition_occurrence", "procedure_occurrence", "measurement", "observation")
DOMAIN_TABLES = {
    "Condition": "condition_occurrence",
    "Procedure": "procedure_occurrence",
    "Measurement": "measurement",
    "Observation": "observation",
}
EVENT_PARTS = ("Condition", "Procedure", "Observation")
MEASUREMENT, OBSERVATION = TARGETS.index("measurement"), TARGETS.index("observation")

# Each event table: a view of the events routed to it (column of the table <- column of _fhir_events).
EVENT_SHAPES = {
    "condition_occurrence": """_id AS condition_occurrence_id, person_id, concept_id AS condition_concept_id,
        start_date AS condition_start_date, end_date AS condition_end_date, {ehr} AS condition_type_concept_id,
        visit_occurrence_id, source_value AS condition_source_value,
        source_concept_id AS condition_source_concept_id""",
    "procedure_occurrence": """_id AS procedure_occurrence_id, person_id, concept_id AS procedure_concept_id,
        start_date AS procedure_date, end_date AS procedure_end_date, {ehr} AS procedure_type_concept_id,
        visit_occurrence_id, source_value AS procedure_source_value,
        source_concept_id AS procedure_source_concept_id""",
    "measurement": """_id AS measurement_id, person_id, concept_id AS measurement_concept_id,
        start_date AS measurement_date, {ehr} AS measurement_type_concept_id, value_as_number, unit_concept_id,
        visit_occurrence_id, source_value AS measurement_source_value,
        source_concept_id AS measurement_source_concept_id, unit_source_value,
        value_as_string AS value_source_value""",
    "observation": """_id AS observation_id, person_id, concept_id AS observation_concept_id,
        start_date AS observation_date, {ehr} AS observation_type_concept_id, value_as_number, value_as_string,
        unit_concept_id, visit_occurrence_id, source_value AS observation_source_value,
        source_concept_id AS observation_source_concept_id, unit_source_value""",
}


def _events(con: duckdb.DuckDBPyConnection, files: dict[str, list[Path]], extract: FhirExtract) -> None:
    """Conditions, procedures and observations in one table, ``_fhir_events``, each routed by the domain of its
    concept; each event table is a view of its rows. Events without a date or a patient are counted, not kept."""
    parts = [(part, resource) for part, resource in enumerate(EVENT_PARTS) if resource in files]
    if not parts:
        return
    domains = " ".join(f"WHEN {literal(d)} THEN {TARGETS.index(t)}" for d, t in DOMAIN_TABLES.items())
    con.execute("""
        CREATE TEMP TABLE _fhir_units AS SELECT concept_code AS unit_code, min(concept_id) AS unit_concept_id
        FROM _source_map WHERE vocabulary_id = 'UCUM' GROUP BY 1
    """)
    created = False
    for part, resource in parts:
        parsed = _objects(con, files[resource], resource, extract)
        aside = con.execute(f"SELECT count(*) FROM {parsed} WHERE start_date IS NULL OR person_id IS NULL").fetchone()[
            0
        ]
        if aside:
            extract.without_date_or_patient[resource] += aside
        joins, coded = _coded(con, parsed)
        if resource == "Observation":
            default = f"CASE WHEN r.is_measurement THEN {MEASUREMENT} ELSE {OBSERVATION} END"
            values = "r.value_as_number, r.value_as_string, r.unit_source_value"
            joins += " LEFT JOIN _fhir_units u ON u.unit_code = r.unit_source_value"
            unit = "coalesce(u.unit_concept_id, 0)"
        else:
            default = str(TARGETS.index(DOMAIN_TABLES[resource]))
            values = (
                "NULL::DOUBLE AS value_as_number, NULL::VARCHAR AS value_as_string, NULL::VARCHAR AS unit_source_value"
            )
            unit = "0"
        end = "NULL::DATE" if resource == "Observation" else "r.end_date"
        select = f"""
            SELECT _id, person_id, concept_id, source_value, source_concept_id, start_date,
                   CASE WHEN target IN (0, 1) THEN end_date END AS end_date, visit_occurrence_id,
                   value_as_number, value_as_string, unit_source_value, unit_concept_id, target
            FROM (
                SELECT {_record_id(part)} AS _id, r.person_id, coalesce({coded["concept_id"]}, 0) AS concept_id,
                       {coded["source_value"]} AS source_value,
                       coalesce({coded["source_concept_id"]}, 0) AS source_concept_id,
                       r.start_date, {end} AS end_date, v.visit_occurrence_id, {values}, {unit} AS unit_concept_id,
                       CAST(coalesce(CASE {coded["domain_id"]} {domains} END, {default}) AS UTINYINT) AS target
                FROM {parsed} r {joins} {VISIT_JOIN}
                WHERE r.start_date IS NOT NULL AND r.person_id IS NOT NULL
            )
        """
        _append(con, "_fhir_events", select, created)
        created = True
        _drop_coded(con, parsed)
    con.execute("DROP TABLE _fhir_units")
    for table, shape in EVENT_SHAPES.items():
        con.execute(f"""
            CREATE TEMP VIEW _omop_{table} AS SELECT {shape.format(ehr=EHR)}
            FROM _fhir_events WHERE target = {TARGETS.index(table)}
        """)
        extract.tables[table] = f"_omop_{table}"
        extract.backing[f"_omop_{table}"] = "_fhir_events"


def _observation_periods(con: duckdb.DuckDBPyConnection, extract: FhirExtract) -> None:
    """A FHIR export has no observation period: each patient is observed from first to last recorded date."""
    spans = []
    for table, start, end in (
        ("visit_occurrence", "visit_start_date", "visit_end_date"),
        ("drug_exposure", "drug_exposure_start_date", "drug_exposure_end_date"),
    ):
        if table in extract.tables:
            spans.append(f"SELECT person_id, {start} AS s, coalesce({end}, {start}) AS e FROM {extract.tables[table]}")
    if "_fhir_events" in extract.backing.values():  # the events, in one pass rather than one per event table
        spans.append("SELECT person_id, start_date AS s, coalesce(end_date, start_date) AS e FROM _fhir_events")
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
