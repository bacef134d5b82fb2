"""How a deposit stores its tables, and how every reader of deposits sees them.

A deposit's table file holds only the CDM columns its extract gave at least one value to, and the required ones
(decision 0017, fifth pass): an empty column costs about as much to write as a filled one, and sites often fill
about half of the CDM, whether their files leave the other columns out or name them and leave them empty.
Deposits written before that hold every CDM column. Readers (the release build, the deposit's own quality checks, the
DuckDB engine that operator tools open on a deposit) never see the difference: ``pad_views`` turns the views
over a deposit's files into views with every CDM 5.4 column in schema order, the missing ones as typed NULLs.
A file of either kind therefore reads the same; no format flag is needed.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb

from hygie.cdm.schema import Table, cdm_schema
from hygie.sql import ident


def padded_select(table: Table, present: set[str], source: str) -> str:
    """SQL reading ``source`` (a view or table holding the columns ``present`` of ``table``) with every column
    of ``table`` in schema order, the absent ones as NULLs of their CDM type."""
    cols = ", ".join(
        ident(c.name) if c.name in present else f"CAST(NULL AS {c.sql_type}) AS {ident(c.name)}" for c in table.columns
    )
    return f"SELECT {cols} FROM {ident(source)}"


def pad_views(con: duckdb.DuckDBPyConnection, views: Mapping[str, str], *, temporary: bool = True) -> None:
    """Give each view of ``views`` (view name -> CDM table name) the CDM columns its file leaves out.

    A view that already has every column (a deposit written before deposits were narrowed, a release) is left
    as it is; a narrow one is renamed ``_file_<view>`` and replaced by the padded view of the same name."""
    schema = cdm_schema("5.4")
    temp = "TEMP " if temporary else ""
    for view, table_name in views.items():
        if table_name not in schema:
            continue
        table = schema[table_name]
        present = {r[0].lower() for r in con.execute(f"DESCRIBE {ident(view)}").fetchall()}
        if all(c in present for c in table.column_names):
            continue
        inner = f"_file_{view}"
        con.execute(f"ALTER VIEW {ident(view)} RENAME TO {ident(inner)}")
        con.execute(f"CREATE {temp}VIEW {ident(view)} AS {padded_select(table, present, inner)}")
