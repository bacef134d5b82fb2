"""OMOP CDM tables as files: one CSV (comma or tab) or Parquet file per table, named after the table.

Athena vocabulary downloads (tab-separated ``CONCEPT.csv`` ... with YYYYMMDD dates) are read the same way.
This module only finds files and describes how to read them; the ingest stage decides what is valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb

from hygie.checksums import sha256_file
from hygie.errors import InputError, Problem

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet",)
# Files that document a deposit rather than hold a table; they are listed, never loaded.
DOC_SUFFIXES = (".md", ".pdf", ".json", ".yaml", ".yml", ".html")


DEPOSIT_MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class ManifestEntry:
    """What the depositor says a table file holds; checked before anything is loaded."""

    table: str
    rows: int | None
    sha256: str | None


@dataclass(frozen=True)
class SourceFile:
    path: Path
    table: str  # the CDM table the file holds, lower-case
    format: str  # "csv", "parquet", or "relation" (rows already on the loader's connection, e.g. converted)
    delimiter: str | None = None  # csv only
    key_name: str | None = None  # parquet only: the file is encrypted with this (registered) key
    relation: str | None = None  # relation only: the name of the view or table on the loader's connection
    origin: str | None = None  # relation only: the format the rows were converted from (e.g. "fhir")

    @property
    def display(self) -> str:
        """How errors name the file: its name only (the folder may name a site or a person)."""
        if self.format == "relation":
            return f"{self.table} (converted from {(self.origin or '').upper()})"
        return self.path.name

    def sha256(self) -> str:
        return sha256_file(self.path)


def discover(folder: Path, known_tables: set[str], *, key_name: str | None = None) -> list[SourceFile]:
    """The table files in ``folder``; any other data file, duplicate or unreadable folder is an error.

    A ``MANIFEST.csv`` (columns ``table, rows, sha256``) is the depositor's list of files, not a table:
    ``read_deposit_manifest`` reads it so that the loader can check every file against it.
    """
    if not folder.is_dir():
        raise InputError(Problem(str(folder), "not a folder"))
    problems: list[Problem] = []
    found: dict[str, SourceFile] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() in DOC_SUFFIXES:
            continue
        suffix = path.suffix.lower()
        if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
            problems.append(Problem(path.name, "not a CSV or Parquet file; remove it from the folder"))
            continue
        table = path.stem.lower()
        if path.name.lower() == DEPOSIT_MANIFEST:
            continue
        if table not in known_tables:
            problems.append(Problem(path.name, f"'{table}' is not an OMOP CDM table accepted here"))
            continue
        if table in found:
            problems.append(Problem(path.name, f"table '{table}' is also in {found[table].path.name}"))
            continue
        if suffix in PARQUET_SUFFIXES:
            found[table] = SourceFile(path, table, "parquet", key_name=key_name)
        else:
            found[table] = SourceFile(path, table, "csv", _sniff_delimiter(path, suffix))
    if problems:
        raise InputError(problems)
    if not found:
        raise InputError(Problem(folder.name or str(folder), "no CDM table file (CSV or Parquet) in the folder"))
    return list(found.values())


def read_deposit_manifest(folder: Path) -> dict[str, ManifestEntry] | None:
    """The deposit manifest of ``folder`` by table, or None when the folder has none."""
    import csv

    path = next((p for p in folder.iterdir() if p.name.lower() == DEPOSIT_MANIFEST), None)
    if path is None:
        return None
    entries: dict[str, ManifestEntry] = {}
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "table" not in reader.fieldnames:
            raise InputError(
                Problem(path.name, "a deposit manifest needs a 'table' column (and 'rows', 'sha256')", row=0)
            )
        for i, r in enumerate(reader, start=1):
            try:
                rows = int(r["rows"]) if r.get("rows") not in (None, "") else None
            except ValueError:
                raise InputError(Problem(path.name, "not an integer", row=i, column="rows")) from None
            entries[r["table"].strip().lower()] = ManifestEntry(
                r["table"].strip().lower(), rows, r.get("sha256") or None
            )
    return entries


def _sniff_delimiter(path: Path, suffix: str) -> str:
    if suffix == ".tsv":
        return "\t"
    header = read_header_line(path)
    return "\t" if "\t" in header else ","


def read_header_line(path: Path) -> str:
    try:
        with path.open("rb") as f:
            first = f.readline(1 << 16)
    except OSError as e:
        raise InputError(Problem(path.name, f"cannot be read ({e.strerror})")) from None
    try:
        return first.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        raise InputError(Problem(path.name, "is not UTF-8 text", row=0)) from None


def header(con: duckdb.DuckDBPyConnection, source: SourceFile) -> list[str]:
    """Column names of a file, lower-case, as the file declares them."""
    if source.format == "relation":
        return [c.lower() for c in con.sql(f"SELECT * FROM {source.relation} LIMIT 0").columns]
    if source.format == "parquet":
        try:
            rel = con.sql(f"SELECT * FROM {_parquet(source)} LIMIT 0")
        except duckdb.Error as e:
            raise InputError(Problem(source.display, f"not a readable Parquet file ({first_line(e)})")) from None
        return [c.lower() for c in rel.columns]
    line = read_header_line(source.path)
    if not line.strip():
        raise InputError(Problem(source.display, "the file is empty (no header line)"))
    return [c.strip().strip('"').lower() for c in line.split(source.delimiter)]


def relation_sql(
    source: SourceFile, columns: list[str], *, numbered: bool = False, types: Mapping[str, str] | None = None
) -> str:
    """SQL reading the file with the given (header) columns: CSV as text (or with the SQL ``types`` given by
    column, which the read fails on the first value that does not convert), Parquet as stored.

    ``numbered`` adds ``_row``, the 1-based data row (the header is row 0). DuckDB keeps file order when
    reading a CSV (insertion order is preserved), so numbering rows as they arrive matches the file; the
    numbering costs a window over the whole file, so the loader asks for it only to locate errors.
    A relation is read as it is (its rows are numbered in the order it gives them).
    """
    if source.format == "relation":
        numbering = ", row_number() OVER () AS _row" if numbered else ""
        return f"SELECT *{numbering} FROM {source.relation}"
    if source.format == "parquet":
        if not numbered:
            return f"SELECT * FROM {_parquet(source)}"
        return (
            f"SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS _row "
            f"FROM {_parquet(source, 'file_row_number = true')}"
        )
    cols = ", ".join(f"'{c}': '{(types or {}).get(c, 'VARCHAR')}'" for c in columns)
    delim = "\\t" if source.delimiter == "\t" else source.delimiter
    # Tab files (Athena) are unquoted: concept names contain quotes.
    quote = "''" if source.delimiter == "\t" else "'\"'"
    numbering = ", row_number() OVER () AS _row" if numbered else ""
    return (
        f"SELECT *{numbering} FROM read_csv({_quote(source.path)}, header = true, "
        f"auto_detect = false, delim = E'{delim}', quote = {quote}, escape = {quote}, columns = {{{cols}}}, "
        f"strict_mode = true, null_padding = false)"
    )


def sample_filled(source: SourceFile, columns: list[str], *, chunks: int = 16, chunk_bytes: int = 1 << 18) -> set[str]:
    """The columns with a value in a sample of a CSV file's rows: ``chunks`` blocks spread over the file (a
    file sorted by date or by person may fill a column only in its later part). A guess, not a check: a
    block may start inside a quoted field, so the caller must verify what it concludes from it."""
    import csv
    import io

    size = source.path.stat().st_size
    quoting = csv.QUOTE_NONE if source.delimiter == "\t" else csv.QUOTE_MINIMAL
    filled: set[str] = set()
    with source.path.open("rb") as f:
        for i in range(chunks):
            f.seek(size * i // chunks)
            block = f.read(chunk_bytes)
            if len(block) == chunk_bytes:
                block = block.rpartition(b"\n")[0]  # up to the last whole line
            if i:
                block = block.partition(b"\n")[2]  # from the first whole line
            text = block.decode("utf-8", errors="replace")
            rows = csv.reader(io.StringIO(text), delimiter=source.delimiter or ",", quoting=quoting)
            try:
                for n, row in enumerate(rows):
                    if (n or i) and len(row) == len(columns):  # the header, and torn lines, say nothing
                        filled.update(c for c, v in zip(columns, row, strict=True) if v != "")
            except csv.Error:
                pass  # a block that is not CSV to Python's reader (e.g. NUL bytes): the read will say
            if len(filled) == len(columns):
                break
    return filled


def first_line(error: BaseException) -> str:
    """The first line of a DuckDB error: later lines may quote the offending row, which stays out of messages."""
    return str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__


def _parquet(source: SourceFile, options: str = "") -> str:
    settings = [options] if options else []
    if source.key_name:
        settings.append(f"encryption_config = {{footer_key: '{source.key_name}'}}")
    return f"read_parquet({', '.join([_quote(source.path), *settings])})"


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"
