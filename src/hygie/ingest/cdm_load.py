"""``hygie cdm load``: a folder of OMOP CDM 5.3/5.4 table files -> a new, published 5.4 release.

Steps, all inside one release builder (nothing is published unless every step succeeds):
1. find the table files (``sources.omop_files``) and read each header;
2. map it to CDM 5.4 (5.3 columns renamed), refuse unknown or missing required columns;
3. one scan per file counts values that do not fit their CDM type or are missing where required;
   any such problem stops the load, with the file, row and column of the first examples;
4. stage typed tables; refuse duplicate primary keys;
5. row-level checks (``ingest.checks``): rejected rows go to the rejects file with their reason and
   content, flagged rows are kept and reported; concept ids absent from the vocabulary are warnings;
6. write every CDM 5.4 table (empty when not supplied) and publish.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from hygie.cdm.schema import CURRENT_VERSION, CdmSchema, Column, Table, cdm_schema, renames_53_to_54
from hygie.config import Settings
from hygie.errors import InputError, Problem
from hygie.ingest.checks import FLAG_CHECKS, row_checks
from hygie.releases import LineageEntry, Release, ReleaseBuilder, ReleaseStore
from hygie.releases.manifest import UnknownConcept
from hygie.sources.omop_files import (
    ManifestEntry,
    SourceFile,
    discover,
    first_line,
    header,
    read_deposit_manifest,
    relation_sql,
)

MAX_EXAMPLES = 5
MAX_UNKNOWN_CONCEPTS = 1000
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


def load_cdm(
    folder: Path,
    release_name: str,
    settings: Settings,
    *,
    synthetic: bool,
    description: str = "",
    origin: str = "cdm load",
    step: Callable[[str], None] = lambda _s: None,
    today: dt.date | None = None,
    allow_duplicate_keys: bool = False,
) -> Release:
    """Load a folder of CDM table files into a new release; raises ``InputError`` and publishes nothing on
    a fatal problem.

    Tables are processed one at a time (vocabulary first, then person, then the rest) and written as soon as
    they are checked, so memory holds one table, plus the person ids and concept ids the checks refer to.
    ``allow_duplicate_keys`` keeps rows whose record id repeats in an event table (flagged, reported) instead
    of refusing the file; a repeated ``person_id`` in ``person`` is always refused.
    """
    today = today or dt.date.today()
    store = ReleaseStore(settings)
    store.check_new_name(release_name)  # before any work: fail fast on a bad or taken name
    cdm54, cdm53 = cdm_schema("5.4"), cdm_schema("5.3")
    files = sorted(discover(folder, set(cdm54.tables) | set(cdm53.tables)), key=_load_order)
    deposit_manifest = read_deposit_manifest(folder)
    digests = {f.table: f.sha256() for f in files}
    if deposit_manifest is not None:
        _check_against_manifest(files, digests, deposit_manifest)
    with store.build(release_name, synthetic=synthetic, description=description, read_from=[folder]) as builder:
        con = builder.con
        con.execute(f"CREATE TEMP TABLE _issues ({ISSUE_COLUMNS})")
        has_person = any(f.table == "person" for f in files)
        has_vocabulary = any(f.table == "concept" for f in files)
        for source in files:
            step(f"reading {source.display}")
            staged = _stage(con, source, cdm54, cdm53, allow_duplicate_keys)
            builder.lineage.append(
                LineageEntry(
                    table=source.table,
                    source=source.display,
                    source_sha256=digests[source.table],
                    source_format=source.format,
                    source_cdm_version=staged.cdm_version if staged else "5.3",
                    rows_read=staged.rows if staged else 0,
                    origin=origin,
                )
            )
            if staged is None:
                builder.warnings.append(f"{source.display}: table of CDM 5.3 only, empty, not carried into CDM 5.4")
                continue
            if deposit_manifest is not None:
                _check_rows_against_manifest(staged, deposit_manifest[source.table])
            step(f"checking {source.display}")
            rejected, flagged = _row_checks(
                con, staged, today, has_person=has_person, duplicate_keys_allowed=allow_duplicate_keys
            )
            if has_vocabulary:
                builder.unknown_concepts.extend(_unknown_concepts(con, staged))
            builder.warnings.extend(staged.notes)
            step(f"writing {staged.table.name}")
            builder.write_table(
                staged.table.name, _published_rows(staged, rejected), rejected_rows=rejected, flagged_rows=flagged
            )
            _keep_reference_columns(con, staged)
            con.execute(f'DROP VIEW "{staged.stage}"')
            con.execute(f'DROP TABLE "{staged.stored}"')
        for table in cdm54:
            if table.name not in builder.tables:
                cols = ", ".join(f'"{c}"' for c in table.column_names)
                builder.write_table(table.name, f"SELECT {cols} FROM (SELECT {_empty_row(table)}) WHERE false")
        builder.warnings.extend(_concept_warnings(builder, has_vocabulary))
        if con.execute("SELECT count(*) FROM _issues").fetchone()[0]:
            builder.write_rejects(
                "SELECT table_name, source_file, source_row, check_name, action, column_name, reason, record "
                "FROM _issues ORDER BY table_name, source_row, check_name"
            )
        step("publishing")
        return builder.publish()


ISSUE_COLUMNS = (
    "table_name VARCHAR, source_file VARCHAR, source_row BIGINT, check_name VARCHAR, action VARCHAR, "
    "column_name VARCHAR, reason VARCHAR, record JSON"
)


def _load_order(source: SourceFile) -> tuple[int, str]:
    """Vocabulary first (concept ids are checked against it), then person (others refer to it)."""
    rank = 0 if source.table == "concept" else 1 if source.table == "person" else 2
    return rank, source.table


def _published_rows(staged: StagedTable, rejected: int) -> str:
    cols = ", ".join(f'"{c}"' for c in staged.table.column_names)
    if not rejected:
        return f'SELECT {cols} FROM "{staged.stage}"'
    return (
        f'SELECT {cols} FROM "{staged.stage}" WHERE _row NOT IN (SELECT source_row FROM _issues '
        f"WHERE table_name = '{staged.table.name}' AND action = 'reject')"
    )


def _keep_reference_columns(con: duckdb.DuckDBPyConnection, staged: StagedTable) -> None:
    """Keep what later tables are checked against: person ids and birth years, concept ids."""
    if staged.table.name == "person":
        con.execute(f'CREATE TEMP TABLE _person AS SELECT person_id, year_of_birth FROM "{staged.stage}"')
    elif staged.table.name == "concept":
        con.execute(f'CREATE TEMP TABLE _concept AS SELECT concept_id FROM "{staged.stage}"')


# -- deposit manifest ----------------------------------------------------------------------------------


def _check_against_manifest(
    files: list[SourceFile], digests: dict[str, str], manifest: dict[str, ManifestEntry]
) -> None:
    problems = []
    present = {f.table for f in files}
    for f in files:
        entry = manifest.get(f.table)
        if entry is None:
            problems.append(Problem(f.display, "not listed in MANIFEST.csv"))
        elif entry.sha256 and entry.sha256.lower() != digests[f.table]:
            problems.append(
                Problem(f.display, "sha256 differs from MANIFEST.csv: the file changed after it was listed")
            )
    problems.extend(
        Problem("MANIFEST.csv", f"lists table '{t}' but the folder has no file for it")
        for t in manifest
        if t not in present
    )
    if problems:
        raise InputError(problems)


def _check_rows_against_manifest(staged: StagedTable, entry: ManifestEntry) -> None:
    if entry.rows is not None and entry.rows != staged.rows:
        raise InputError(Problem(staged.source.display, f"{staged.rows} rows read but MANIFEST.csv says {entry.rows}"))


# -- staging -------------------------------------------------------------------------------------------


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


def _stage(
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

    # One pass over the file: convert every value to its CDM type and mark rows where a value did not fit.
    selects, bad = [], []
    for c in table.columns:
        if c.name in mapped:
            src, src_type = _ident(mapped[c.name]), source_types[mapped[c.name]]
            converted = _cast(src, c, src_type)
            selects.append(f'{converted} AS "{c.name}"')
            if src_type != c.sql_type:
                bad.append(f"({src} IS NOT NULL AND {converted} IS NULL)")
        else:
            default = _upgrade_default(table.name, c, version) or "NULL"
            selects.append(f'CAST({default} AS {c.sql_type}) AS "{c.name}"')
    stored = f"_stored_{table.name}"
    try:
        con.execute(
            f'CREATE TEMP TABLE "{stored}" AS SELECT {", ".join(selects)}, {" OR ".join(bad) or "false"} AS _bad '
            f"FROM ({relation})"
        )
    except duckdb.Error as e:
        raise InputError(Problem(file, f"cannot be read: {first_line(e)}")) from None
    # Rows are stored in file order, so rowid + 1 is the data row number that messages and rejects cite.
    stage = f"_stage_{table.name}"
    con.execute(f'CREATE TEMP VIEW "{stage}" AS SELECT * EXCLUDE (_bad), rowid + 1 AS _row FROM "{stored}"')
    required = [c for c in present if c.required]
    rows, bad_rows, *missing = con.execute(
        "SELECT count(*), count_if(_bad)"
        + "".join(f', count_if("{c.name}" IS NULL)' for c in required)
        + f' FROM "{stored}"'
    ).fetchone()
    if bad_rows:
        _locate_type_errors(con, relation_sql(source, columns, numbered=True), file, present, mapped, source_types)
    if any(missing):
        _report_missing(con, stage, file, [c for c, n in zip(required, missing, strict=True) if n], sum(missing))
    notes = []
    absent_optional = [c.name for c in table.columns if c.name not in mapped and not c.required]
    if absent_optional and version == CURRENT_VERSION:
        notes.append(f"{file}: optional column(s) absent, left empty: {', '.join(absent_optional)}")
    if not (allow_duplicate_keys and table.name != "person"):
        _check_primary_key(con, stage, file, table)
    too_long = _too_long(con, stage, table)
    notes.extend(f"{file}: {n} value(s) of {col} longer than {limit} characters (kept)" for col, limit, n in too_long)
    return StagedTable(source, table, version, stage, stored, rows, notes)


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


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


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
        src, src_type = _ident(mapped[c.name]), source_types[mapped[c.name]]
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


def _check_primary_key(con: duckdb.DuckDBPyConnection, stage: str, file: str, table: Table) -> None:
    pk = table.primary_key
    if pk is None:
        return
    dupes = con.execute(
        f'SELECT list(_row ORDER BY _row)[1:2], count(*) OVER () FROM "{stage}" GROUP BY "{pk.name}" '
        f"HAVING count(*) > 1 ORDER BY list(_row ORDER BY _row)[2] LIMIT {MAX_EXAMPLES}"
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


def _too_long(con: duckdb.DuckDBPyConnection, stage: str, table: Table) -> list[tuple[str, int, int]]:
    limited = [c for c in table.columns if c.max_length]
    if not limited:
        return []
    counts = con.execute(
        "SELECT " + ", ".join(f'count_if(length("{c.name}") > {c.max_length})' for c in limited) + f' FROM "{stage}"'
    ).fetchone()
    return [(c.name, c.max_length or 0, n) for c, n in zip(limited, counts, strict=True) if n]


def _empty_row(table: Table) -> str:
    return ", ".join(f'CAST(NULL AS {c.sql_type}) AS "{c.name}"' for c in table.columns)


# -- row-level checks -------------------------------------------------------------------------------


def _row_checks(
    con: duckdb.DuckDBPyConnection,
    staged: StagedTable,
    today: dt.date,
    *,
    has_person: bool,
    duplicate_keys_allowed: bool,
) -> tuple[int, int]:
    """Record the table's row-level issues in ``_issues`` in one scan; return (rejected, flagged-and-kept)."""
    checks = row_checks(
        staged.table,
        today=today,
        has_person=has_person,
        stage=staged.stage,
        duplicate_keys_allowed=duplicate_keys_allowed,
    )
    if not checks:
        return 0, 0
    # One scan evaluates every check; a row yields one issue per failed check.
    hits = ", ".join(f"CASE WHEN {c.predicate} THEN {i} END" for i, c in enumerate(checks))
    con.execute(
        f"CREATE TEMP TABLE _hits AS SELECT _row, unnest(list_filter([{hits}], x -> x IS NOT NULL)) AS check_index "
        f'FROM "{staged.stage}" t WHERE ' + " OR ".join(f"({c.predicate})" for c in checks)
    )
    catalogue = ", ".join(
        f"({i}, {_literal(c.name)}, {_literal(c.action)}, {_literal(c.column)}, {_literal(c.reason)})"
        for i, c in enumerate(checks)
    )
    # SQL literals rather than bound parameters: binding makes DuckDB's Python client import pandas (seconds).
    table, file = _literal(staged.table.name), _literal(staged.source.display)
    con.execute(
        f"INSERT INTO _issues SELECT {table}, {file}, h._row, k.name, k.action, k.col, k.reason, "
        f"CASE WHEN k.action = 'reject' THEN to_json(t) END "
        f"FROM _hits h JOIN (VALUES {catalogue}) k(i, name, action, col, reason) ON k.i = h.check_index "
        f'JOIN "{staged.stage}" t ON t._row = h._row'
    )
    con.execute("DROP TABLE _hits")
    rejected, flagged = con.execute(
        "SELECT count(DISTINCT source_row) FILTER (action = 'reject'), "
        "count(DISTINCT source_row) FILTER (action = 'flag' AND source_row NOT IN "
        f"(SELECT source_row FROM _issues WHERE table_name = {table} AND action = 'reject')) "
        f"FROM _issues WHERE table_name = {table}"
    ).fetchone()
    for name, n in con.execute(
        f"SELECT check_name, count(*) FROM _issues WHERE table_name = {table} GROUP BY 1 ORDER BY 1"
    ).fetchall():
        action = "flagged (kept)" if name in FLAG_CHECKS else "rejected"
        staged.notes.append(f"{staged.source.display}: {n} row(s) {action}: {name}")
    return rejected, flagged


def _unknown_concepts(con: duckdb.DuckDBPyConnection, staged: StagedTable) -> list[UnknownConcept]:
    """Concept ids the table uses that the release's vocabulary lacks (0, "no concept", is not reported)."""
    if staged.table.is_vocabulary:
        return []
    found = []
    for c in staged.table.columns:
        if not c.is_concept:
            continue
        rows = con.execute(
            f'SELECT "{c.name}", count(*) FROM "{staged.stage}" t WHERE "{c.name}" <> 0 AND NOT EXISTS '
            f'(SELECT 1 FROM _concept k WHERE k.concept_id = t."{c.name}") GROUP BY 1 ORDER BY 2 DESC, 1'
        ).fetchall()
        found.extend(UnknownConcept(staged.table.name, c.name, int(cid), int(n)) for cid, n in rows)
    return found


def _concept_warnings(builder: ReleaseBuilder, has_vocabulary: bool) -> list[str]:
    if not has_vocabulary:
        return ["no concept table in this release: concept ids were not checked against a vocabulary"]
    found = builder.unknown_concepts
    if not found:
        return []
    warnings = [
        f"{len(found)} concept id(s) used by {sum(u.rows for u in found)} row value(s) are absent from the "
        "vocabulary (see unknown_concepts)"
    ]
    if len(found) > MAX_UNKNOWN_CONCEPTS:
        builder.unknown_concepts = sorted(found, key=lambda u: -u.rows)[:MAX_UNKNOWN_CONCEPTS]
        warnings.append(f"unknown_concepts lists the {MAX_UNKNOWN_CONCEPTS} most used of {len(found)}")
    return warnings
