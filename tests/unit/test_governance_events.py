"""Every governance change and every refusal produces exactly one event, with no patient data in it."""

from __future__ import annotations

import datetime as dt
import json
import stat

import pyotp
import pytest

from hygie.governance.accounts import Accounts, AuthenticationError
from hygie.governance.events import Event, EventFile, MemorySink, default_sink
from hygie.governance.optout import OptOutRegister
from hygie.governance.permissions import PermissionDenied
from hygie.governance.projects import Projects, Scope
from hygie.governance.roles import Grant, Principal, Role
from hygie.ingest.cdm_load import load_cdm
from tests.cdm_files import write_cdm
from tests.unit.test_deposit import NIR
from tests.unit.test_governance_accounts import FAST, PASSWORD

OPERATOR = Principal.console("root")
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_one_event_per_call(store, settings, tmp_path):
    load_cdm(write_cdm(tmp_path / "cdm"), "r1", settings, synthetic=True)
    sink = MemorySink()
    accounts, projects, register = (
        Accounts(store, events=sink, hasher=FAST),
        Projects(store, events=sink),
        OptOutRegister(store, events=sink),
    )
    calls = [
        (lambda: accounts.add_user(OPERATOR, "alice", PASSWORD, now=T0), ("user.create", "ok")),
        (lambda: accounts.enrol_totp(OPERATOR, "alice", now=T0), ("user.totp_enrol", "ok")),
        (lambda: projects.create(OPERATOR, "p1", title="t", purpose="p", legal_basis="MR-004",
                                 valid_until=T0 + dt.timedelta(days=9), now=T0), ("project.create", "ok")),
        (lambda: projects.set_scope(OPERATOR, "p1", Scope(("r1",)), now=T0), ("project.manage", "ok")),
        (lambda: projects.add_member(OPERATOR, "p1", "alice", now=T0), ("role.grant", "ok")),
        (lambda: projects.approve(OPERATOR, "p1", now=T0), ("project.approve", "ok")),
        (lambda: accounts.create_token(OPERATOR, "alice", "laptop", now=T0), ("token.create", "ok")),
        (lambda: accounts.revoke_token(OPERATOR, "alice", "laptop", now=T0), ("token.revoke", "ok")),
        (lambda: register.add(OPERATOR, [NIR], source="test", now=T0), ("optout.add", "ok")),
        (lambda: register.remove(OPERATOR, [NIR], source="test", now=T0), ("optout.remove", "ok")),
        (lambda: projects.suspend(OPERATOR, "p1", "review", now=T0), ("project.suspend", "ok")),
        (lambda: projects.revoke(OPERATOR, "p1", "ended", now=T0), ("project.revoke", "ok")),
        (lambda: accounts.set_password(OPERATOR, "alice", PASSWORD + "!", now=T0), ("user.password", "ok")),
        (lambda: accounts.set_active(OPERATOR, "alice", False, now=T0), ("user.disable", "ok")),
    ]  # fmt: skip
    for call, (action, outcome) in calls:
        before = len(sink.events)
        call()
        assert [(e.action, e.outcome) for e in sink.events[before:]] == [(action, outcome)]
    nobody = Principal("mallory", frozenset({Grant(Role.AUDITOR)}))
    refusals = [
        (lambda: accounts.add_user(nobody, "x", PASSWORD), "user.manage"),
        (lambda: projects.create(nobody, "p2", title="t"), "project.create"),
        (lambda: register.add(nobody, [NIR], source="x"), "optout.add"),
    ]
    for call, action in refusals:
        before = len(sink.events)
        with pytest.raises(PermissionDenied):
            call()
        assert [(e.action, e.outcome, e.actor) for e in sink.events[before:]] == [(action, "denied", "mallory")]
    before = len(sink.events)
    with pytest.raises(AuthenticationError):
        accounts.authenticate("alice", PASSWORD + "!", pyotp.TOTP("A" * 32).now())
    assert [(e.action, e.outcome) for e in sink.events[before:]] == [("auth.password", "denied")]
    text = json.dumps([e.to_json() for e in sink.events])
    assert NIR not in text and PASSWORD not in text
    assert all(e.actor and e.object and e.at.tzinfo is not None for e in sink.events)


def test_the_event_file_appends_one_private_json_line_per_event(settings):
    sink = default_sink(settings)
    assert isinstance(sink, EventFile)
    for i in range(3):
        sink.record(Event("console:root", "user.create", f"user:u{i}", "ok", T0, {"kind": "person"}))
    lines = [json.loads(line) for line in sink.path.read_text().splitlines()]
    assert [line["object"] for line in lines] == ["user:u0", "user:u1", "user:u2"]
    assert lines[0] == {
        "actor": "console:root",
        "action": "user.create",
        "object": "user:u0",
        "outcome": "ok",
        "at": "2026-03-02T09:00:00+00:00",
        "details": {"kind": "person"},
    }
    assert stat.S_IMODE(sink.path.stat().st_mode) == 0o600
