"""Typed view of the CDM schema files in ``data/``.

The CSV files are the single definition of the CDM: table creation, load validation, type casting and the
generated reference documentation are all derived from them. Nothing else in hygie lists CDM columns.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pyarrow is imported only when Arrow types are asked for: it slows every CLI start
    import pyarrow as pa

SUPPORTED_VERSIONS = ("5.3", "5.4")
CURRENT_VERSION = "5.4"

# CDM logical type -> (DuckDB type, Arrow type name). varchar(n) lengths are checked (as warnings) at load.
_BASE_TYPES: dict[str, tuple[str, str]] = {
    "bigint": ("BIGINT", "int64"),
    "integer": ("INTEGER", "int32"),
    "float": ("DOUBLE", "float64"),
    "date": ("DATE", "date32"),
    "datetime": ("TIMESTAMP", "timestamp[us]"),
    "varchar": ("VARCHAR", "string"),
    "text": ("VARCHAR", "string"),
}


@dataclass(frozen=True)
class ForeignKey:
    table: str
    column: str


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # CDM logical type: bigint, integer, float, date, datetime, varchar(N), text
    required: bool
    primary_key: bool
    foreign_key: ForeignKey | None

    @property
    def base_type(self) -> str:
        return self.type.split("(", 1)[0]

    @property
    def max_length(self) -> int | None:
        if self.base_type != "varchar":
            return None
        return int(self.type[len("varchar(") : -1])

    @property
    def sql_type(self) -> str:
        return _BASE_TYPES[self.base_type][0]

    @property
    def arrow_type(self) -> pa.DataType:
        import pyarrow as pa

        name = _BASE_TYPES[self.base_type][1]
        return pa.timestamp("us") if name == "timestamp[us]" else pa.type_for_alias(name)

    @property
    def is_concept(self) -> bool:
        return self.foreign_key is not None and self.foreign_key.table == "concept"

    @property
    def is_date(self) -> bool:
        return self.base_type in ("date", "datetime")


@dataclass(frozen=True)
class Table:
    name: str
    group: str  # clinical, health_system, economics, derived, metadata, vocabulary, results
    description: str
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name}")

    @property
    def primary_key(self) -> Column | None:
        return next((c for c in self.columns if c.primary_key), None)

    @property
    def has_person_id(self) -> bool:
        return any(c.name == "person_id" for c in self.columns)

    @property
    def is_vocabulary(self) -> bool:
        return self.group == "vocabulary"

    def arrow_schema(self) -> pa.Schema:
        import pyarrow as pa

        return pa.schema([pa.field(c.name, c.arrow_type, nullable=not c.required) for c in self.columns])

    def create_sql(self, qualified_name: str | None = None) -> str:
        cols = ",\n  ".join(f'"{c.name}" {c.sql_type}{" NOT NULL" if c.required else ""}' for c in self.columns)
        return f'CREATE TABLE "{qualified_name or self.name}" (\n  {cols}\n)'


@dataclass(frozen=True)
class CdmSchema:
    version: str
    tables: dict[str, Table]

    def __contains__(self, name: str) -> bool:
        return name in self.tables

    def __getitem__(self, name: str) -> Table:
        return self.tables[name]

    def __iter__(self):
        return iter(self.tables.values())

    def in_group(self, *groups: str) -> list[Table]:
        return [t for t in self.tables.values() if t.group in groups]


def _read_csv(name: str) -> list[dict[str, str]]:
    with resources.files("hygie.cdm").joinpath("data", name).open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


@cache
def cdm_schema(version: str = CURRENT_VERSION) -> CdmSchema:
    """The CDM schema of ``version`` ("5.3" or "5.4"), read from the package data."""
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"unsupported CDM version {version!r} (supported: {', '.join(SUPPORTED_VERSIONS)})")
    table_rows = _read_csv("cdm54_tables.csv")
    groups = {r["table"]: r["group"] for r in table_rows}
    descriptions = {r["table"]: r["description"] for r in table_rows}
    columns: dict[str, list[Column]] = {}
    for r in _read_csv(f"cdm{version.replace('.', '')}_fields.csv"):
        fk = ForeignKey(r["fk_table"], r["fk_column"]) if r["fk_table"] else None
        columns.setdefault(r["table"], []).append(
            Column(
                name=r["column"],
                type=r["type"],
                required=r["required"] == "true",
                primary_key=r["primary_key"] == "true",
                foreign_key=fk,
            )
        )
    tables = {
        name: Table(
            name=name,
            group=groups.get(name, "results" if name.startswith("cohort") else "metadata"),
            description=descriptions.get(name, ""),
            columns=tuple(cols),
        )
        for name, cols in columns.items()
    }
    return CdmSchema(version=version, tables=tables)


@cache
def renames_53_to_54() -> dict[str, dict[str, str]]:
    """Column renames from CDM 5.3 to 5.4: {table: {old: new}} (new is '' when the column was dropped)."""
    out: dict[str, dict[str, str]] = {}
    for r in _read_csv("cdm53_to_54.csv"):
        out.setdefault(r["table"], {})[r["column_53"]] = r["column_54"]
    return out
