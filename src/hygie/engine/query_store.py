"""The query store: a derived, encrypted DuckDB database per release, which DuckDB reads instead of Parquet.

A release's canonical form stays its encrypted Parquet files and manifest (hashes, lineage, Spark, backups).
Reading zstd Parquet with modular encryption costs several times more CPU than reading DuckDB's own storage,
so ``DuckDBEngine`` reads a copy of the release's CDM tables in a DuckDB database file when there is one
(decision 0021). The copy is:

* **derived**: built from the release's Parquet files, never edited; deleting it loses nothing (it is rebuilt).
  It lives outside the immutable release folder, in ``HYGIE_HOME/query_stores/<release>/<fingerprint>.duckdb``,
  and is left out of backups.
* **encrypted** with DuckDB's database encryption (AES-GCM per block, wrong key refused). Its key is derived
  (HKDF-SHA256) from the release's data key and the release's fingerprint; it is never written anywhere.
* **bound to one release**: the fingerprint hashes the release's identity and each table's file hash and row
  count (not the wrapped data key, so a master-key rotation keeps the store valid). A store is used only if it
  opens with the derived key, names the same fingerprint and holds each table with the manifest's row count;
  otherwise it is removed and the release is read from Parquet (or the store rebuilt).
* **clustered**: each clinical table's rows are ordered by its concept column (``CLUSTER_BY``), so a query
  that selects a few concepts reads only the row groups that can hold them. Same rows, another order.
* **published atomically**: built into a temporary file in the same folder, checked, fsync'ed, then renamed
  into place. A crash leaves only a temporary file, which no reader opens and the next builder removes.
  Builders take an exclusive lock on the folder; a reader that finds a build under way reads Parquet meanwhile.

When stores are built (``Settings.query_store``, ``HYGIE_QUERY_STORE``): ``auto`` (default) builds one lazily,
on the first DuckDB use of a release whose encrypted files exceed ``BUILD_ABOVE_BYTES`` (small releases read
Parquet fast enough); ``always`` for any release; ``off`` never builds nor uses one. ``hygie release prepare``
builds it ahead of the first study.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hygie import __version__
from hygie.config import Settings
from hygie.durability import fsync_path
from hygie.engine.duckdb import OPENSSL_ABOVE_BYTES, connect, encrypted_bytes, parquet_source, register_key
from hygie.errors import HygieError
from hygie.sql import ident, literal

if TYPE_CHECKING:
    from hygie.releases.store import Release

FORMAT = "hygie-query-store/2"  # part of the fingerprint: a new format makes older stores stale
META_TABLE = "_hygie_query_store"  # key/value facts about the store, written last
ALIAS = "release_store"  # the attached database's name on a connection
MODES = ("auto", "always", "off")
# In ``auto`` mode, releases whose encrypted files are larger than this get a store (same scale as OpenSSL).
BUILD_ABOVE_BYTES = OPENSSL_ABOVE_BYTES
# Rows are stored clustered by the column queries select on, so that DuckDB's per-row-group min/max skips
# what a filter on a few concepts cannot match (a cohort's first scan reads about a tenth of the bytes).
CLUSTER_BY = {
    "visit_occurrence": "visit_concept_id",
    "visit_detail": "visit_detail_concept_id",
    "condition_occurrence": "condition_concept_id",
    "drug_exposure": "drug_concept_id",
    "procedure_occurrence": "procedure_concept_id",
    "device_exposure": "device_concept_id",
    "measurement": "measurement_concept_id",
    "observation": "observation_concept_id",
    "specimen": "specimen_concept_id",
    "drug_era": "drug_concept_id",
    "dose_era": "drug_concept_id",
    "condition_era": "condition_concept_id",
    "concept": "concept_id",
    "concept_ancestor": "ancestor_concept_id",
    "concept_relationship": "concept_id_2",
}
_TEMP_SUFFIX = ".tmp"
_LOCK = ".build.lock"


class QueryStoreError(HygieError):
    """A query store cannot be built (the message names the release and the reason)."""


@dataclass(frozen=True)
class BuildReport:
    path: Path
    seconds: float
    bytes: int
    tables: int
    rows: int


def fingerprint(release: Release) -> str:
    """What a store is bound to: the release's identity and every table's content hash and row count."""
    m = release.manifest
    facts = {
        "format": FORMAT,
        "kind": release.kind,
        "name": m.name,
        "sequence": m.sequence,
        "created_at": m.created_at,
        "tables": {t.name: [t.file, t.sha256, t.rows] for t in m.tables.values()},
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def folder(release: Release, settings: Settings) -> Path:
    return settings.query_stores_dir / release.name


def store_path(release: Release, settings: Settings) -> Path:
    return folder(release, settings) / f"{fingerprint(release)[:32]}.duckdb"


def _key(release: Release, settings: Settings) -> str:
    """The store's encryption key: derived from the release's data key, bound to its fingerprint."""
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"hygie query store|{fingerprint(release)}".encode()
    ).derive(release.data_key(settings))
    return base64.b64encode(derived).decode()


def eligible(release: Release) -> bool:
    """Only encrypted warehouse releases get a store (deposits and vocabularies are read by operators only)."""
    return release.kind == "release" and release.manifest.encryption is not None


def wanted(release: Release, settings: Settings) -> bool:
    """Whether this release should be read from a store under the hub's ``query_store`` setting."""
    if settings.query_store not in MODES:
        raise HygieError(f"HYGIE_QUERY_STORE={settings.query_store!r}: use one of {', '.join(MODES)}")
    if settings.query_store == "off" or not eligible(release):
        return False
    return settings.query_store == "always" or encrypted_bytes(release) > BUILD_ABOVE_BYTES


# -- reading ----------------------------------------------------------------------------------------------------


def attach(con: duckdb.DuckDBPyConnection, release: Release, settings: Settings) -> str | None:
    """Attach the release's store read-only as ``ALIAS`` if it exists and checks out; ``None`` otherwise.

    A store that cannot be opened with the derived key, names another release, or whose row counts differ
    from the manifest is removed (it is derived data) and ``None`` is returned: the caller reads Parquet.
    """
    path = store_path(release, settings)
    if not path.is_file():
        return None
    key = literal(_key(release, settings))
    try:
        con.execute(f"ATTACH {literal(str(path))} AS {ALIAS} (READ_ONLY, ENCRYPTION_KEY {key})")
    except duckdb.Error:
        _discard(path)
        return None
    if _problems(con, release):
        con.execute(f"DETACH {ALIAS}")
        _discard(path)
        return None
    return ALIAS


def _problems(con: duckdb.DuckDBPyConnection, release: Release) -> list[str]:
    """What is wrong with the attached store for this release (empty when it matches the manifest)."""
    try:
        meta = dict(con.execute(f"SELECT key, value FROM {ALIAS}.{META_TABLE}").fetchall())
        if meta.get("format") != FORMAT or meta.get("fingerprint") != fingerprint(release):
            return ["the store belongs to another release or format"]
        counts = _row_counts(con, [t.name for t in release.manifest.tables.values()])
    except duckdb.Error as e:
        return [f"unreadable ({e.__class__.__name__})"]
    return [
        f"{t.name}: {counts.get(t.name)} rows, the manifest says {t.rows}"
        for t in release.manifest.tables.values()
        if counts.get(t.name) != t.rows
    ]


def _row_counts(con: duckdb.DuckDBPyConnection, tables: list[str]) -> dict[str, int]:
    if not tables:
        return {}
    union = " UNION ALL ".join(f"SELECT {literal(t)}, count(*) FROM {ALIAS}.{ident(t)}" for t in tables)
    return {name: int(n) for name, n in con.execute(union).fetchall()}


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    with contextlib.suppress(FileNotFoundError):
        Path(f"{path}.wal").unlink()


# -- building ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _build_lock(target: Path, *, wait: bool) -> Iterator[bool]:
    """Hold the folder's build lock (yields False if another process holds it and ``wait`` is False)."""
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (target / _LOCK).open("a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def ensure(release: Release, settings: Settings, *, wait: bool = False) -> Path | None:
    """The release's store, built now if it is missing; ``None`` if another process is building it and
    ``wait`` is False (the caller reads Parquet meanwhile)."""
    path = store_path(release, settings)
    if path.is_file():
        return path
    with _build_lock(folder(release, settings), wait=wait) as held:
        if not held:
            return None
        if path.is_file():  # built by the process that held the lock before us
            return path
        return build(release, settings, _locked=True).path


def build(release: Release, settings: Settings, *, _locked: bool = False) -> BuildReport:
    """(Re)build the release's store from its Parquet files and publish it atomically."""
    if not eligible(release):
        raise QueryStoreError(f"release {release.name}: only encrypted warehouse releases have a query store")
    if not _locked:
        with _build_lock(folder(release, settings), wait=True):
            return build(release, settings, _locked=True)
    started = time.perf_counter()
    target = store_path(release, settings)
    _sweep(target.parent, keep=None)  # under the lock every temporary file is a dead builder's
    temp = target.with_name(f"{target.name}.{os.getpid()}.{os.urandom(4).hex()}{_TEMP_SUFFIX}")
    con = connect(settings, writer=True, allowed_dirs=[release.path, target.parent])
    try:
        register_key(con, "release_key", release.data_key(settings))
        con.execute(f"ATTACH {literal(str(temp))} AS {ALIAS} (ENCRYPTION_KEY {literal(_key(release, settings))})")
        tables = list(release.manifest.tables.values())
        for entry in tables:
            source = parquet_source(str(release.path / entry.file), "release_key")
            order = _cluster_order(con, entry.name, source)
            con.execute(f"CREATE TABLE {ALIAS}.{ident(entry.name)} AS SELECT * FROM {source}{order}")
        facts = {
            "format": FORMAT,
            "fingerprint": fingerprint(release),
            "release": release.name,
            "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "hygie_version": __version__,
        }
        values = ", ".join(f"({literal(k)}, {literal(v)})" for k, v in facts.items())
        con.execute(f"CREATE TABLE {ALIAS}.{META_TABLE} AS SELECT * FROM (VALUES {values}) AS t(key, value)")
        problems = _problems(con, release)
        if problems:
            raise QueryStoreError(f"release {release.name}: the query store does not match: {'; '.join(problems)}")
        con.execute(f"CHECKPOINT {ALIAS}")
        con.execute(f"DETACH {ALIAS}")
    except BaseException:
        con.close()
        _discard(temp)
        raise
    con.close()
    temp.chmod(0o440)
    fsync_path(temp)
    os.rename(temp, target)  # the publishing step: readers see the whole store or none
    fsync_path(target.parent)
    _sweep(target.parent, keep=target)  # stores of an earlier release under the same name
    return BuildReport(
        path=target,
        seconds=time.perf_counter() - started,
        bytes=target.stat().st_size,
        tables=len(tables),
        rows=sum(e.rows for e in tables),
    )


def _cluster_order(con: duckdb.DuckDBPyConnection, table: str, source: str) -> str:
    """`` ORDER BY`` clause clustering ``table`` by its concept column (then person), or nothing."""
    columns = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    keys = [c for c in (CLUSTER_BY.get(table), "person_id") if c in columns]
    return f" ORDER BY {', '.join(ident(k) for k in keys)}" if table in CLUSTER_BY and keys else ""


def _sweep(where: Path, *, keep: Path | None) -> None:
    """Remove temporary files (and, with ``keep``, every other store) from a store folder."""
    for p in where.iterdir():
        stale_temp = p.name.endswith(_TEMP_SUFFIX) or p.name.endswith(_TEMP_SUFFIX + ".wal")
        other_store = keep is not None and p.suffix == ".duckdb" and p != keep
        if stale_temp or other_store:
            p.unlink(missing_ok=True)


def remove(release_name: str, settings: Settings) -> None:
    """Delete every store of a release (when the release is deleted)."""
    shutil.rmtree(settings.query_stores_dir / release_name, ignore_errors=True)
