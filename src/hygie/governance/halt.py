"""The kill switch (TRE checklist #40): halt one project, or the whole hub, at once; resume later.

A halt is made of the hub's ordinary controls, applied together and recorded:
- every active project in its reach is suspended (reason ``hub halt: <reason>``), which denies every member
  action and every output review at once (``permissions``: a project that is not active) and so freezes pending
  output requests;
- the API tokens of the accounts in its reach are revoked and their portal sessions ended, so they get 401 on
  their next request (tokens are revoked, not deleted: they stay for the investigation);
- queued jobs are cancelled, running ones are stopped by their worker at its next poll (a second or so).
Nothing is deleted: releases, deposits, outputs, jobs and the audit log stay as they were.

The reach is one project (its members) or the hub (every project and every account except the operator's own
console). ``resume`` re-approves the projects a halt suspended (still refused when a project's validity ran
out meanwhile); revoked tokens stay revoked: people sign in again and ask for new ones.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update

from hygie.errors import HygieError, NotFoundError
from hygie.governance.accounts import utcnow
from hygie.governance.events import Event, EventSink, default_sink
from hygie.governance.models import ApiToken, Job, OutputRequest, Project, RoleGrant, WebSession
from hygie.governance.permissions import Action, PermissionDenied, require
from hygie.governance.projects import Projects
from hygie.governance.roles import Principal
from hygie.governance.store import Store

HALT_PREFIX = "hub halt: "
_UNFINISHED = ("queued", "running")


@dataclass(frozen=True)
class HaltReport:
    scope: str  # "hub" or "project:<name>"
    projects: tuple[str, ...]  # suspended by a halt, or re-approved by a resume
    tokens_revoked: int = 0
    sessions_ended: int = 0
    jobs_stopped: int = 0
    outputs_frozen: int = 0  # pending output requests that no checker can review until a resume


class KillSwitch:
    """``halt`` and ``resume``, for the operator (action ``hub.halt``)."""

    def __init__(self, store: Store, *, events: EventSink | None = None) -> None:
        self.store = store
        self.events = events if events is not None else default_sink(store.settings)

    def _authorise(self, actor: Principal, scope: str, now: dt.datetime) -> None:
        try:
            require(actor, Action.HUB_HALT, now=now)
        except PermissionDenied:
            self.events.record(Event(actor.name, Action.HUB_HALT.value, scope, "denied", now))
            raise

    def _projects(self, project: str | None) -> list[tuple[int, str, str, str | None]]:
        with self.store.session() as session:
            query = select(Project.id, Project.name, Project.status, Project.end_reason).order_by(Project.name)
            if project is not None:
                query = query.where(Project.name == project)
            rows = [tuple(r) for r in session.execute(query)]
        if project is not None and not rows:
            raise NotFoundError(f"no project named {project}")
        return rows  # type: ignore[return-value]

    def halt(
        self, actor: Principal, reason: str, *, project: str | None = None, now: dt.datetime | None = None
    ) -> HaltReport:
        """Halt ``project``, or the whole hub when None: suspend, revoke tokens, end sessions, stop jobs."""
        from hygie.jobs.queue import Jobs  # jobs build on governance, not the reverse

        now, scope = now or utcnow(), f"project:{project}" if project else "hub"
        self._authorise(actor, scope, now)
        if not reason.strip():
            raise HygieError("a halt needs a reason (--reason): it is recorded in the audit log")
        rows = self._projects(project)
        ids = [r[0] for r in rows]
        with self.store.session() as session:
            tokens = update(ApiToken).where(ApiToken.revoked_at.is_(None)).values(revoked_at=now)
            sessions = delete(WebSession)
            if project is not None:  # the project's members only
                members = select(RoleGrant.user_id).where(RoleGrant.project_id.in_(ids))
                tokens = tokens.where(ApiToken.user_id.in_(members))
                sessions = sessions.where(WebSession.user_id.in_(members))
            tokens_revoked = session.execute(tokens).rowcount
            sessions_ended = session.execute(sessions).rowcount
            jobs = session.scalars(select(Job.id).where(Job.project_id.in_(ids), Job.status.in_(_UNFINISHED))).all()
            frozen = session.scalar(
                select(func.count()).where(OutputRequest.project_id.in_(ids), OutputRequest.status == "pending")
            )
        suspended = tuple(name for _, name, status, _ in rows if status == "active")
        for name in suspended:
            Projects(self.store, events=self.events).suspend(actor, name, HALT_PREFIX + reason.strip(), now=now)
        queue = Jobs(self.store, events=self.events)
        for job_id in jobs:
            queue.cancel(actor, job_id, now=now)
        report = HaltReport(scope, suspended, tokens_revoked, sessions_ended, len(jobs), frozen or 0)
        self.events.record(
            Event(
                actor.name,
                Action.HUB_HALT.value,
                scope,
                "ok",
                now,
                {
                    "reason": reason.strip(),
                    "projects": len(suspended),
                    "tokens": tokens_revoked,
                    "sessions": sessions_ended,
                    "jobs": len(jobs),
                    "outputs": report.outputs_frozen,
                },
            )
        )
        return report

    def resume(self, actor: Principal, *, project: str | None = None, now: dt.datetime | None = None) -> HaltReport:
        """Re-approve the projects a halt suspended (all of them, or ``project``)."""
        now, scope = now or utcnow(), f"project:{project}" if project else "hub"
        self._authorise(actor, scope, now)
        halted = [
            name
            for _, name, status, why in self._projects(project)
            if status == "suspended" and (why or "").startswith(HALT_PREFIX)
        ]
        if project is not None and not halted:
            raise HygieError(f"project {project} was not suspended by a halt")
        projects = Projects(self.store, events=self.events)
        for name in halted:
            projects.approve(actor, name, now=now)
        self.events.record(Event(actor.name, "hub.resume", scope, "ok", now, {"projects": len(halted)}))
        return HaltReport(scope, tuple(halted))
