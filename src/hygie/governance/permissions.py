"""Every permission decision of the hub, in one place: ``decide(principal, action, obj, now=...)``.

The table ``RULES`` lists, for each action, the kind of object it applies to and, per role, the conditions a
grant of that role must meet. A principal may do the action when one of its grants meets every condition of
its role. Everything else is denied (deny by default); a denial says why. Objects are plain snapshots
(``ProjectRef``, ``JobRef``...) so decisions are pure functions of their arguments, testable exhaustively.

Rules that matter beyond the table:
- grants of roles that reach data or approve outputs (``roles.MFA_ROLES``) count only for a principal who
  proved a second factor;
- a project that is not active at ``now`` (draft, suspended, revoked, expired, or outside its validity dates)
  denies every action of its members and every output review at once; the operator keeps the governance actions
  (view, manage, approve, revoke, cancel jobs) so that it can inspect and stop what remains;
- an output checker never reviews their own request.
docs/governance.md shows the table, generated from ``RULES``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from hygie.errors import HygieError
from hygie.governance.roles import MFA_ROLES, Grant, Principal, Role


class Action(StrEnum):
    USER_MANAGE = "user.manage"
    SITE_MANAGE = "site.manage"
    PROJECT_CREATE = "project.create"
    PROJECT_MANAGE = "project.manage"  # members, scope, validity
    PROJECT_APPROVE = "project.approve"
    PROJECT_REVOKE = "project.revoke"
    PROJECT_VIEW = "project.view"
    JOB_SUBMIT = "job.submit"
    JOB_VIEW = "job.view"
    JOB_CANCEL = "job.cancel"
    OUTPUT_REQUEST = "output.request"
    OUTPUT_REVIEW = "output.review"
    OUTPUT_DOWNLOAD = "output.download"
    DEPOSIT_CREATE = "deposit.create"
    RELEASE_BUILD = "release.build"
    RELEASE_DELETE = "release.delete"
    KEYS_VIEW = "keys.view"  # the status of the master, data and audit signing keys (never a key itself)
    AUDIT_READ = "audit.read"
    OPTOUT_MANAGE = "optout.manage"
    HUB_HALT = "hub.halt"  # the kill switch: halt (and resume) one project or the whole hub
    REGISTRY_VIEW_PUBLIC = "registry.view_public"


# -- objects: snapshots of what an action is about ------------------------------------------------------------


@dataclass(frozen=True)
class SiteRef:
    name: str


@dataclass(frozen=True)
class ReleaseRef:
    name: str


@dataclass(frozen=True)
class ProjectRef:
    name: str
    status: str  # draft | active | suspended | revoked | expired
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None


@dataclass(frozen=True)
class JobRef:
    project: ProjectRef
    submitted_by: str


@dataclass(frozen=True)
class OutputRef:
    project: ProjectRef
    requested_by: str
    released: bool


Obj = SiteRef | ReleaseRef | ProjectRef | JobRef | OutputRef | None


def project_is_active(project: ProjectRef, now: dt.datetime) -> bool:
    """Active: approved, not suspended, revoked or expired, and ``valid_from <= now < valid_until``."""
    return (
        project.status == "active"
        and (project.valid_from is None or project.valid_from <= now)
        and (project.valid_until is None or now < project.valid_until)
    )


def project_of(obj: Obj) -> ProjectRef | None:
    if isinstance(obj, ProjectRef):
        return obj
    if isinstance(obj, JobRef | OutputRef):
        return obj.project
    return None


# -- conditions a grant must meet ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    name: str
    why_not: str  # the reason given when it fails
    holds: Callable[[Principal, Grant, Obj, dt.datetime], bool]


def _member(_p: Principal, g: Grant, obj: Obj, _now: dt.datetime) -> bool:
    project = project_of(obj)
    return project is not None and g.project == project.name


def _active(_p: Principal, _g: Grant, obj: Obj, now: dt.datetime) -> bool:
    project = project_of(obj)
    return project is not None and project_is_active(project, now)


def _of_site(_p: Principal, g: Grant, obj: Obj, _now: dt.datetime) -> bool:
    return isinstance(obj, SiteRef) and g.site == obj.name


def _submitter(p: Principal, _g: Grant, obj: Obj, _now: dt.datetime) -> bool:
    return isinstance(obj, JobRef) and obj.submitted_by == p.username


def _not_requester(p: Principal, _g: Grant, obj: Obj, _now: dt.datetime) -> bool:
    return isinstance(obj, OutputRef) and obj.requested_by != p.username


def _released(_p: Principal, _g: Grant, obj: Obj, _now: dt.datetime) -> bool:
    return isinstance(obj, OutputRef) and obj.released


MEMBER = Condition("member of the project", "not a member of the project", _member)
ACTIVE = Condition("project active", "the project is not active (draft, suspended, revoked or expired)", _active)
OF_SITE = Condition("of that site", "data provider of another site", _of_site)
SUBMITTER = Condition("submitted the job", "only the job's submitter may do this", _submitter)
NOT_REQUESTER = Condition("not the requester", "a checker never reviews their own request", _not_requester)
RELEASED = Condition("output released", "the output is not released", _released)


@dataclass(frozen=True)
class Rule:
    target: type | None  # the kind of object the action is about (None: the hub itself)
    roles: dict[Role, tuple[Condition, ...]]
    public: bool = False  # anyone, even unauthenticated


RULES: dict[Action, Rule] = {
    Action.USER_MANAGE: Rule(None, {Role.OPERATOR: ()}),
    Action.SITE_MANAGE: Rule(None, {Role.OPERATOR: ()}),
    Action.PROJECT_CREATE: Rule(None, {Role.OPERATOR: ()}),
    Action.PROJECT_MANAGE: Rule(ProjectRef, {Role.OPERATOR: ()}),
    Action.PROJECT_APPROVE: Rule(ProjectRef, {Role.OPERATOR: ()}),
    Action.PROJECT_REVOKE: Rule(ProjectRef, {Role.OPERATOR: ()}),
    Action.PROJECT_VIEW: Rule(ProjectRef, {Role.OPERATOR: (), Role.AUDITOR: (), Role.RESEARCHER: (MEMBER, ACTIVE)}),
    Action.JOB_SUBMIT: Rule(ProjectRef, {Role.RESEARCHER: (MEMBER, ACTIVE)}),
    Action.JOB_VIEW: Rule(JobRef, {Role.OPERATOR: (), Role.RESEARCHER: (MEMBER, ACTIVE)}),
    Action.JOB_CANCEL: Rule(JobRef, {Role.OPERATOR: (), Role.RESEARCHER: (MEMBER, ACTIVE, SUBMITTER)}),
    Action.OUTPUT_REQUEST: Rule(JobRef, {Role.RESEARCHER: (MEMBER, ACTIVE)}),
    Action.OUTPUT_REVIEW: Rule(OutputRef, {Role.OUTPUT_CHECKER: (ACTIVE, NOT_REQUESTER)}),
    Action.OUTPUT_DOWNLOAD: Rule(OutputRef, {Role.RESEARCHER: (MEMBER, ACTIVE, RELEASED)}),
    Action.DEPOSIT_CREATE: Rule(SiteRef, {Role.DATA_PROVIDER: (OF_SITE,)}),
    Action.RELEASE_BUILD: Rule(None, {Role.OPERATOR: ()}),
    Action.RELEASE_DELETE: Rule(ReleaseRef, {Role.OPERATOR: ()}),
    Action.KEYS_VIEW: Rule(None, {Role.OPERATOR: ()}),
    Action.AUDIT_READ: Rule(None, {Role.AUDITOR: ()}),
    Action.OPTOUT_MANAGE: Rule(None, {Role.OPERATOR: ()}),
    Action.HUB_HALT: Rule(None, {Role.OPERATOR: ()}),
    Action.REGISTRY_VIEW_PUBLIC: Rule(None, {}, public=True),
}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def decide(principal: Principal, action: Action, obj: Obj = None, *, now: dt.datetime) -> Decision:
    """May ``principal`` do ``action`` on ``obj`` at ``now``? Pure: no I/O, no clock."""
    rule = RULES.get(action)
    if rule is None:
        return Decision(False, f"unknown action {action!r}")
    expected = rule.target.__name__ if rule.target else "nothing"
    if (obj is None) != (rule.target is None) or (rule.target is not None and not isinstance(obj, rule.target)):
        return Decision(False, f"{action.value} applies to {expected}, not {type(obj).__name__}")
    if rule.public:
        return Decision(True, "public")
    refusal = None
    for grant in principal.ordered_grants:  # a stable order gives a stable reason
        conditions = rule.roles.get(grant.role)
        if conditions is None:
            continue
        if grant.role in MFA_ROLES and not principal.mfa:
            refusal = refusal or f"{grant.role.value} needs a second factor (TOTP)"
            continue
        failed = None
        for condition in conditions:  # a loop, not next(genexpr): decided for every project of a listing
            if not condition.holds(principal, grant, obj, now):
                failed = condition
                break
        if failed is None:
            return Decision(True, f"as {grant}")
        refusal = refusal or f"as {grant}: {failed.why_not}"
    if refusal is None:
        needed = " or ".join(r.value for r in rule.roles) or "no role"
        refusal = f"{action.value} needs the role {needed}"
    return Decision(False, refusal)


def reachable_projects(principal: Principal, action: Action) -> frozenset[str] | None:
    """The projects on which ``principal`` could be allowed ``action``: ``None`` when one of its usable grants
    needs no membership (any project may pass), else the projects of the grants that need it. A pre-filter for
    listings, derived from ``RULES``: each project it leaves is still decided with ``decide``."""
    rule = RULES[action]
    if rule.public:
        return None
    names: set[str] = set()
    for grant in principal.grants:
        conditions = rule.roles.get(grant.role)
        if conditions is None or (grant.role in MFA_ROLES and not principal.mfa):
            continue
        if MEMBER not in conditions:
            return None
        if grant.project is not None:
            names.add(grant.project)
    return frozenset(names)


class PermissionDenied(HygieError):
    """Raised by services when ``decide`` says no; the message names the action and the reason."""


def require(principal: Principal, action: Action, obj: Obj = None, *, now: dt.datetime) -> None:
    decision = decide(principal, action, obj, now=now)
    if not decision.allowed:
        raise PermissionDenied(f"{principal.name} may not {action.value}: {decision.reason}")


def permissions_markdown() -> str:
    """The permission table for docs/governance.md."""
    lines = ["| action | applies to | allowed for |", "|---|---|---|"]
    for action, rule in RULES.items():
        target = rule.target.__name__.removesuffix("Ref").lower() if rule.target else "the hub"
        if rule.public:
            who = "anyone, without an account"
        else:
            who = "; ".join(
                role.value + (f" ({', '.join(c.name for c in conditions)})" if conditions else "")
                for role, conditions in rule.roles.items()
            )
        lines.append(f"| `{action.value}` | {target} | {who} |")
    return "\n".join(lines) + "\n"
