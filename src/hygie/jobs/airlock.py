"""The airlock: a job's outputs leave the hub only after automated checks and two output checkers' approval.

1. A project member requests the release of a finished job's outputs. The automated checks
   (``disclosure.checks``: file types, sizes, row counts, anything that looks like an identifier) run at once;
   any finding blocks the request (status ``blocked``): no checker can approve it.
2. Output checkers review: neither of them may be the requester (``permissions``), each reviews once, a
   rejection needs a comment and ends the request. The second approval releases the outputs.
3. Released outputs are copied to ``HYGIE_HOME/outputs/<id>/`` (read-only files, their sha256 in the metadata
   store), remembered in the project's disclosure history (so later outputs cannot be differenced against
   them), and downloadable by the project's members; every download is checked against the recorded hashes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hygie.checksums import sha256_file
from hygie.errors import ConflictError, HygieError, NotFoundError
from hygie.governance.accounts import utcnow
from hygie.governance.events import Detail, Event, EventSink, Outcome, default_sink
from hygie.governance.models import Job, OutputRequest, OutputReview
from hygie.governance.permissions import Action, OutputRef, decide, require
from hygie.governance.projects import project_ref
from hygie.governance.roles import Principal
from hygie.governance.store import Store
from hygie.jobs.executor import HISTORY_OUTPUT, project_policy
from hygie.jobs.queue import job_folder, job_ref
from hygie.jobs.worker import project_folder

APPROVALS_NEEDED = 2


@dataclass(frozen=True)
class Review:
    reviewer: str
    decision: str
    comment: str
    at: dt.datetime


@dataclass(frozen=True)
class OutputInfo:
    id: int
    job_id: int
    project: str
    requested_by: str
    requested_at: dt.datetime
    justification: str
    status: str  # pending | blocked | rejected | released
    files: list[dict[str, Any]]
    findings: list[dict[str, Any]]
    disclosure: dict[str, Any]
    reviews: list[Review]
    released_at: dt.datetime | None

    @property
    def approvals(self) -> int:
        return sum(r.decision == "approve" for r in self.reviews)


def _info(row: OutputRequest) -> OutputInfo:
    return OutputInfo(
        row.id,
        row.job_id,
        row.project.name,
        row.requested_by,
        row.requested_at,
        row.justification,
        row.status,
        list(row.files),
        list(row.findings),
        dict(row.disclosure),
        [Review(r.reviewer, r.decision, r.comment, r.at) for r in sorted(row.reviews, key=lambda r: r.at)],
        row.released_at,
    )


def output_ref(row: OutputRequest) -> OutputRef:
    return OutputRef(project_ref(row.project), row.requested_by, row.status == "released")


def released_folder(store: Store, request_id: int) -> Path:
    return store.settings.home / "outputs" / str(request_id)


class Airlock:
    """Output requests, reviews, release and download; every step checked and reported to ``events``."""

    def __init__(self, store: Store, *, events: EventSink | None = None) -> None:
        self.store = store
        self.events = events if events is not None else default_sink(store.settings)

    def _emit(self, actor: str, action: str, what: str, outcome: Outcome, now: dt.datetime, **details: Detail) -> None:
        self.events.record(Event(actor, action, what, outcome, now, details))

    def _require(self, actor: Principal, action: Action, obj: Any, what: str, now: dt.datetime) -> None:
        try:
            require(actor, action, obj, now=now)
        except HygieError:
            self._emit(actor.name, action.value, what, "denied", now)
            raise

    # -- requesting ---------------------------------------------------------------------------------------
    def request(
        self, actor: Principal, job_id: int, *, justification: str = "", now: dt.datetime | None = None
    ) -> OutputInfo:
        from hygie.disclosure.checks import check_folder

        now = now or utcnow()
        with self.store.session() as session:
            job = session.get(Job, job_id)
            if job is None or job.status == "submitting":
                raise NotFoundError(f"no job {job_id}")
            ref, status, project_id, project = job_ref(job), job.status, job.project_id, job.project.name
        self._require(actor, Action.OUTPUT_REQUEST, ref, f"job:{job_id}", now)
        if status != "succeeded":
            raise ConflictError(f"job {job_id} has no outputs to release (status {status})")
        out = job_folder(self.store, job_id) / "out"
        with self.store.session() as session:
            open_request = session.scalar(
                select(OutputRequest.id).where(
                    OutputRequest.job_id == job_id, OutputRequest.status.in_(("pending", "released"))
                )
            )
            if open_request is not None:
                raise ConflictError(f"job {job_id}'s outputs are already requested (output {open_request})")
        findings = [
            {"file": f.file, "reason": f.reason, "column": f.column, "rows": f.rows}
            for f in check_folder(out, project_policy(project_folder(self.store, project)))
        ]
        with self.store.session() as session:
            row = OutputRequest(
                job_id=job_id,
                project_id=project_id,
                requested_by=actor.name,
                requested_at=now,
                justification=justification,
                status="blocked" if findings else "pending",
                files=_describe_files(out),
                findings=findings,
                disclosure=_disclosure_summary(out),
            )
            session.add(row)
            session.flush()
            info = _info(row)
        self._emit(actor.name, Action.OUTPUT_REQUEST.value, f"output:{info.id}", "ok", now, job=job_id,
                   project=project, status=info.status, files=len(info.files), findings=len(findings))  # fmt: skip
        return info

    # -- reviewing ----------------------------------------------------------------------------------------
    def review(
        self, actor: Principal, request_id: int, *, approve: bool, comment: str = "", now: dt.datetime | None = None
    ) -> OutputInfo:
        now = now or utcnow()
        with self.store.session() as session:
            row = _request(session, request_id)
            ref = output_ref(row)
        self._require(actor, Action.OUTPUT_REVIEW, ref, f"output:{request_id}", now)
        if not approve and not comment.strip():
            raise HygieError("a rejection needs a comment for the researcher")
        release = False
        with self.store.session() as session:
            row = _request(session, request_id)
            if row.status != "pending":
                raise ConflictError(f"output {request_id} is {row.status}: it cannot be reviewed")
            if any(r.reviewer == actor.name for r in row.reviews):
                raise ConflictError(f"{actor.name} has already reviewed output {request_id}")
            row.reviews.append(
                OutputReview(reviewer=actor.name, decision="approve" if approve else "reject", comment=comment, at=now)
            )
            if not approve:
                row.status = "rejected"
            elif sum(r.decision == "approve" for r in row.reviews) >= APPROVALS_NEEDED:
                release = True
            session.flush()
            info = _info(row)
        self._emit(actor.name, Action.OUTPUT_REVIEW.value, f"output:{request_id}", "ok", now,
                   decision="approve" if approve else "reject")  # fmt: skip
        if release:
            info = self._release(request_id, now)
        return info

    def _release(self, request_id: int, now: dt.datetime) -> OutputInfo:
        """Copy the outputs to their read-only home (verified against the hashes checked), then mark released."""
        with self.store.session() as session:
            row = _request(session, request_id)
            job_id, files, project = row.job_id, list(row.files), row.project.name
        source = job_folder(self.store, job_id) / "out"
        target = released_folder(self.store, request_id)
        staging = target.with_name(f".{request_id}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for entry in files:
            copied = staging / entry["name"]
            copied.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / entry["name"], copied)
            if sha256_file(copied) != entry["sha256"]:
                shutil.rmtree(staging)
                raise HygieError(f"output {request_id}: {entry['name']} changed after it was checked; not released")
            os.chmod(copied, 0o440)
        os.replace(staging, target)
        _remember(self.store, project, request_id, job_id)
        with self.store.session() as session:
            row = _request(session, request_id)
            row.status, row.released_at = "released", now
            info = _info(row)
        self._emit("airlock", "output.release", f"output:{request_id}", "ok", now, project=project, files=len(files))
        return info

    # -- reading and downloading --------------------------------------------------------------------------
    def get(self, request_id: int) -> OutputInfo:
        with self.store.session() as session:
            return _info(_request(session, request_id))

    def list(self, actor: Principal, *, status: str | None = None, now: dt.datetime | None = None) -> list[OutputInfo]:
        """The requests ``actor`` may see: checkers see every request, members those of their projects."""
        now = now or utcnow()
        with self.store.session() as session:
            query = select(OutputRequest).order_by(OutputRequest.id)
            if status is not None:
                query = query.where(OutputRequest.status == status)
            rows = [(output_ref(r), job_ref(r.job), _info(r)) for r in session.scalars(query)]
        return [
            info
            for ref, jref, info in rows
            if decide(actor, Action.OUTPUT_REVIEW, ref, now=now).allowed
            or decide(actor, Action.JOB_VIEW, jref, now=now).allowed
        ]

    def download(self, actor: Principal, request_id: int, dest: Path, *, now: dt.datetime | None = None) -> list[Path]:
        """Copy a released output's files to ``dest`` (verified against their recorded sha256)."""
        now = now or utcnow()
        with self.store.session() as session:
            row = _request(session, request_id)
            ref, files = output_ref(row), list(row.files)
        self._require(actor, Action.OUTPUT_DOWNLOAD, ref, f"output:{request_id}", now)
        source = released_folder(self.store, request_id)
        written = []
        for entry in files:
            path = source / entry["name"]
            if sha256_file(path) != entry["sha256"]:
                self._emit(actor.name, Action.OUTPUT_DOWNLOAD.value, f"output:{request_id}", "failed", now)
                raise HygieError(f"output {request_id}: {entry['name']} does not match its recorded sha256")
            target = dest / entry["name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            written.append(target)
        self._emit(actor.name, Action.OUTPUT_DOWNLOAD.value, f"output:{request_id}", "ok", now, files=len(written))
        return written


def _request(session: Session, request_id: int) -> OutputRequest:
    row = session.get(OutputRequest, request_id)
    if row is None:
        raise NotFoundError(f"no output request {request_id}")
    return row


def _rows(path: Path) -> int | None:
    if path.suffix == ".csv":
        with path.open("rb") as f:
            return max(sum(1 for _ in f) - 1, 0)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return None


def _describe_files(out: Path) -> list[dict[str, Any]]:
    return [
        {"name": str(p.relative_to(out)), "bytes": p.stat().st_size, "sha256": sha256_file(p), "rows": _rows(p)}
        for p in sorted(out.rglob("*"))
        if p.is_file()
    ]


def _disclosure_summary(out: Path) -> dict[str, Any]:
    """What the study's manifest says about disclosure control (flags: table, column, rule, cells)."""
    manifest = out / "manifest.json"
    if not manifest.exists():
        return {}
    data = json.loads(manifest.read_text(encoding="utf-8"))
    return {k: data[k] for k in ("disclosure", "synthetic", "release", "engine") if k in data}


def _remember(store: Store, project: str, request_id: int, job_id: int) -> None:
    """Add the released tables to the project's disclosure history (written by the run, kept with the job)."""
    source = job_folder(store, job_id) / "history" / HISTORY_OUTPUT
    if not source.is_dir():
        return  # a synthetic release: exempt from disclosure control, nothing to difference against
    target = project_folder(store, project) / "released" / f"output-{request_id}"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".output-{request_id}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    os.replace(staging, target)
