"""What a study run leaves behind: one CSV and one Parquet file per result table, ``manifest.json`` and
``report.html``, published atomically (written in a staging folder beside the target, then renamed).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from hygie.analyses.base import ResultTable
from hygie.durability import fsync_path
from hygie.errors import ConflictError, HygieError

MANIFEST_FILE, REPORT_FILE = "manifest.json", "report.html"
IDENTIFIER_COLUMNS = frozenset({"subject_id", "person_id"})
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")


def check_aggregate(tables: Sequence[ResultTable]) -> None:
    """Results leave as aggregates only: a column of person identifiers fails the run, naming its table."""
    for table in tables:
        found = sorted(IDENTIFIER_COLUMNS & {c.lower() for c in table.rows.column_names})
        if found:
            raise HygieError(
                f"result table {table.name!r} carries {', '.join(found)}: study results must be aggregate "
                "(no person identifiers); nothing was written"
            )


def check_names(tables: Sequence[ResultTable]) -> None:
    """Each result table becomes ``<name>.csv``: a plain file name, never a path or one of the run's own files."""
    for table in tables:
        if not _TABLE_NAME.fullmatch(table.name) or table.name in ("manifest", "report"):
            raise HygieError(
                f"result table name {table.name!r} cannot be a file name: use letters, digits and '_' "
                "(and not 'manifest' or 'report')"
            )


def check_target(out: Path, *, force: bool) -> None:
    """Refuse before any work if ``out`` exists and is not an empty folder (unless ``force``)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConflictError(f"{out} exists and is not a folder")
    if any(out.iterdir()) and not force:
        raise ConflictError(f"{out} exists and is not empty: choose another --out, or --force to replace it")


def write_table(folder: Path, table: ResultTable) -> list[str]:
    """``<name>.csv`` (masked cells empty) and ``<name>.parquet``."""
    csv_file, parquet_file = f"{table.name}.csv", f"{table.name}.parquet"
    pacsv.write_csv(table.rows, folder / csv_file, pacsv.WriteOptions(quoting_style="needed"))
    pq.write_table(table.rows, folder / parquet_file)
    return [csv_file, parquet_file]


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


@contextlib.contextmanager
def staged(out: Path, *, force: bool) -> Iterator[Path]:
    """A staging folder beside ``out``; on success it replaces ``out`` in one rename (the old content, if
    replaced with ``force``, is moved aside first and removed afterwards). On failure nothing is left."""
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.staging-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        yield staging
        _fsync_folder(staging)
        check_target(out, force=force)  # again: something may have appeared while the study ran
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
            os.rename(out, old)
        os.rename(staging, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _fsync_folder(folder: Path) -> None:
    for path in folder.iterdir():
        fsync_path(path)
