"""``hygie cdm load``: a folder of OMOP CDM 5.3/5.4 table files -> a new, published 5.4 release.

Steps, all inside one release builder (nothing is published unless every step succeeds):
1. find the table files (``sources.omop_files``); check them against the deposit's MANIFEST.csv if any;
2. for each file, vocabulary first, then person, then the rest:
   stage it (``ingest.staging``: CDM 5.3 upgraded, values typed, structural problems refused),
   run the row-level checks (``ingest.checks``: rejected rows go to the rejects file with their reason and
   content, flagged rows are kept and reported; unknown concept ids are warnings),
   write it to the release and drop it from memory;
3. write the CDM 5.4 tables not supplied, empty; write the rejects; publish.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

import duckdb

from hygie.cdm.schema import cdm_schema
from hygie.config import Settings
from hygie.errors import InputError, Problem
from hygie.ingest.checks import ISSUE_COLUMNS, concept_warnings, record_issues, unknown_concepts
from hygie.ingest.identifiers import SCRUBBED_COLUMNS, scrubbed
from hygie.ingest.quality import QualityConfig, check_before_publishing
from hygie.ingest.staging import StagedTable, empty_row, stage_file
from hygie.releases import LineageEntry, Release, ReleaseBuilder, ReleaseStore
from hygie.sources.omop_files import ManifestEntry, SourceFile, discover, read_deposit_manifest
from hygie.sql import ident


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
    store: ReleaseStore | None = None,
    groups: frozenset[str] | None = None,
    hooks: LoadHooks | None = None,
    quality: QualityConfig | None = None,
) -> Release:
    """Load a folder of CDM table files into a new release; raises ``InputError`` and publishes nothing on
    a fatal problem.

    Tables are processed one at a time (vocabulary first, then person, then the rest) and written as soon as
    they are checked, so memory holds one table, plus the person ids and concept ids the checks refer to.
    ``allow_duplicate_keys`` keeps rows whose record id repeats in an event table (flagged, reported) instead
    of refusing the file; a repeated ``person_id`` in ``person`` is always refused. ``store`` publishes
    elsewhere than the releases (vocabularies, deposits); ``groups`` restricts the accepted tables to those
    CDM groups (e.g. {"vocabulary"}); ``hooks`` let a caller (the deposit pipeline) add tables and
    transform each staged table before it is checked and written.
    """
    today = today or dt.date.today()
    store = store or ReleaseStore(settings)
    store.check_new_name(release_name)  # before any work: fail fast on a bad or taken name
    cdm54, cdm53 = cdm_schema("5.4"), cdm_schema("5.3")
    known = {t.name for t in [*cdm54, *cdm53] if groups is None or t.group in groups}
    hooks = hooks or LoadHooks()
    files: list[SourceFile] = []
    deposit_manifest = None
    if not hooks.supplies_sources:
        files = sorted(discover(folder, known, key_name=hooks.source_key_name), key=_load_order)
        deposit_manifest = read_deposit_manifest(folder)
    digests = {f.table: hooks.file_digests.get(f.path.name) or f.sha256() for f in files}
    if deposit_manifest is not None:
        _check_against_manifest(files, digests, deposit_manifest)
    with store.build(
        release_name, synthetic=synthetic, description=description, read_from=[folder, *hooks.read_from]
    ) as builder:
        con = builder.con
        hooks.prepare(builder)
        if hooks.supplies_sources:
            files = sorted((f for f in hooks.sources() if f.table in known), key=_load_order)
            digests = {f.table: hooks.file_digests[f.table] for f in files}
        con.execute(f"CREATE TEMP TABLE _issues ({ISSUE_COLUMNS})")
        has_person = any(f.table == "person" for f in files)
        # A vocabulary in the files, or one the hooks attached (an installed vocabulary, as `_concept`).
        has_vocabulary = any(f.table == "concept" for f in files) or _has_table(con, "_concept")
        for source in files:
            step(f"reading {source.display}")
            staged = stage_file(con, source, cdm54, cdm53, allow_duplicate_keys)
            builder.lineage.append(
                LineageEntry(
                    table=source.table,
                    source=source.display,
                    source_sha256=digests[source.table],
                    source_format=source.origin or source.format,
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
            _scrub_identifiers(con, staged)
            hooks.after_stage(con, staged)
            step(f"checking {source.display}")
            rejected, flagged = record_issues(
                con, staged, today, has_person=has_person, duplicate_keys_allowed=allow_duplicate_keys
            )
            if has_vocabulary:
                builder.unknown_concepts.extend(unknown_concepts(con, staged))
            builder.warnings.extend(staged.notes)
            step(f"writing {staged.table.name}")
            builder.write_table(
                staged.table.name,
                _published_rows(staged, rejected, narrow=hooks.narrow_tables),
                rejected_rows=rejected,
                flagged_rows=flagged,
            )
            _keep_reference_columns(con, staged)
            for view in reversed(staged.views):
                con.execute(f'DROP VIEW "{view}"')
            con.execute(f'DROP TABLE "{staged.stored}"')
        for table in cdm54:
            if table.name not in builder.tables and (groups is None or table.group in groups):
                cols = ", ".join(f'"{c}"' for c in table.column_names)
                builder.write_table(table.name, f"SELECT {cols} FROM (SELECT {empty_row(table)}) WHERE false")
        builder.warnings.extend(concept_warnings(builder, has_vocabulary))
        step("checking data quality")
        check_before_publishing(builder, quality, narrow=hooks.narrow_tables)
        if con.execute("SELECT count(*) FROM _issues").fetchone()[0]:
            builder.write_rejects(
                "SELECT table_name, source_file, source_row, check_name, action, column_name, reason, record "
                "FROM _issues ORDER BY table_name, source_row, check_name"
            )
        step("publishing")
        return builder.publish()


class LoadHooks:
    """Extension points of ``load_cdm``; the default does nothing."""

    read_from: tuple[Path, ...] = ()  # extra folders the load may read (e.g. an identity file's)
    source_key_name: str | None = None  # the input Parquet files are encrypted; ``prepare`` registers the key
    file_digests: Mapping[str, str] = MappingProxyType({})  # sha256 by file name, if the caller already read them
    # True: the tables come from ``sources`` (relations ``prepare`` made on the builder's connection, with
    # their digests in ``file_digests`` by table), not from the folder's files.
    supplies_sources: bool = False
    # True: each table file holds only the columns its source supplied (deposits, ``cdm.narrow``);
    # the absent ones are not written, and readers add them back as typed NULLs. Releases keep every column.
    narrow_tables: bool = False

    def prepare(self, builder: ReleaseBuilder) -> None:
        """Called once the builder exists, before any table is read."""

    def sources(self) -> list[SourceFile]:
        """The tables to load when ``supplies_sources``; called after ``prepare``."""
        return []

    def after_stage(self, con: duckdb.DuckDBPyConnection, staged: StagedTable) -> None:
        """Called for each table once typed, before its row checks; may point ``staged.stage`` elsewhere."""


def _scrub_identifiers(con: duckdb.DuckDBPyConnection, staged: StagedTable) -> None:
    """Empty the columns where direct identifiers hide (``ingest.identifiers``), whatever the source."""
    table = staged.table
    columns = [c for c in table.columns if (table.name, c.name) in SCRUBBED_COLUMNS]
    if not columns:
        return
    counts = con.execute(
        "SELECT " + ", ".join(f'count("{c.name}")' for c in columns) + f' FROM "{staged.stage}"'
    ).fetchone()
    present = [(c, n) for c, n in zip(columns, counts, strict=True) if n]
    if not present:
        return
    replace = ", ".join(
        f'CAST({scrubbed(table.name, c.name, ident(c.name))} AS {c.sql_type}) AS "{c.name}"' for c, _ in present
    )
    view = f"{staged.stage}_scrubbed"
    con.execute(f'CREATE TEMP VIEW "{view}" AS SELECT * REPLACE ({replace}) FROM "{staged.stage}"')
    staged.replace_stage(view, filled=[c.name for c, _ in present])
    staged.notes.append(
        f"{staged.source.display}: identifying column(s) emptied or coarsened: "
        + ", ".join(f"{c.name} ({n} value(s))" for c, n in present)
    )


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute(f"SELECT count(*) FROM duckdb_tables() WHERE table_name = '{name}'").fetchone()[0])


def _load_order(source: SourceFile) -> tuple[int, str]:
    """Vocabulary first (concept ids are checked against it), then person (others refer to it)."""
    rank = 0 if source.table == "concept" else 1 if source.table == "person" else 2
    return rank, source.table


def _published_rows(staged: StagedTable, rejected: int, *, narrow: bool = False) -> str:
    cols = ", ".join(f'"{c}"' for c in (staged.supplied if narrow else staged.table.column_names))
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
