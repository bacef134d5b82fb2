"""Operator and auditor pages and endpoints, through real governance services on a real metadata store."""

from __future__ import annotations

import datetime as dt

from hygie.governance.roles import Grant, Role
from hygie.ingest.cdm_load import load_cdm
from tests.cdm_files import write_cdm
from tests.web_helpers import add_account, client, csrf_of, operator, sign_in


def test_operator_creates_scopes_and_approves_a_project_then_adds_a_member(settings, tmp_path):
    load_cdm(write_cdm(tmp_path / "cdm"), "r1", settings, synthetic=True)
    olivia = operator(settings)
    add_account(settings, "rita")
    c = client(settings)
    assert sign_in(c, olivia).status_code == 303
    token = csrf_of(c, "/operator")
    until = (dt.date.today() + dt.timedelta(days=200)).isoformat()
    form = {"csrf_token": token, "name": "flu", "title": "Flu", "purpose": "Incidence of flu",
            "legal_basis": "MR-004", "valid_until": until}  # fmt: skip
    created = c.post("/operator/projects", data=form, follow_redirects=False)
    assert created.status_code == 303 and created.headers["location"] == "/operator/projects/flu"
    assert c.post("/operator/projects/flu/scope", data={"csrf_token": token, "releases": "r1",
                  "tables": "person, condition_occurrence"}).status_code == 200  # fmt: skip
    c.post("/operator/projects/flu/status", data={"csrf_token": token, "change": "approve"})
    c.post("/operator/projects/flu/members", data={"csrf_token": token, "username": "rita"})
    page = c.get("/operator/projects/flu").text
    assert 'id="project-status">active<' in page and "rita" in page
    dashboard = c.get("/operator").text
    assert "r1" in dashboard and "Flu" in dashboard and "researcher of project flu" in dashboard
    # The public registry now shows it.
    assert "Incidence of flu" in client(settings).get("/").text


def test_operator_api_with_a_token_creates_an_account_whose_totp_secret_is_returned_once(settings):
    from hygie.governance.accounts import Accounts
    from hygie.governance.store import open_store
    from tests.web_helpers import CONSOLE

    operator(settings)
    with open_store(settings) as store:
        _, secret = Accounts(store).create_token(CONSOLE, "olivia", "ci")
    c = client(settings)
    auth = {"Authorization": f"Bearer {secret}"}
    new = {"username": "carl", "full_name": "Carl Checker", "password": "a-long-enough-password"}
    created = c.post("/api/v1/users", json=new, headers=auth)
    assert created.status_code == 201 and len(created.json()["totp_secret"]) >= 32
    assert c.post("/api/v1/users/carl/grants", json={"role": "output_checker"}, headers=auth).status_code == 204
    users = {u["username"]: u for u in c.get("/api/v1/users", headers=auth).json()}
    assert users["carl"]["grants"] == ["output_checker"] and users["carl"]["second_factor"] is True
    again = c.post("/api/v1/users", json=new, headers=auth)
    assert again.status_code == 409
    today = dt.datetime.now(dt.UTC).date()
    training = {"course": "Data protection", "completed_on": today.isoformat()}
    recorded = c.post("/api/v1/users/carl/trainings", json=training, headers=auth)
    assert recorded.status_code == 201 and recorded.json()["valid"] is True
    assert recorded.json()["expires_on"] == (today + dt.timedelta(days=3 * 365)).isoformat()
    users = {u["username"]: u for u in c.get("/api/v1/users", headers=auth).json()}
    assert users["carl"]["trained_until"] == recorded.json()["expires_on"] and users["olivia"]["trained_until"]
    future = {"course": "Data protection", "completed_on": (today + dt.timedelta(days=2)).isoformat()}
    refused = c.post("/api/v1/users/carl/trainings", json=future, headers=auth)
    assert refused.status_code == 400 and "completed in the future" in refused.text
    assert c.post("/api/v1/users/nobody/trainings", json=training, headers=auth).status_code == 404
    keys = c.get("/api/v1/keys", headers=auth).json()
    assert keys["kms"] == "file" and keys["master_key_mode"] == "0o600" and keys["wrapping_key"]


def test_other_roles_are_refused_the_operator_pages_with_the_governance_reason(settings):
    ada = add_account(settings, "ada", Grant(Role.AUDITOR), totp=False)
    c = client(settings)
    sign_in(c, ada)
    refused = c.get("/operator")
    assert refused.status_code == 403 and "site.manage needs the role operator" in refused.text
    assert c.get("/api/v1/users").status_code == 403
    token = csrf_of(c, "/")
    assert c.post("/operator/projects", data={"csrf_token": token, "name": "x", "title": "x"}).status_code == 403


def test_auditor_sees_entries_and_verification_and_tampering_is_reported(settings):
    from hygie.governance.audit import AuditLog

    log = AuditLog(settings, checkpoint_every=2)
    for i in range(5):
        log.record("olivia", "project.create", f"project:p{i}", "ok")
    ada = add_account(settings, "ada", Grant(Role.AUDITOR), totp=False)
    c = client(settings)
    sign_in(c, ada)
    page = c.get("/audit?action=project").text
    total = len(list(log.entries()))  # the five, and the accounts' own events before them
    assert f"Verified: {total} entries" in page and "project:p4" in page
    api = c.get("/api/v1/audit", params={"limit": 2}).json()
    newest = max(e.seq for e in log.entries())
    assert [e["seq"] for e in api["entries"]] in ([newest, newest - 1], [newest - 1, newest - 2])  # newest first
    assert api["truncated"] is True
    lines = log.log_file.read_text().splitlines()
    log.log_file.write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")  # reorder two entries
    tampered = c.get("/api/v1/audit").json()["verification"]
    assert tampered["ok"] is False and tampered["findings"]
    assert "Verification FAILED" in c.get("/audit").text


def test_researcher_cannot_read_the_audit_log(settings):
    rita = add_account(settings, "rita")
    c = client(settings)
    sign_in(c, rita)
    assert c.get("/api/v1/audit").status_code == 403
