"""A CDM 5.4 held in an in-memory DuckDB database, from Python rows: for notebooks, examples and tests.

Every CDM table exists with its CDM types (empty unless rows are given); a row may omit optional columns.
Unlike ``hygie cdm load`` nothing is checked or published: this is a scratch space, not a release.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from hygie.cdm.schema import cdm_schema


def cdm_connection(tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one table per CDM 5.4 table, filled with ``tables[name]`` rows."""
    schema = cdm_schema("5.4")
    unknown = sorted(set(tables) - set(schema.tables))
    if unknown:
        raise ValueError(f"not CDM 5.4 tables: {', '.join(unknown)}")
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False, "threads": 1})
    con.execute("SET TimeZone = 'UTC'")
    for table in schema:
        rows = tables.get(table.name, [])
        if not rows:
            con.execute(table.create_sql())
            continue
        arrow_schema = table.arrow_schema()
        columns = {name: [row.get(name) for row in rows] for name in arrow_schema.names}
        data = pa.table(columns, schema=pa.schema([f.with_nullable(True) for f in arrow_schema]))
        con.register("_rows", data)
        con.execute(f'CREATE TABLE "{table.name}" AS SELECT * FROM _rows')
        con.unregister("_rows")
    return con
