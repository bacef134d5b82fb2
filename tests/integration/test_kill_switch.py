"""The kill switch (TRE checklist #40): halting a project, then the hub, cuts tokens and sessions at once,
stops jobs and freezes output reviews, deletes nothing; resuming re-opens what the halt closed (and only that)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hygie.api.sessions import SessionStore
from hygie.cli.main import app
from hygie.errors import HygieError
from hygie.governance.accounts import AuthenticationError
from hygie.governance.events import MemorySink
from hygie.governance.halt import KillSwitch
from hygie.governance.permissions import PermissionDenied
from hygie.governance.projects import Projects
from hygie.ingest.cdm_load import load_cdm
from hygie.jobs.airlock import Airlock
from hygie.jobs.queue import Jobs
from hygie.jobs.worker import run_once
from hygie.releases import ReleaseStore
from tests.cdm_files import write_cdm
from tests.integration.test_jobs_airlock import OPERATOR, open_project, people, population, store, study_folder

__all__ = ["people", "store"]  # fixtures


def test_halt_a_project_then_the_hub_then_resume(settings, store, people, tmp_path):
    load_cdm(write_cdm(tmp_path / "cdm", population(30, 20)), "r", settings, synthetic=True)
    release_before = {n: t.sha256 for n, t in ReleaseStore(settings).get("r").manifest.tables.items()}
    open_project(store, people, "p", "r", ["rita"])
    open_project(store, people, "q", "r", ["oscar"])
    rita, oscar, chloe = (people.principal(n) for n in ("rita", "oscar", "chloe"))
    _, rita_token = people.create_token(OPERATOR, "rita", "laptop")
    _, oscar_token = people.create_token(OPERATOR, "oscar", "laptop")
    sessions = SessionStore(store, idle_seconds=3600, max_seconds=36000)
    rita_session, oscar_session = sessions.create("rita"), sessions.create("oscar")

    jobs, airlock = Jobs(store), Airlock(store, events=MemorySink())
    done = jobs.submit(rita, "p", study_folder(tmp_path), "r")
    assert run_once(store).status == "succeeded"
    pending = airlock.request(rita, done.id, justification="table 1")
    queued_p = jobs.submit(rita, "p", study_folder(tmp_path), "r")
    queued_q = jobs.submit(oscar, "q", study_folder(tmp_path), "r")

    events = MemorySink()
    switch = KillSwitch(store, events=events)
    report = switch.halt(OPERATOR, "suspected credential leak", project="p")
    assert report.projects == ("p",) and report.tokens_revoked == 1 and report.sessions_ended == 1
    assert report.jobs_stopped == 1 and report.outputs_frozen == 1
    with pytest.raises(AuthenticationError):
        people.authenticate_token(rita_token)
    assert sessions.get(rita_session) is None
    assert people.authenticate_token(oscar_token).name == "oscar"  # another project goes on
    assert sessions.get(oscar_session) is not None
    assert jobs.get(queued_p.id).status == "cancelled" and jobs.get(queued_q.id).status == "queued"
    with pytest.raises(PermissionDenied, match="not active"):
        airlock.review(chloe, pending.id, approve=True)  # frozen
    with pytest.raises(PermissionDenied, match="not active"):
        jobs.submit(rita, "p", study_folder(tmp_path), "r")
    halted = [e for e in events.events if e.action == "hub.halt"]
    assert [(e.object, e.details["reason"]) for e in halted] == [("project:p", "suspected credential leak")]

    open_project(store, people, "z", "r", [])
    Projects(store, events=MemorySink()).suspend(OPERATOR, "z", "audit of the protocol")  # not by a halt
    report = switch.halt(OPERATOR, "ransomware on a site")
    assert report.scope == "hub" and report.projects == ("q",) and report.tokens_revoked == 1
    with pytest.raises(AuthenticationError):
        people.authenticate_token(oscar_token)
    assert sessions.get(oscar_session) is None and jobs.get(queued_q.id).status == "cancelled"

    # Nothing was deleted: the release, the job's outputs and the request are all still there.
    assert {n: t.sha256 for n, t in ReleaseStore(settings).get("r").manifest.tables.items()} == release_before
    assert ReleaseStore(settings).get("r").verify() == []
    assert airlock.get(pending.id).status == "pending" and jobs.get(done.id).status == "succeeded"

    resumed = switch.resume(OPERATOR)
    assert resumed.projects == ("p", "q") and Projects(store).get("z").status == "suspended"
    assert airlock.review(chloe, pending.id, approve=True).approvals == 1
    with pytest.raises(AuthenticationError):
        people.authenticate_token(rita_token)  # revoked tokens stay revoked


def test_only_an_operator_halts_and_a_reason_is_required(settings, store, people, tmp_path):
    load_cdm(write_cdm(tmp_path / "cdm", population(5, 2)), "r", settings, synthetic=True)
    open_project(store, people, "p", "r", ["rita"])
    events = MemorySink()
    switch = KillSwitch(store, events=events)
    with pytest.raises(PermissionDenied, match=r"hub\.halt"):
        switch.halt(people.principal("rita"), "I want to stop everything")
    assert [(e.action, e.outcome) for e in events.events] == [("hub.halt", "denied")]
    with pytest.raises(HygieError, match="reason"):
        switch.halt(OPERATOR, "  ")
    with pytest.raises(HygieError, match="no project named nope"):
        switch.halt(OPERATOR, "typo", project="nope")
    with pytest.raises(HygieError, match="not suspended by a halt"):
        switch.resume(OPERATOR, project="p")


def test_cli_halt_and_resume(settings, store, people, tmp_path):
    load_cdm(write_cdm(tmp_path / "cdm", population(5, 2)), "r", settings, synthetic=True)
    open_project(store, people, "p", "r", ["rita"])
    runner = CliRunner()
    halted = runner.invoke(app, ["admin", "halt", "--reason", "drill"])
    assert halted.exit_code == 0 and "1 project(s) suspended" in halted.output
    assert Projects(store).get("p").status == "suspended"
    refused = runner.invoke(app, ["admin", "resume", "--project", "nope"])
    assert refused.exit_code == 1 and "no project named nope" in refused.output
    resumed = runner.invoke(app, ["admin", "resume"])
    assert resumed.exit_code == 0 and "1 project(s) active again (p)" in resumed.output
    assert Projects(store).get("p").status == "active"
