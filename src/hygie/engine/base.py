"""The engine interface: what the stages above may ask of any engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import ibis.expr.types as ir
    import pyarrow as pa


class Engine(Protocol):
    name: str

    def tables(self) -> list[str]:
        """Names of the tables the engine exposes (the release's CDM tables)."""
        ...

    def table(self, name: str) -> ir.Table:
        """A portable (Ibis) expression over one table."""
        ...

    def to_arrow(self, expr: ir.Expr) -> pa.Table:
        """Execute an expression and return its result."""
        ...

    def close(self) -> None: ...
