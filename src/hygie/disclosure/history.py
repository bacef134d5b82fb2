"""What a project has already released: the memory the differencing and cross-output margin rules work against.

A released table is kept as it left (masked cells as null, rounded counts rounded): the key values of each row
and its released counts, with the table's key columns and margins. Nothing unreleased is stored, so the history
is no more sensitive than the outputs themselves.

``ReleasedOutputs`` is the interface (the governance store will implement it); ``ReleasedHistory`` is an
in-memory one and ``FolderHistory`` a file-backed one (one JSON file per released table, under
``<folder>/<output id>/<table>.json``, e.g. ``HYGIE_HOME/projects/<id>/released/``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hygie.analyses.base import ResultTable
from hygie.errors import ConflictError, InputError, Problem

FORMAT = "hygie-released-table/1"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

Label = tuple[tuple[str, str], ...]  # (key column, value as text), sorted by column: one statistic's identity


@dataclass(frozen=True)
class ReleasedTable:
    """One table as it was released in output ``output``."""

    output: str
    name: str
    keys: tuple[str, ...]
    counts: tuple[str, ...]
    margins: Mapping[str, str] = field(default_factory=dict)
    rows: tuple[tuple[Label, Mapping[str, int | None]], ...] = ()  # (labels, released counts; None = masked)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "output": self.output,
            "name": self.name,
            "keys": list(self.keys),
            "counts": list(self.counts),
            "margins": dict(self.margins),
            "rows": [{"labels": dict(labels), "counts": dict(counts)} for labels, counts in self.rows],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str) -> ReleasedTable:
        if data.get("format") != FORMAT:
            raise InputError(Problem(source, f"not a released table (format {data.get('format')!r})"))
        try:
            rows = tuple(
                (tuple(sorted((str(k), str(v)) for k, v in r["labels"].items())), dict(r["counts"]))
                for r in data["rows"]
            )
            return cls(
                output=str(data["output"]),
                name=str(data["name"]),
                keys=tuple(data["keys"]),
                counts=tuple(data["counts"]),
                margins=dict(data.get("margins", {})),
                rows=rows,
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise InputError(Problem(source, f"released table is malformed ({e!s})")) from None


def label_text(value: Any) -> str:
    """A key value as text, the same way for pyarrow values and JSON: how statistics are matched."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def key_columns(table: ResultTable) -> tuple[str, ...]:
    """The columns that identify a row of ``table``: declared, or every column neither a count nor derived."""
    if table.structure.keys:
        return tuple(table.structure.keys)
    measured = set(table.counts) | {d for derived in table.counts.values() for d in derived}
    return tuple(c for c in table.rows.column_names if c not in measured)


def released_table(output: str, table: ResultTable) -> ReleasedTable:
    """How a table that left in ``output`` is remembered (``table`` must be the released, masked one)."""
    keys = key_columns(table)
    counts = tuple(table.counts)
    key_values = {k: table.rows.column(k).to_pylist() for k in keys}
    count_values = {c: table.rows.column(c).to_pylist() for c in counts}
    rows = []
    for i in range(table.rows.num_rows):
        labels = tuple(sorted((k, label_text(key_values[k][i])) for k in keys))
        rows.append((labels, {c: _count(count_values[c][i]) for c in counts}))
    return ReleasedTable(output, table.name, keys, counts, dict(table.structure.margins), tuple(rows))


def _count(value: Any) -> int | None:
    return None if value is None else int(value)


class ReleasedOutputs(Protocol):
    """The tables a project has released so far, by table name, oldest first."""

    def released(self, name: str) -> Sequence[ReleasedTable]: ...


@dataclass(frozen=True)
class ReleasedHistory:
    """An in-memory history (pure): what the rules see, and what tests build."""

    tables: tuple[ReleasedTable, ...] = ()

    def released(self, name: str) -> Sequence[ReleasedTable]:
        return [t for t in self.tables if t.name == name]

    def with_output(self, output: str, tables: Iterable[ResultTable]) -> ReleasedHistory:
        """This history once ``tables`` (as released) have left in ``output``."""
        return ReleasedHistory((*self.tables, *(released_table(output, t) for t in tables)))


class FolderHistory:
    """A history kept as JSON files under ``folder`` (one sub-folder per released output, never rewritten)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def released(self, name: str) -> Sequence[ReleasedTable]:
        if not self.folder.is_dir():
            return []
        found = []
        for path in sorted(self.folder.glob(f"*/{name}.json")):  # every released output; order does not matter
            if path.parent.name.startswith("."):
                continue  # an output being recorded
            where = str(path.relative_to(self.folder))
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as e:
                raise InputError(Problem(where, f"unreadable released table: {e}")) from None
            found.append(ReleasedTable.from_json(data, where))
        return found

    def record(self, output: str, tables: Sequence[ResultTable]) -> Path:
        """Remember ``tables`` (as released) under output ``output``; an output is recorded once, never changed."""
        if not _SAFE_NAME.fullmatch(output):
            raise InputError(Problem(output, "an output id is letters, digits, '.', '_' and '-' only"))
        target = self.folder / output
        if target.exists():
            raise ConflictError(f"output {output!r} is already recorded as released; released outputs never change")
        self.folder.mkdir(parents=True, exist_ok=True)
        staging = self.folder / f".{output}.partial"
        if staging.exists():
            shutil.rmtree(staging)  # left by an interrupted record: it never became visible
        staging.mkdir()
        for table in tables:
            if not _SAFE_NAME.fullmatch(table.name):
                raise InputError(Problem(table.name, "a table name is letters, digits, '.', '_' and '-' only"))
            path = staging / f"{table.name}.json"
            path.write_text(json.dumps(released_table(output, table).to_json()) + "\n", encoding="utf-8")
        os.replace(staging, target)  # all tables of the output appear at once
        return target
