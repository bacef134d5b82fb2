"""Projects: an approved use of data, with a purpose, a legal basis, a scope, members and validity dates.

Life cycle (``status``)::

    draft --approve--> active --suspend--> suspended --approve--> active
      \\                  \\                   \\
       +--revoke--> revoked (final)   expire --> expired (final)

Access follows ``permissions.project_is_active``: only an active project inside ``[valid_from, valid_until)``
lets its members act, so access stops at ``valid_until`` even before ``expire_due`` records the expiry.
The scope (releases, sites, CDM tables, a time window) is checked against what exists when it is set and again
at approval; it can change only while the project is not active (a changed scope needs a new approval).
Members are the users holding the researcher role on the project (``accounts.Accounts.grant``).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Select, bindparam, select
from sqlalchemy.orm import Session

from hygie.cdm.schema import cdm_schema
from hygie.config import Settings
from hygie.errors import ConflictError, HygieError, NotFoundError
from hygie.governance.accounts import Accounts, utcnow
from hygie.governance.events import Detail, Event, EventSink, Outcome, default_sink
from hygie.governance.models import Project, RoleGrant, User
from hygie.governance.permissions import Action, ProjectRef, project_is_active, require
from hygie.governance.roles import Grant, Principal, Role
from hygie.governance.store import Store
from hygie.releases import ReleaseStore, validate_name

STATUSES = ("draft", "active", "suspended", "revoked", "expired")
FINAL = frozenset({"revoked", "expired"})
_END_EVENTS = {"suspended": "project.suspend", "revoked": "project.revoke", "expired": "project.expire"}


@dataclass(frozen=True)
class ProjectInfo:
    name: str
    title: str
    purpose: str
    legal_basis: str
    status: str
    valid_from: dt.datetime | None
    valid_until: dt.datetime | None
    releases: tuple[str, ...]
    sites: tuple[str, ...] | None  # None: every site
    tables: tuple[str, ...] | None  # None: every table
    window_start: dt.date | None
    window_end: dt.date | None
    members: tuple[str, ...]
    created_at: dt.datetime
    created_by: str
    approved_at: dt.datetime | None
    approved_by: str | None
    ended_at: dt.datetime | None
    end_reason: str | None

    @property
    def ref(self) -> ProjectRef:
        return ProjectRef(self.name, self.status, self.valid_from, self.valid_until)

    def is_active(self, now: dt.datetime) -> bool:
        return project_is_active(self.ref, now)


def on_public_registry(project: ProjectInfo) -> bool:
    """Whether the public registry lists the project: once approved, always (active, suspended, revoked or
    expired: the public may know every use of data that was allowed). A draft is not yet a use of data."""
    return project.status != "draft"


def _members_query(named: bool) -> Select[Any]:
    g, u, p = RoleGrant.__table__, User.__table__, Project.__table__
    query = (
        select(g.c.project_id, u.c.username)
        .select_from(g.join(u, u.c.id == g.c.user_id).join(p, p.c.id == g.c.project_id))
        .where(g.c.role == Role.RESEARCHER.value)
        .order_by(u.c.username)
    )
    return query.where(p.c.name.in_(bindparam("names", expanding=True))) if named else query


# Built once (SQLAlchemy memoises the compiled form on the statement): the project list is read on busy pages.
_MEMBERS = _members_query(named=False)
_MEMBERS_OF = _members_query(named=True)
_PROJECTS = select(Project.__table__).order_by(Project.__table__.c.name)
_PROJECTS_NAMED = _PROJECTS.where(Project.__table__.c.name.in_(bindparam("names", expanding=True)))


def project_ref(project: Project) -> ProjectRef:
    return ProjectRef(project.name, project.status, project.valid_from, project.valid_until)


def _info(project: Project | Row[Any], members: Sequence[str] | None = None) -> ProjectInfo:
    """A snapshot of a project, from its model or from a row of its table (then ``members`` is given)."""
    if members is None:
        assert isinstance(project, Project)
        members = sorted(g.user.username for g in project.grants if g.role == Role.RESEARCHER.value)
    return ProjectInfo(
        project.name,
        project.title,
        project.purpose,
        project.legal_basis,
        project.status,
        project.valid_from,
        project.valid_until,
        tuple(project.scope_releases or ()),
        tuple(project.scope_sites) if project.scope_sites is not None else None,
        tuple(project.scope_tables) if project.scope_tables is not None else None,
        project.window_start,
        project.window_end,
        tuple(members),
        project.created_at,
        project.created_by,
        project.approved_at,
        project.approved_by,
        project.ended_at,
        project.end_reason,
    )


def _get(session: Session, name: str) -> Project:
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        known = ", ".join(session.scalars(select(Project.name).order_by(Project.name))) or "none"
        raise NotFoundError(f"no project named {name!r} (projects: {known})")
    return project


@dataclass(frozen=True)
class Scope:
    """What a project may use. ``sites``/``tables`` None: all of them; the window bounds record dates."""

    releases: tuple[str, ...]
    sites: tuple[str, ...] | None = None
    tables: tuple[str, ...] | None = None
    window_start: dt.date | None = None
    window_end: dt.date | None = None


def check_scope(scope: Scope, settings: Settings) -> None:
    """Every release, site and table of ``scope`` exists; the window is ordered. Errors name what is wrong."""
    from hygie.ingest.sites import SiteRegistry

    store = ReleaseStore(settings)
    for release in scope.releases:
        store.get(release)  # NotFoundError names the known releases
    registry = SiteRegistry(settings)
    for site in scope.sites or ():
        registry.get(site)
    schema = cdm_schema()
    unknown = [t for t in scope.tables or () if t not in schema]
    if unknown:
        raise HygieError(f"not CDM tables: {', '.join(unknown)} (see `hygie cdm schema`)")
    if scope.window_start and scope.window_end and scope.window_start > scope.window_end:
        raise HygieError("the scope's time window starts after it ends")


class Projects:
    """Project service. Every change is checked with ``permissions.decide`` and reported to ``events``."""

    def __init__(self, store: Store, *, events: EventSink | None = None) -> None:
        self.store = store
        self.events = events if events is not None else default_sink(store.settings)

    def _emit(self, actor: str, action: str, name: str, outcome: Outcome, now: dt.datetime, **details: Detail) -> None:
        self.events.record(Event(actor, action, f"project:{name}", outcome, now, details))

    def _require(self, actor: Principal, action: Action, ref: ProjectRef | None, name: str, now: dt.datetime) -> None:
        try:
            require(actor, action, ref, now=now)
        except HygieError:
            self._emit(actor.name, action.value, name, "denied", now)
            raise

    # -- reading ------------------------------------------------------------------------------------------
    def get(self, name: str) -> ProjectInfo:
        with self.store.session() as session:
            return _info(_get(session, name))

    def list(self, names: Collection[str] | None = None) -> list[ProjectInfo]:
        """Every project (or those named in ``names``), by name. Read on the portal's busiest pages: two queries
        on the tables, no ORM objects, spared while nothing was committed to the store (``readcache``)."""
        chosen = None if names is None else tuple(sorted(names))
        return list(self.store.reads.get(("projects", chosen), lambda: self._read(chosen), keep=lambda _: True))

    def _read(self, names: tuple[str, ...] | None) -> tuple[ProjectInfo, ...]:
        members: dict[int, list[str]] = defaultdict(list)
        chosen = {} if names is None else {"names": list(names)}
        with self.store.engine.connect() as connection:
            for project_id, username in connection.execute(_MEMBERS if names is None else _MEMBERS_OF, chosen):
                members[project_id].append(username)
            rows = connection.execute(_PROJECTS if names is None else _PROJECTS_NAMED, chosen).all()
        return tuple(_info(row, members[row.id]) for row in rows)

    def public(self) -> list[ProjectInfo]:
        """The projects the public registry lists (``on_public_registry``), by name."""
        return [info for info in self.list() if on_public_registry(info)]

    def view(self, actor: Principal, name: str, *, now: dt.datetime | None = None) -> ProjectInfo:
        """The project as ``actor`` may see it (``project.view``)."""
        now = now or utcnow()
        info = self.get(name)
        self._require(actor, Action.PROJECT_VIEW, info.ref, name, now)
        return info

    # -- creating and changing ----------------------------------------------------------------------------
    def create(
        self,
        actor: Principal,
        name: str,
        *,
        title: str,
        purpose: str = "",
        legal_basis: str = "",
        valid_from: dt.datetime | None = None,
        valid_until: dt.datetime | None = None,
        now: dt.datetime | None = None,
    ) -> ProjectInfo:
        now = now or utcnow()
        self._require(actor, Action.PROJECT_CREATE, None, name, now)
        validate_name(name)
        _check_validity(valid_from, valid_until)
        with self.store.session() as session:
            if session.scalar(select(Project.id).where(Project.name == name)) is not None:
                raise ConflictError(f"project {name!r} already exists")
            project = Project(
                name=name,
                title=title,
                purpose=purpose,
                legal_basis=legal_basis,
                status="draft",
                valid_from=valid_from,
                valid_until=valid_until,
                scope_releases=[],
                created_at=now,
                created_by=actor.name,
            )
            session.add(project)
            session.flush()
            info = _info(project)
        self._emit(actor.name, Action.PROJECT_CREATE.value, name, "ok", now)
        return info

    def update(
        self,
        actor: Principal,
        name: str,
        *,
        title: str | None = None,
        purpose: str | None = None,
        legal_basis: str | None = None,
        valid_from: dt.datetime | None = None,
        valid_until: dt.datetime | None = None,
        now: dt.datetime | None = None,
    ) -> ProjectInfo:
        """Change the description or validity dates (None: unchanged). Shortening validity is always allowed;
        anything else only while the project is not active."""
        now = now or utcnow()
        with self.store.session() as session:
            project = _get(session, name)
            self._require(actor, Action.PROJECT_MANAGE, project_ref(project), name, now)
            _not_final(project)
            shortens_only = (
                title is None
                and purpose is None
                and legal_basis is None
                and valid_from is None
                and valid_until is not None
                and project.valid_until is not None
                and valid_until <= project.valid_until
            )
            if project.status == "active" and not shortens_only:
                raise HygieError(f"project {name} is active: suspend it before changing it (then approve it again)")
            new_from = valid_from if valid_from is not None else project.valid_from
            new_until = valid_until if valid_until is not None else project.valid_until
            _check_validity(new_from, new_until)
            project.valid_from, project.valid_until = new_from, new_until
            project.title = title if title is not None else project.title
            project.purpose = purpose if purpose is not None else project.purpose
            project.legal_basis = legal_basis if legal_basis is not None else project.legal_basis
            info = _info(project)
        self._emit(actor.name, Action.PROJECT_MANAGE.value, name, "ok", now, change="details")
        return info

    def set_scope(self, actor: Principal, name: str, scope: Scope, *, now: dt.datetime | None = None) -> ProjectInfo:
        now = now or utcnow()
        with self.store.session() as session:
            project = _get(session, name)
            self._require(actor, Action.PROJECT_MANAGE, project_ref(project), name, now)
            _not_final(project)
            if project.status == "active":
                raise HygieError(f"project {name} is active: suspend it before changing its scope")
            check_scope(scope, self.store.settings)
            project.scope_releases = sorted(set(scope.releases))
            project.scope_sites = sorted(set(scope.sites)) if scope.sites is not None else None
            project.scope_tables = sorted(set(scope.tables)) if scope.tables is not None else None
            project.window_start, project.window_end = scope.window_start, scope.window_end
            info = _info(project)
        self._emit(
            actor.name,
            Action.PROJECT_MANAGE.value,
            name,
            "ok",
            now,
            change="scope",
            releases=",".join(info.releases),
            sites=",".join(info.sites) if info.sites is not None else "all",
            tables=",".join(info.tables) if info.tables is not None else "all",
        )
        return info

    # -- status -------------------------------------------------------------------------------------------
    def approve(self, actor: Principal, name: str, *, now: dt.datetime | None = None) -> ProjectInfo:
        """Activate a draft or suspended project once it is complete: purpose, legal basis, at least one
        release in scope, an end of validity in the future."""
        now = now or utcnow()
        with self.store.session() as session:
            project = _get(session, name)
            self._require(actor, Action.PROJECT_APPROVE, project_ref(project), name, now)
            if project.status not in ("draft", "suspended"):
                raise HygieError(f"project {name} is {project.status}: only a draft or suspended project is approved")
            missing = [
                what
                for what, ok in (
                    ("a purpose", bool(project.purpose.strip())),
                    ("a legal basis", bool(project.legal_basis.strip())),
                    ("a release in its scope (set-scope)", bool(project.scope_releases)),
                    ("an end of validity", project.valid_until is not None),
                )
                if not ok
            ]
            if missing:
                raise HygieError(f"project {name} cannot be approved without {', '.join(missing)}")
            assert project.valid_until is not None
            if project.valid_until <= now:
                raise HygieError(f"project {name}'s validity ended on {project.valid_until:%Y-%m-%d}")
            check_scope(_scope(project), self.store.settings)  # releases may have been deleted since
            project.status, project.approved_at, project.approved_by = "active", now, actor.name
            info = _info(project)
        self._emit(actor.name, Action.PROJECT_APPROVE.value, name, "ok", now)
        return info

    def suspend(self, actor: Principal, name: str, reason: str, *, now: dt.datetime | None = None) -> ProjectInfo:
        return self._end(actor, name, "suspended", reason, Action.PROJECT_REVOKE, now or utcnow())

    def revoke(self, actor: Principal, name: str, reason: str, *, now: dt.datetime | None = None) -> ProjectInfo:
        """End the project for good: every member action is denied from now on."""
        return self._end(actor, name, "revoked", reason, Action.PROJECT_REVOKE, now or utcnow())

    def expire(self, actor: Principal, name: str, *, now: dt.datetime | None = None) -> ProjectInfo:
        """End the project now, as if its validity had run out."""
        return self._end(actor, name, "expired", "expired", Action.PROJECT_REVOKE, now or utcnow())

    def expire_due(self, actor: Principal, *, now: dt.datetime | None = None) -> list[str]:
        """Record the expiry of every active or suspended project whose validity has ended; returns their names."""
        now = now or utcnow()
        with self.store.session() as session:
            due = session.scalars(
                select(Project.name).where(
                    Project.status.in_(("active", "suspended")),
                    Project.valid_until.is_not(None),
                    Project.valid_until <= now,
                )
            ).all()
        for name in due:
            self._end(actor, name, "expired", "validity ended", Action.PROJECT_REVOKE, now)
        return list(due)

    def _end(
        self, actor: Principal, name: str, status: str, reason: str, action: Action, now: dt.datetime
    ) -> ProjectInfo:
        with self.store.session() as session:
            project = _get(session, name)
            self._require(actor, action, project_ref(project), name, now)
            _not_final(project)
            if status == "suspended" and project.status != "active":
                raise HygieError(f"project {name} is {project.status}: only an active project is suspended")
            if status == "expired" and project.status == "draft":
                raise HygieError(f"project {name} is a draft: revoke it instead")
            project.status, project.end_reason = status, reason
            if status in FINAL:
                project.ended_at = now
                if project.valid_until is None or project.valid_until > now:
                    project.valid_until = now
            info = _info(project)
        self._emit(actor.name, _END_EVENTS[status], name, "ok", now, reason=reason)
        return info

    # -- members ------------------------------------------------------------------------------------------
    def add_member(self, actor: Principal, name: str, username: str, *, now: dt.datetime | None = None) -> None:
        """Make ``username`` a researcher of the project."""
        with self.store.session() as session:
            _not_final(_get(session, name))
        Accounts(self.store, events=self.events).grant(
            actor, username, Grant(Role.RESEARCHER, project=name), now=now or utcnow()
        )

    def remove_member(self, actor: Principal, name: str, username: str, *, now: dt.datetime | None = None) -> None:
        Accounts(self.store, events=self.events).revoke(
            actor, username, Grant(Role.RESEARCHER, project=name), now=now or utcnow()
        )

    def members(self, name: str) -> list[str]:
        with self.store.session() as session:
            project = _get(session, name)
            rows = session.scalars(
                select(RoleGrant).where(RoleGrant.project_id == project.id, RoleGrant.role == Role.RESEARCHER.value)
            )
            return sorted(g.user.username for g in rows)


def _scope(project: Project) -> Scope:
    return Scope(
        tuple(project.scope_releases or ()),
        tuple(project.scope_sites) if project.scope_sites is not None else None,
        tuple(project.scope_tables) if project.scope_tables is not None else None,
        project.window_start,
        project.window_end,
    )


def _not_final(project: Project) -> None:
    if project.status in FINAL:
        raise HygieError(f"project {project.name} is {project.status}: it cannot change any more")


def _check_validity(valid_from: dt.datetime | None, valid_until: dt.datetime | None) -> None:
    if valid_from is not None and valid_until is not None and valid_from >= valid_until:
        raise HygieError("a project's validity must end after it starts")
