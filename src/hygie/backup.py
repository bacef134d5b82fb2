"""Encrypted backups of a hub, and restore drills.

A backup is one file: a clear header, then a tar stream of ``HYGIE_HOME`` cut into chunks, each sealed with
AES-256-GCM under a fresh data key. The data key is wrapped by the master key (as a release's is), so a backup
is unreadable without it and follows the same key rotations (``hygie keys rotate-master --keep-old``).

What goes in: releases, deposits, vocabularies, results, jobs, released outputs, the audit log and its
checkpoints (copied under the log's lock, so a whole prefix of the log), and a consistent snapshot of the SQLite
metadata store (SQLite's online backup). What stays out: ``keys/`` (master, audit signing and linkage keys
are escrowed apart: a backup that carried its own key would protect nothing), the work folders (staging,
trash, tmp), and the releases' query stores (derived from the release files, rebuilt on first use: decision
0021). A PostgreSQL metadata store is backed up with PostgreSQL's own tools; the header says which.

Integrity: chunk ``i`` is sealed with nonce ``i || final`` and the header's digest as associated data, so a
flipped byte, a reordered, dropped or added chunk, a truncated file or an edited header are each refused. The
last tar member lists every file with its size and sha256, checked again on verify and restore.

A restore writes into a new sibling folder and renames it into place once every file is checked, so a failed
restore leaves nothing behind. ``restore_checks`` then runs the drill: every release's files against its
manifest, the audit log's hash chain and signed checkpoints, and the metadata store's schema.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import shutil
import sqlite3
import struct
import tarfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hygie import __version__
from hygie.config import Settings
from hygie.durability import fsync_path
from hygie.errors import ConflictError, HygieError, NotFoundError
from hygie.keys import KeyError_, Keyring, WrappedKey, new_data_key

MAGIC = b"HYGIE-BACKUP-1\n"
CHUNK_BYTES = 4 << 20
MANIFEST_MEMBER = "hygie-backup-manifest.json"
SQLITE_STORE = "metadata.db"
# Never in a backup: keys are escrowed apart; the rest is work in progress or rebuilt on demand.
EXCLUDED_TOP = frozenset({"keys", "staging", "trash", "tmp", "query_stores"})
_SQLITE_SIDECARS = (f"{SQLITE_STORE}-wal", f"{SQLITE_STORE}-shm", f"{SQLITE_STORE}-journal")


class BackupError(HygieError):
    """A backup cannot be written, read, verified or restored; the message names the file and the reason."""


@dataclass(frozen=True)
class BackupHeader:
    backup_id: str
    created: str
    hygie_version: str
    key: WrappedKey
    chunk_bytes: int
    metadata_store: str  # "sqlite (included)" or "postgresql (not included: use pg_dump)"

    def to_json(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "created": self.created,
            "hygie_version": self.hygie_version,
            "key": self.key.to_json(),
            "chunk_bytes": self.chunk_bytes,
            "metadata_store": self.metadata_store,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BackupHeader:
        return cls(
            backup_id=str(data["backup_id"]),
            created=str(data["created"]),
            hygie_version=str(data["hygie_version"]),
            key=WrappedKey.from_json(data["key"]),
            chunk_bytes=int(data["chunk_bytes"]),
            metadata_store=str(data["metadata_store"]),
        )

    @property
    def key_context(self) -> str:
        return _key_context(self.backup_id)


def _key_context(backup_id: str) -> str:
    """What a backup's wrapped data key is bound to: it cannot be moved to another backup."""
    return f"backup:{backup_id}"


@dataclass(frozen=True)
class BackupFile:
    path: str  # relative to HYGIE_HOME, POSIX separators
    size: int
    sha256: str


@dataclass
class BackupReport:
    header: BackupHeader
    files: list[BackupFile] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


# -- sealed chunk stream ----------------------------------------------------------------------------------------


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


class _SealingWriter(io.RawIOBase):
    """A write-only stream that seals what it is given in fixed-size chunks (length-prefixed ciphertexts)."""

    def __init__(self, out: IO[bytes], key: bytes, aad: bytes, chunk_bytes: int) -> None:
        self._out, self._aead, self._aad, self._size = out, AESGCM(key), aad, chunk_bytes
        self._buffer = bytearray()
        self._index = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._buffer += data
        while len(self._buffer) > self._size:  # keep at least one byte back: the last chunk must be the final one
            self._seal(bytes(self._buffer[: self._size]), final=False)
            del self._buffer[: self._size]
        return len(data)

    def finish(self) -> None:
        self._seal(bytes(self._buffer), final=True)
        self._buffer.clear()

    def _seal(self, plain: bytes, *, final: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._index, final), plain, self._aad)
        self._out.write(struct.pack(">I", len(sealed)) + sealed)
        self._index += 1


class _OpeningReader(io.RawIOBase):
    """Reads a sealed chunk stream back, refusing any chunk that does not authenticate in its place."""

    def __init__(self, source: IO[bytes], key: bytes, aad: bytes, name: str, chunk_bytes: int) -> None:
        self._in, self._aead, self._aad, self._name, self._size = source, AESGCM(key), aad, name, chunk_bytes
        self._plain = b""
        self._offset = 0
        self._index = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while self._offset >= len(self._plain) and not self._done:
            self._next_chunk()
        n = min(len(target), len(self._plain) - self._offset)
        target[:n] = self._plain[self._offset : self._offset + n]
        self._offset += n
        return n

    def _next_chunk(self) -> None:
        prefix = self._in.read(4)
        if len(prefix) < 4:
            raise BackupError(f"{self._name}: truncated after chunk {self._index} (the final chunk is missing)")
        (length,) = struct.unpack(">I", prefix)
        if length > self._size + 16:
            raise BackupError(f"{self._name}: chunk {self._index} is damaged (impossible length {length})")
        sealed = self._in.read(length)
        if len(sealed) < length:
            raise BackupError(f"{self._name}: truncated inside chunk {self._index}")
        for final in (False, True):
            with contextlib.suppress(InvalidTag):
                self._plain = self._aead.decrypt(_nonce(self._index, final), sealed, self._aad)
                self._offset = 0
                self._index += 1
                if final:
                    self._done = True
                    if self._in.read(1):
                        raise BackupError(f"{self._name}: data after the final chunk")
                return
        raise BackupError(
            f"{self._name}: chunk {self._index} does not authenticate (the file was altered, reordered or damaged)"
        )


# -- writing ----------------------------------------------------------------------------------------------------


def _sqlite_store(settings: Settings) -> Path | None:
    """The SQLite metadata store's file, or None when the metadata live in PostgreSQL."""
    from hygie.governance.store import database_url

    url = database_url(settings)
    if not url.startswith("sqlite"):
        return None
    return Path(url.split("///", 1)[1])


def _home_files(home: Path) -> Iterator[Path]:
    """Every regular file under ``home`` that a backup carries, in a stable order."""
    for root, dirs, files in os.walk(home):
        rel = Path(root).relative_to(home)
        if rel == Path("."):
            dirs[:] = [d for d in dirs if d not in EXCLUDED_TOP]
            files = [f for f in files if f != SQLITE_STORE and f not in _SQLITE_SIDECARS]
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                yield path


class _HashingReader(io.RawIOBase):
    def __init__(self, source: IO[bytes]) -> None:
        self._in = source
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        data = self._in.read(len(target))
        self.digest.update(data)
        target[: len(data)] = data
        return len(data)


def _add(tar: tarfile.TarFile, path: Path, arcname: str) -> BackupFile:
    info = tar.gettarinfo(str(path), arcname)
    info.uname = info.gname = ""
    info.uid = info.gid = 0
    with path.open("rb") as f:
        reader = _HashingReader(f)
        tar.addfile(info, reader)  # type: ignore[arg-type]
    return BackupFile(arcname, info.size, reader.digest.hexdigest())


def create_backup(settings: Settings, out: Path, *, step: Callable[[str], None] | None = None) -> BackupReport:
    """Write an encrypted backup of ``settings.home`` to ``out`` (a new file, outside the home)."""
    home = settings.home
    out = out.absolute()
    if not home.is_dir():
        raise NotFoundError(f"{home}: no hub here (HYGIE_HOME)")
    if out.exists():
        raise ConflictError(f"{out}: already exists; a backup never overwrites a file")
    if out.is_relative_to(home):
        raise BackupError(f"{out}: inside HYGIE_HOME; write backups elsewhere (the hub would back itself up)")
    if not out.parent.is_dir():
        raise NotFoundError(f"{out.parent}: no such folder")
    sqlite_file = _sqlite_store(settings)
    backup_id, data_key = uuid.uuid4().hex, new_data_key()
    header = BackupHeader(
        backup_id=backup_id,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        hygie_version=__version__,
        key=Keyring(settings).wrap(data_key, _key_context(backup_id)),
        chunk_bytes=CHUNK_BYTES,
        metadata_store="sqlite (included)" if sqlite_file else "postgresql (not included: use pg_dump)",
    )
    header_bytes = json.dumps(header.to_json(), sort_keys=True).encode()
    report = BackupReport(header)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        with tmp.open("xb") as raw:
            raw.write(MAGIC + struct.pack(">I", len(header_bytes)) + header_bytes)
            sealed = _SealingWriter(raw, data_key, hashlib.sha256(header_bytes).digest(), CHUNK_BYTES)
            with tarfile.open(fileobj=sealed, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                report.files = _archive(settings, tar, sqlite_file, tmp.with_name(f".{out.name}.metadata"), step)
            sealed.finish()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out)
        fsync_path(out.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return report


def _archive(
    settings: Settings,
    tar: tarfile.TarFile,
    sqlite_file: Path | None,
    snapshot: Path,
    step: Callable[[str], None] | None,
) -> list[BackupFile]:
    """Add the audit log (under its lock), a snapshot of the SQLite store, every other file, then the file list."""
    from hygie.governance.audit import AuditLog

    home, files = settings.home, []
    with AuditLog(settings).locked():  # the log and its checkpoints as one consistent prefix
        for path in _home_files(home / "audit") if (home / "audit").is_dir() else ():
            files.append(_add(tar, path, path.relative_to(home).as_posix()))
    if sqlite_file is not None and sqlite_file.exists():
        try:
            _snapshot_sqlite(sqlite_file, snapshot)
            files.append(_add(tar, snapshot, SQLITE_STORE))
        finally:
            snapshot.unlink(missing_ok=True)
    if step:
        step("audit log and metadata store copied")
    for path in _home_files(home):
        rel = path.relative_to(home)
        if rel.parts[0] == "audit":
            continue
        try:
            files.append(_add(tar, path, rel.as_posix()))
        except FileNotFoundError:
            raise BackupError(f"{rel}: removed while the backup was being written; run it again") from None
    if step:
        step(f"{len(files):,} files copied")
    manifest = json.dumps({"files": [f.__dict__ for f in files]}, sort_keys=True).encode()
    info = tarfile.TarInfo(MANIFEST_MEMBER)
    info.size, info.mode = len(manifest), 0o600
    tar.addfile(info, io.BytesIO(manifest))
    return files


def _snapshot_sqlite(source: Path, target: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


# -- reading ----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _open(settings: Settings, path: Path) -> Iterator[tuple[BackupHeader, tarfile.TarFile]]:
    if not path.is_file():
        raise NotFoundError(f"{path}: no such backup file")
    with path.open("rb") as raw:
        if raw.read(len(MAGIC)) != MAGIC:
            raise BackupError(f"{path}: not a hygie backup (unknown header)")
        (length,) = struct.unpack(">I", raw.read(4).rjust(4, b"\0"))
        header_bytes = raw.read(length)
        try:
            header = BackupHeader.from_json(json.loads(header_bytes))
        except (ValueError, KeyError, TypeError) as e:
            raise BackupError(f"{path}: damaged header ({e.__class__.__name__})") from None
        try:
            key = Keyring(settings).unwrap(header.key, header.key_context)
        except KeyError_ as e:
            raise BackupError(f"{path}: {e}") from None
        aad = hashlib.sha256(header_bytes).digest()
        reader = io.BufferedReader(_OpeningReader(raw, key, aad, str(path), header.chunk_bytes), CHUNK_BYTES)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                yield header, tar
            while reader.read(CHUNK_BYTES):  # tar stops at its end marker: authenticate up to the final chunk
                pass
        except tarfile.TarError as e:
            raise BackupError(f"{path}: the archive inside is damaged ({e})") from None


def _read(settings: Settings, path: Path, on_file: Callable[[tarfile.TarFile, tarfile.TarInfo], str]) -> BackupReport:
    """Walk every member, let ``on_file`` consume it (returning its sha256), and check them against the
    manifest at the end."""
    seen: dict[str, tuple[int, str]] = {}
    manifest: dict[str, Any] | None = None
    with _open(settings, path) as (header, tar):
        for member in tar:
            if member.name == MANIFEST_MEMBER:
                f = tar.extractfile(member)
                manifest = json.loads(f.read()) if f else None
                continue
            if not member.isfile():
                raise BackupError(f"{path}: unexpected member {member.name!r} (only regular files are backed up)")
            seen[member.name] = (member.size, on_file(tar, member))
    if manifest is None:
        raise BackupError(f"{path}: the file list is missing (the backup did not finish)")
    files = [BackupFile(**f) for f in manifest["files"]]
    listed = {f.path: (f.size, f.sha256) for f in files}
    for name in sorted(set(listed) | set(seen)):
        if listed.get(name) != seen.get(name):
            raise BackupError(f"{path}: {name} does not match the backup's file list")
    return BackupReport(header, files)


def _digest(tar: tarfile.TarFile, member: tarfile.TarInfo, sink: IO[bytes] | None = None) -> str:
    h = hashlib.sha256()
    f = tar.extractfile(member)
    assert f is not None  # regular files always have content
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
        if sink is not None:
            sink.write(chunk)
    return h.hexdigest()


def verify_backup(settings: Settings, path: Path) -> BackupReport:
    """Decrypt and check the whole backup without writing anything."""
    return _read(settings, path, lambda tar, member: _digest(tar, member))


def restore_backup(settings: Settings, path: Path, target: Path) -> BackupReport:
    """Restore the backup into ``target`` (absent or empty), all or nothing."""
    target = target.absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConflictError(f"{target}: not empty; restore into a new folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.with_name(f".{target.name}.restoring-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o700)

    def write(tar: tarfile.TarFile, member: tarfile.TarInfo) -> str:
        dest = (work / member.name).resolve()
        if not dest.is_relative_to(work.resolve()) or member.name.split("/")[0] in EXCLUDED_TOP:
            raise BackupError(f"{path}: member {member.name!r} would land outside the hub's folders")
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with dest.open("xb") as sink:
            digest = _digest(tar, member, sink)
        os.chmod(dest, member.mode & 0o777)
        return digest

    try:
        report = _read(settings, path, write)
        if target.exists():
            target.rmdir()
        os.replace(work, target)
        fsync_path(target.parent)
    finally:
        if work.exists():
            _remove_tree(work)
    return report


def _remove_tree(path: Path) -> None:
    for root, dirs, _ in os.walk(path):  # restored outputs are read-only; make them removable
        for d in dirs:
            os.chmod(Path(root) / d, 0o700)
    os.chmod(path, 0o700)
    shutil.rmtree(path, ignore_errors=True)


# -- restore drill ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    detail: str


def restore_checks(settings: Settings) -> list[Check]:
    """Check a (restored) hub: releases against their manifests, the audit log, the metadata store."""
    from hygie.governance.audit import AuditLog
    from hygie.releases import ReleaseStore

    checks: list[Check] = []
    for kind, root in (("release", settings.releases_dir), ("vocabulary", settings.vocabularies_dir)):
        if not root.is_dir():
            continue
        store = ReleaseStore(settings, root=root, kind=kind)
        for release in store.list():
            problems = release.verify()
            rows = sum(t.rows for t in release.manifest.tables.values())
            checks.append(
                Check(f"{kind} {release.name}", not problems, "; ".join(problems) or f"{rows:,} rows, sha256 ok")
            )
    log = AuditLog(settings)
    if log.log_file.exists():
        result = log.verify()
        checks.append(Check("audit log", result.ok, str(result.first) if not result.ok else "hash chain ok"))
    if (settings.home / SQLITE_STORE).exists():
        checks.append(_check_sqlite(settings.home / SQLITE_STORE))
    return checks


def _check_sqlite(path: Path) -> Check:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (status,) = con.execute("PRAGMA integrity_check").fetchone()
        version = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as e:
        return Check("metadata store", False, str(e))
    finally:
        con.close()
    return Check("metadata store", status == "ok", f"integrity {status}, schema {version[0] if version else '?'}")
