"""The one DuckDB connection helper, and the DuckDB engine over a release.

Every DuckDB connection in hygie comes from ``connect``: extensions are never downloaded (autoinstall and
autoload off, extension folder inside ``HYGIE_HOME``), remote file systems are disabled, spilling goes to
``HYGIE_HOME/tmp``, and the configuration is locked so that no later statement can loosen it.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from hygie.cdm.narrow import columns_of, is_narrow, padded_sql
from hygie.cdm.schema import cdm_schema
from hygie.config import Settings
from hygie.sql import literal

if TYPE_CHECKING:
    import ibis.expr.types as ir
    import pyarrow as pa

    from hygie.engine.scope import DataScope
    from hygie.releases.store import Release

# Readers of encrypted releases larger than this load OpenSSL (see ``connect``).
OPENSSL_ABOVE_BYTES = 64 * 1024 * 1024

# Network file systems a DuckDB build may carry; none is ever needed by hygie.
_REMOTE_FILESYSTEMS = "HTTPFileSystem,S3FileSystem,HuggingFaceFileSystem"


def _httpfs_path() -> str:
    """The signed httpfs extension shipped as a wheel; it brings OpenSSL, needed to *write* encrypted files."""
    import duckdb_extension_httpfs

    found = glob.glob(
        os.path.join(os.path.dirname(duckdb_extension_httpfs.__file__), "extensions", "*", "httpfs.duckdb_extension")
    )
    if not found:  # pragma: no cover - a broken installation
        raise RuntimeError("the duckdb-extension-httpfs wheel carries no extension binary")
    return found[0]


def connect(
    settings: Settings,
    *,
    allowed_dirs: Sequence[Path],
    allowed_files: Sequence[Path] = (),
    writer: bool = False,
    database: str = ":memory:",
    lock: bool = True,
    openssl: bool = False,
) -> duckdb.DuckDBPyConnection:
    """Open a configured DuckDB connection that can touch files only below ``allowed_dirs`` (and its own
    spill folder), and the single files ``allowed_files``. ``writer=True`` loads the crypto needed to write
    encrypted files; ``openssl=True`` loads it for a reader (AES with hardware support: decrypting is about 2.5x
    cheaper than with DuckDB's built-in mbedtls, for a one-off 0.3-0.8 s).

    With ``lock=False`` the caller must call ``lock_configuration(con)`` once its own set-up is done.
    """
    settings.extension_dir.mkdir(parents=True, exist_ok=True)
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    config: dict[str, str | bool | int] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "extension_directory": str(settings.extension_dir),
        "temp_directory": str(settings.tmp_dir),
        "memory_limit": settings.memory_limit,
    }
    if settings.threads:
        config["threads"] = settings.threads
    con = duckdb.connect(database, config=config)
    encrypt_spill = writer or os.environ.get("HYGIE_ENCRYPT_SPILL") == "1"
    if encrypt_spill or openssl:
        con.execute(f"LOAD '{_httpfs_path()}'")
    if encrypt_spill:
        # Spill files then hold patient rows encrypted (AES-GCM, a key DuckDB makes per process); readers
        # pay for loading OpenSSL only when HYGIE_ENCRYPT_SPILL=1 (docs/encryption.md).
        con.execute("SET temp_file_encryption = true")
    con.execute(f"SET disabled_filesystems = '{_REMOTE_FILESYSTEMS}'")
    # Below this line no file outside these folders can be read or written, and nothing can be installed.
    dirs = ", ".join(literal(str(d.resolve()) + "/") for d in [*allowed_dirs, settings.tmp_dir])
    con.execute(f"SET allowed_directories = [{dirs}]")  # a literal: binding a list would import pandas (3 s)
    if allowed_files:
        con.execute(f"SET allowed_paths = [{', '.join(literal(str(f.resolve())) for f in allowed_files)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")  # the CLI shows its own progress
    if lock:
        lock_configuration(con)
    return con


def lock_configuration(con: duckdb.DuckDBPyConnection) -> None:
    """From now on no statement can change the connection's settings (network, extensions, limits)."""
    con.execute("SET lock_configuration = true")


def register_key(con: duckdb.DuckDBPyConnection, name: str, key: bytes) -> None:
    """Make a Parquet encryption key usable on this connection under ``name``."""
    import base64

    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ValueError(f"invalid key name {name!r}")
    con.execute(f"PRAGMA add_parquet_key('{name}', '{base64.b64encode(key).decode()}')")


def parquet_source(path: str, key_name: str | None) -> str:
    """SQL of a table function reading one (possibly encrypted) Parquet file."""
    escaped = path.replace("'", "''")
    if key_name is None:
        return f"read_parquet('{escaped}')"
    return f"read_parquet('{escaped}', encryption_config = {{footer_key: '{key_name}'}})"


def parquet_copy_options(key_name: str | None) -> str:
    enc = f", ENCRYPTION_CONFIG {{footer_key: '{key_name}'}}" if key_name else ""
    return f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880{enc})"


def encrypted_bytes(release: Release) -> int:
    """The size of a release's encrypted table files (0 for a plaintext release)."""
    return sum(e.bytes for e in release.manifest.tables.values()) if release.manifest.encryption else 0


class DuckDBEngine:
    """A release opened read-only: one view per CDM table, over the release's query store (a derived encrypted
    DuckDB database, decision 0021) when it has one, else over its immutable encrypted Parquet files.

    ``storage`` says which backs the views: ``"query store"`` or ``"parquet"``. Whether a missing store is
    built first follows ``settings.query_store`` (``engine.query_store``).
    """

    name = "duckdb"

    def __init__(
        self,
        release: Release,
        settings: Settings,
        *,
        writable_dirs: Sequence[Path] = (),
        scope: DataScope | None = None,
    ) -> None:
        from hygie.engine import query_store
        from hygie.engine.scope import DataScope

        self.release = release
        self.scope = scope or DataScope()
        store = None
        if query_store.wanted(release, settings):
            try:
                store = query_store.ensure(release, settings)
            except (duckdb.Error, OSError, MemoryError, query_store.QueryStoreError):
                store = None  # a build that fails (disk full, a job's memory cap) costs speed, never the study
        # Large encrypted releases are read with OpenSSL: its fixed cost is repaid by the first large scan.
        self.con = connect(
            settings,
            allowed_dirs=[release.path, *writable_dirs],
            # The store and its (never written) WAL, not its folder: nothing can be written beside it.
            allowed_files=[store, Path(f"{store}.wal")] if store else [],
            lock=False,
            openssl=encrypted_bytes(release) > OPENSSL_ABOVE_BYTES,
        )
        alias = query_store.attach(self.con, release, settings) if store else None
        self.storage = "query store" if alias else "parquet"
        key_name = None
        if alias is None and release.manifest.encryption is not None:
            key_name = "release_key"
            register_key(self.con, key_name, release.data_key(settings))
        schema = cdm_schema("5.4")
        for entry in release.manifest.tables.values():
            if not self.scope.visible(entry.name):
                continue  # outside the project's approved scope: the table does not exist for it
            source = f'{alias}."{entry.name}"' if alias else parquet_source(str(release.path / entry.file), key_name)
            # A narrow file (``cdm.narrow``) is read with every CDM column. Its manifest lists its columns; a
            # deposit written before manifests did is asked its file's schema.
            present = set(entry.columns) if entry.columns is not None else None
            if present is None and release.kind == "deposit" and entry.name in schema:
                present = columns_of(self.con, source)
            if present is not None and is_narrow(schema[entry.name], present):
                source = f"({padded_sql(schema[entry.name], present, source)})"
            select = self.scope.view_sql(entry.name, source, release.manifest)
            self.con.execute(f'CREATE VIEW "{entry.name}" AS {select}')
        import ibis

        # Ibis sets the session time zone when it attaches, so it attaches before the settings are locked.
        self.ibis = ibis.duckdb.from_connection(self.con)
        lock_configuration(self.con)

    def tables(self) -> list[str]:
        return [name for name in self.release.manifest.tables if self.scope.visible(name)]

    def sql(self, query: str, params: list[object] | None = None) -> duckdb.DuckDBPyRelation:
        # Note: bound parameters make DuckDB's Python client import pandas (seconds) on first use.
        return self.con.sql(query, params=params)

    def table(self, name: str) -> ir.Table:
        return self.ibis.table(name)

    def to_arrow(self, expr: ir.Expr) -> pa.Table:
        return self.ibis.to_pyarrow(expr)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> DuckDBEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
