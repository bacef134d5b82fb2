"""Projects on SQLite and PostgreSQL: scope checked against what exists, approval, members, revocation, expiry."""

from __future__ import annotations

import datetime as dt
import shutil

import pyotp
import pytest

from hygie.config import Settings
from hygie.errors import ConflictError, HygieError, NotFoundError
from hygie.governance.accounts import Accounts
from hygie.governance.events import MemorySink
from hygie.governance.permissions import Action, JobRef, PermissionDenied, decide
from hygie.governance.projects import Projects, Scope
from hygie.governance.roles import Grant, Principal, Role
from hygie.ingest.cdm_load import load_cdm
from hygie.ingest.sites import SiteRegistry
from tests.cdm_files import write_cdm
from tests.unit.test_governance_accounts import FAST, PASSWORD

OPERATOR = Principal.console("root")
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
YEAR = dt.timedelta(days=365)


@pytest.fixture
def sink():
    return MemorySink()


@pytest.fixture(scope="module")
def template_home(tmp_path_factory):
    """A HYGIE_HOME with one release and one site to put in scopes, built once for the module."""
    home = tmp_path_factory.mktemp("template") / "home"
    settings = Settings(home=home, master_key_file=home / "keys" / "master.key")
    load_cdm(write_cdm(home.parent / "cdm"), "r1", settings, synthetic=True)
    SiteRegistry(settings).add("chu-a", "omop")
    return home


@pytest.fixture
def hub(settings, template_home):
    shutil.copytree(template_home, settings.home, dirs_exist_ok=True)
    return settings


@pytest.fixture
def projects(store, sink, hub):
    return Projects(store, events=sink)


@pytest.fixture
def accounts(store, sink):
    return Accounts(store, events=sink, hasher=FAST)


def ready(projects: Projects, name: str = "p1") -> None:
    projects.create(
        OPERATOR,
        name,
        title="GI bleeding and NSAIDs",
        purpose="Incidence of GI bleeding among NSAID users",
        legal_basis="MR-004 declaration 2026-0042",
        valid_until=T0 + YEAR,
        now=T0,
    )
    projects.set_scope(
        OPERATOR,
        name,
        Scope(("r1",), sites=("chu-a",), tables=("condition_occurrence",), window_start=dt.date(2010, 1, 1)),
        now=T0,
    )


def test_life_cycle_of_a_project(projects, accounts, sink):
    ready(projects)
    info = projects.get("p1")
    assert info.status == "draft" and info.releases == ("r1",) and info.sites == ("chu-a",)
    assert info.tables == ("condition_occurrence",) and info.window_start == dt.date(2010, 1, 1) and not info.members
    accounts.add_user(OPERATOR, "alice", PASSWORD)
    accounts.record_training(OPERATOR, "alice", "Data protection", T0.date(), now=T0)  # researchers are trained
    projects.add_member(OPERATOR, "p1", "alice", now=T0)
    secret = accounts.enrol_totp(OPERATOR, "alice").secret
    alice = accounts.authenticate("alice", PASSWORD, pyotp.TOTP(secret).at(T0), now=T0)
    assert alice.grants == frozenset({Grant(Role.RESEARCHER, project="p1")})
    assert not decide(alice, Action.JOB_SUBMIT, projects.get("p1").ref, now=T0).allowed  # still a draft
    approved = projects.approve(OPERATOR, "p1", now=T0)
    assert approved.status == "active" and approved.approved_by == "console:root" and approved.members == ("alice",)
    assert decide(alice, Action.JOB_SUBMIT, approved.ref, now=T0).allowed
    assert projects.view(alice, "p1", now=T0).name == "p1"
    # revocation cuts every member action at once
    revoked = projects.revoke(OPERATOR, "p1", "consent withdrawn by the sponsor", now=T0 + dt.timedelta(days=3))
    later = T0 + dt.timedelta(days=3, seconds=1)
    assert revoked.status == "revoked" and revoked.end_reason == "consent withdrawn by the sponsor"
    for action, obj in ((Action.JOB_SUBMIT, revoked.ref), (Action.JOB_VIEW, JobRef(revoked.ref, "alice"))):
        assert not decide(alice, action, obj, now=later).allowed
    with pytest.raises(PermissionDenied):
        projects.view(alice, "p1", now=later)
    with pytest.raises(HygieError, match="only a draft or suspended project is approved"):
        projects.approve(OPERATOR, "p1", now=later)
    with pytest.raises(HygieError, match="cannot change any more"):
        projects.set_scope(OPERATOR, "p1", Scope(("r1",)), now=later)
    actions = [e.action for e in sink.events if e.object == "project:p1"]
    assert actions[0] == "project.create" and "project.approve" in actions and "project.revoke" in actions


def test_access_stops_at_the_end_of_validity(projects, accounts):
    ready(projects)
    projects.approve(OPERATOR, "p1", now=T0)
    member = Principal("alice", frozenset({Grant(Role.RESEARCHER, project="p1")}), mfa=True)
    ref = projects.get("p1").ref
    assert decide(member, Action.JOB_SUBMIT, ref, now=T0 + YEAR - dt.timedelta(seconds=1)).allowed
    assert not decide(member, Action.JOB_SUBMIT, ref, now=T0 + YEAR).allowed  # before any sweep
    assert projects.expire_due(OPERATOR, now=T0 + YEAR) == ["p1"]
    assert projects.get("p1").status == "expired"
    assert projects.expire_due(OPERATOR, now=T0 + 2 * YEAR) == []


def test_approval_needs_a_complete_project(projects):
    projects.create(OPERATOR, "p2", title="t", now=T0)
    with pytest.raises(HygieError, match="without a purpose, a legal basis, a release in its scope"):
        projects.approve(OPERATOR, "p2", now=T0)
    projects.update(OPERATOR, "p2", purpose="p", legal_basis="MR-004", valid_until=T0 - dt.timedelta(days=1))
    projects.set_scope(OPERATOR, "p2", Scope(("r1",)))
    with pytest.raises(HygieError, match="validity ended"):
        projects.approve(OPERATOR, "p2", now=T0)


def test_scope_is_checked_against_releases_sites_and_tables(projects):
    projects.create(OPERATOR, "p3", title="t", now=T0)
    with pytest.raises(NotFoundError, match=r"no release named 'r9'.*r1"):
        projects.set_scope(OPERATOR, "p3", Scope(("r9",)))
    with pytest.raises(NotFoundError, match="no site named 'chu-z'"):
        projects.set_scope(OPERATOR, "p3", Scope(("r1",), sites=("chu-z",)))
    with pytest.raises(HygieError, match="not CDM tables: conditions"):
        projects.set_scope(OPERATOR, "p3", Scope(("r1",), tables=("conditions", "person")))
    with pytest.raises(HygieError, match="starts after it ends"):
        projects.set_scope(
            OPERATOR, "p3", Scope(("r1",), window_start=dt.date(2020, 1, 1), window_end=dt.date(2019, 1, 1))
        )
    info = projects.set_scope(OPERATOR, "p3", Scope(("r1",)))
    assert info.sites is None and info.tables is None  # every site, every table


def test_an_active_project_changes_only_after_suspension(projects):
    ready(projects)
    projects.approve(OPERATOR, "p1", now=T0)
    with pytest.raises(HygieError, match="suspend it"):
        projects.set_scope(OPERATOR, "p1", Scope(("r1",)), now=T0)
    with pytest.raises(HygieError, match="suspend it"):
        projects.update(OPERATOR, "p1", purpose="something else", now=T0)
    shorter = projects.update(OPERATOR, "p1", valid_until=T0 + dt.timedelta(days=30), now=T0)
    assert shorter.valid_until == T0 + dt.timedelta(days=30)  # shortening needs no new approval
    assert projects.suspend(OPERATOR, "p1", "scope review", now=T0).status == "suspended"
    projects.set_scope(OPERATOR, "p1", Scope(("r1",)), now=T0)
    assert projects.approve(OPERATOR, "p1", now=T0).status == "active"


def test_only_the_operator_governs_projects(projects, sink):
    ready(projects)
    researcher = Principal("alice", frozenset({Grant(Role.RESEARCHER, project="p1")}), mfa=True)
    with pytest.raises(PermissionDenied, match=r"may not project\.create"):
        projects.create(researcher, "mine", title="t")
    with pytest.raises(PermissionDenied, match=r"may not project\.approve"):
        projects.approve(researcher, "p1")
    with pytest.raises(PermissionDenied, match=r"may not project\.manage"):
        projects.add_member(researcher, "p1", "bob")
    assert [e.outcome for e in sink.events[-3:]] == ["denied"] * 3


def test_members(projects, accounts):
    ready(projects)
    ready(projects, "p2")
    for user in ("alice", "bob"):
        accounts.add_user(OPERATOR, user, PASSWORD)
    projects.add_member(OPERATOR, "p1", "alice")
    projects.add_member(OPERATOR, "p1", "bob")
    projects.add_member(OPERATOR, "p2", "bob")
    with pytest.raises(ConflictError):
        projects.add_member(OPERATOR, "p1", "bob")
    assert projects.members("p1") == ["alice", "bob"]
    projects.remove_member(OPERATOR, "p1", "bob")
    assert projects.get("p1").members == ("alice",)
    assert accounts.get("bob").grants == frozenset({Grant(Role.RESEARCHER, project="p2")})
    with pytest.raises(NotFoundError, match="no project named 'p9'"):
        projects.add_member(OPERATOR, "p9", "bob")
    assert [p.name for p in projects.list()] == ["p1", "p2"]
