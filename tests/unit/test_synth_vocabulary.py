"""The synthetic vocabulary: GiBleed ids reused, local ids otherwise, source codes mapped to standard concepts."""

from __future__ import annotations

import pyarrow.parquet as pq

from hygie import datasets
from hygie.cdm import cdm_schema
from hygie.synth.vocabulary import CODES, LOCAL_CONCEPT_START, all_concepts, vocabulary_tables


def test_standard_ids_come_from_gibleed_or_the_local_range() -> None:
    gibleed = pq.read_table(datasets.get("gibleed").folder / "concept.parquet").to_pydict()
    known = {
        (v, c): i
        for i, v, c in zip(gibleed["concept_id"], gibleed["vocabulary_id"], gibleed["concept_code"], strict=True)
    }
    for concept in all_concepts():
        in_gibleed = known.get((concept.vocabulary, concept.code))
        if concept.concept_id == 756265:  # OMOP CDM Version 5.4.0, used by cdm_source and the loader
            continue
        if in_gibleed is not None:
            assert concept.concept_id == in_gibleed, concept
        else:
            assert concept.concept_id >= LOCAL_CONCEPT_START, concept
    assert CODES["celecoxib"].standard.concept_id == 1118084
    assert CODES["diclofenac"].standard.concept_id == 1124300
    assert CODES["gi_bleed"].standard.concept_id == 192671


def test_concept_ids_are_unique_and_codes_unique_per_vocabulary() -> None:
    concepts = all_concepts()
    assert len({c.concept_id for c in concepts}) == len(concepts)
    assert len({(c.vocabulary, c.code) for c in concepts}) == len(concepts)


def test_every_source_code_maps_to_its_standard_concept() -> None:
    tables = vocabulary_tables()
    rel = tables["concept_relationship"].to_pydict()
    maps_to = {
        (a, b)
        for a, b, r in zip(rel["concept_id_1"], rel["concept_id_2"], rel["relationship_id"], strict=True)
        if r == "Maps to"
    }
    concept = tables["concept"].to_pydict()
    standard = {i for i, s in zip(concept["concept_id"], concept["standard_concept"], strict=True) if s == "S"}
    for code in CODES.values():
        assert (code.source.concept_id, code.standard.concept_id) in maps_to
        assert code.standard.concept_id in standard
    vocabularies = {CODES[k].source.vocabulary for k in ("t2d", "metformin", "creatinine", "endoscopy")}
    assert vocabularies == {"ICD10", "ATC", "LOINC", "CCAM"}


def test_vocabulary_tables_have_the_cdm_schema_and_an_ancestor_for_nsaids() -> None:
    tables = vocabulary_tables()
    cdm = cdm_schema("5.4")
    for name, table in tables.items():
        assert table.schema == cdm[name].arrow_schema(), name
    anc = tables["concept_ancestor"].to_pydict()
    pairs = set(zip(anc["ancestor_concept_id"], anc["descendant_concept_id"], strict=True))
    nsaid_class = next(c.concept_id for c in all_concepts() if c.code == "M01A")
    for drug in ("celecoxib", "diclofenac", "ibuprofen"):
        assert (nsaid_class, CODES[drug].standard.concept_id) in pairs
        assert (CODES[drug].standard.concept_id, CODES[drug].standard.concept_id) in pairs
