"""Disclosure control: the one step every result of a non-synthetic release passes before it leaves the engine.

Entry point: ``apply_policy(tables, policy)``. The policy object (``DisclosurePolicy``) is the only place the
rules live; the study runner, the job runner and the output checkers all go through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pyarrow as pa
import pyarrow.compute as pc

from hygie.analyses.base import ResultTable


@dataclass(frozen=True)
class DisclosurePolicy:
    """Counts from ``min_count`` to ``max_masked`` are masked, with everything computed from them."""

    min_count: int = 1
    max_masked: int = 10


@dataclass(frozen=True)
class Flag:
    """Why cells were masked: for the output checker, never containing a masked value."""

    table: str
    column: str
    rule: str
    cells: int


@dataclass
class DisclosureOutcome:
    tables: list[ResultTable]
    flags: list[Flag] = field(default_factory=list)


def apply_policy(tables: Sequence[ResultTable], policy: DisclosurePolicy | None = None) -> DisclosureOutcome:
    """Mask small counts and what is derived from them (primary suppression)."""
    policy = policy or DisclosurePolicy()
    outcome = DisclosureOutcome(tables=[])
    for table in tables:
        rows = table.rows
        for count, derived in table.counts.items():
            values = rows.column(count)
            small = pc.fill_null(
                pc.and_(pc.greater_equal(values, policy.min_count), pc.less_equal(values, policy.max_masked)), False
            )
            masked = pc.sum(small).as_py() or 0
            if not masked:
                continue
            outcome.flags.append(Flag(table.name, count, f"count {policy.min_count}-{policy.max_masked}", masked))
            for column in (count, *derived):
                index = rows.schema.get_field_index(column)
                masked_column = pc.if_else(small, pa.scalar(None, rows.schema.field(index).type), rows.column(index))
                rows = rows.set_column(index, rows.schema.field(index), masked_column)
        outcome.tables.append(replace(table, rows=rows))
    return outcome
