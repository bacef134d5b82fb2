"""Installing an Athena vocabulary, and mapping source codes (ICD-10, ATC...) to standard concepts."""

from __future__ import annotations

import pytest

from hygie.engine.duckdb import DuckDBEngine
from hygie.errors import ConflictError, InputError
from hygie.ingest.vocabulary import create_source_maps, install_vocabulary, unmapped_codes, vocabulary_store
from tests.cdm_files import write_cdm

HEADER = (
    "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\tconcept_code"
    "\tvalid_start_date\tvalid_end_date\tinvalid_reason\n"
)
CONCEPT = HEADER + "".join(
    "\t".join(row) + "\n"
    for row in [
        ("192671", "Gastrointestinal hemorrhage", "Condition", "SNOMED", "Clinical Finding", "S", "74474003"),
        ("2000000001", "Gastrointestinal haemorrhage, unspecified", "Condition", "ICD10", "ICD10 code", "", "K92.2"),
        ("1118084", "celecoxib", "Drug", "RxNorm", "Ingredient", "S", "140587"),
        ("2000000002", "celecoxib", "Drug", "ATC", "ATC 5th", "C", "M01AH01"),
        ("2000000003", "retired code", "Condition", "ICD10", "ICD10 code", "", "Z99.9"),
    ]
).replace("\n", "\t19700101\t20991231\t\n")  # validity dates, no invalid_reason
RELATIONSHIP = (
    "concept_id_1\tconcept_id_2\trelationship_id\tvalid_start_date\tvalid_end_date\tinvalid_reason\n"
    "2000000001\t192671\tMaps to\t19700101\t20991231\t\n"
    "2000000002\t1118084\tMaps to\t19700101\t20991231\t\n"
    "2000000003\t192671\tMaps to\t19700101\t20991231\tD\n"
)


@pytest.fixture
def athena(tmp_path):
    return write_cdm(tmp_path / "athena", {"CONCEPT.csv": CONCEPT, "CONCEPT_RELATIONSHIP.csv": RELATIONSHIP})


def test_install_is_immutable_and_vocabulary_only(athena, tmp_path, settings):
    v = install_vocabulary(athena, "v1", settings)
    assert v.manifest.tables["concept"].rows == 5
    assert set(v.manifest.tables) == {
        t
        for t in v.manifest.tables
        if t.startswith(("concept", "vocabulary", "domain", "relationship", "source_to", "drug_strength"))
    }
    assert vocabulary_store(settings).names() == ["v1"]
    with pytest.raises(ConflictError):
        install_vocabulary(athena, "v1", settings)
    clinical = write_cdm(tmp_path / "clinical")
    with pytest.raises(InputError, match="'person' is not an OMOP CDM table accepted here"):
        install_vocabulary(clinical, "v2", settings)


def test_source_codes_map_through_valid_maps_to(athena, settings):
    v = install_vocabulary(athena, "v1", settings)
    with DuckDBEngine(v, settings) as engine:
        con = engine.con
        create_source_maps(con, concept="concept", concept_relationship="concept_relationship")
        maps = dict(
            con.execute(
                "SELECT concept_code, concept_id FROM _source_map WHERE vocabulary_id <> 'SNOMED' "
                "AND vocabulary_id <> 'RxNorm'"
            ).fetchall()
        )
        assert maps == {"K92.2": 192671, "M01AH01": 1118084}  # the retired (invalid) map is not used
        con.execute(
            "CREATE TEMP TABLE deposit AS SELECT * FROM (VALUES ('K92.2'), ('K92.2'), ('Z99.9'), "
            "('X00'), (NULL)) t(condition_source_value)"
        )
        assert unmapped_codes(con, "deposit", "condition_source_value", "ICD10") == [("X00", 1), ("Z99.9", 1)]
