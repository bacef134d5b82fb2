"""The permission module against an expectation written independently, over the role x action x object matrix.

``expected`` below is a second, deliberately plain statement of who may do what (docs/governance.md in words);
``decide`` must agree with it everywhere: exhaustively for principals with one grant, and on random principals
with several grants (Hypothesis).
"""

from __future__ import annotations

import datetime as dt
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from hygie.governance.permissions import (
    RULES,
    Action,
    JobRef,
    OutputRef,
    ProjectRef,
    ReleaseRef,
    SiteRef,
    decide,
    reachable_projects,
)
from hygie.governance.roles import Grant, Principal, Role

USERS = ("alice", "bob")
PROJECTS = ("p1", "p2")
SITES = ("s1", "s2")
STATUSES = ("draft", "active", "suspended", "revoked", "expired")
NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
# validity windows relative to NOW: open, current, not started yet, ended, ending exactly now
WINDOWS = ((None, None), (NOW - DAY, NOW + DAY), (NOW + DAY, NOW + 2 * DAY), (NOW - 2 * DAY, NOW - DAY), (None, NOW))
ALL_GRANTS = (
    [Grant(Role.OPERATOR), Grant(Role.OUTPUT_CHECKER), Grant(Role.AUDITOR)]
    + [Grant(Role.DATA_PROVIDER, site=s) for s in SITES]
    + [Grant(Role.RESEARCHER, project=p) for p in PROJECTS]
)


# -- the expectation, written out plainly ----------------------------------------------------------------------


def _is_active(p: ProjectRef) -> bool:
    started = p.valid_from is None or p.valid_from <= NOW
    not_ended = p.valid_until is None or p.valid_until > NOW
    return p.status == "active" and started and not_ended


def expected(principal: Principal, action: str, obj) -> bool:
    if action == "registry.view_public":
        return obj is None
    usable = {g for g in principal.grants if principal.mfa or g.role == Role.AUDITOR}
    operator = Grant(Role.OPERATOR) in usable
    auditor = Grant(Role.AUDITOR) in usable
    checker = Grant(Role.OUTPUT_CHECKER) in usable
    researcher_of = {g.project for g in usable if g.role == Role.RESEARCHER}
    provider_of = {g.site for g in usable if g.role == Role.DATA_PROVIDER}
    me = principal.username

    hub_wide = ("user.manage", "site.manage", "project.create", "release.build", "keys.view", "optout.manage")
    if action in (*hub_wide, "hub.halt"):
        return obj is None and operator
    if action == "audit.read":
        return obj is None and auditor
    if action == "release.delete":
        return isinstance(obj, ReleaseRef) and operator
    if action == "deposit.create":
        return isinstance(obj, SiteRef) and obj.name in provider_of
    if action in ("project.manage", "project.approve", "project.revoke"):
        return isinstance(obj, ProjectRef) and operator
    if action == "project.view":
        if not isinstance(obj, ProjectRef):
            return False
        return operator or auditor or (obj.name in researcher_of and _is_active(obj))
    if action == "job.submit":
        return isinstance(obj, ProjectRef) and obj.name in researcher_of and _is_active(obj)
    if action == "job.view":
        if not isinstance(obj, JobRef):
            return False
        return operator or (obj.project.name in researcher_of and _is_active(obj.project))
    if action == "job.cancel":
        if not isinstance(obj, JobRef):
            return False
        mine = obj.submitted_by == me
        return operator or (obj.project.name in researcher_of and _is_active(obj.project) and mine)
    if action == "output.request":
        return isinstance(obj, JobRef) and obj.project.name in researcher_of and _is_active(obj.project)
    if action == "output.review":
        return isinstance(obj, OutputRef) and checker and obj.requested_by != me and _is_active(obj.project)
    if action == "output.download":
        if not isinstance(obj, OutputRef):
            return False
        return obj.project.name in researcher_of and _is_active(obj.project) and obj.released
    raise AssertionError(f"the expectation does not know {action}")


# -- objects ---------------------------------------------------------------------------------------------------


def all_projects() -> list[ProjectRef]:
    return [ProjectRef(n, s, f, u) for n in PROJECTS for s in STATUSES for f, u in WINDOWS]


def all_objects() -> list:
    projects = all_projects()
    objects: list = [None, ReleaseRef("r1"), *(SiteRef(s) for s in (*SITES, "s3")), *projects]
    objects += [JobRef(p, u) for p in projects for u in USERS]
    objects += [OutputRef(p, u, r) for p in projects for u in USERS for r in (True, False)]
    return objects


OBJECTS = all_objects()


def test_expectation_covers_every_action():
    assert {a.value for a in Action} == {a.value for a in RULES}
    for action in Action:
        expected(Principal.anonymous(), action.value, None)


def test_every_single_grant_principal_against_every_action_and_object():
    """Exhaustive: 7 grants x MFA or not x 2 usernames x every action x every object kind and state."""
    checked = 0
    for grant, mfa, user in itertools.product(ALL_GRANTS, (True, False), USERS):
        principal = Principal(user, frozenset({grant}), mfa=mfa)
        for action in Action:
            for obj in OBJECTS:
                decision = decide(principal, action, obj, now=NOW)
                assert decision.allowed == expected(principal, action.value, obj), (grant, mfa, user, action, obj)
                assert decision.reason
                checked += 1
    assert checked == len(ALL_GRANTS) * 2 * 2 * len(Action) * len(OBJECTS)


# -- random principals with several grants ----------------------------------------------------------------------

principals = st.builds(
    Principal,
    username=st.sampled_from(USERS),
    grants=st.frozensets(st.sampled_from(ALL_GRANTS), max_size=4),
    mfa=st.booleans(),
)
objects = st.sampled_from(OBJECTS)
actions = st.sampled_from(list(Action))


@settings(max_examples=1500, deadline=None)
@given(principals, actions, objects)
def test_decide_matches_the_expectation(principal, action, obj):
    assert decide(principal, action, obj, now=NOW).allowed == expected(principal, action.value, obj)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([None, *USERS]), st.booleans(), actions, objects)
def test_without_a_role_only_public_actions(username, mfa, action, obj):
    principal = Principal(username, frozenset(), mfa=mfa)
    allowed = decide(principal, action, obj, now=NOW).allowed
    assert allowed == (action is Action.REGISTRY_VIEW_PUBLIC and obj is None)


@settings(max_examples=500, deadline=None)
@given(principals, actions, objects)
def test_inactive_projects_deny_everything_but_the_operator_and_auditor_oversight(principal, action, obj):
    project = obj if isinstance(obj, ProjectRef) else getattr(obj, "project", None)
    if project is None or _is_active(project):
        return
    oversight = {Grant(Role.OPERATOR), Grant(Role.AUDITOR)} & principal.grants
    if not oversight:
        assert not decide(principal, action, obj, now=NOW).allowed


@given(principals, actions, objects)
def test_reachable_projects_never_leave_out_an_allowed_project(principal, action, obj):
    reachable = reachable_projects(principal, action)
    project = obj.project if isinstance(obj, JobRef | OutputRef) else obj
    if decide(principal, action, obj, now=NOW).allowed and isinstance(project, ProjectRef):
        assert reachable is None or project.name in reachable


def test_reachable_projects_narrow_a_researcher_to_their_projects():
    researcher = Principal("alice", frozenset({Grant(Role.RESEARCHER, project="p1")}), mfa=True)
    assert reachable_projects(researcher, Action.PROJECT_VIEW) == frozenset({"p1"})
    assert reachable_projects(Principal("alice", researcher.grants), Action.PROJECT_VIEW) == frozenset()  # no MFA
    auditor = Principal("bob", frozenset({Grant(Role.AUDITOR), *researcher.grants}), mfa=True)
    assert reachable_projects(auditor, Action.PROJECT_VIEW) is None


@given(principals, st.sampled_from(all_projects()), st.booleans())
def test_a_checker_never_reviews_their_own_request(principal, project, released):
    own = OutputRef(project, principal.username, released)
    decision = decide(principal, Action.OUTPUT_REVIEW, own, now=NOW)
    assert not decision.allowed


def test_mismatched_objects_are_denied_with_a_reason():
    operator = Principal.console("root")
    decision = decide(operator, Action.RELEASE_DELETE, SiteRef("s1"), now=NOW)
    assert not decision.allowed and "applies to ReleaseRef" in decision.reason
    assert not decide(operator, Action.USER_MANAGE, ReleaseRef("r1"), now=NOW).allowed


def test_reasons_explain_refusals():
    p = ProjectRef("p1", "revoked", None, None)
    researcher = Principal("alice", frozenset({Grant(Role.RESEARCHER, project="p1")}), mfa=True)
    assert "not active" in decide(researcher, Action.JOB_SUBMIT, p, now=NOW).reason
    no_mfa = Principal("alice", researcher.grants, mfa=False)
    assert "second factor" in decide(no_mfa, Action.JOB_SUBMIT, p, now=NOW).reason
    checker = Principal("bob", frozenset({Grant(Role.OUTPUT_CHECKER)}), mfa=True)
    active = ProjectRef("p1", "active", None, None)
    assert "own request" in decide(checker, Action.OUTPUT_REVIEW, OutputRef(active, "bob", False), now=NOW).reason
    assert "needs the role operator" in decide(Principal("x"), Action.USER_MANAGE, None, now=NOW).reason
