"""Concept-set resolution: once per batch of definitions, against the release's vocabulary.

Circe semantics (docs/circe-cohort-semantics.md §2.1): an item contributes its concept if it exists in
CONCEPT; with includeDescendants, every valid descendant from CONCEPT_ANCESTOR; with includeMapped, every
source concept that 'Maps to' one of those. Excluded items are built the same way and subtracted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from hygie.cohorts.circe import CohortExpression


@dataclass(frozen=True)
class Item:
    cohort_key: int
    codeset_id: int
    concept_id: int
    is_excluded: bool
    include_descendants: bool
    include_mapped: bool


def concept_set_items(expressions: Sequence[CohortExpression]) -> list[Item]:
    """Every concept-set item of a batch, keyed by the definition's position in the batch."""
    return [
        Item(key, concept_set.id, item.concept.concept_id, item.is_excluded, item.include_descendants,
             item.include_mapped)
        for key, expression in enumerate(expressions)
        for concept_set in expression.concept_sets
        for item in concept_set.expression.items
    ]  # fmt: skip


# Concept-set resolution runs as a few lookups with the concept ids written into the SQL, so that the engine
# filters the vocabulary while reading it (Parquet filter pushdown) instead of joining whole vocabulary tables;
# the set algebra (descendants, mapped codes, exclusions) is then done here, on ids. Beyond this many ids a
# lookup reads them from a registered table instead (a very long literal list costs more to plan than to join).
INLINE_IDS = 2000


def id_filter(column: str, ids: Sequence[int], table: str | None) -> str:
    """SQL: ``column`` is one of ``ids`` (a literal list), or of the ids in ``table`` (column ``concept_id``)."""
    if table is not None:
        return f"{column} IN (SELECT concept_id FROM {table})"
    if not ids:
        return "FALSE"
    return f"{column} IN ({', '.join(str(int(i)) for i in sorted(set(ids)))})"


def needs_table(ids: Sequence[int]) -> bool:
    return len(set(ids)) > INLINE_IDS


def ids_table(ids: Sequence[int]) -> pa.Table:
    return pa.table({"concept_id": pa.array(sorted(set(ids)), pa.int64())})


def descendants_sql(ancestor_filter: str) -> str:
    """SELECT of ``(ancestor, descendant)`` pairs of CONCEPT_ANCESTOR for the ancestors ``ancestor_filter``
    selects (on ``ancestor_concept_id``)."""
    return (
        "SELECT CAST(ancestor_concept_id AS BIGINT) AS ancestor, CAST(descendant_concept_id AS BIGINT) AS descendant "
        f"FROM concept_ancestor WHERE {ancestor_filter}"
    )


def concepts_sql(concept_filter: str) -> str:
    """SELECT of ``(concept_id, valid)`` from CONCEPT for the concepts ``concept_filter`` selects."""
    return (
        "SELECT CAST(concept_id AS BIGINT) AS concept_id, invalid_reason IS NULL AS valid "
        f"FROM concept WHERE {concept_filter}"
    )


def maps_to_sql(target_filter: str) -> str:
    """SELECT of valid 'Maps to' pairs ``(source, target)`` for the targets ``target_filter`` selects (on
    ``concept_id_2``)."""
    return (
        "SELECT CAST(concept_id_1 AS BIGINT) AS source, CAST(concept_id_2 AS BIGINT) AS target "
        "FROM concept_relationship WHERE relationship_id = 'Maps to' AND invalid_reason IS NULL "
        f"AND {target_filter}"
    )


def expand(item: Item, descendants: Mapping[int, set[int]], concepts: Mapping[int, bool]) -> set[int]:
    """The item's concept if it exists, with its valid descendants if it asks for them (not yet mapped codes)."""
    found = {item.concept_id} if item.concept_id in concepts else set()
    if item.include_descendants:
        found |= {d for d in descendants.get(item.concept_id, ()) if concepts.get(d, False)}
    return found


def resolve(
    items: Sequence[Item],
    descendants: Mapping[int, set[int]],
    concepts: Mapping[int, bool],
    mapped: Mapping[int, set[int]],
) -> pa.Table:
    """The resolved ``(cohort_key, codeset_id, concept_id)`` (Circe semantics, module docstring) from the
    lookups: ``descendants`` by ancestor (CONCEPT_ANCESTOR), ``concepts`` (id -> valid) for every id listed or
    found as a descendant, ``mapped`` source concepts by target ('Maps to', valid)."""
    included: dict[tuple[int, int], set[int]] = {}
    excluded: dict[tuple[int, int], set[int]] = {}
    for item in items:
        found = expand(item, descendants, concepts)
        if item.include_mapped:
            found |= {s for c in found for s in mapped.get(c, ()) if s is not None}
        key = (item.cohort_key, item.codeset_id)
        (excluded if item.is_excluded else included).setdefault(key, set()).update(found)
    rows = sorted(
        (key, codeset, concept)
        for (key, codeset), ids in included.items()
        for concept in ids - excluded.get((key, codeset), set())
    )
    return pa.table(
        {
            "cohort_key": pa.array([r[0] for r in rows], pa.int64()),
            "codeset_id": pa.array([r[1] for r in rows], pa.int64()),
            "concept_id": pa.array([r[2] for r in rows], pa.int64()),
        }
    )


def unknown_rows(items: Sequence[Item], concepts: Mapping[int, bool]) -> list[tuple[int, int, int]]:
    """Listed ``(cohort_key, codeset_id, concept_id)`` absent from CONCEPT: they match nothing (Circe
    semantics) and are reported."""
    return sorted({(i.cohort_key, i.codeset_id, i.concept_id) for i in items if i.concept_id not in concepts})


@dataclass(frozen=True)
class UnknownConcepts:
    concept_set_id: int
    concept_set_name: str
    concept_ids: tuple[int, ...]

    def message(self) -> str:
        ids = ", ".join(map(str, self.concept_ids))
        return (
            f"concept set {self.concept_set_id} ({self.concept_set_name!r}): concept id(s) {ids} are not in the "
            f"release's vocabulary and match nothing"
        )


def unknown_concepts(expression: CohortExpression, rows: list[tuple[int, int]]) -> list[UnknownConcepts]:
    """Group ``(codeset_id, concept_id)`` rows by concept set, with the set's name."""
    names = {cs.id: cs.name for cs in expression.concept_sets}
    by_set: dict[int, list[int]] = {}
    for codeset_id, concept_id in rows:
        by_set.setdefault(codeset_id, []).append(concept_id)
    return [UnknownConcepts(cid, names.get(cid, ""), tuple(sorted(ids))) for cid, ids in sorted(by_set.items())]
