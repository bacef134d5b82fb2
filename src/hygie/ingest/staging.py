"""Staging one table file: read it, map it to CDM 5.4, give every value its CDM type, refuse what cannot be.

Structural problems stop the load (``InputError`` naming file, row and column): an unreadable file, unknown
or missing required columns, values that do not fit their type, missing required values, duplicate primary
keys. The result is a typed DuckDB view with ``_row``, the row's 1-based position in the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import duckdb

from hygie.cdm.schema import CURRENT_VERSION, CdmSchema, Column, Table, renames_53_to_54
from hygie.errors import InputError, Problem
from hygie.sources.omop_files import SourceFile, first_line, header, relation_sql, sample_filled
from hygie.sql import ident

MAX_EXAMPLES = 5
CDM_V54_CONCEPT_ID = 756265  # "OMOP CDM Version 5.4.0"

_TYPE_WORDS = {
    "bigint": "an integer",
    "integer": "a 32-bit integer",
    "float": "a number",
    "date": "a date (YYYY-MM-DD or YYYYMMDD)",
    "datetime": "a date-time (YYYY-MM-DD HH:MM:SS)",
    "varchar": "text",
    "text": "text",
}


@dataclass
class StagedTable:
    source: SourceFile
    table: Table
    cdm_version: str
    stage: str  # view over the typed rows: the 5.4 columns + _row (1-based row in the file)
    stored: str  # the DuckDB table behind the view
    rows: int = 0
    notes: list[str] = field(default_factory=list)
    # The CDM columns the source gives at least one value to (read or implied by a 5.3 upgrade), and the required
    # ones, in schema order; the others are NULL in every row. Deposits write only these (cdm.narrow).
    supplied: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=list)  # views built on `stored`, oldest first (dropped after use)

    def __post_init__(self) -> None:
        if not self.views:
            self.views.append(self.stage)

    def replace_stage(self, view: str, filled: Iterable[str] = ()) -> None:
        """Point later steps at ``view``, built over the current stage; ``filled``: columns it gives values to."""
        self.views.append(view)
        self.stage = view
        filled = set(filled)
        if filled - set(self.supplied):
            self.supplied = [c for c in self.table.column_names if c in filled or c in self.supplied]


def _detect_version(table: str, columns: list[str], cdm54: CdmSchema, cdm53: CdmSchema) -> str:
    if table not in cdm54:
        return "5.3"
    if table not in cdm53:
        return CURRENT_VERSION
    old_names = set(renames_53_to_54().get(table, {}))
    if old_names & set(columns):
        return "5.3"
    # A file with exactly the 5.3 columns of a table that 5.4 extended is a 5.3 file.
    v53, v54 = cdm53[table].column_names, cdm54[table].column_names
    return "5.3" if set(columns) == set(v53) and set(v53) != set(v54) else CURRENT_VERSION


def stage_file(
    con: duckdb.DuckDBPyConnection,
    source: SourceFile,
    cdm54: CdmSchema,
    cdm53: CdmSchema,
    allow_duplicate_keys: bool,
) -> StagedTable | None:
    columns = header(con, source)
    file = source.display
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise InputError(Problem(file, f"column(s) {', '.join(dupes)} appear more than once in the header", row=0))
    version = _detect_version(source.table, columns, cdm54, cdm53)
    relation = relation_sql(source, columns)
    if source.table not in cdm54:  # a 5.3-only table: carried only if empty, else refused
        rows = _count(con, relation, file)
        if rows:
            raise InputError(Problem(file, f"table '{source.table}' does not exist in CDM 5.4 and is not empty"))
        return None
    table = cdm54[source.table]
    renames = renames_53_to_54().get(source.table, {}) if version == "5.3" else {}
    mapped = {renames.get(c, c): c for c in columns}  # 5.4 name -> name in the file
    _check_header(file, source, columns, mapped, table, version)
    source_types = _source_types(con, relation, source)
    present = [c for c in table.columns if c.name in mapped]
    stored = f"_stored_{table.name}"
    stored_columns, has_bad = _store(con, source, columns, mapped, table, version, stored, source_types)
    # Only the columns the source has are stored; the stage view adds the others as typed NULLs.
    names = {c.name for c in stored_columns}
    stage_columns = [
        f'"{c.name}"' if c.name in names else f'CAST(NULL AS {c.sql_type}) AS "{c.name}"' for c in table.columns
    ]
    # Rows are stored in file order, so rowid + 1 is the data row number that messages and rejects cite.
    stage = f"_stage_{table.name}"
    con.execute(f'CREATE TEMP VIEW "{stage}" AS SELECT {", ".join(stage_columns)}, rowid + 1 AS _row FROM "{stored}"')
    required = [c for c in present if c.required]
    limited = [c for c in stored_columns if c.max_length]
    pk = table.primary_key
    pk_range = pk.name if pk is not None and pk.base_type in ("bigint", "integer") and pk.name in names else None
    # One scan counts the values of each column (a column without any is not supplied: a header that lists
    # every CDM column, most of them empty, supplies only the filled ones), the values too long for their
    # column, and the range of an integer primary key (for the uniqueness check).
    counts = iter(
        con.execute(
            f"SELECT count(*), {'count_if(_bad)' if has_bad else '0'}"
            + "".join(f', count_if("{c.name}" IS NULL)' for c in required)
            + "".join(f', count("{c.name}")' for c in stored_columns)
            + "".join(f', count_if(length("{c.name}") > {c.max_length})' for c in limited)
            + (f', min("{pk_range}"), max("{pk_range}")' if pk_range else "")
            + f' FROM "{stored}"'
        ).fetchone()
    )
    rows, bad_rows = next(counts), next(counts)
    missing = [next(counts) for _ in required]
    supplied = [c.name for c in stored_columns if next(counts) or c.required]
    too_long = [(c, n) for c in limited if (n := next(counts))]
    bounds = (next(counts), next(counts)) if pk_range else None
    if bad_rows:
        _locate_type_errors(con, relation_sql(source, columns, numbered=True), file, present, mapped, source_types)
    if any(missing):
        _report_missing(con, stage, file, [c for c, n in zip(required, missing, strict=True) if n], sum(missing))
    notes = []
    absent_optional = [c.name for c in table.columns if c.name not in mapped and not c.required]
    # (A converted relation lists only the columns its conversion fills: nothing the extract left out.)
    if absent_optional and version == CURRENT_VERSION and source.format != "relation":
        notes.append(f"{file}: optional column(s) absent, left empty: {', '.join(absent_optional)}")
    if not (allow_duplicate_keys and table.name != "person"):
        _check_primary_key(con, stage, stored, file, table, bounds)
    notes.extend(f"{file}: {n} value(s) of {c.name} longer than {c.max_length} characters (kept)" for c, n in too_long)
    return StagedTable(source, table, version, stage, stored, rows, notes, supplied=supplied)


def _store(
    con: duckdb.DuckDBPyConnection,
    source: SourceFile,
    columns: list[str],
    mapped: dict[str, str],
    table: Table,
    version: str,
    stored: str,
    source_types: dict[str, str],
) -> tuple[list[Column], bool]:
    """Read the file once into the temp table ``stored``: the CDM columns it has (5.4 names, CDM types), the
    5.3 upgrade's implied ones, in schema order. Returns those columns, and whether ``stored`` has ``_bad``,
    true on rows where a value did not fit its type.

    A CSV file is first read with its columns declared in their CDM types: DuckDB then parses numbers and
    dates as it reads, about a third cheaper than reading text and converting it, and fails on the first value
    that does not convert. Such a file (or one with YYYYMMDD dates) is then read as text and converted
    with ``_cast``, which marks the rows to locate; both reads give the same value to every value that both
    accept (tests/unit/test_staging.py checks it value by value).
    """
    extras, stored_columns = {}, []
    for c in table.columns:
        if c.name in mapped:
            stored_columns.append(c)
        elif (default := _upgrade_default(table.name, c, version)) is not None:
            extras[c.name] = f"CAST({default} AS {c.sql_type})"
            stored_columns.append(c)
    if source.format == "csv":
        typed = _store_typed(con, source, columns, mapped, stored, stored_columns, extras)
        if typed is not None:
            return typed, False
    # One pass over the file: convert every value to its CDM type and mark rows where a value did not fit.
    selects, bad = [], []
    for c in stored_columns:
        if c.name in extras:
            selects.append(f'{extras[c.name]} AS "{c.name}"')
            continue
        src, src_type = ident(mapped[c.name]), source_types[mapped[c.name]]
        converted = _cast(src, c, src_type)
        selects.append(f'{converted} AS "{c.name}"')
        if src_type != c.sql_type:
            bad.append(f"({src} IS NOT NULL AND {converted} IS NULL)")
    try:
        con.execute(
            f'CREATE TEMP TABLE "{stored}" AS SELECT {", ".join(selects)}, {" OR ".join(bad) or "false"} AS _bad '
            f"FROM ({relation_sql(source, columns)})"
        )
    except duckdb.Error as e:
        raise InputError(Problem(source.display, f"cannot be read: {first_line(e)}")) from None
    return stored_columns, True


def _store_typed(
    con: duckdb.DuckDBPyConnection,
    source: SourceFile,
    columns: list[str],
    mapped: dict[str, str],
    stored: str,
    stored_columns: list[Column],
    extras: dict[str, str],
) -> list[Column] | None:
    """Read a CSV file into ``stored`` with its columns declared in their CDM types; None if a value does not
    convert (or the file cannot be read): the caller then reads it as text. Returns the columns stored.

    Optional columns without any value in a sample of the rows (``omop_files.sample_filled``) are not stored,
    only checked empty (``_late``, true on a row that gives one of them a value): an extract's header often
    names every CDM column, half of them empty, and in-memory storage costs as much for an empty column as for
    a filled one. Should one of them turn out to have values, the file is read again with every column.
    """
    types = {mapped[c.name]: c.sql_type for c in stored_columns if c.name in mapped}
    typed = relation_sql(source, columns, types=types)
    filled = sample_filled(source, columns)
    empty = [c for c in stored_columns if c.name in mapped and not c.required and mapped[c.name] not in filled]
    for attempt in (empty, []):
        kept = [c for c in stored_columns if c not in attempt]
        selects = [f'{extras.get(c.name) or ident(mapped[c.name])} AS "{c.name}"' for c in kept]
        if attempt:
            selects.append(" OR ".join(f"{ident(mapped[c.name])} IS NOT NULL" for c in attempt) + " AS _late")
        try:
            con.execute(f'CREATE TEMP TABLE "{stored}" AS SELECT {", ".join(selects)} FROM ({typed})')
        except duckdb.Error:
            return None  # a value that does not convert (located by the text read), or an unreadable file
        if not attempt or not con.execute(f'SELECT bool_or(_late) FROM "{stored}"').fetchone()[0]:
            return kept
        con.execute(f'DROP TABLE "{stored}"')
    return None  # unreachable: the last attempt stores every column


def _check_header(
    file: str, source: SourceFile, columns: list[str], mapped: dict[str, str], table: Table, version: str
) -> None:
    problems = []
    if len(columns) == 1 and source.format == "csv":
        for d in (";", "|"):
            if d in columns[0]:
                raise InputError(
                    Problem(
                        file,
                        f"the header is one column containing '{d}': hygie reads comma- or tab-separated files",
                        row=0,
                    )
                )
    unknown = [original for name, original in mapped.items() if name not in table.column_names]
    if unknown:
        problems.append(Problem(file, f"unknown column(s) for CDM table {table.name}: {', '.join(unknown)}", row=0))
    missing = [
        c.name
        for c in table.columns
        if c.required and c.name not in mapped and _upgrade_default(table.name, c, version) is None
    ]
    if missing:
        problems.append(Problem(file, f"required column(s) missing: {', '.join(missing)}", row=0))
    if problems:
        raise InputError(problems)


def _upgrade_default(table: str, column: Column, version: str) -> str | None:
    """The 5.4 value implied by a 5.3 source for a column it cannot have, if any."""
    if version != "5.3":
        return None
    if table == "cdm_source" and column.name == "cdm_version_concept_id":
        return str(CDM_V54_CONCEPT_ID)
    if table == "metadata" and column.name == "metadata_id":  # new primary key in 5.4: number the rows
        return "row_number() OVER ()"
    return None


def _source_types(con: duckdb.DuckDBPyConnection, relation: str, source: SourceFile) -> dict[str, str]:
    try:
        rel = con.sql(f"SELECT * FROM ({relation}) LIMIT 0")
    except duckdb.Error as e:
        raise InputError(Problem(source.display, f"cannot be read: {first_line(e)}")) from None
    return {name.lower(): str(t) for name, t in zip(rel.columns, rel.types, strict=True)}


def _cast(expr: str, column: Column, source_type: str) -> str:
    """SQL converting a source value to the column's CDM type; NULL when it does not convert."""
    target = column.sql_type
    if source_type == target:
        return expr
    base = column.base_type
    if base == "date":
        if source_type == "VARCHAR":
            return f"COALESCE(TRY_CAST({expr} AS DATE), CAST(TRY_STRPTIME({expr}, '%Y%m%d') AS DATE))"
        return f"TRY_CAST({expr} AS DATE)"
    if base == "datetime":
        if source_type == "VARCHAR":
            return f"COALESCE(TRY_CAST({expr} AS TIMESTAMP), TRY_STRPTIME({expr}, '%Y%m%d'))"
        return f"TRY_CAST({expr} AS TIMESTAMP)"
    fractional = source_type in ("FLOAT", "DOUBLE") or source_type.startswith("DECIMAL")
    if base in ("bigint", "integer") and fractional:  # 2.0 is an integer, 2.5 is not
        return f"CASE WHEN {expr} = round({expr}) THEN TRY_CAST({expr} AS {target}) END"
    return f"TRY_CAST({expr} AS {target})"


def _locate_type_errors(
    con: duckdb.DuckDBPyConnection,
    numbered: str,
    file: str,
    columns: list[Column],
    mapped: dict[str, str],
    source_types: dict[str, str],
) -> None:
    """Name the rows and columns whose values do not fit their type (a second scan, only on failure)."""
    problems: list[Problem] = []
    more = 0
    for c in columns:
        src, src_type = ident(mapped[c.name]), source_types[mapped[c.name]]
        if src_type == c.sql_type:
            continue
        pred = f"{src} IS NOT NULL AND {_cast(src, c, src_type)} IS NULL"
        n, rows = con.execute(
            f"SELECT count(*), list(_row ORDER BY _row)[1:{MAX_EXAMPLES}] FROM ({numbered}) WHERE {pred}"
        ).fetchone()
        problems.extend(Problem(file, f"not {_TYPE_WORDS[c.base_type]}", row=r, column=c.name) for r in rows or [])
        more += n - len(rows or [])
    raise InputError(problems, more=more)


def _report_missing(con: duckdb.DuckDBPyConnection, stage: str, file: str, columns: list[Column], total: int) -> None:
    problems: list[Problem] = []
    for c in columns:
        rows = con.execute(
            f'SELECT list(_row ORDER BY _row)[1:{MAX_EXAMPLES}] FROM "{stage}" WHERE "{c.name}" IS NULL'
        ).fetchone()[0]
        problems.extend(Problem(file, "required value is missing", row=r, column=c.name) for r in rows)
    raise InputError(problems, more=total - len(problems))


def _count(con: duckdb.DuckDBPyConnection, relation: str, file: str) -> int:
    try:
        return con.execute(f"SELECT count(*) FROM ({relation})").fetchone()[0]
    except duckdb.Error as e:
        raise InputError(Problem(file, f"cannot be read: {first_line(e)}")) from None


# The widest range of integer keys checked with a bitmap (16 MB per thread); wider ones are grouped.
MAX_BITMAP_KEYS = 1 << 27


def _check_primary_key(
    con: duckdb.DuckDBPyConnection,
    stage: str,
    stored: str,
    file: str,
    table: Table,
    bounds: tuple[int | None, int | None] | None,
) -> None:
    """Refuse repeated primary keys (none is NULL by now: the key is a required column).

    Integer keys within a moderate range (record ids numbered 1..n, the usual case) are first checked with
    a bitmap of the range, one bit per possible key: as many bits set as rows means no key repeats. That is
    about ten times cheaper than grouping millions of rows by key, which is done only to name the duplicates,
    or when the keys are spread too wide for a bitmap."""
    pk = table.primary_key
    if pk is None:
        return
    if bounds is not None:
        low, high = bounds
        if low is None or high is None:
            return  # no row
        if high - low < MAX_BITMAP_KEYS:
            distinct, count = con.execute(
                f'SELECT bit_count(bitstring_agg("{pk.name}", {low}, {high})), count("{pk.name}") FROM "{stored}"'
            ).fetchone()
            if distinct == count:
                return
    # Count per key first (cheap), and list row numbers only for the keys that repeat.
    key = f's."{pk.name}"'
    dupes = con.execute(
        f'SELECT list(_row ORDER BY _row)[1:2], count(*) OVER () FROM "{stage}" s SEMI JOIN '
        f'(SELECT "{pk.name}" AS k FROM "{stage}" GROUP BY 1 HAVING count(*) > 1) d ON {key} IS NOT DISTINCT FROM d.k '
        f"GROUP BY {key} ORDER BY list(_row ORDER BY _row)[2] LIMIT {MAX_EXAMPLES}"
    ).fetchall()
    if dupes:
        problems = [
            Problem(file, f"duplicate primary key: same {pk.name} as row {rows[0]}", row=rows[1], column=pk.name)
            for rows, _ in dupes
        ]
        hint = (
            "if the extract is known to repeat record ids in an event table, load with --allow-duplicate-keys "
            "(rows kept and flagged)"
            if table.name != "person"
            else None
        )
        raise InputError(problems, more=dupes[0][1] - len(dupes), hint=hint)


def empty_row(table: Table) -> str:
    return ", ".join(f'CAST(NULL AS {c.sql_type}) AS "{c.name}"' for c in table.columns)
