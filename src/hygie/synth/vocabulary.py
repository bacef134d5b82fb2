"""The small OMOP vocabulary of the synthetic data, as data.

Every code the generator writes is defined here once: its standard concept (``*_concept_id``) and its source
code (ICD-10, ATC, LOINC, CCAM), which a site mid-ETL carries in ``*_source_value`` only.

Concept ids: the standard concept ids of OHDSI's GiBleed vocabulary (bundled in ``hygie.datasets``) are reused
where GiBleed has the concept (celecoxib 1118084, GI haemorrhage 192671, creatinine 3016723...). Every other
concept gets a local id >= 2,000,000,000, the OMOP range reserved for site-defined concepts, while keeping its
real ``vocabulary_id`` and ``concept_code`` (SNOMED, RxNorm, ICD10, ATC, LOINC, CCAM, UCUM): mapping by
(vocabulary, code) therefore gives the same answer as with a full Athena download.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import pyarrow as pa

from hygie.cdm import cdm_schema

LOCAL_CONCEPT_START = 2_000_000_000
VALID_START, VALID_END = "1970-01-01", "2099-12-31"


class Domain(IntEnum):
    CONDITION = 0
    DRUG = 1
    MEASUREMENT = 2
    PROCEDURE = 3


@dataclass(frozen=True)
class Concept:
    concept_id: int
    name: str
    domain: str
    vocabulary: str
    concept_class: str
    code: str
    standard: str | None  # "S", "C" (classification) or None


@dataclass(frozen=True)
class Code:
    """One clinical code used by the generator: standard concept + source code (+ unit for labs)."""

    key: str
    standard: Concept
    source: Concept  # for LOINC the source concept is the standard one
    unit: Concept | None = None


def _local(n: int) -> int:
    return LOCAL_CONCEPT_START + n


def _c(cid: int, name: str, domain: str, vocab: str, cls: str, code: str, std: str | None = "S") -> Concept:
    return Concept(cid, name, domain, vocab, cls, code, std)


# -- standard concepts ---------------------------------------------------------------------------------
# Local ids: 1xx conditions, 2xx drugs, 3xx measurements and units, 4xx procedures, 5xx source codes,
# 9xx type concepts and classes.
_SNOMED = "Clinical Finding"
_COND = {
    "t2d": _c(_local(101), "Type 2 diabetes mellitus", "Condition", "SNOMED", _SNOMED, "44054006"),
    "hypertension": _c(_local(102), "Hypertensive disorder", "Condition", "SNOMED", _SNOMED, "38341003"),
    "af": _c(313217, "Atrial fibrillation", "Condition", "SNOMED", _SNOMED, "49436004"),
    "ckd": _c(_local(103), "Chronic kidney disease", "Condition", "SNOMED", _SNOMED, "709044004"),
    "breast_cancer": _c(_local(104), "Malignant neoplasm of breast", "Condition", "SNOMED", _SNOMED, "254837009"),
    "prostate_cancer": _c(_local(105), "Malignant tumor of prostate", "Condition", "SNOMED", _SNOMED, "399068003"),
    "lung_cancer": _c(_local(106), "Malignant tumor of lung", "Condition", "SNOMED", _SNOMED, "363358000"),
    "colon_cancer": _c(_local(107), "Malignant tumor of colon", "Condition", "SNOMED", _SNOMED, "363406005"),
    "gi_bleed": _c(192671, "Gastrointestinal hemorrhage", "Condition", "SNOMED", _SNOMED, "74474003"),
    "mi": _c(4329847, "Myocardial infarction", "Condition", "SNOMED", _SNOMED, "22298006"),
    "stroke": _c(381316, "Cerebrovascular accident", "Condition", "SNOMED", _SNOMED, "230690007"),
    "aki": _c(_local(108), "Acute kidney injury", "Condition", "SNOMED", _SNOMED, "14669001"),
}
_ICD10 = {
    "t2d": ("E11.9", "Type 2 diabetes mellitus without complications"),
    "hypertension": ("I10", "Essential (primary) hypertension"),
    "af": ("I48.9", "Atrial fibrillation and atrial flutter, unspecified"),
    "ckd": ("N18.9", "Chronic kidney disease, unspecified"),
    "breast_cancer": ("C50.9", "Malignant neoplasm: Breast, unspecified"),
    "prostate_cancer": ("C61", "Malignant neoplasm of prostate"),
    "lung_cancer": ("C34.9", "Malignant neoplasm: Bronchus or lung, unspecified"),
    "colon_cancer": ("C18.9", "Malignant neoplasm: Colon, unspecified"),
    "gi_bleed": ("K92.2", "Gastrointestinal haemorrhage, unspecified"),
    "mi": ("I21.9", "Acute myocardial infarction, unspecified"),
    "stroke": ("I64", "Stroke, not specified as haemorrhage or infarction"),
    "aki": ("N17.9", "Acute renal failure, unspecified"),
}
_DRUG = {
    "metformin": (_local(201), "metformin", "6809", "A10BA02"),
    "celecoxib": (1118084, "celecoxib", "140587", "M01AH01"),
    "diclofenac": (1124300, "Diclofenac", "3355", "M01AB05"),
    "ibuprofen": (1177480, "Ibuprofen", "5640", "M01AE01"),
    "apixaban": (_local(202), "apixaban", "1364430", "B01AF02"),
    "rivaroxaban": (_local(203), "rivaroxaban", "1114195", "B01AF01"),
    "warfarin": (1310149, "Warfarin", "11289", "B01AA03"),
    "omeprazole": (_local(204), "omeprazole", "7646", "A02BC01"),
    "pantoprazole": (_local(205), "pantoprazole", "40790", "A02BC02"),
    "simvastatin": (1539403, "Simvastatin", "36567", "C10AA01"),
    "atorvastatin": (1545958, "atorvastatin", "83367", "C10AA05"),
    "heparin": (1367571, "heparin", "5224", "B01AB01"),
    "acetaminophen": (1125315, "Acetaminophen", "161", "N02BE01"),
}
_UNITS = {
    "percent": _c(_local(301), "percent", "Unit", "UCUM", "Unit", "%"),
    "umol_l": _c(_local(302), "micromole per liter", "Unit", "UCUM", "Unit", "umol/L"),
    "ratio": _c(_local(303), "ratio", "Unit", "UCUM", "Unit", "{ratio}"),
    "g_dl": _c(_local(304), "gram per deciliter", "Unit", "UCUM", "Unit", "g/dL"),
    "mmol_l": _c(_local(305), "millimole per liter", "Unit", "UCUM", "Unit", "mmol/L"),
}
# key: (concept id, name, LOINC code, unit key)
_LABS = {
    "hba1c": (_local(310), "Hemoglobin A1c/Hemoglobin.total in Blood", "4548-4", "percent"),
    "creatinine": (3016723, "Creatinine serum/plasma", "2160-0", "umol_l"),
    "inr": (_local(311), "INR in Platelet poor plasma by Coagulation assay", "6301-6", "ratio"),
    "hemoglobin": (3000963, "Hemoglobin", "718-7", "g_dl"),
    "potassium": (3023103, "Potassium serum/plasma", "2823-3", "mmol_l"),
    "sodium": (3019550, "Sodium serum/plasma", "2951-2", "mmol_l"),
    "glucose": (3004501, "Glucose lab", "2345-7", "mmol_l"),
}
# key: (SNOMED concept id, name, SNOMED code, CCAM code, CCAM label)
_PROCS = {
    "endoscopy": (
        _local(401),
        "Upper gastrointestinal endoscopy",
        "1919006",
        "HEQE002",
        "Endoscopie oeso-gastro-duodenale",
    ),
    "ecg": (
        4163951,
        "Electrocardiographic procedure",
        "29303009",
        "DEQP003",
        "Electrocardiographie sur au moins 12 derivations",
    ),
    "chemotherapy": (_local(403), "Chemotherapy", "367336001", "ZZLF900", "Seance de chimiotherapie"),
}


def _build_codes() -> dict[str, Code]:
    codes: dict[str, Code] = {}
    n = 501
    for key, std in _COND.items():
        icd, label = _ICD10[key]
        codes[key] = Code(key, std, _c(_local(n), label, "Condition", "ICD10", "ICD10 code", icd, None))
        n += 1
    for key, (cid, name, rxcode, atc) in _DRUG.items():
        std = _c(cid, name, "Drug", "RxNorm", "Ingredient", rxcode)
        codes[key] = Code(key, std, _c(_local(n), name, "Drug", "ATC", "ATC 5th", atc, "C"))
        n += 1
    for key, (cid, name, loinc, unit) in _LABS.items():
        std = _c(cid, name, "Measurement", "LOINC", "Lab Test", loinc)
        codes[key] = Code(key, std, std, _UNITS[unit])
    for key, (cid, name, snomed, ccam, label) in _PROCS.items():
        std = _c(cid, name, "Procedure", "SNOMED", "Procedure", snomed)
        codes[key] = Code(key, std, _c(_local(n), label, "Procedure", "CCAM", "Procedure", ccam, None))
        n += 1
    return codes


CODES: dict[str, Code] = _build_codes()
# Integer codes used inside the generator's arrays: position in this tuple.
CODE_KEYS: tuple[str, ...] = tuple(CODES)
CODE_INDEX: dict[str, int] = {k: i for i, k in enumerate(CODE_KEYS)}

VISIT = {
    "OP": _c(9202, "Outpatient Visit", "Visit", "Visit", "Visit", "OP"),
    "IP": _c(9201, "Inpatient Visit", "Visit", "Visit", "Visit", "IP"),
    "ER": _c(9203, "Emergency Room Visit", "Visit", "Visit", "Visit", "ER"),
}
GENDER = {
    "M": _c(8507, "MALE", "Gender", "Gender", "Gender", "M"),
    "F": _c(8532, "FEMALE", "Gender", "Gender", "Gender", "F"),
}
TYPE_EHR = _c(_local(901), "EHR", "Type Concept", "Type Concept", "Type Concept", "OMOP4976890")
TYPE_PRESCRIPTION = _c(_local(902), "EHR prescription", "Type Concept", "Type Concept", "Type Concept", "OMOP4976891")
TYPE_ADMINISTRATION = _c(
    _local(903), "EHR administration record", "Type Concept", "Type Concept", "Type Concept", "OMOP4976892"
)
TYPE_PERIOD = _c(_local(904), "EHR encounter record", "Type Concept", "Type Concept", "Type Concept", "OMOP4976893")
_TYPES = (TYPE_EHR, TYPE_PRESCRIPTION, TYPE_ADMINISTRATION, TYPE_PERIOD)
# The one OMOP id kept although GiBleed lacks it: cdm_source.cdm_version_concept_id, which hygie's loader
# also uses for CDM 5.4 (``ingest.cdm_load.CDM_V54_CONCEPT_ID``).
CDM_VERSION = _c(756265, "OMOP CDM Version 5.4.0", "Metadata", "CDM", "CDM", "CDM v5.4.0")

# Classification concepts used as ancestors, so that a cohort can say "any NSAID" or "any cancer".
_CLASSES: dict[str, tuple[Concept, tuple[str, ...]]] = {
    "nsaid": (
        _c(
            _local(911),
            "ANTIINFLAMMATORY AND ANTIRHEUMATIC PRODUCTS, NON-STEROIDS",
            "Drug",
            "ATC",
            "ATC 3rd",
            "M01A",
            "C",
        ),
        ("celecoxib", "diclofenac", "ibuprofen"),
    ),
    "anticoagulant": (
        _c(_local(912), "ANTITHROMBOTIC AGENTS", "Drug", "ATC", "ATC 3rd", "B01A", "C"),
        ("apixaban", "rivaroxaban", "warfarin", "heparin"),
    ),
    "ppi": (
        _c(_local(913), "Proton pump inhibitors", "Drug", "ATC", "ATC 4th", "A02BC", "C"),
        ("omeprazole", "pantoprazole"),
    ),
    "statin": (
        _c(_local(914), "HMG CoA reductase inhibitors", "Drug", "ATC", "ATC 4th", "C10AA", "C"),
        ("simvastatin", "atorvastatin"),
    ),
    "cancer": (
        _c(_local(915), "Malignant neoplastic disease", "Condition", "SNOMED", _SNOMED, "363346000"),
        ("breast_cancer", "prostate_cancer", "lung_cancer", "colon_cancer"),
    ),
}
CLASS_CONCEPTS: dict[str, int] = {k: c.concept_id for k, (c, _members) in _CLASSES.items()}

_VOCABULARIES = {
    "SNOMED": "Systematic Nomenclature of Medicine - Clinical Terms (IHTSDO)",
    "RxNorm": "RxNorm (NLM)",
    "LOINC": "Logical Observation Identifiers Names and Codes (Regenstrief Institute)",
    "ICD10": "International Classification of Diseases, Tenth Revision (WHO)",
    "ATC": "WHO Anatomic Therapeutic Chemical Classification",
    "CCAM": "Classification Commune des Actes Medicaux (France)",
    "UCUM": "Unified Code for Units of Measure (Regenstrief Institute)",
    "Visit": "OMOP Visit",
    "Gender": "OMOP Gender",
    "Type Concept": "OMOP Type Concept",
    "CDM": "OMOP Common DataModel",
}


def all_concepts() -> list[Concept]:
    """Every concept of the vocabulary, each once."""
    seen: dict[int, Concept] = {}
    for code in CODES.values():
        for c in (code.standard, code.source, code.unit):
            if c is not None:
                seen.setdefault(c.concept_id, c)
    for c in (*VISIT.values(), *GENDER.values(), *_TYPES, CDM_VERSION, *(c for c, _m in _CLASSES.values())):
        seen.setdefault(c.concept_id, c)
    return sorted(seen.values(), key=lambda c: c.concept_id)


def _table(name: str, rows: dict[str, list]) -> pa.Table:
    schema = cdm_schema("5.4")[name].arrow_schema()
    n = len(next(iter(rows.values())))
    arrays = [
        pa.array(np.array(rows[f.name], dtype="datetime64[D]"))
        if f.type == pa.date32() and f.name in rows
        else pa.array(rows.get(f.name, [None] * n), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


LOCAL_VISIT_VOCABULARY = "FR_VISIT"  # source_vocabulary_id of the hospitals' own visit codes


def vocabulary_tables() -> dict[str, pa.Table]:
    """The vocabulary as CDM 5.4 tables: concept, concept_relationship, concept_ancestor, vocabulary, domain,
    concept_class, relationship, and source_to_concept_map for the hospitals' local visit codes."""
    # numpy dates, not datetime.date: converting Python dates makes pyarrow import pandas (seconds at start-up).
    start, end = np.datetime64(VALID_START, "D"), np.datetime64(VALID_END, "D")
    concepts = all_concepts()
    concept = _table(
        "concept",
        {
            "concept_id": [c.concept_id for c in concepts],
            "concept_name": [c.name for c in concepts],
            "domain_id": [c.domain for c in concepts],
            "vocabulary_id": [c.vocabulary for c in concepts],
            "concept_class_id": [c.concept_class for c in concepts],
            "standard_concept": [c.standard for c in concepts],
            "concept_code": [c.code for c in concepts],
            "valid_start_date": [start] * len(concepts),
            "valid_end_date": [end] * len(concepts),
        },
    )
    rel: list[tuple[int, int, str]] = []
    for code in CODES.values():
        s, t = code.source.concept_id, code.standard.concept_id
        rel.append((s, t, "Maps to"))
        rel.append((t, s, "Mapped from"))
        if s != t:  # a standard concept also maps to itself
            rel.append((t, t, "Maps to"))
            rel.append((t, t, "Mapped from"))
    for cls, members in _CLASSES.values():
        for m in members:
            rel.append((CODES[m].standard.concept_id, cls.concept_id, "Is a"))
            rel.append((cls.concept_id, CODES[m].standard.concept_id, "Subsumes"))
    concept_relationship = _table(
        "concept_relationship",
        {
            "concept_id_1": [r[0] for r in rel],
            "concept_id_2": [r[1] for r in rel],
            "relationship_id": [r[2] for r in rel],
            "valid_start_date": [start] * len(rel),
            "valid_end_date": [end] * len(rel),
        },
    )
    anc: list[tuple[int, int, int]] = [(c.concept_id, c.concept_id, 0) for c in concepts if c.standard in ("S", "C")]
    for cls, members in _CLASSES.values():
        anc.extend((cls.concept_id, CODES[m].standard.concept_id, 1) for m in members)
    concept_ancestor = _table(
        "concept_ancestor",
        {
            "ancestor_concept_id": [a[0] for a in anc],
            "descendant_concept_id": [a[1] for a in anc],
            "min_levels_of_separation": [a[2] for a in anc],
            "max_levels_of_separation": [a[2] for a in anc],
        },
    )
    # Metadata concepts of the vocabulary/domain/class tables: 0 (no concept), as OMOP allows.
    vocab_ids = sorted(_VOCABULARIES)
    vocabulary = _table(
        "vocabulary",
        {
            "vocabulary_id": vocab_ids,
            "vocabulary_name": [_VOCABULARIES[v] for v in vocab_ids],
            "vocabulary_reference": ["hygie synthetic subset"] * len(vocab_ids),
            "vocabulary_version": ["hygie-synth 1"] * len(vocab_ids),
            "vocabulary_concept_id": [0] * len(vocab_ids),
        },
    )
    domains = sorted({c.domain for c in concepts})
    domain = _table(
        "domain",
        {"domain_id": domains, "domain_name": domains, "domain_concept_id": [0] * len(domains)},
    )
    classes = sorted({c.concept_class for c in concepts})
    concept_class = _table(
        "concept_class",
        {"concept_class_id": classes, "concept_class_name": classes, "concept_class_concept_id": [0] * len(classes)},
    )
    rels = [
        ("Maps to", "Non-standard to Standard map (OMOP)", "0", "0", "Mapped from"),
        ("Mapped from", "Standard to Non-standard map (OMOP)", "0", "0", "Maps to"),
        ("Is a", "Is a", "1", "0", "Subsumes"),
        ("Subsumes", "Subsumes", "1", "1", "Is a"),
    ]
    relationship = _table(
        "relationship",
        {
            "relationship_id": [r[0] for r in rels],
            "relationship_name": [r[1] for r in rels],
            "is_hierarchical": [r[2] for r in rels],
            "defines_ancestry": [r[3] for r in rels],
            "reverse_relationship_id": [r[4] for r in rels],
            "relationship_concept_id": [0] * len(rels),
        },
    )
    # The hospitals' own visit codes (consultation, hospitalisation, urgences), mapped as sites map local codes.
    local_visits = [("CONS", "Consultation", "OP"), ("HOSP", "Hospitalisation", "IP"), ("URG", "Urgences", "ER")]
    source_to_concept_map = _table(
        "source_to_concept_map",
        {
            "source_code": [code for code, _, _ in local_visits],
            "source_concept_id": [0] * len(local_visits),
            "source_vocabulary_id": [LOCAL_VISIT_VOCABULARY] * len(local_visits),
            "source_code_description": [name for _, name, _ in local_visits],
            "target_concept_id": [VISIT[target].concept_id for _, _, target in local_visits],
            "target_vocabulary_id": ["Visit"] * len(local_visits),
            "valid_start_date": [start] * len(local_visits),
            "valid_end_date": [end] * len(local_visits),
        },
    )
    return {
        "concept": concept,
        "concept_relationship": concept_relationship,
        "source_to_concept_map": source_to_concept_map,
        "concept_ancestor": concept_ancestor,
        "vocabulary": vocabulary,
        "domain": domain,
        "concept_class": concept_class,
        "relationship": relationship,
    }
