"""The release store: list, open, build and delete releases under ``HYGIE_HOME/releases``.

The same store, given another root and kind, keeps other immutable sets of encrypted tables: installed
vocabularies (``HYGIE_HOME/vocabularies``) and site deposits (``HYGIE_HOME/sites/<site>/deposits``).

Publishing protocol (crash-safe at every instant):
1. a builder writes every file into ``staging/<name>.<random>/`` (which records its owner's pid);
2. files are fsync'ed, the manifest is written last and fsync'ed;
3. one ``rename`` moves the folder to ``releases/<name>``; rename is atomic and fails if the target exists,
   so an existing release is never touched.
A crash before step 3 leaves only a staging folder, swept by the next builder once its owner is dead.
Deletion renames the release into ``trash/`` first (atomic), then removes it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from hygie import __version__
from hygie.cdm.narrow import columns_of, is_narrow
from hygie.cdm.schema import cdm_schema
from hygie.checksums import sha256_file
from hygie.config import Settings
from hygie.durability import fsync_path
from hygie.engine import query_store
from hygie.engine.duckdb import connect, parquet_copy_options, register_key
from hygie.errors import ConflictError, HygieError, NotFoundError
from hygie.keys import KeyError_, Keyring, WrappedKey, new_data_key
from hygie.releases.manifest import MANIFEST_FILE, LineageEntry, Manifest, TableEntry, UnknownConcept

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_WRITE_KEY = "staging_key"


def validate_name(name: str) -> str:
    if not _NAME.fullmatch(name) or ".." in name:
        raise HygieError(
            f"invalid release name {name!r}: use 1-64 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Release:
    path: Path
    manifest: Manifest
    kind: str = "release"

    @property
    def name(self) -> str:
        return self.manifest.name

    def data_key(self, settings: Settings) -> bytes:
        if self.manifest.encryption is None:
            raise HygieError(f"release {self.name} is not encrypted")
        wrapped = WrappedKey.from_json(self.manifest.encryption["data_key"])
        try:
            return Keyring(settings).unwrap(wrapped, f"{self.kind}:{self.name}")
        except KeyError_ as e:  # name the manifest that holds the wrapped key
            raise KeyError_(f"{self.path / MANIFEST_FILE}: {e}") from None

    def verify(self) -> list[str]:
        """Check every file against the manifest; returns the problems found (empty when intact)."""
        problems = []
        for entry in self.manifest.tables.values():
            f = self.path / entry.file
            if not f.exists():
                problems.append(f"{entry.file}: missing")
            elif sha256_file(f) != entry.sha256:
                problems.append(f"{entry.file}: sha256 differs from the manifest")
        return problems


class ReleaseStore:
    def __init__(self, settings: Settings, *, root: Path | None = None, kind: str = "release") -> None:
        self.settings = settings
        self.root = root or settings.releases_dir
        self.kind = kind

    # -- reading ----------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        root = self.root
        if not root.exists():
            return []
        return sorted(p.name for p in root.iterdir() if (p / MANIFEST_FILE).is_file())

    def list(self) -> list[Release]:
        return sorted((self.get(n) for n in self.names()), key=lambda r: r.manifest.sequence)

    def exists(self, name: str) -> bool:
        return (self.root / name / MANIFEST_FILE).is_file()

    def get(self, name: str) -> Release:
        validate_name(name)
        path = self.root / name
        manifest_path = path / MANIFEST_FILE
        if not manifest_path.is_file():
            known = ", ".join(self.names()) or "none"
            raise NotFoundError(f"no {self.kind} named {name!r} ({self.kind}s: {known})")
        return Release(path, Manifest.from_json(json.loads(manifest_path.read_text())), self.kind)

    # -- deleting ---------------------------------------------------------------------------------------
    def delete(self, name: str) -> None:
        release = self.get(name)
        self.settings.trash_dir.mkdir(parents=True, exist_ok=True)
        doomed = self.settings.trash_dir / f"{name}.{uuid.uuid4().hex}"
        os.rename(release.path, doomed)  # atomic: the release disappears in one step
        fsync_path(self.root)
        shutil.rmtree(doomed)
        results = self.settings.results_dir / name
        if self.kind == "release" and results.exists():
            shutil.rmtree(results)
        if self.kind == "release":
            query_store.remove(name, self.settings)  # derived from the release: it goes with it

    # -- building ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def build(
        self, name: str, *, synthetic: bool, description: str = "", read_from: Sequence[Path] = ()
    ) -> Iterator[ReleaseBuilder]:
        """Build a release in staging; it is published only if the block ends with ``builder.publish()``.

        The builder's DuckDB connection may read files only below ``read_from`` and write only to staging.
        """
        self.check_new_name(name)
        self.sweep_staging()
        self.settings.staging_dir.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.settings.staging_dir / f"{name}.{uuid.uuid4().hex}"
        staging.mkdir()
        (staging / ".owner").write_text(str(os.getpid()))
        builder = None
        try:
            builder = ReleaseBuilder(
                self, name, staging, synthetic=synthetic, description=description, read_from=read_from
            )
            yield builder
        finally:
            if builder is not None:
                builder.con.close()
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def check_new_name(self, name: str) -> None:
        validate_name(name)
        if self.exists(name):
            raise ConflictError(f"{self.kind} {name!r} already exists and is immutable (choose another name)")

    def sweep_staging(self) -> None:
        """Remove staging folders left by builders that died."""
        root = self.settings.staging_dir
        if not root.exists():
            return
        for folder in root.iterdir():
            try:
                pid = int((folder / ".owner").read_text())
            except (OSError, ValueError):
                pid = None
            if pid is None or not _alive(pid):
                shutil.rmtree(folder, ignore_errors=True)

    def next_sequence(self) -> int:
        return max((r.manifest.sequence for r in self.list()), default=0) + 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ReleaseBuilder:
    """Writes the tables of one new release into its staging folder, then publishes it."""

    def __init__(
        self,
        store: ReleaseStore,
        name: str,
        staging: Path,
        *,
        synthetic: bool,
        description: str,
        read_from: Sequence[Path] = (),
    ) -> None:
        self.store = store
        self.name = name
        self.staging = staging
        self.synthetic = synthetic
        self.description = description
        data_key = new_data_key()
        self._wrapped = Keyring(store.settings).wrap(data_key, f"{store.kind}:{name}")
        self.con: duckdb.DuckDBPyConnection = connect(store.settings, writer=True, allowed_dirs=[staging, *read_from])
        register_key(self.con, _WRITE_KEY, data_key)
        self.tables: dict[str, TableEntry] = {}
        self.lineage: list[LineageEntry] = []
        self.unknown_concepts: list[UnknownConcept] = []
        self.warnings: list[str] = []
        self.rejects_file: str | None = None
        self.linkage: dict[str, object] | None = None
        self.quality: list[dict[str, object]] = []

    def write_table(self, table: str, select_sql: str, *, rejected_rows: int = 0, flagged_rows: int = 0) -> TableEntry:
        """Write the result of ``select_sql`` (on ``self.con``) as the release's table ``table``."""
        file = f"{table}.parquet"
        self._copy(select_sql, file)
        written = f"read_parquet('{self.staging / file}', encryption_config = {{footer_key: '{_WRITE_KEY}'}})"
        rows = self.con.execute(f"SELECT count(*) FROM {written}").fetchone()[0]
        columns = columns_of(self.con, written)
        schema = cdm_schema("5.4")
        narrow = table in schema and is_narrow(schema[table], columns)
        entry = TableEntry(
            name=table,
            file=file,
            rows=rows,
            bytes=(self.staging / file).stat().st_size,
            sha256=sha256_file(self.staging / file),
            rejected_rows=rejected_rows,
            flagged_rows=flagged_rows,
            columns=[c for c in schema[table].column_names if c in columns] if narrow else None,
        )
        self.tables[table] = entry
        return entry

    def table_views(self) -> set[str]:
        """Views named after the tables written so far (e.g. ``person``), for checks before publishing."""
        for entry in self.tables.values():
            source = f"read_parquet('{self.staging / entry.file}', encryption_config = {{footer_key: '{_WRITE_KEY}'}})"
            self.con.execute(f'CREATE OR REPLACE TEMP VIEW "{entry.name}" AS SELECT * FROM {source}')
        return set(self.tables)

    def write_rejects(self, select_sql: str) -> None:
        self._copy(select_sql, "rejects.parquet")
        self.rejects_file = "rejects.parquet"

    def write_operator_file(self, file: str, select_sql: str) -> str:
        """An encrypted file kept with the release for operators only: no engine exposes it to studies."""
        self._copy(select_sql, file)
        return file

    def _copy(self, select_sql: str, file: str) -> None:
        target = str(self.staging / file).replace("'", "''")
        self.con.execute(f"COPY ({select_sql}) TO '{target}' {parquet_copy_options(_WRITE_KEY)}")

    def publish(self) -> Release:
        """Write the manifest and move the release into place in one atomic step."""
        if not self.tables:
            raise HygieError(f"nothing to publish: the {self.store.kind} has no table")
        manifest = Manifest(
            name=self.name,
            sequence=self.store.next_sequence(),
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            hygie_version=__version__,
            cdm_version="5.4",
            synthetic=self.synthetic,
            tables=dict(sorted(self.tables.items())),
            lineage=self.lineage,
            encryption={
                "scheme": "parquet-modular-encryption/AES_GCM_V1",
                "data_key": self._wrapped.to_json(),
            },
            description=self.description,
            rejects_file=self.rejects_file,
            unknown_concepts=self.unknown_concepts,
            warnings=self.warnings,
            linkage=self.linkage,
            quality=self.quality,
        )
        for f in self.staging.iterdir():
            if f.is_file():
                f.chmod(0o440)  # published files are never written again
                fsync_path(f)
        (self.staging / ".owner").unlink()
        manifest_path = self.staging / MANIFEST_FILE
        with manifest_path.open("w") as f:
            f.write(manifest.dumps())
            f.flush()
            os.fsync(f.fileno())
        manifest_path.chmod(0o440)
        fsync_path(self.staging)
        target = self.store.root / self.name
        try:
            os.rename(self.staging, target)  # the publishing step
        except OSError:
            raise ConflictError(f"{self.store.kind} {self.name!r} was published by someone else meanwhile") from None
        fsync_path(self.store.root)
        return Release(target, manifest, self.store.kind)


def read_rejects(release: Release, settings: Settings, *, table: str | None = None) -> list[dict[str, object]]:
    """The release's rejected and flagged rows with their reasons (row content included for rejected rows).

    Operator-only: this is row-level data, read from the encrypted rejects file.
    """
    if release.manifest.rejects_file is None:
        return []
    from hygie.engine.duckdb import parquet_source
    from hygie.sql import literal

    con = connect(settings, allowed_dirs=[release.path])
    try:
        register_key(con, "rejects_key", release.data_key(settings))
        where = f"WHERE table_name = {literal(table)}" if table else ""
        rel = con.sql(
            f"SELECT * FROM {parquet_source(str(release.path / release.manifest.rejects_file), 'rejects_key')} "
            f"{where} ORDER BY table_name, source_row, check_name"
        )
        return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]
    finally:
        con.close()
