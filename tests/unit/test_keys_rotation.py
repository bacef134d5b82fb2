"""File master keys: rotation re-wraps every data key (releases, vocabularies, deposits), builds during a
rotation use the new key, running builds and unknown key holders stop it, and `hygie keys` reports it all."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from hygie.cli.main import app
from hygie.engine import DuckDBEngine
from hygie.errors import HygieError
from hygie.governance.audit import AuditLog
from hygie.ingest.cdm_load import load_cdm
from hygie.ingest.vocabulary import install_vocabulary
from hygie.keys import FileMasterKey, KeyError_, Keyring, WrappedKey, pending_key_file
from hygie.keys_rotation import holders, rotate_master, status
from hygie.releases import ReleaseStore
from tests.cdm_files import write_cdm
from tests.unit.test_vocabulary import CONCEPT, RELATIONSHIP


@pytest.fixture
def hub(settings, tmp_path):
    load_cdm(write_cdm(tmp_path / "cdm"), "r1", settings, synthetic=True)
    install_vocabulary(
        write_cdm(tmp_path / "athena", {"CONCEPT.csv": CONCEPT, "CONCEPT_RELATIONSHIP.csv": RELATIONSHIP}),
        "v1",
        settings,
    )
    return settings


def _persons(settings, name="r1") -> int:
    with DuckDBEngine(ReleaseStore(settings).get(name), settings) as engine:
        return engine.sql("SELECT count(*) FROM person").fetchone()[0]


def test_rotation_rewraps_every_data_key_and_destroys_the_old_key(hub, tmp_path):
    old = FileMasterKey.load(hub.master_key_file)
    before = {h.context: h.wrapped for h in holders(hub)}
    assert set(before) == {"release:r1", "vocabulary:v1"}
    report = rotate_master(hub, keep_old=tmp_path / "offline" / "old.key")
    assert (report.old_key, report.rewrapped, report.already) == (old.key_id, 2, 0)
    new = FileMasterKey.load(hub.master_key_file)
    assert new.key_id == report.new_key != old.key_id
    assert {h.wrapped.key_id for h in holders(hub)} == {new.key_id}
    assert not pending_key_file(hub).exists()
    assert _persons(hub) == 3
    # The old key is gone from the hub (kept only where asked), and it opens only the old manifests.
    assert FileMasterKey.load(tmp_path / "offline" / "old.key").key_id == old.key_id
    assert old.unwrap(before["release:r1"], "release:r1") == Keyring(hub).unwrap(holders(hub)[0].wrapped, "release:r1")
    with pytest.raises(KeyError_, match="encrypted under master key"):
        Keyring(hub).unwrap(before["release:r1"], "release:r1")
    # Manifests stay read-only and otherwise unchanged.
    manifest = ReleaseStore(hub).get("r1").path / "manifest.json"
    assert not manifest.stat().st_mode & 0o222
    assert ReleaseStore(hub).get("r1").verify() == []


def test_a_pending_rotation_wraps_new_releases_with_the_new_key(hub, tmp_path):
    pending = FileMasterKey.create(pending_key_file(hub))  # what a killed rotation leaves behind
    load_cdm(write_cdm(tmp_path / "cdm2"), "r2", hub, synthetic=True)
    wrapped = {h.context: h.wrapped.key_id for h in holders(hub)}
    assert wrapped["release:r2"] == pending.key_id != wrapped["release:r1"]
    assert _persons(hub, "r1") == _persons(hub, "r2") == 3  # both keys readable meanwhile
    report = rotate_master(hub)
    assert (report.new_key, report.rewrapped, report.already) == (pending.key_id, 2, 1)
    assert FileMasterKey.load(hub.master_key_file).key_id == pending.key_id


def test_rotation_waits_for_running_builds(hub):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder = hub.staging_dir / "r9.abc"
        folder.mkdir(parents=True)
        (folder / ".owner").write_text(str(sleeper.pid))
        with pytest.raises(HygieError, match=f"a build is running \\(process {sleeper.pid}\\)"):
            rotate_master(hub)
        assert pending_key_file(hub).exists() and _persons(hub) == 3
    finally:
        sleeper.kill()
        sleeper.wait()
    assert rotate_master(hub).rewrapped == 2


def test_unknown_key_holders_stop_the_rotation(hub):
    stray = hub.home / "projects" / "p1"
    stray.mkdir(parents=True)
    (stray / "manifest.json").write_text(json.dumps({"encryption": {"data_key": {"key_id": "x", "blob": "y"}}}))
    assert status(hub).strays == ["projects/p1/manifest.json"]
    with pytest.raises(HygieError, match=r"manifests this rotation does not know.*projects/p1/manifest\.json"):
        rotate_master(hub)
    assert FileMasterKey.load(pending_key_file(hub))  # not retired: the old key is still the master key


def test_nothing_to_rotate_without_a_key(settings):
    with pytest.raises(KeyError_, match="no master key yet"):
        rotate_master(settings)


def test_unwrapping_errors_are_clear(hub):
    wrapped = holders(hub)[0].wrapped
    with pytest.raises(KeyError_, match="does not verify"):
        Keyring(hub).unwrap(wrapped, "release:other")  # a wrapped key moved to another release
    bad = WrappedKey(wrapped.key_id, "not base64!")
    with pytest.raises(KeyError_, match="does not verify"):
        Keyring(hub).unwrap(bad, "release:r1")
    with pytest.raises(KeyError_, match="set HYGIE_KMS=transit"):
        Keyring(hub).unwrap(WrappedKey("transit:transit/hygie", "vault:v1:xx", "transit"), "release:r1")
    with pytest.raises(KeyError_, match="HYGIE_KMS='cloud'"):
        Keyring(hub, {"HYGIE_KMS": "cloud"})


def test_keys_cli_status_and_rotation_are_audited(hub):
    runner = CliRunner()
    before = json.loads(runner.invoke(app, ["keys", "status", "--json"]).stdout)
    key_id = FileMasterKey.load(hub.master_key_file).key_id
    assert before["kms"] == "file" and before["wrapping_key"] == key_id and not before["pending_rotation"]
    assert {(d["kind"], d["key_id"], d["count"]) for d in before["data_keys"]} == {
        ("release", key_id, 1),
        ("vocabulary", key_id, 1),
    }
    result = runner.invoke(app, ["keys", "rotate-master"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "2 data key(s) re-wrapped" in result.stdout
    [entry] = list(AuditLog(hub).entries(action="keys"))
    new_id = FileMasterKey.load(hub.master_key_file).key_id
    assert (entry.action, entry.outcome, entry.details["rewrapped"], entry.details["new_key"]) == (
        "keys.rotate-master",
        "ok",
        2,
        new_id,
    )
    assert runner.invoke(app, ["keys", "status"], env={"COLUMNS": "200"}).stdout.count(new_id) == 3


def test_totp_secrets_of_accounts_are_rewrapped_and_still_verify(hub):
    import pyotp

    from hygie.governance.accounts import Accounts
    from hygie.governance.events import MemorySink
    from hygie.governance.roles import Principal
    from hygie.governance.store import open_store
    from tests.unit.test_governance_accounts import FAST, PASSWORD

    root = Principal.console("root")
    with open_store(hub) as store:
        accounts = Accounts(store, events=MemorySink(), hasher=FAST)
        accounts.add_user(root, "alice", PASSWORD)
        enrolment = accounts.enrol_totp(root, "alice")
    old = FileMasterKey.load(hub.master_key_file).key_id
    assert status(hub).counts[("totp", old, old)] == 1
    report = rotate_master(hub)
    assert report.rewrapped == 3  # two manifests and one TOTP secret
    new = FileMasterKey.load(hub.master_key_file).key_id
    assert status(hub).counts[("totp", new, new)] == 1 and ("totp", old, old) not in status(hub).counts
    with open_store(hub) as store:
        code = pyotp.TOTP(enrolment.secret).now()
        assert Accounts(store, events=MemorySink(), hasher=FAST).authenticate("alice", PASSWORD, code).name == "alice"
