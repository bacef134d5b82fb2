"""The worker: takes queued jobs one at a time and runs each in a child process (``jobs.executor``).

For each job it re-checks that the project is still active, turns the project's approved scope and the current
opt-out register into the run's ``DataScope``, and records which opt-out register version the run applied.
Start one with ``hygie job worker`` (``--once`` for a single job, as tests and cron do).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from pathlib import Path

from hygie.governance.accounts import utcnow
from hygie.governance.events import EventSink
from hygie.governance.models import Job
from hygie.governance.optout import opted_out_person_ids, register_version
from hygie.governance.permissions import project_is_active
from hygie.governance.projects import project_ref
from hygie.governance.store import Store
from hygie.jobs.executor import ExecutionRequest, JobLimits, execute
from hygie.jobs.queue import JobInfo, Jobs, job_folder

EXCLUDED_FILE = "excluded_persons.txt"


def project_folder(store: Store, project: str) -> Path:
    """Per-project state outside the database: the disclosure configuration and what the project released."""
    return store.settings.home / "projects" / project


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_once(
    store: Store,
    *,
    limits: JobLimits | None = None,
    events: EventSink | None = None,
    name: str | None = None,
    now: dt.datetime | None = None,
) -> JobInfo | None:
    """Run the oldest queued job, if any, to its end; returns it as finished."""
    jobs = Jobs(store, events=events)
    job = jobs.claim_next(name or worker_name(), now=now)
    if job is None:
        return None
    folder = job_folder(store, job.id)
    with store.session() as session:
        row = session.get(Job, job.id)
        project = row.project
        if not project_is_active(project_ref(project), now or utcnow()):
            return jobs.finish(job.id, "cancelled", f"not run: project {project.name} is no longer active")
        window = (
            project.window_start.isoformat() if project.window_start else None,
            project.window_end.isoformat() if project.window_end else None,
        )
        tables = list(project.scope_tables) if project.scope_tables is not None else None
        sites = list(project.scope_sites) if project.scope_sites is not None else None
        project_name = project.name
    excluded = opted_out_person_ids(store)
    version = register_version(store)
    excluded_path = folder / EXCLUDED_FILE
    fd = os.open(excluded_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{p}\n" for p in sorted(excluded)))
    study_file = (folder / "bundle" / ".study").read_text().split("\n", 1)[0]
    ExecutionRequest(
        job_id=str(job.id),
        study_file=study_file,
        release=job.release,
        engine=job.engine,
        tables=tables,
        sites=sites,
        window=window,
        excluded_persons_file=EXCLUDED_FILE,
        extra={"project_folder": str(project_folder(store, project_name))},
    ).write(folder)
    try:
        execution = execute(
            folder, store.settings, limits or JobLimits.from_env(), cancelled=lambda: jobs.cancel_requested(job.id)
        )
    finally:
        excluded_path.unlink(missing_ok=True)  # pseudonyms of people who objected: kept no longer than the run
    return jobs.finish(job.id, execution.state, execution.message, optout_version=version)


def run_forever(store: Store, *, poll_seconds: float = 2.0, limits: JobLimits | None = None) -> None:
    """Serve the queue until interrupted."""
    name = worker_name()
    while True:
        if run_once(store, limits=limits, name=name) is None:
            time.sleep(poll_seconds)
