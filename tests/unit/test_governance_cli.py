"""``hygie user``, ``hygie project``, ``hygie optout`` and ``hygie admin``: the operator's console."""

from __future__ import annotations

import json
from pathlib import Path

import pyotp
from typer.testing import CliRunner

from hygie.cli.main import app
from hygie.governance.accounts import Accounts
from hygie.governance.permissions import permissions_markdown
from hygie.governance.store import open_store
from tests.cdm_files import write_cdm
from tests.unit.test_deposit import NIR
from tests.unit.test_governance_optout import OTHER

runner = CliRunner()
PASSWORD = "correct horse battery"


def hygie(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_accounts_from_the_console(home, settings, tmp_path):
    assert "migrated from an empty database" in hygie("admin", "migrate").output
    assert "already at revision" in hygie("admin", "migrate").output
    pw = tmp_path / "pw.txt"
    pw.write_text(PASSWORD + "\n")
    added = hygie("user", "add", "alice", "--role", "output_checker", "--password-file", str(pw), "--email", "a@x.eu")
    assert added.exit_code == 0, added.output
    assert "added user alice (output_checker)" in added.output and "totp-enrol" in added.output
    enrol = hygie("user", "totp-enrol", "alice")
    secret = enrol.output.split("secret: ")[1].split()[0]
    assert "otpauth://totp/hygie:alice?secret=" in enrol.output
    with open_store(settings) as store:
        principal = Accounts(store).authenticate("alice", PASSWORD, pyotp.TOTP(secret).now())
    assert principal.mfa and principal.username == "alice"
    created = hygie("user", "token", "create", "alice", "laptop", "--days", "30")
    token = next(w for w in created.output.split() if w.startswith("hyg_"))
    with open_store(settings) as store:
        assert Accounts(store).authenticate_token(token).username == "alice"
    assert "laptop" in hygie("user", "token", "list", "alice").output and token not in hygie("user", "list").output
    assert hygie("user", "token", "revoke", "alice", "laptop").exit_code == 0
    assert hygie("user", "disable", "alice").exit_code == 0
    listed = hygie("user", "list").output
    assert "alice" in listed and "output_checker" in listed and "no" in listed


def test_console_errors_exit_1_with_a_reason(home, tmp_path):
    pw = tmp_path / "pw.txt"
    pw.write_text("short\n")
    bad = hygie("user", "add", "bob", "--password-file", str(pw))
    assert bad.exit_code == 1 and "at least 12 characters" in bad.output
    pw.write_text(PASSWORD + "\n")
    role = hygie("user", "add", "bob", "--role", "admin", "--password-file", str(pw))
    assert role.exit_code == 1 and "unknown role 'admin'" in role.output
    scope = hygie("user", "add", "bob", "--role", "researcher", "--password-file", str(pw))
    assert scope.exit_code == 1 and "give --project" in scope.output
    missing = hygie("project", "show", "nope")
    assert missing.exit_code == 1 and "no project named 'nope'" in missing.output


def test_projects_from_the_console(home, settings, tmp_path):
    from hygie.ingest.cdm_load import load_cdm

    load_cdm(write_cdm(tmp_path / "cdm"), "r1", settings, synthetic=True)
    pw = tmp_path / "pw.txt"
    pw.write_text(PASSWORD + "\n")
    assert hygie("user", "add", "alice", "--password-file", str(pw)).exit_code == 0
    created = hygie(
        "project", "create", "nsaid", "--title", "NSAIDs and GI bleeding", "--purpose", "incidence",
        "--legal-basis", "MR-004 2026-0042", "--valid-until", "2099-12-31",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    not_ready = hygie("project", "approve", "nsaid")
    assert not_ready.exit_code == 1 and "a release in its scope" in not_ready.output
    scoped = hygie("project", "set-scope", "nsaid", "--release", "r1", "--table", "condition_occurrence,drug_exposure")
    assert "tables condition_occurrence, drug_exposure" in scoped.output
    assert hygie("project", "add-member", "nsaid", "alice").exit_code == 0
    assert "is active until 2100-01-01" in hygie("project", "approve", "nsaid").output
    shown = json.loads(hygie("project", "show", "nsaid", "--json").stdout)
    assert shown["status"] == "active" and shown["members"] == ["alice"]
    assert shown["scope"] == {
        "releases": ["r1"],
        "sites": None,
        "tables": ["condition_occurrence", "drug_exposure"],
        "window_start": None,
        "window_end": None,
    }
    assert hygie("project", "revoke", "nsaid", "--reason", "ethics committee").exit_code == 0
    assert "revoked" in hygie("project", "list").output
    assert "ethics committee" in hygie("project", "show", "nsaid").output


def test_optout_from_the_console(home, tmp_path):
    nirs = tmp_path / "objections.csv"
    nirs.write_text(f"nir\n{NIR}\n{OTHER}\n")
    added = hygie("optout", "add", "--nir-file", str(nirs))
    assert added.exit_code == 0, added.output
    assert "2 row(s): 2 patient(s) entered" in added.output and "version 2" in added.output
    listed = hygie("optout", "list").output
    assert "2 patient(s) opted out" in listed
    withdraw = tmp_path / "withdraw.csv"
    withdraw.write_text(f"nir\n{NIR}\n")
    assert "1 objection(s) withdrawn" in hygie("optout", "remove", "--nir-file", str(withdraw)).output
    assert "1 patient(s) opted out" in hygie("optout", "list").output
    bad = tmp_path / "bad.csv"
    bad.write_text(f"nir\n{NIR[:-1]}\n")
    failed = hygie("optout", "add", "--nir-file", str(bad))
    assert failed.exit_code == 1 and "bad.csv, row 1, column 'nir': not a valid NIR" in failed.output
    everything = added.output + listed + failed.output + (home / "events.jsonl").read_text()
    assert NIR not in everything and NIR[:-1] not in everything and OTHER not in everything


def test_governance_doc_shows_the_permission_table():
    doc = Path(__file__).resolve().parents[2] / "docs" / "governance.md"
    assert permissions_markdown() in doc.read_text(), (
        "docs/governance.md is stale: paste hygie.governance.permissions.permissions_markdown() in it"
    )


def test_the_password_is_prompted_twice_when_no_file_is_given(home, settings):
    added = runner.invoke(app, ["user", "add", "zoe", "--role", "auditor"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert added.exit_code == 0, added.output
    assert PASSWORD not in added.output
    with open_store(settings) as store:
        assert Accounts(store).authenticate("zoe", PASSWORD).username == "zoe"  # auditors need no second factor
    mismatch = runner.invoke(app, ["user", "add", "yan"], input=f"{PASSWORD}\nsomething else\n\n")
    assert mismatch.exit_code != 0
