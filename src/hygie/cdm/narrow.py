"""Narrow table files: a deposit's or a release's table file holds only the CDM columns that have a value.

An empty column costs about as much to write as a filled one, and sites often fill about half of the CDM,
whether their files leave the other columns out or name them and leave them empty (decision 0017, fifth and
sixth passes). So a deposit stores the columns its extract gave at least one value to, and the required ones;
a release built from deposits stores the columns at least one of its deposits stores. Files written before
hold every CDM column. Readers never see the difference: they read a table through ``padded_sql`` (or views
replaced by ``pad_views``), which lists every CDM 5.4 column in schema order, the missing ones as NULLs of
their CDM type. A file of either kind therefore reads the same; no format flag is needed.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb

from hygie.cdm.schema import Table, cdm_schema
from hygie.sql import ident


def padded_sql(table: Table, present: set[str], source_sql: str) -> str:
    """SQL reading ``source_sql`` (a table expression holding the columns ``present`` of ``table``) with every
    column of ``table`` in schema order, the absent ones as NULLs of their CDM type."""
    cols = ", ".join(
        ident(c.name) if c.name in present else f"CAST(NULL AS {c.sql_type}) AS {ident(c.name)}" for c in table.columns
    )
    return f"SELECT {cols} FROM {source_sql}"


def columns_of(con: duckdb.DuckDBPyConnection, source_sql: str) -> set[str]:
    """The (lower-case) column names of a table expression, read from its schema only."""
    return {c.lower() for c in con.sql(f"SELECT * FROM {source_sql} LIMIT 0").columns}


def is_narrow(table: Table, present: set[str]) -> bool:
    return not all(c in present for c in table.column_names)


def pad_views(con: duckdb.DuckDBPyConnection, views: Mapping[str, str], *, temporary: bool = True) -> None:
    """Give each view of ``views`` (view name -> CDM table name) the CDM columns its file leaves out.

    A view that already has every column is left as it is; a narrow one is renamed ``_file_<view>`` and
    replaced by the padded view of the same name."""
    schema = cdm_schema("5.4")
    temp = "TEMP " if temporary else ""
    for view, table_name in views.items():
        if table_name not in schema:
            continue
        table = schema[table_name]
        present = columns_of(con, ident(view))
        if not is_narrow(table, present):
            continue
        inner = f"_file_{view}"
        con.execute(f"ALTER VIEW {ident(view)} RENAME TO {ident(inner)}")
        con.execute(f"CREATE {temp}VIEW {ident(view)} AS {padded_sql(table, present, ident(inner))}")
