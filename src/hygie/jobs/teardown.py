"""Tearing down an ended project's workspace, with proof of deletion (TRE checklist #21).

When a project is revoked or has expired, its job folders (study bundles, logs, outputs never released,
disclosure histories of single jobs) are no longer anyone's to use. ``teardown`` deletes them and records what
went: a deletion record (each file's path inside the hub, size and SHA-256, never its content) is kept in the
project's folder, and its digest goes into the audit log, so an auditor can check later that what was listed
is gone and that the record was not edited.

Kept on purpose: the released outputs (they already left the hub through the airlock and the transparency
registry lists them), the project's disclosure history of released outputs (``projects/<name>/released``) and
its metadata (status, jobs and requests as rows: the audit trail refers to them).

Crash safety: the deletion record and its audit event come first; then every folder is renamed into ``trash/``
(atomic) and removed. A teardown stopped half-way is finished by running it again, which records what was left.
Backups made before the teardown still hold the folders: backups are kept no longer than the deletion delay
(docs/operations.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from hygie.checksums import sha256_file
from hygie.errors import ConflictError, HygieError, NotFoundError
from hygie.governance.accounts import utcnow
from hygie.governance.events import Event, EventSink, default_sink
from hygie.governance.models import Job, Project
from hygie.governance.permissions import Action, require
from hygie.governance.projects import FINAL, project_ref
from hygie.governance.roles import Principal
from hygie.governance.store import Store
from hygie.jobs.queue import job_folder
from hygie.jobs.worker import project_folder

UNFINISHED = ("queued", "running")


@dataclass(frozen=True)
class Teardown:
    project: str
    jobs: int  # job folders deleted by this run
    files: int
    bytes: int
    record: Path | None  # the deletion record written by this run (None when there was nothing left)
    digest: str | None  # its SHA-256, as written to the audit log


def _inventory(home: Path, folders: list[Path]) -> list[dict[str, object]]:
    """What each folder holds: path relative to the hub, size, SHA-256; folders and links as such."""
    found: list[dict[str, object]] = []
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                path = Path(root) / name
                entry: dict[str, object] = {"path": str(path.relative_to(home))}
                if path.is_symlink() or not path.is_file():
                    entry["kind"] = "link" if path.is_symlink() else "special"
                else:
                    entry |= {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
                found.append(entry)
    return found


def teardown(
    store: Store, actor: Principal, name: str, *, events: EventSink | None = None, now: dt.datetime | None = None
) -> Teardown:
    """Delete the workspace of the ended project ``name`` and record the proof."""
    now = now or utcnow()
    events = events if events is not None else default_sink(store.settings)
    with store.session() as session:
        project = session.scalar(select(Project).where(Project.name == name))
        if project is None:
            raise NotFoundError(f"no project named {name!r}")
        ref = project_ref(project)
        try:
            require(actor, Action.PROJECT_REVOKE, ref, now=now)
        except HygieError:
            events.record(Event(actor.name, "project.teardown", f"project:{name}", "denied", now, {}))
            raise
        if project.status not in FINAL:
            raise ConflictError(
                f"project {name} is {project.status}: only a revoked or expired project is torn down "
                f"(`hygie project revoke {name} --reason ...` first)"
            )
        jobs = session.execute(select(Job.id, Job.status).where(Job.project_id == project.id)).all()
    unfinished = sorted(job_id for job_id, status in jobs if status in UNFINISHED)
    if unfinished:
        raise ConflictError(
            f"project {name} still has job(s) {', '.join(map(str, unfinished))} queued or running: "
            "the worker cancels them at its next pass; tear down after that"
        )
    home = store.settings.home
    folders = [f for f in (job_folder(store, job_id) for job_id, _ in sorted(jobs)) if f.exists()]
    if not folders:
        return Teardown(name, 0, 0, 0, None, None)
    inventory = _inventory(home, folders)
    record = {
        "project": name,
        "torn_down_at": now.isoformat(),
        "by": actor.name,
        "jobs": [int(f.name) for f in folders],
        "files": inventory,
    }
    body = json.dumps(record, indent=1, sort_keys=True).encode()
    digest = hashlib.sha256(body).hexdigest()
    target = project_folder(store, name)
    target.mkdir(parents=True, exist_ok=True)
    record_path = target / f"teardown-{now:%Y%m%dT%H%M%S}-{digest[:8]}.json"
    partial = record_path.with_suffix(".partial")
    partial.write_bytes(body)
    os.replace(partial, record_path)

    size = sum(int(e.get("bytes", 0)) for e in inventory)  # type: ignore[call-overload]
    # The event comes before the deletion: a teardown interrupted after it is finished by the next run, which
    # records what was still left; none deletes without a record.
    details = {"jobs": len(folders), "files": len(inventory), "bytes": size, "record_sha256": digest}
    events.record(Event(actor.name, "project.teardown", f"project:{name}", "ok", now, details))
    trash = store.settings.trash_dir
    trash.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        doomed = trash / f"job-{folder.name}.{uuid.uuid4().hex}"
        os.replace(folder, doomed)  # out of the workspace at once, even if the removal below is interrupted
        shutil.rmtree(doomed)
    return Teardown(name, len(folders), len(inventory), size, record_path, digest)


def teardown_due(
    store: Store,
    actor: Principal,
    *,
    after: dt.timedelta,
    events: EventSink | None = None,
    now: dt.datetime | None = None,
) -> list[Teardown]:
    """Tear down every project that ended at least ``after`` ago and still has a workspace."""
    now = now or utcnow()
    with store.session() as session:
        names = session.scalars(
            select(Project.name).where(
                Project.status.in_(tuple(FINAL)), Project.ended_at.is_not(None), Project.ended_at <= now - after
            )
        ).all()
    done = [teardown(store, actor, n, events=events, now=now) for n in sorted(names)]
    return [t for t in done if t.jobs]
