"""Concept-set resolution: once per batch of definitions, in the engine, against the release's vocabulary.

Circe semantics (docs/circe-cohort-semantics.md §2.1): an item contributes its concept if it exists in
CONCEPT; with includeDescendants, every valid descendant from CONCEPT_ANCESTOR; with includeMapped, every
source concept that 'Maps to' one of those. Excluded items are built the same way and subtracted.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from hygie.cohorts.circe import CohortExpression

ITEM_SCHEMA = pa.schema(
    [
        ("cohort_key", pa.int64()),
        ("codeset_id", pa.int64()),
        ("concept_id", pa.int64()),
        ("is_excluded", pa.bool_()),
        ("include_descendants", pa.bool_()),
        ("include_mapped", pa.bool_()),
    ]
)


def concept_set_items(expressions: list[CohortExpression]) -> pa.Table:
    """Every concept-set item of a batch, keyed by the definition's position in the batch."""
    rows: dict[str, list[object]] = {name: [] for name in ITEM_SCHEMA.names}
    for key, expression in enumerate(expressions):
        for concept_set in expression.concept_sets:
            for item in concept_set.expression.items:
                rows["cohort_key"].append(key)
                rows["codeset_id"].append(concept_set.id)
                rows["concept_id"].append(item.concept.concept_id)
                rows["is_excluded"].append(item.is_excluded)
                rows["include_descendants"].append(item.include_descendants)
                rows["include_mapped"].append(item.include_mapped)
    return pa.table(rows, schema=ITEM_SCHEMA)


def resolve_sql(items_table: str) -> str:
    """SELECT of the resolved ``(cohort_key, codeset_id, concept_id)`` from the registered items table."""
    return f"""
WITH expanded AS (
  SELECT i.cohort_key, i.codeset_id, i.is_excluded, i.include_mapped, c.concept_id
  FROM {items_table} i JOIN concept c ON c.concept_id = i.concept_id
  UNION
  SELECT i.cohort_key, i.codeset_id, i.is_excluded, i.include_mapped, c.concept_id
  FROM {items_table} i
  JOIN concept_ancestor ca ON ca.ancestor_concept_id = i.concept_id
  JOIN concept c ON c.concept_id = ca.descendant_concept_id AND c.invalid_reason IS NULL
  WHERE i.include_descendants
),
with_mapped AS (
  SELECT cohort_key, codeset_id, is_excluded, concept_id FROM expanded
  UNION
  SELECT e.cohort_key, e.codeset_id, e.is_excluded, cr.concept_id_1 AS concept_id
  FROM expanded e JOIN concept_relationship cr
    ON cr.concept_id_2 = e.concept_id AND cr.relationship_id = 'Maps to' AND cr.invalid_reason IS NULL
  WHERE e.include_mapped
)
SELECT DISTINCT inc.cohort_key, inc.codeset_id, inc.concept_id
FROM with_mapped inc
WHERE NOT inc.is_excluded AND NOT EXISTS (
  SELECT 1 FROM with_mapped exc
  WHERE exc.is_excluded AND exc.cohort_key = inc.cohort_key AND exc.codeset_id = inc.codeset_id
    AND exc.concept_id = inc.concept_id)
"""


def unknown_concepts_sql(items_table: str) -> str:
    """Listed concept ids absent from CONCEPT: they match nothing (Circe semantics) and are reported."""
    return (
        f"SELECT DISTINCT i.cohort_key, i.codeset_id, i.concept_id FROM {items_table} i "
        f"WHERE NOT EXISTS (SELECT 1 FROM concept c WHERE c.concept_id = i.concept_id) "
        f"ORDER BY 1, 2, 3"
    )


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
