"""An ended project's workspace is deleted with a proof of deletion (TRE checklist #21); released outputs stay."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from typer.testing import CliRunner

from hygie.cli.main import app
from hygie.errors import ConflictError
from hygie.governance.events import MemorySink
from hygie.governance.permissions import PermissionDenied
from hygie.governance.projects import Projects
from hygie.ingest.cdm_load import load_cdm
from hygie.jobs.airlock import Airlock, released_folder
from hygie.jobs.queue import Jobs, job_folder
from hygie.jobs.teardown import teardown, teardown_due
from hygie.jobs.worker import run_once
from tests.cdm_files import write_cdm
from tests.integration.test_jobs_airlock import (  # noqa: F401  (fixtures)
    OPERATOR,
    open_project,
    people,
    population,
    store,
    study_folder,
)


def test_teardown_deletes_job_folders_records_proof_and_keeps_released_outputs(settings, store, people, tmp_path):  # noqa: F811
    load_cdm(write_cdm(tmp_path / "cdm", population(40, 25)), "real", settings, synthetic=False)
    open_project(store, people, "nsaids", "real", ["rita"])
    rita, chloe, carl = (people.principal(n) for n in ("rita", "chloe", "carl"))
    jobs = Jobs(store, events=MemorySink())
    released_job = jobs.submit(rita, "nsaids", study_folder(tmp_path), "real")
    assert run_once(store).status == "succeeded"
    airlock = Airlock(store, events=MemorySink())
    request = airlock.request(rita, released_job.id, justification="table 1")
    airlock.review(chloe, request.id, approve=True)
    airlock.review(carl, request.id, approve=True, comment="fine")
    kept_job = jobs.submit(rita, "nsaids", study_folder(tmp_path), "real")
    assert run_once(store).status == "succeeded"  # outputs never requested
    released_files = sorted(p.name for p in released_folder(store, request.id).iterdir())

    sink = MemorySink()
    with pytest.raises(ConflictError, match="only a revoked or expired project"):
        teardown(store, OPERATOR, "nsaids", events=sink)
    queued = jobs.submit(rita, "nsaids", study_folder(tmp_path), "real")
    Projects(store, events=sink).revoke(OPERATOR, "nsaids", "ethics approval withdrawn")
    with pytest.raises(ConflictError, match=f"job\\(s\\) {queued.id} queued"):
        teardown(store, OPERATOR, "nsaids", events=sink)
    assert run_once(store).status == "cancelled"  # the worker stops it
    folders = [job_folder(store, j.id) for j in (released_job, kept_job, queued)]
    before = {p.relative_to(settings.home).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
              for f in folders for p in f.rglob("*") if p.is_file()}  # fmt: skip
    with pytest.raises(PermissionDenied):
        teardown(store, rita, "nsaids", events=sink)
    assert sink.events[-1].action == "project.teardown" and sink.events[-1].outcome == "denied"

    done = teardown(store, OPERATOR, "nsaids", events=sink)
    assert done.jobs == 3 and done.files == len(before) and not any(f.exists() for f in folders)
    assert not any((settings.home / "trash").iterdir())
    record = done.record
    assert record is not None and record.parent == settings.home / "projects" / "nsaids"
    assert hashlib.sha256(record.read_bytes()).hexdigest() == done.digest
    listed = json.loads(record.read_text())
    assert {e["path"]: e["sha256"] for e in listed["files"]} == before  # what went, by hash, never by content
    assert listed["jobs"] == sorted([released_job.id, kept_job.id, queued.id]) and listed["by"] == OPERATOR.name
    event = sink.events[-1]
    assert (event.action, event.object, event.outcome) == ("project.teardown", "project:nsaids", "ok")
    assert event.details["record_sha256"] == done.digest and event.details["files"] == len(before)

    # Kept: the released outputs, the disclosure history of released outputs.
    assert sorted(p.name for p in released_folder(store, request.id).iterdir()) == released_files
    assert (settings.home / "projects" / "nsaids" / "released" / f"output-{request.id}").is_dir()
    again = teardown(store, OPERATOR, "nsaids", events=sink)  # idempotent
    assert (again.jobs, again.record) == (0, None) and sink.events[-1] is event


def test_teardown_due_waits_for_the_delay_and_the_cli_reports(settings, store, people, tmp_path):  # noqa: F811
    load_cdm(write_cdm(tmp_path / "cdm", population(20, 15)), "real", settings, synthetic=False)
    open_project(store, people, "short", "real", ["rita"])
    job = Jobs(store, events=MemorySink()).submit(people.principal("rita"), "short", study_folder(tmp_path), "real")
    assert run_once(store).status == "succeeded"
    ended = dt.datetime.now(dt.UTC)
    Projects(store, events=MemorySink()).expire(OPERATOR, "short", now=ended)
    day = dt.timedelta(days=1)
    assert teardown_due(store, OPERATOR, after=30 * day, events=MemorySink(), now=ended + 29 * day) == []
    assert job_folder(store, job.id).exists()

    runner = CliRunner()
    waiting = runner.invoke(app, ["project", "teardown-due", "--after-days", "30"])
    assert waiting.exit_code == 0 and "no project to tear down" in waiting.output
    assert runner.invoke(app, ["project", "teardown", "nope"]).exit_code != 0
    now_due = runner.invoke(app, ["project", "teardown-due", "--after-days", "0"])
    assert now_due.exit_code == 0, now_due.output
    assert "project short: deleted 1 job folder(s)" in now_due.output and not job_folder(store, job.id).exists()
    nothing = runner.invoke(app, ["project", "teardown", "short"])
    assert nothing.exit_code == 0 and "nothing left to delete" in nothing.output
    audit = b"".join(p.read_bytes() for p in (settings.home / "audit").rglob("*") if p.is_file()).decode()
    assert '"project.teardown"' in audit
