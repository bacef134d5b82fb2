"""The operator's pages and endpoints: sites and their deposits, releases and their data-quality reports,
accounts and roles, projects (create, scope, approve, suspend, revoke, members), the opt-out register's state,
and the status of the keys. Every view is guarded by a governance action; every change is a governance call."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field
from starlette.responses import Response

from hygie.api import services
from hygie.api.auth import Caller, allow, check_csrf, signed_in
from hygie.api.context import hub
from hygie.api.pages import render
from hygie.errors import HygieError

router = APIRouter()
SignedIn = Annotated[Caller, Depends(signed_in)]
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def _action(name: str) -> Any:
    from hygie.governance.permissions import Action

    return Action(name)


# -- response models --------------------------------------------------------------------------------------------


class DepositOut(BaseModel):
    name: str
    created_at: str
    rows: int
    rejected_rows: int
    quality: str  # pass | warning | fail | none


class SiteOut(BaseModel):
    name: str
    format: str
    created_at: str
    deposits: list[DepositOut]


class QualityOut(BaseModel):
    check: str
    table: str | None = None
    status: str
    detail: str | None = None


class ReleaseOut(BaseModel):
    name: str
    sequence: int
    created_at: str
    synthetic: bool
    cdm_version: str
    persons: int
    tables: dict[str, int]
    rejected_rows: int
    quality: str
    encrypted: bool


class ReleaseDetail(ReleaseOut):
    quality_checks: list[dict[str, Any]]
    lineage: list[dict[str, Any]]
    warnings: list[str]


class UserOut(BaseModel):
    username: str
    full_name: str
    kind: str
    active: bool
    grants: list[str]
    second_factor: bool
    locked_until: dt.datetime | None
    trained_until: dt.date | None = None  # the latest expiry of the person's training records


class TrainingIn(BaseModel):
    course: str = Field(min_length=1, max_length=120)
    completed_on: dt.date
    expires_on: dt.date | None = None  # default: three years after completion


class TrainingOut(BaseModel):
    username: str
    course: str
    completed_on: dt.date
    expires_on: dt.date
    valid: bool


class NewUser(BaseModel):
    username: str = Field(pattern=NAME)
    full_name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=200)
    password: str = Field(min_length=12, max_length=1024)


class NewUserOut(BaseModel):
    username: str
    totp_secret: str | None  # shown once: the user enters it in an authenticator app
    totp_uri: str | None


class GrantIn(BaseModel):
    role: str = Field(pattern=r"^(operator|data_provider|researcher|output_checker|auditor)$")
    site: str | None = Field(default=None, pattern=NAME)
    project: str | None = Field(default=None, pattern=NAME)


class ProjectOut(BaseModel):
    name: str
    title: str
    purpose: str
    legal_basis: str
    status: str
    valid_from: dt.datetime | None
    valid_until: dt.datetime | None
    releases: list[str]
    sites: list[str] | None
    tables: list[str] | None
    window_start: dt.date | None
    window_end: dt.date | None
    members: list[str]
    approved_by: str | None
    end_reason: str | None


class NewProject(BaseModel):
    name: str = Field(pattern=NAME)
    title: str = Field(min_length=1, max_length=200)
    purpose: str = Field(default="", max_length=10_000)
    legal_basis: str = Field(default="", max_length=200)
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None


class ScopeIn(BaseModel):
    releases: list[str] = Field(min_length=1, max_length=100)
    sites: list[str] | None = Field(default=None, max_length=1000)
    tables: list[str] | None = Field(default=None, max_length=100)
    window_start: dt.date | None = None
    window_end: dt.date | None = None


class DataKeys(BaseModel):
    kind: str  # release, vocabulary, deposit
    key_id: str  # the master key that wraps them
    version: str
    count: int


class KeysOut(BaseModel):
    kms: str  # file or transit
    wrapping_key: str
    pending_rotation: bool
    data_keys: list[DataKeys]
    unknown_holders: list[str]
    master_key_file: str | None
    master_key_mode: str | None
    audit_key_id: str | None
    optout_register_version: int
    opted_out_persons: int


# -- reading the data side (existing stores, no governance rule of their own) ------------------------------------


def _quality_status(results: list[dict[str, Any]]) -> str:
    statuses = {str(r.get("status")) for r in results}
    for worst in ("fail", "warning", "pass"):
        if worst in statuses:
            return worst
    return "none"


def list_sites(request: Request, c: Caller) -> list[SiteOut]:
    from hygie.ingest.sites import SiteRegistry

    allow(c, _action("site.manage"))
    registry = SiteRegistry(hub(request).settings)
    out = []
    for site in registry.list():
        deposits = []
        for d in registry.deposits(site).list():
            m = d.manifest
            deposits.append(
                DepositOut(
                    name=m.name,
                    created_at=m.created_at,
                    rows=sum(t.rows for t in m.tables.values()),
                    rejected_rows=m.rejected_rows,
                    quality=_quality_status(m.quality),
                )
            )
        out.append(SiteOut(name=site.name, format=site.format, created_at=site.created_at, deposits=deposits))
    return out


def _release_out(release: Any, cls: type[ReleaseOut] = ReleaseOut, **extra: Any) -> Any:
    m = release.manifest
    return cls(
        name=m.name,
        sequence=m.sequence,
        created_at=m.created_at,
        synthetic=m.synthetic,
        cdm_version=m.cdm_version,
        persons=m.tables["person"].rows if "person" in m.tables else 0,
        tables={n: t.rows for n, t in m.tables.items()},
        rejected_rows=m.rejected_rows,
        quality=_quality_status(m.quality),
        encrypted=m.encryption is not None,
        **extra,
    )


def list_releases(request: Request, c: Caller) -> list[ReleaseOut]:
    from hygie.releases import ReleaseStore

    allow(c, _action("release.build"))
    return [_release_out(r) for r in ReleaseStore(hub(request).settings).list()]


def release_detail(request: Request, c: Caller, name: str) -> ReleaseDetail:
    from dataclasses import asdict

    from hygie.releases import ReleaseStore

    allow(c, _action("release.build"))
    release = ReleaseStore(hub(request).settings).get(name)
    m = release.manifest
    return _release_out(
        release,
        ReleaseDetail,
        quality_checks=list(m.quality),
        lineage=[asdict(e) for e in m.lineage],
        warnings=list(m.warnings),
    )


def keys_status(request: Request, c: Caller) -> KeysOut:
    """``keys_rotation.status`` (as ``hygie keys status``), the audit signing key and the opt-out register."""
    import stat

    from hygie.governance.optout import OptOutRegister
    from hygie.keys_rotation import status

    allow(c, _action("keys.view"))
    h = hub(request)
    s = h.settings
    report = status(s).to_json()
    mode = oct(stat.S_IMODE(s.master_key_file.stat().st_mode)) if s.master_key_file.is_file() else None
    audit_pub = s.home / "audit" / "signing-key.pub"
    audit_id = None
    if audit_pub.is_file():
        from hygie.governance.audit import _key_id, load_public_key

        audit_id = _key_id(load_public_key(audit_pub))
    register = OptOutRegister(h.store, events=h.events).status()
    return KeysOut(
        kms=str(report["kms"]),
        wrapping_key=str(report["wrapping_key"]),
        pending_rotation=bool(report["pending_rotation"]),
        data_keys=[DataKeys(**d) for d in report["data_keys"]],  # type: ignore[union-attr]
        unknown_holders=list(report["unknown_holders"]),  # type: ignore[call-overload]
        master_key_file=str(s.master_key_file) if report["kms"] == "file" else None,
        master_key_mode=mode,
        audit_key_id=audit_id,
        optout_register_version=register.version,
        opted_out_persons=register.opted_out,
    )


def list_users(request: Request, c: Caller) -> list[UserOut]:
    allow(c, _action("user.manage"))
    accounts = services.accounts(request)
    trained: dict[str, dt.date] = {}
    for t in accounts.trainings():
        trained[t.username] = max(t.expires_on, trained.get(t.username, t.expires_on))
    return [
        UserOut(
            username=u.username,
            full_name=u.full_name,
            kind=u.kind,
            active=u.active,
            grants=sorted(str(g) for g in u.grants),
            second_factor=u.totp_enrolled,
            locked_until=u.locked_until,
            trained_until=trained.get(u.username),
        )
        for u in accounts.list()
    ]


def project_out(p: Any) -> ProjectOut:
    return ProjectOut(
        name=p.name,
        title=p.title,
        purpose=p.purpose,
        legal_basis=p.legal_basis,
        status=p.status,
        valid_from=p.valid_from,
        valid_until=p.valid_until,
        releases=list(p.releases),
        sites=list(p.sites) if p.sites is not None else None,
        tables=list(p.tables) if p.tables is not None else None,
        window_start=p.window_start,
        window_end=p.window_end,
        members=list(p.members),
        approved_by=p.approved_by,
        end_reason=p.end_reason,
    )


# -- changes (governance services) -------------------------------------------------------------------------------


def create_user(request: Request, c: Caller, new: NewUser) -> NewUserOut:
    a = services.accounts(request)
    a.add_user(c.principal, new.username, new.password, full_name=new.full_name, email=new.email or None)
    enrolment = a.enrol_totp(c.principal, new.username)
    return NewUserOut(username=new.username, totp_secret=enrolment.secret, totp_uri=enrolment.uri)


def grant_role(request: Request, c: Caller, username: str, grant: GrantIn) -> None:
    from hygie.governance.roles import Grant, parse_role

    services.accounts(request).grant(
        c.principal, username, Grant(parse_role(grant.role), site=grant.site or None, project=grant.project or None)
    )


def record_training(request: Request, c: Caller, username: str, training: TrainingIn) -> TrainingOut:
    t = services.accounts(request).record_training(
        c.principal, username, training.course, training.completed_on, training.expires_on
    )
    return TrainingOut(username=t.username, course=t.course, completed_on=t.completed_on, expires_on=t.expires_on,
                       valid=t.valid)  # fmt: skip


def create_project(request: Request, c: Caller, new: NewProject) -> ProjectOut:
    p = services.projects(request).create(
        c.principal,
        new.name,
        title=new.title,
        purpose=new.purpose,
        legal_basis=new.legal_basis,
        valid_from=new.valid_from,
        valid_until=new.valid_until,
    )
    return project_out(p)


def set_scope(request: Request, c: Caller, name: str, scope: ScopeIn) -> ProjectOut:
    from hygie.governance.projects import Scope

    p = services.projects(request).set_scope(
        c.principal,
        name,
        Scope(
            releases=tuple(scope.releases),
            sites=tuple(scope.sites) if scope.sites else None,
            tables=tuple(scope.tables) if scope.tables else None,
            window_start=scope.window_start,
            window_end=scope.window_end,
        ),
    )
    return project_out(p)


def change_status(request: Request, c: Caller, name: str, change: str, reason: str) -> ProjectOut:
    service = services.projects(request)
    if change == "approve":
        return project_out(service.approve(c.principal, name))
    if change == "suspend":
        return project_out(service.suspend(c.principal, name, reason))
    if change == "revoke":
        return project_out(service.revoke(c.principal, name, reason))
    raise HygieError(f"unknown change {change!r}: approve, suspend or revoke")


# -- pages ----------------------------------------------------------------------------------------------------------


@router.get("/operator", include_in_schema=False)
def dashboard(request: Request, c: SignedIn) -> Response:
    allow(c, _action("site.manage"))
    return render(
        request,
        "operator/dashboard.html",
        sites=list_sites(request, c),
        releases=list_releases(request, c),
        keys=keys_status(request, c),
        projects=[project_out(p) for p in services.projects(request).list()],
        users=list_users(request, c),
    )


@router.get("/operator/releases/{name}", include_in_schema=False)
def release_page(request: Request, c: SignedIn, name: str) -> Response:
    return render(request, "operator/release.html", release=release_detail(request, c, name))


@router.post("/operator/users", include_in_schema=False, dependencies=[Depends(check_csrf)])
def create_user_form(
    request: Request,
    c: SignedIn,
    username: Annotated[str, Form(pattern=NAME)],
    full_name: Annotated[str, Form(min_length=1, max_length=200)],
    password: Annotated[str, Form(min_length=12, max_length=1024)],
    email: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[str, Form(max_length=32)] = "",
    scope: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    created = create_user(request, c, NewUser(username=username, full_name=full_name, email=email or None,
                                              password=password))  # fmt: skip
    if role:
        site = scope if role == "data_provider" else None
        project = scope if role == "researcher" else None
        grant_role(request, c, username, GrantIn(role=role, site=site, project=project))
    return render(request, "operator/user_created.html", created=created)


@router.post("/operator/users/{username}/grants", include_in_schema=False, dependencies=[Depends(check_csrf)])
def grant_form(
    request: Request,
    c: SignedIn,
    username: str,
    role: Annotated[str, Form(max_length=32)],
    scope: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    site = scope if role == "data_provider" else None
    project = scope if role == "researcher" else None
    grant_role(request, c, username, GrantIn(role=role, site=site, project=project))
    return RedirectResponse("/operator#users", status_code=303)


@router.post("/operator/users/{username}/trainings", include_in_schema=False, dependencies=[Depends(check_csrf)])
def training_form(
    request: Request,
    c: SignedIn,
    username: str,
    course: Annotated[str, Form(min_length=1, max_length=120)],
    completed_on: Annotated[dt.date, Form()],
) -> Response:
    record_training(request, c, username, TrainingIn(course=course, completed_on=completed_on))
    return RedirectResponse("/operator#users", status_code=303)


@router.post("/operator/projects", include_in_schema=False, dependencies=[Depends(check_csrf)])
def create_project_form(
    request: Request,
    c: SignedIn,
    name: Annotated[str, Form(pattern=NAME)],
    title: Annotated[str, Form(min_length=1, max_length=200)],
    purpose: Annotated[str, Form(max_length=10_000)] = "",
    legal_basis: Annotated[str, Form(max_length=200)] = "",
    valid_until: Annotated[dt.date | None, Form()] = None,
) -> Response:
    until = dt.datetime.combine(valid_until, dt.time(), dt.UTC) if valid_until else None
    new = NewProject(name=name, title=title, purpose=purpose, legal_basis=legal_basis, valid_until=until)
    create_project(request, c, new)
    return RedirectResponse(f"/operator/projects/{name}", status_code=303)


@router.get("/operator/projects/{name}", include_in_schema=False)
def project_page(request: Request, c: SignedIn, name: str) -> Response:
    from hygie.releases import ReleaseStore

    project = services.projects(request).view(c.principal, name)
    allow(c, _action("project.manage"), project.ref)
    return render(
        request,
        "operator/project.html",
        project=project_out(project),
        releases=ReleaseStore(hub(request).settings).names(),
    )


@router.post("/operator/projects/{name}/scope", include_in_schema=False, dependencies=[Depends(check_csrf)])
def scope_form(
    request: Request,
    c: SignedIn,
    name: str,
    releases: Annotated[str, Form(min_length=1, max_length=2000)],
    tables: Annotated[str, Form(max_length=2000)] = "",
    sites: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    def items(text: str) -> list[str] | None:
        values = [v.strip() for v in text.replace("\n", ",").split(",") if v.strip()]
        return values or None

    set_scope(request, c, name, ScopeIn(releases=items(releases) or [], tables=items(tables), sites=items(sites)))
    return RedirectResponse(f"/operator/projects/{name}", status_code=303)


@router.post("/operator/projects/{name}/status", include_in_schema=False, dependencies=[Depends(check_csrf)])
def status_form(
    request: Request,
    c: SignedIn,
    name: str,
    change: Annotated[str, Form(pattern=r"^(approve|suspend|revoke)$")],
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    change_status(request, c, name, change, reason or f"{change} from the portal")
    return RedirectResponse(f"/operator/projects/{name}", status_code=303)


@router.post("/operator/projects/{name}/members", include_in_schema=False, dependencies=[Depends(check_csrf)])
def member_form(request: Request, c: SignedIn, name: str, username: Annotated[str, Form(pattern=NAME)]) -> Response:
    services.projects(request).add_member(c.principal, name, username)
    return RedirectResponse(f"/operator/projects/{name}", status_code=303)


# -- API ------------------------------------------------------------------------------------------------------------

TAG = ["operator"]


@router.get("/api/v1/sites", response_model=list[SiteOut], tags=TAG, summary="Sites and their deposits")
def sites_api(request: Request, c: SignedIn) -> list[SiteOut]:
    return list_sites(request, c)


@router.get("/api/v1/releases", response_model=list[ReleaseOut], tags=TAG, summary="Releases")
def releases_api(request: Request, c: SignedIn) -> list[ReleaseOut]:
    return list_releases(request, c)


@router.get("/api/v1/releases/{name}", response_model=ReleaseDetail, tags=TAG, summary="A release and its quality")
def release_api(request: Request, c: SignedIn, name: str) -> ReleaseDetail:
    return release_detail(request, c, name)


@router.get("/api/v1/keys", response_model=KeysOut, tags=TAG, summary="Status of the hub's keys")
def keys_api(request: Request, c: SignedIn) -> KeysOut:
    return keys_status(request, c)


@router.get("/api/v1/users", response_model=list[UserOut], tags=TAG, summary="Accounts and their roles")
def users_api(request: Request, c: SignedIn) -> list[UserOut]:
    return list_users(request, c)


@router.post(
    "/api/v1/users", response_model=NewUserOut, status_code=201, tags=TAG, dependencies=[Depends(check_csrf)],
    summary="Create an account (its TOTP secret is returned once)",
)  # fmt: skip
def create_user_api(request: Request, c: SignedIn, new: NewUser) -> NewUserOut:
    return create_user(request, c, new)


@router.post(
    "/api/v1/users/{username}/grants", status_code=204, tags=TAG, dependencies=[Depends(check_csrf)],
    summary="Grant a role",
)  # fmt: skip
def grant_api(request: Request, c: SignedIn, username: str, grant: GrantIn) -> Response:
    grant_role(request, c, username, grant)
    return Response(status_code=204)


@router.post(
    "/api/v1/users/{username}/trainings", response_model=TrainingOut, status_code=201, tags=TAG,
    dependencies=[Depends(check_csrf)], summary="Record a training the person passed (researchers need a valid one)",
)  # fmt: skip
def training_api(request: Request, c: SignedIn, username: str, training: TrainingIn) -> TrainingOut:
    return record_training(request, c, username, training)


@router.post(
    "/api/v1/projects", response_model=ProjectOut, status_code=201, tags=TAG, dependencies=[Depends(check_csrf)],
    summary="Create a project (draft)",
)  # fmt: skip
def create_project_api(request: Request, c: SignedIn, new: NewProject) -> ProjectOut:
    return create_project(request, c, new)


@router.put(
    "/api/v1/projects/{name}/scope", response_model=ProjectOut, tags=TAG, dependencies=[Depends(check_csrf)],
    summary="Set a project's scope (not while active)",
)  # fmt: skip
def scope_api(request: Request, c: SignedIn, name: str, scope: ScopeIn) -> ProjectOut:
    return set_scope(request, c, name, scope)


class StatusChange(BaseModel):
    change: str = Field(pattern=r"^(approve|suspend|revoke)$")
    reason: str = Field(default="", max_length=2000)


@router.post(
    "/api/v1/projects/{name}/status", response_model=ProjectOut, tags=TAG, dependencies=[Depends(check_csrf)],
    summary="Approve, suspend or revoke a project",
)  # fmt: skip
def status_api(request: Request, c: SignedIn, name: str, change: StatusChange) -> ProjectOut:
    return change_status(request, c, name, change.change, change.reason or f"{change.change} through the API")


class MemberIn(BaseModel):
    username: str = Field(pattern=NAME)


@router.post(
    "/api/v1/projects/{name}/members", status_code=204, tags=TAG, dependencies=[Depends(check_csrf)],
    summary="Add a researcher to a project",
)  # fmt: skip
def member_api(request: Request, c: SignedIn, name: str, member: MemberIn) -> Response:
    services.projects(request).add_member(c.principal, name, member.username)
    return Response(status_code=204)
