"""Disclosure control: the one step every result of a non-synthetic release passes before it leaves the engine.

Entry point: ``apply_policy(tables, policy)``. The policy object (``DisclosurePolicy``) is the only place the
rules live; the study runner, the job runner and the output checkers all go through it. For each table, in order:

1. primary suppression: counts in the masked range (1..max_masked, and 0 when zeros are treated as small);
2. differencing: a count within 1..max_masked of the same statistic already released in the project (``history``)
   or earlier in this call is masked;
3. secondary suppression over the table's declared margins, and against earlier outputs of the same table;
4. rounding of every visible count (policy), derived columns recomputed (``TableStructure.recompute``) or masked;
5. every column derived from a masked count is masked with it.

Each masked cell has a reason, reported as ``Flag``s counted per table, column and rule (never a value).
Semantics, guarantees and limits: ``docs/disclosure.md``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from hygie.analyses.base import ResultTable
from hygie.disclosure.history import (
    FolderHistory,
    ReleasedHistory,
    ReleasedOutputs,
    ReleasedTable,
    key_columns,
    label_text,
    released_table,
)
from hygie.disclosure.policy import PROFILES, DisclosurePolicy, exempt_reason
from hygie.disclosure.rules import differencing, primary, rounded
from hygie.disclosure.secondary import MISSING, PROTECTED, CountColumn, ReleasedColumn, suppress

__all__ = [
    "PROFILES",
    "DisclosureOutcome",
    "DisclosurePolicy",
    "Flag",
    "FolderHistory",
    "ReleasedHistory",
    "ReleasedOutputs",
    "ReleasedTable",
    "apply_policy",
    "exempt_reason",
    "released_table",
]

THIS_CALL = "(this output)"  # the output id of tables decided earlier in the same call


@dataclass(frozen=True)
class Flag:
    """Why cells were masked or changed: for the output checker, never containing a masked value.

    ``rule``: "primary", "secondary", "differencing", "rounding" (counts rounded; ``cells`` counts them) or
    "unprotectable" (a disclosure earlier outputs make possible whatever this table masks).
    """

    table: str
    column: str
    rule: str
    cells: int
    detail: str = ""


@dataclass
class DisclosureOutcome:
    tables: list[ResultTable]
    flags: list[Flag] = field(default_factory=list)
    policy: dict[str, Any] = field(default_factory=dict)  # ``DisclosurePolicy.describe()``, for the manifest


def apply_policy(
    tables: Sequence[ResultTable],
    policy: DisclosurePolicy | None = None,
    *,
    history: ReleasedOutputs | None = None,
    aliases: Mapping[str, Mapping[str, str]] | None = None,
) -> DisclosureOutcome:
    """The tables as they may be released, and why cells were masked.

    ``history``: what the project released before (differencing, cross-output margins); tables earlier in
    ``tables`` count as released for later ones. ``aliases``: label column -> {value: value of the population it
    overlaps}, for the differencing rule (a cohort and its twin with one person less).
    """
    policy = policy or DisclosurePolicy()
    aliases = aliases or {}
    outcome = DisclosureOutcome(tables=[], policy=policy.describe())
    this_call = ReleasedHistory()
    for table in tables:
        earlier = [*(history.released(table.name) if history is not None else ()), *this_call.released(table.name)]
        released, flags = _control(table, policy, earlier, aliases)
        outcome.tables.append(released)
        outcome.flags.extend(flags)
        this_call = this_call.with_output(THIS_CALL, [released])
    return outcome


def _control(
    table: ResultTable,
    policy: DisclosurePolicy,
    earlier: Sequence[ReleasedTable],
    aliases: Mapping[str, Mapping[str, str]],
) -> tuple[ResultTable, list[Flag]]:
    keys = key_columns(table)
    unknown = [m for m in table.structure.margins if m not in keys]
    if unknown:
        raise ValueError(f"table {table.name!r}: margin column(s) {', '.join(unknown)} must be key columns")
    key_values = [table.rows.column(k).to_pylist() for k in keys]
    labels = [
        tuple(sorted((k, label_text(v[i])) for k, v in zip(keys, key_values, strict=True)))
        for i in range(table.rows.num_rows)
    ]
    flags: list[Flag] = []
    columns: dict[str, CountColumn] = {}
    for count in table.counts:
        values = [_whole(v) for v in table.rows.column(count).to_pylist()]
        column = CountColumn(labels, values, primary(values, policy))
        if policy.differencing:
            differencing(column, count, earlier, policy, aliases)
        if policy.secondary:
            released = [
                ReleasedColumn(
                    [labels for labels, _ in t.rows], [counts.get(count) for _, counts in t.rows], dict(t.margins)
                )
                for t in earlier
                if count in t.counts
            ]
            unprotectable = suppress(
                column, table.structure.margins, released, policy.smallest_masked, policy.max_masked
            )
            if unprotectable:
                flags.append(Flag(table.name, count, "unprotectable", unprotectable, "fixed by earlier outputs alone"))
        columns[count] = column
    rows = table.rows
    for count, column in columns.items():
        derived = table.counts[count]
        masked = [r is not None for r in column.reasons]
        for rule, cells in sorted(Counter(r for r in column.reasons if r in PROTECTED).items()):
            detail = f"masked with it: {', '.join(derived)}" if derived else ""
            flags.append(Flag(table.name, count, rule, cells, detail))
        shown = [
            None if m or v is None else rounded(v, policy.rounding) for v, m in zip(column.values, masked, strict=True)
        ]
        rows = _set(rows, count, pa.array(shown, type=rows.schema.field(count).type))
        if policy.rounding != "none":
            visible = sum(1 for v in shown if v is not None)
            how = "recomputed from rounded counts" if table.structure.recompute else "masked (no recompute declared)"
            detail = f"{policy.rounding}; derived columns {how}" if derived else policy.rounding
            flags.append(Flag(table.name, count, "rounding", visible, detail))
    if policy.rounding != "none" and table.structure.recompute is not None:
        rows = _recomputed(table, rows)
    for count, column in columns.items():
        hide_all = policy.rounding != "none" and table.structure.recompute is None
        mask = pa.array([hide_all or (r is not None and r != MISSING) for r in column.reasons], type=pa.bool_())
        for derived in table.counts[count]:
            field_ = rows.schema.field(derived)
            rows = _set(rows, derived, pc.if_else(mask, pa.scalar(None, field_.type), rows.column(derived)))
    return replace(table, rows=rows), flags


def _whole(value: Any) -> int | None:
    """A count as a whole number (NaN and null are no count)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return int(value)


def _set(rows: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    index = rows.schema.get_field_index(name)
    return rows.set_column(index, rows.schema.field(index), values)


def _recomputed(table: ResultTable, rows: pa.Table) -> pa.Table:
    """The table's own recomputation of derived columns from the released counts, checked for shape."""
    assert table.structure.recompute is not None
    result = table.structure.recompute(rows)
    if result.num_rows != rows.num_rows or result.schema != rows.schema:
        raise ValueError(f"table {table.name!r}: recompute must return the same rows and columns")
    for count in table.counts:  # counts are what we decided, whatever recompute did to them
        result = _set(result, count, rows.column(count))
    return result
