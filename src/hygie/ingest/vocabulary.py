"""Installed vocabularies (Athena downloads) and the mapping of source codes to standard concepts.

A vocabulary is installed once (``hygie vocab load DIR``) as an immutable, versioned set of CDM vocabulary
tables under ``HYGIE_HOME/vocabularies``; deposits are mapped with it and releases carry it.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from hygie.config import Settings
from hygie.ingest.cdm_load import load_cdm
from hygie.releases import Release, ReleaseStore
from hygie.sql import literal

VOCABULARY_GROUPS = frozenset({"vocabulary"})


def vocabulary_store(settings: Settings) -> ReleaseStore:
    return ReleaseStore(settings, root=settings.vocabularies_dir, kind="vocabulary")


def install_vocabulary(folder: Path, name: str, settings: Settings, *, description: str = "") -> Release:
    """Install the vocabulary tables of ``folder`` (Athena format or CDM files) under ``name``."""
    return load_cdm(
        folder,
        name,
        settings,
        synthetic=False,
        description=description,
        origin="vocab load",
        store=vocabulary_store(settings),
        groups=VOCABULARY_GROUPS,
    )


def create_source_maps(
    con: duckdb.DuckDBPyConnection,
    *,
    concept: str,
    concept_relationship: str,
    source_to_concept_map: str | None = None,
) -> str:
    """Create ``_source_map``: (vocabulary_id, concept_code) -> source concept -> its standard concept.

    A code is mapped through the valid "Maps to" relationship of its concept, or to itself when the concept
    is already standard; local codes (a site's own visit codes...) through ``source_to_concept_map``.
    Codes with several valid targets keep them all (OMOP allows one-to-many maps).
    """
    local = (
        f"""
        UNION
        SELECT m.source_vocabulary_id, m.source_code, m.source_concept_id, t.concept_id, t.domain_id
        FROM {source_to_concept_map} m JOIN {concept} t ON t.concept_id = m.target_concept_id
        WHERE m.invalid_reason IS NULL AND t.standard_concept = 'S'
        """
        if source_to_concept_map
        else ""
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _source_map AS
        SELECT s.vocabulary_id, s.concept_code, s.concept_id AS source_concept_id,
               t.concept_id AS concept_id, t.domain_id
        FROM {concept} s
        JOIN {concept_relationship} r
          ON r.concept_id_1 = s.concept_id AND r.relationship_id = 'Maps to' AND r.invalid_reason IS NULL
        JOIN {concept} t ON t.concept_id = r.concept_id_2 AND t.standard_concept = 'S'
        UNION
        SELECT vocabulary_id, concept_code, concept_id, concept_id, domain_id
        FROM {concept} WHERE standard_concept = 'S'
        {local}
        """
    )
    return "_source_map"


def unmapped_codes(con: duckdb.DuckDBPyConnection, table: str, code_column: str, vocabulary_id: str) -> list[tuple]:
    """Codes of ``table.code_column`` (in ``vocabulary_id``) that map to no standard concept, with counts."""
    return con.execute(
        f"""
        SELECT t.{code_column} AS code, count(*) AS rows
        FROM {table} t
        WHERE t.{code_column} IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM _source_map m
            WHERE m.vocabulary_id = {literal(vocabulary_id)} AND m.concept_code = t.{code_column})
        GROUP BY 1 ORDER BY rows DESC, code
        """
    ).fetchall()
