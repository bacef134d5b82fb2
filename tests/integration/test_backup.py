"""Backups and restore drills (TRE checklist #38): a hub backed up and restored into a fresh folder has the
same releases (per-table sha256 and row counts), audit log and metadata; the backup file is encrypted (no marker,
no key inside); any tampering, truncation or wrong key is refused; a failed restore leaves nothing behind."""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hygie.backup as backup
from hygie.backup import BackupError, create_backup, restore_backup, restore_checks, verify_backup
from hygie.cli.main import app
from hygie.config import Settings
from hygie.engine import DuckDBEngine
from hygie.errors import ConflictError
from hygie.governance.audit import AuditLog
from hygie.governance.store import open_store
from hygie.keys import FileMasterKey
from hygie.releases import ReleaseStore
from tests.cdm_files import write_cdm

MARKER = "ZQXBACKUPMARKER4417"
runner = CliRunner()


def hygie(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def hub(tmp_path: Path, settings: Settings) -> Settings:
    """A hub with a release, cohort results, an account whose name carries the marker, and audit entries."""
    password = tmp_path / "password"
    password.write_text("correct horse battery staple 42")
    folder = write_cdm(tmp_path / "cdm")
    cohort = Path(__file__).parents[1] / "data" / "cohorts" / "cdmconnector" / "GiBleed_all.json"
    for args in (
        ("cdm", "load", str(folder), "--release", "r1", "--synthetic"),
        ("cohort", "generate", str(cohort), "--release", "r1"),
        ("user", "add", "alice", "--role", "auditor", "--full-name", MARKER, "--password-file", str(password)),
    ):
        result = hygie(*args)
        assert result.exit_code == 0, (args, result.output)
    AuditLog(settings).checkpoint()
    return settings


def _fingerprint(settings: Settings) -> dict[str, tuple[int, str, int]]:
    """Per release table: rows in the manifest, sha256 in the manifest, and rows actually read back."""
    release = ReleaseStore(settings).get("r1")
    engine = DuckDBEngine(release, settings)
    try:
        return {
            name: (t.rows, t.sha256, engine.con.execute(f"SELECT count(*) FROM {name}").fetchone()[0])
            for name, t in release.manifest.tables.items()
        }
    finally:
        engine.close()


def _restored(settings: Settings, folder: Path) -> Settings:
    return dataclasses.replace(settings, home=folder)  # same master key: keys are escrowed apart


def test_restore_drill_gives_back_the_same_hub(hub: Settings, tmp_path: Path) -> None:
    file = tmp_path / "hub.hbk"
    written = create_backup(hub, file)
    target = tmp_path / "restored"
    restored = restore_backup(hub, file, target)
    assert sorted(f.path for f in restored.files) == sorted(f.path for f in written.files)
    again = _restored(hub, target)

    assert _fingerprint(again) == _fingerprint(hub)
    assert all(check.ok for check in restore_checks(again)), restore_checks(again)
    log, copy = AuditLog(hub), AuditLog(again)
    assert copy.verify().ok
    assert [e.hash for e in copy.entries()] == [e.hash for e in log.entries()]
    store = open_store(again)
    try:
        from hygie.governance.accounts import Accounts

        assert Accounts(store).get("alice").full_name == MARKER
    finally:
        store.close()
    results = {p.relative_to(hub.home) for p in hub.results_dir.rglob("*") if p.is_file()}
    assert results and results == {p.relative_to(target) for p in again.results_dir.rglob("*") if p.is_file()}


def test_backup_is_encrypted_and_carries_no_key(hub: Settings, tmp_path: Path) -> None:
    file = tmp_path / "hub.hbk"
    report = create_backup(hub, file)
    data = file.read_bytes()
    assert MARKER.encode() not in data and b"alice" not in data
    assert hub.master_key_file.read_bytes().strip() not in data
    assert not any(f.path.startswith("keys/") for f in report.files)
    assert "metadata.db" in {f.path for f in report.files}


def test_a_wrong_master_key_is_refused(hub: Settings, tmp_path: Path) -> None:
    file = tmp_path / "hub.hbk"
    create_backup(hub, file)
    other = dataclasses.replace(hub, master_key_file=tmp_path / "other.key")
    FileMasterKey.create(other.master_key_file)
    with pytest.raises(BackupError, match=r"hub\.hbk"):
        verify_backup(other, file)


def _chunks(data: bytes) -> tuple[bytes, list[bytes]]:
    """Split a backup file into its clear head and its sealed chunks (each with its length prefix)."""
    offset = len(backup.MAGIC)
    (length,) = struct.unpack(">I", data[offset : offset + 4])
    offset += 4 + length
    head, chunks = data[:offset], []
    while offset < len(data):
        (n,) = struct.unpack(">I", data[offset : offset + 4])
        chunks.append(data[offset : offset + 4 + n])
        offset += 4 + n
    return head, chunks


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup, "CHUNK_BYTES", 4096)  # many chunks from a small hub


@pytest.mark.parametrize("damage", ["flip", "swap", "drop", "truncate", "append", "header"])
def test_tampering_is_refused(hub: Settings, tmp_path: Path, small_chunks: None, damage: str) -> None:
    file = tmp_path / "hub.hbk"
    create_backup(hub, file)
    head, chunks = _chunks(file.read_bytes())
    assert len(chunks) > 3
    if damage == "flip":
        middle = bytearray(chunks[1])
        middle[len(middle) // 2] ^= 1
        chunks[1] = bytes(middle)
    elif damage == "swap":
        chunks[1], chunks[2] = chunks[2], chunks[1]
    elif damage == "drop":
        del chunks[1]
    elif damage == "truncate":
        chunks = chunks[:-1]
    elif damage == "append":
        chunks.append(chunks[-1])
    else:
        header = json.loads(head[len(backup.MAGIC) + 4 :])
        header["metadata_store"] = "sqlite (included)."
        body = json.dumps(header, sort_keys=True).encode()
        head = backup.MAGIC + struct.pack(">I", len(body)) + body
    file.write_bytes(head + b"".join(chunks))
    with pytest.raises(BackupError, match=r"hub\.hbk"):
        verify_backup(hub, file)
    target = tmp_path / "restored"
    with pytest.raises(BackupError):
        restore_backup(hub, file, target)
    assert not target.exists()
    assert not list(tmp_path.glob(".restored.restoring-*"))


def test_restore_refuses_a_folder_that_is_not_empty(hub: Settings, tmp_path: Path) -> None:
    file = tmp_path / "hub.hbk"
    create_backup(hub, file)
    target = tmp_path / "busy"
    target.mkdir()
    (target / "something").write_text("x")
    with pytest.raises(ConflictError, match="not empty"):
        restore_backup(hub, file, target)
    assert (target / "something").read_text() == "x"


def test_backup_refuses_to_overwrite_or_to_write_inside_the_hub(hub: Settings, tmp_path: Path) -> None:
    existing = tmp_path / "exists.hbk"
    existing.write_text("keep me")
    with pytest.raises(ConflictError):
        create_backup(hub, existing)
    assert existing.read_text() == "keep me"
    with pytest.raises(BackupError, match="inside HYGIE_HOME"):
        create_backup(hub, hub.home / "self.hbk")


def test_cli_backup_verify_restore_and_errors(hub: Settings, tmp_path: Path) -> None:
    file = tmp_path / "hub.hbk"
    assert hygie("backup", "create", str(file)).exit_code == 0
    verified = hygie("backup", "verify", str(file))
    assert verified.exit_code == 0 and "backup intact" in verified.output
    restored = hygie("backup", "restore", str(file), "--into", str(tmp_path / "r"))
    assert restored.exit_code == 0, restored.output
    assert "release r1" in restored.output and "FAILED" not in restored.output

    not_a_backup = tmp_path / "notes.txt"
    not_a_backup.write_text("hello")
    refused = hygie("backup", "verify", str(not_a_backup))
    assert refused.exit_code == 1 and "not a hygie backup" in refused.output
    again = hygie("backup", "create", str(file))
    assert again.exit_code == 1 and "already exists" in again.output
    actions = [(e.action, e.outcome) for e in AuditLog(hub).entries()]
    assert ("backup.create", "ok") in actions and ("backup.restore", "ok") in actions
    assert ("backup.verify", "refused") in actions or ("backup.verify", "failed") in actions
