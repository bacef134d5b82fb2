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
from hygie.releases import LineageEntry, Release, ReleaseStore
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
    stage: str  # name of the typed DuckDB table (5.4 columns + _row)
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

    ``allow_duplicate_keys`` keeps rows whose record id repeats in an event table (flagged, reported) instead
    of refusing the file; a repeated ``person_id`` in ``person`` is always refused.
    """
    today = today or dt.date.today()
    store = ReleaseStore(settings)
    store.check_new_name(release_name)  # before any work: fail fast on a bad or taken name
    cdm54, cdm53 = cdm_schema("5.4"), cdm_schema("5.3")
    files = discover(folder, set(cdm54.tables) | set(cdm53.tables))
    deposit_manifest = read_deposit_manifest(folder)
    digests = {f.table: f.sha256() for f in files}
    if deposit_manifest is not None:
        _check_against_manifest(files, digests, deposit_manifest)
    with store.build(release_name, synthetic=synthetic, description=description) as builder:
        con = builder.con
        staged: dict[str, StagedTable] = {}
        skipped: list[str] = []
        for source in files:
            step(f"reading {source.display}")
            result = _stage(con, source, cdm54, cdm53, allow_duplicate_keys)
            if result is None:
                skipped.append(source.display)
            else:
                staged[result.table.name] = result
            builder.lineage.append(
                LineageEntry(
                    table=source.table,
                    source=source.display,
                    source_sha256=digests[source.table],
                    source_format=source.format,
                    source_cdm_version=result.cdm_version if result else "5.3",
                    rows_read=result.rows if result else 0,
                    origin=origin,
                )
            )
        if deposit_manifest is not None:
            _check_rows_against_manifest(staged, deposit_manifest)
        for name in skipped:
            builder.warnings.append(f"{name}: table of CDM 5.3 only, empty, not carried into CDM 5.4")
        step("checking rows")
        counts = _row_checks(con, staged, today)
        step("checking concepts")
        builder.unknown_concepts, concept_warnings = _unknown_concepts(con, staged)
        builder.warnings.extend(concept_warnings)
        for s in staged.values():
            builder.warnings.extend(s.notes)
        step("writing the release")
        if counts:
            builder.write_rejects(
                "SELECT table_name, source_file, source_row, check_name, action, column_name, reason, record "
                "FROM _issues ORDER BY table_name, source_row, check_name"
            )
        for table in cdm54:
            cols = ", ".join(f'"{c}"' for c in table.column_names)
            s = staged.get(table.name)
            if s is None:
                select = f"SELECT {cols} FROM (SELECT {_empty_row(table)}) WHERE false"
            else:
                select = (
                    f'SELECT {cols} FROM "{s.stage}" t WHERE NOT EXISTS '
                    f"(SELECT 1 FROM _issues i WHERE i.table_name = '{table.name}' "
                    f"AND i.action = 'reject' AND i.source_row = t._row) ORDER BY _row"
                )
            rejected, flagged = counts.get(table.name, (0, 0))
            builder.write_table(table.name, select, rejected_rows=rejected, flagged_rows=flagged)
        step("publishing")
        return builder.publish()


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


def _check_rows_against_manifest(staged: dict[str, StagedTable], manifest: dict[str, ManifestEntry]) -> None:
    problems = [
        Problem(s.source.display, f"{s.rows} rows read but MANIFEST.csv says {manifest[name].rows}")
        for name, s in staged.items()
        if manifest[s.source.table].rows is not None and manifest[s.source.table].rows != s.rows
    ]
    if problems:
        raise InputError(problems)


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
    stage = f"_stage_{table.name}"
    present = [c for c in table.columns if c.name in mapped]
    _check_values(con, relation, file, present, mapped, source_types)
    selects = []
    notes = []
    for c in table.columns:
        if c.name in mapped:
            selects.append(f'{_cast(_ident(mapped[c.name]), c, source_types[mapped[c.name]])} AS "{c.name}"')
        else:
            default = _upgrade_default(table.name, c, version) or "NULL"
            selects.append(f'CAST({default} AS {c.sql_type}) AS "{c.name}"')
    absent_optional = [c.name for c in table.columns if c.name not in mapped and not c.required]
    if absent_optional and version == CURRENT_VERSION:
        notes.append(f"{file}: optional column(s) absent, left empty: {', '.join(absent_optional)}")
    con.execute(f'CREATE TEMP TABLE "{stage}" AS SELECT {", ".join(selects)}, _row FROM ({relation})')
    rows = con.execute(f'SELECT count(*) FROM "{stage}"').fetchone()[0]
    if not (allow_duplicate_keys and table.name != "person"):
        _check_primary_key(con, stage, file, table)
    too_long = _too_long(con, stage, table)
    notes.extend(f"{file}: {n} value(s) of {col} longer than {limit} characters (kept)" for col, limit, n in too_long)
    return StagedTable(source, table, version, stage, rows, notes)


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
        return "_row"
    return None


def _source_types(con: duckdb.DuckDBPyConnection, relation: str, source: SourceFile) -> dict[str, str]:
    try:
        rel = con.sql(f"SELECT * FROM ({relation}) LIMIT 0")
    except duckdb.Error as e:
        raise InputError(Problem(source.display, f"cannot be read: {first_line(e)}")) from None
    return {name.lower(): str(t) for name, t in zip(rel.columns, rel.types, strict=True)}


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


def _check_values(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    file: str,
    columns: list[Column],
    mapped: dict[str, str],
    source_types: dict[str, str],
) -> None:
    """One scan: count values that do not convert to their type and required values that are missing."""
    tests: list[tuple[Column, str, str]] = []  # (column, kind, predicate)
    for c in columns:
        src = _ident(mapped[c.name])
        if source_types[mapped[c.name]] != c.sql_type:
            tests.append((c, "type", f"{src} IS NOT NULL AND {_cast(src, c, source_types[mapped[c.name]])} IS NULL"))
        if c.required:
            tests.append((c, "missing", f"{src} IS NULL"))
    if not tests:
        return
    aggregates = ", ".join(f"count_if({pred})" for _, _, pred in tests)
    try:
        counts = con.execute(f"SELECT {aggregates} FROM ({relation})").fetchone()
    except duckdb.Error as e:
        raise InputError(Problem(file, f"cannot be read: {first_line(e)}")) from None
    problems: list[Problem] = []
    more = 0
    for (c, kind, pred), n in zip(tests, counts, strict=True):
        if not n:
            continue
        rows = [
            r[0]
            for r in con.execute(
                f"SELECT _row FROM ({relation}) WHERE {pred} ORDER BY _row LIMIT {MAX_EXAMPLES}"
            ).fetchall()
        ]
        reason = f"not {_TYPE_WORDS[c.base_type]}" if kind == "type" else "required value is missing"
        problems.extend(Problem(file, reason, row=r, column=c.name) for r in rows)
        more += n - len(rows)
    if problems:
        raise InputError(problems, more=more)


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
        f"HAVING count(*) > 1 LIMIT {MAX_EXAMPLES}"
    ).fetchall()
    if dupes:
        problems = [
            Problem(file, f"duplicate primary key: same {pk.name} as row {rows[0]}", row=rows[1], column=pk.name)
            for rows, _ in dupes
        ]
        more = dupes[0][1] - len(dupes)
        problems.append(
            Problem(
                file,
                "primary keys must be unique; if the extract is known to repeat record ids "
                "in event tables, load with --allow-duplicate-keys (rows kept and flagged)",
            )
        )
        raise InputError(problems, more=more)


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
    con: duckdb.DuckDBPyConnection, staged: dict[str, StagedTable], today: dt.date
) -> dict[str, tuple[int, int]]:
    """Fill ``_issues``; return {table: (rejected rows, flagged rows kept)} for tables with issues."""
    con.execute(
        "CREATE TEMP TABLE _issues (table_name VARCHAR, source_file VARCHAR, source_row BIGINT, check_name VARCHAR, "
        "action VARCHAR, column_name VARCHAR, reason VARCHAR, record JSON)"
    )
    has_person = "person" in staged
    if has_person:
        con.execute(f'CREATE TEMP VIEW _person AS SELECT person_id, year_of_birth FROM "{staged["person"].stage}"')
    counts: dict[str, tuple[int, int]] = {}
    for s in staged.values():
        for check in row_checks(s.table, today=today, has_person=has_person, stage=s.stage):
            record = "to_json(t)" if check.action == "reject" else "NULL"
            con.execute(
                f"INSERT INTO _issues SELECT ?, ?, t._row, ?, ?, ?, ?, {record} "
                f'FROM "{s.stage}" t WHERE {check.predicate}',
                [s.table.name, s.source.display, check.name, check.action, check.column, check.reason],
            )
        rejected, flagged = con.execute(
            "SELECT count(DISTINCT source_row) FILTER (action = 'reject'), "
            "count(DISTINCT source_row) FILTER (action = 'flag' AND source_row NOT IN "
            "(SELECT source_row FROM _issues WHERE table_name = ? AND action = 'reject')) "
            "FROM _issues WHERE table_name = ?",
            [s.table.name, s.table.name],
        ).fetchone()
        if rejected or flagged:
            counts[s.table.name] = (rejected, flagged)
            for name, n in con.execute(
                "SELECT check_name, count(*) FROM _issues WHERE table_name = ? GROUP BY 1 ORDER BY 1",
                [s.table.name],
            ).fetchall():
                action = "flagged (kept)" if name in FLAG_CHECKS else "rejected"
                s.notes.append(f"{s.source.display}: {n} row(s) {action}: {name}")
    return counts


def _unknown_concepts(
    con: duckdb.DuckDBPyConnection, staged: dict[str, StagedTable]
) -> tuple[list[UnknownConcept], list[str]]:
    if "concept" not in staged:
        return [], ["no concept table in this release: concept ids were not checked against a vocabulary"]
    concept = staged["concept"].stage
    found: list[UnknownConcept] = []
    for s in staged.values():
        if s.table.is_vocabulary:
            continue
        for c in s.table.columns:
            if not c.is_concept:
                continue
            rows = con.execute(
                f'SELECT "{c.name}", count(*) FROM "{s.stage}" t WHERE "{c.name}" <> 0 AND NOT EXISTS '
                f'(SELECT 1 FROM "{concept}" k WHERE k.concept_id = t."{c.name}") GROUP BY 1 ORDER BY 2 DESC, 1'
            ).fetchall()
            found.extend(UnknownConcept(s.table.name, c.name, int(cid), int(n)) for cid, n in rows)
    warnings = []
    if found:
        total = sum(u.rows for u in found)
        warnings.append(
            f"{len(found)} concept id(s) used by {total} row value(s) are absent from the vocabulary "
            "(see unknown_concepts)"
        )
    if len(found) > MAX_UNKNOWN_CONCEPTS:
        found.sort(key=lambda u: -u.rows)
        warnings.append(f"unknown_concepts lists the {MAX_UNKNOWN_CONCEPTS} most used of {len(found)}")
        found = found[:MAX_UNKNOWN_CONCEPTS]
    return found, warnings
