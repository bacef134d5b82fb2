"""Jobs: studies submitted to a project, queued, run by a worker, cancelled on request.

A job is code-to-data: the researcher hands in a study file (and the Circe cohort files it names) and gets
back, after output checking, aggregate results only. Submission validates the study, checks the release is in
the project's approved scope, and copies the study bundle into ``HYGIE_HOME/jobs/<id>/bundle``. Workers claim
queued jobs one at a time (``claim_next`` is safe with several workers, on SQLite and PostgreSQL). A project that
stops being active (revoked, suspended, expired) cuts its queued jobs: they are cancelled when a worker meets
them, and running ones are stopped at the next poll.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hygie.errors import ConflictError, HygieError, NotFoundError
from hygie.governance.accounts import utcnow
from hygie.governance.events import Detail, Event, EventSink, Outcome, default_sink
from hygie.governance.models import Job, Project
from hygie.governance.permissions import Action, JobRef, project_is_active, require
from hygie.governance.projects import project_ref
from hygie.governance.roles import Principal
from hygie.governance.store import Store

ENGINES = ("duckdb", "spark")
FINISHED = frozenset({"succeeded", "failed", "timed_out", "cancelled"})


@dataclass(frozen=True)
class JobInfo:
    id: int
    project: str
    submitted_by: str
    submitted_at: dt.datetime
    release: str
    engine: str
    study_name: str
    study_sha256: str
    status: str
    cancel_requested: bool
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    message: str

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def _info(job: Job) -> JobInfo:
    return JobInfo(
        job.id,
        job.project.name,
        job.submitted_by,
        job.submitted_at,
        job.release,
        job.engine,
        job.study_name,
        job.study_sha256,
        job.status,
        job.cancel_requested,
        job.started_at,
        job.finished_at,
        job.message,
    )


def job_ref(job: Job) -> JobRef:
    return JobRef(project_ref(job.project), job.submitted_by)


def job_folder(store: Store, job_id: int) -> Path:
    return store.settings.home / "jobs" / str(job_id)


class Jobs:
    """Job service: every action checked with ``permissions.decide`` and reported to ``events``."""

    def __init__(self, store: Store, *, events: EventSink | None = None) -> None:
        self.store = store
        self.events = events if events is not None else default_sink(store.settings)

    def _emit(self, actor: str, action: str, job: str, outcome: Outcome, now: dt.datetime, **details: Detail) -> None:
        self.events.record(Event(actor, action, job, outcome, now, details))

    def _require(self, actor: Principal, action: Action, obj: object, what: str, now: dt.datetime) -> None:
        try:
            require(actor, action, obj, now=now)  # type: ignore[arg-type]
        except HygieError:
            self._emit(actor.name, action.value, what, "denied", now)
            raise

    # -- submitting ---------------------------------------------------------------------------------------
    def submit(
        self,
        actor: Principal,
        project: str,
        study_file: Path,
        release: str,
        *,
        engine: str = "duckdb",
        now: dt.datetime | None = None,
    ) -> JobInfo:
        """Queue ``study_file`` to run on ``release`` for ``project``."""
        from hygie.jobs.bundle import bundle_files

        now = now or utcnow()
        if engine not in ENGINES:
            raise HygieError(f"unknown engine {engine!r}: use {' or '.join(ENGINES)}")
        with self.store.session() as session:
            row = _project(session, project)
            ref = project_ref(row)
            scope_releases = list(row.scope_releases or ())
        self._require(actor, Action.JOB_SUBMIT, ref, f"project:{project}", now)
        if release not in scope_releases:
            self._emit(actor.name, Action.JOB_SUBMIT.value, f"project:{project}", "denied", now, release=release)
            allowed = ", ".join(scope_releases) or "none yet"
            raise HygieError(f"release {release!r} is not in project {project}'s approved scope (releases: {allowed})")
        study, files = bundle_files(study_file)  # validates the study; errors name file, line and key
        with self.store.session() as session:
            job = Job(
                project_id=_project(session, project).id,
                submitted_by=actor.name,
                submitted_at=now,
                release=release,
                engine=engine,
                study_name=study.name,
                study_sha256=study.sha256,
                status="submitting",  # not visible to workers until its bundle is in place
                message="",
            )
            session.add(job)
            session.flush()
            job_id = job.id
        folder = job_folder(self.store, job_id)
        try:
            _copy_bundle(study_file, files, folder / "bundle")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            with self.store.session() as session:
                session.delete(session.get(Job, job_id))
            raise
        with self.store.session() as session:
            job = session.get(Job, job_id)
            job.status = "queued"
            info = _info(job)
        self._emit(actor.name, Action.JOB_SUBMIT.value, f"job:{job_id}", "ok", now, project=project,
                   release=release, engine=engine, study=study.name, study_sha256=study.sha256)  # fmt: skip
        return info

    # -- reading ------------------------------------------------------------------------------------------
    def get(self, job_id: int) -> JobInfo:
        with self.store.session() as session:
            return _info(_job(session, job_id))

    def view(self, actor: Principal, job_id: int, *, now: dt.datetime | None = None) -> JobInfo:
        now = now or utcnow()
        with self.store.session() as session:
            job = _job(session, job_id)
            ref, info = job_ref(job), _info(job)
        self._require(actor, Action.JOB_VIEW, ref, f"job:{job_id}", now)
        return info

    def log(self, actor: Principal, job_id: int, *, now: dt.datetime | None = None) -> str:
        """The researcher-visible log (hygie's own progress and error lines; never patient values)."""
        self.view(actor, job_id, now=now)
        path = job_folder(self.store, job_id) / "log.txt"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def list(self, actor: Principal, project: str | None = None, *, now: dt.datetime | None = None) -> list[JobInfo]:
        """The jobs ``actor`` may view (of one project, or all)."""
        from hygie.governance.permissions import decide

        now = now or utcnow()
        with self.store.session() as session:
            query = select(Job).order_by(Job.id)
            if project is not None:
                query = query.where(Job.project_id == _project(session, project).id)
            jobs = [(job_ref(j), _info(j)) for j in session.scalars(query)]
        return [info for ref, info in jobs if decide(actor, Action.JOB_VIEW, ref, now=now).allowed]

    # -- cancelling ---------------------------------------------------------------------------------------
    def cancel(self, actor: Principal, job_id: int, *, now: dt.datetime | None = None) -> JobInfo:
        """A queued job is cancelled at once; a running one is stopped by its worker at the next poll."""
        now = now or utcnow()
        with self.store.session() as session:
            job = _job(session, job_id)
            ref = job_ref(job)
        self._require(actor, Action.JOB_CANCEL, ref, f"job:{job_id}", now)
        with self.store.session() as session:
            job = _job(session, job_id)
            if job.status in FINISHED:
                raise ConflictError(f"job {job_id} has already finished ({job.status})")
            job.cancel_requested = True
            if job.status == "queued":
                job.status, job.finished_at, job.message = "cancelled", now, f"cancelled by {actor.name}"
            info = _info(job)
        self._emit(actor.name, Action.JOB_CANCEL.value, f"job:{job_id}", "ok", now)
        return info

    # -- the worker's side --------------------------------------------------------------------------------
    def claim_next(self, worker: str, *, now: dt.datetime | None = None) -> JobInfo | None:
        """Take the oldest queued job for ``worker``; None when the queue is empty. Safe with concurrent workers:
        the claim is a conditional update, and a job lost to another worker is skipped."""
        now = now or utcnow()
        while True:
            with self.store.session() as session:
                job_id = session.scalar(select(Job.id).where(Job.status == "queued").order_by(Job.id).limit(1))
                if job_id is None:
                    return None
                claimed = session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == "queued")
                    .values(status="running", worker=worker, started_at=now)
                ).rowcount
                if claimed:
                    return _info(session.get(Job, job_id))

    def cancel_requested(self, job_id: int) -> bool:
        with self.store.session() as session:
            job = _job(session, job_id)
            return job.cancel_requested or not project_is_active(project_ref(job.project), utcnow())

    def finish(
        self,
        job_id: int,
        status: str,
        message: str,
        *,
        optout_version: int | None = None,
        now: dt.datetime | None = None,
    ) -> JobInfo:
        now = now or utcnow()
        if status not in FINISHED:
            raise HygieError(f"not a final job status: {status}")
        with self.store.session() as session:
            job = _job(session, job_id)
            job.status, job.message, job.finished_at = status, message, now
            if optout_version is not None:
                job.optout_version = optout_version
            info = _info(job)
        self._emit(f"worker:{job_id}", "job.run", f"job:{job_id}", "ok" if status == "succeeded" else "failed", now,
                   status=status, project=info.project)  # fmt: skip
        return info


def _project(session: Session, name: str) -> Project:
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        raise NotFoundError(f"no project named {name!r}")
    return project


def _job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.status == "submitting":
        raise NotFoundError(f"no job {job_id}")
    return job


def _copy_bundle(study_file: Path, files: list[Path], target: Path) -> None:
    """Copy the study file and the files it names (paths relative to the study's folder) into ``target``."""
    base = study_file.resolve().parent
    target.mkdir(parents=True)
    for path in [study_file.resolve(), *files]:
        relative = path.resolve().relative_to(base)
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / relative)
    digest = hashlib.sha256((target / study_file.name).read_bytes()).hexdigest()
    (target / ".study").write_text(f"{study_file.name}\n{digest}\n")
