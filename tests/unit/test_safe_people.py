"""Safe people (``governance.safe_people``): a researcher's grant counts only with a valid training record (TRE
checklist #5); a grant not reviewed within a year raises an alert in its last month, then stops counting until
another operator reviews it (TRE checklist #6)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from argon2 import PasswordHasher
from sqlalchemy import update
from typer.testing import CliRunner

from hygie.cli.main import app
from hygie.errors import HygieError
from hygie.governance.accounts import Accounts
from hygie.governance.events import MemorySink
from hygie.governance.models import RoleGrant
from hygie.governance.permissions import Action, ProjectRef, decide
from hygie.governance.projects import Projects
from hygie.governance.roles import Grant, Principal, Role
from hygie.governance.safe_people import REVIEW_NOTICE, REVIEW_PERIOD, ReviewStatus, in_force, review_status
from hygie.governance.store import open_store

CONSOLE = Principal.console("root")
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
FAST = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
DAY = dt.timedelta(days=1)


def test_status_boundaries() -> None:
    assert review_status(T0, T0) is ReviewStatus.CURRENT
    assert review_status(T0, T0 + REVIEW_PERIOD - REVIEW_NOTICE - dt.timedelta(seconds=1)) is ReviewStatus.CURRENT
    assert review_status(T0, T0 + REVIEW_PERIOD - REVIEW_NOTICE) is ReviewStatus.DUE
    assert review_status(T0, T0 + REVIEW_PERIOD - dt.timedelta(seconds=1)) is ReviewStatus.DUE
    assert in_force(T0, T0 + REVIEW_PERIOD - dt.timedelta(seconds=1))
    assert review_status(T0, T0 + REVIEW_PERIOD) is ReviewStatus.LAPSED and not in_force(T0, T0 + REVIEW_PERIOD)


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def accounts(store, sink) -> Accounts:
    return Accounts(store, events=sink, hasher=FAST)


def _add(accounts: Accounts, name: str, *grants: Grant) -> None:
    accounts.add_user(CONSOLE, name, "correct horse battery", now=T0)
    for grant in grants:
        accounts.grant(CONSOLE, name, grant, now=T0)


def test_unreviewed_grant_alerts_then_lapses_until_another_operator_reviews_it(accounts, sink) -> None:
    _add(accounts, "olga", Grant(Role.OPERATOR))
    _add(accounts, "otto", Grant(Role.OPERATOR))
    _add(accounts, "ann", Grant(Role.AUDITOR))
    olga = Principal("olga", frozenset({Grant(Role.OPERATOR)}), mfa=True)

    in_notice = T0 + REVIEW_PERIOD - dt.timedelta(days=10)
    assert {r.username: r.status for r in accounts.grant_reviews(now=T0 + 300 * DAY)} == dict.fromkeys(
        ("olga", "otto", "ann"), ReviewStatus.CURRENT
    )
    assert accounts.review_alert(CONSOLE, now=T0 + 300 * DAY) == []
    assert not [e for e in sink.events if e.action == "role.review_alert"]  # quiet while nothing is due

    due = accounts.review_alert(CONSOLE, now=in_notice)
    assert {(r.username, r.status) for r in due} == {(n, ReviewStatus.DUE) for n in ("olga", "otto", "ann")}
    alert = [e for e in sink.events if e.action == "role.review_alert"][-1]
    assert alert.details == {"due": 3, "lapsed": 0, "untrained": 0}
    assert Grant(Role.AUDITOR) in accounts.principal("ann", now=in_notice).grants  # due still counts

    lapsed_at = T0 + REVIEW_PERIOD + DAY
    assert accounts.principal("ann", now=lapsed_at).grants == frozenset()
    assert not decide(accounts.principal("ann", now=lapsed_at), Action.AUDIT_READ, now=lapsed_at).allowed
    alert = accounts.review_alert(CONSOLE, now=lapsed_at)
    assert {r.status for r in alert} == {ReviewStatus.LAPSED}
    assert sink.events[-1].details == {"due": 0, "lapsed": 3, "untrained": 0}

    # Nobody reviews their own access; another operator (or the console) does.
    accounts.review(CONSOLE, "olga", Grant(Role.OPERATOR), now=in_notice)
    with pytest.raises(HygieError, match="own access"):
        accounts.review(olga, "olga", Grant(Role.OPERATOR), now=in_notice)
    assert sink.events[-1].action == "role.review" and sink.events[-1].outcome == "denied"
    accounts.review(olga, "ann", Grant(Role.AUDITOR), now=lapsed_at)
    review = sink.events[-1]
    assert (review.actor, review.action, review.object, review.outcome) == ("olga", "role.review", "user:ann", "ok")
    assert review.details == {"role": "auditor", "was": "lapsed"}
    assert Grant(Role.AUDITOR) in accounts.principal("ann", now=lapsed_at).grants  # back in force for a year
    assert Grant(Role.AUDITOR) not in accounts.principal("ann", now=lapsed_at + REVIEW_PERIOD).grants
    ann = next(r for r in accounts.grant_reviews(now=lapsed_at) if r.username == "ann")
    assert (ann.reviewed_by, ann.deadline, ann.status) == ("olga", lapsed_at + REVIEW_PERIOD, ReviewStatus.CURRENT)

    # A lapsed operator grant reviews nothing.
    otto = accounts.principal("otto", now=lapsed_at)
    with pytest.raises(HygieError):
        accounts.review(otto, "ann", Grant(Role.AUDITOR), now=lapsed_at)


def test_lapsed_grant_is_refused_to_tokens_and_project_members(accounts) -> None:
    projects = Projects(accounts.store, events=accounts.events)
    projects.create(CONSOLE, "p1", title="P1", purpose="Yearly review test", now=T0)
    _add(accounts, "rita")
    projects.add_member(CONSOLE, "p1", "rita", now=T0)
    accounts.enrol_totp(CONSOLE, "rita", now=T0)
    _, token = accounts.create_token(CONSOLE, "rita", "laptop", now=T0)
    assert accounts.authenticate_token(token, now=T0).grants == frozenset()  # not trained yet
    accounts.record_training(CONSOLE, "rita", "Data protection", T0.date(), T0.date() + 3 * REVIEW_PERIOD, now=T0)

    later = T0 + REVIEW_PERIOD + DAY
    assert accounts.authenticate_token(token, now=T0 + DAY).grants == frozenset({Grant(Role.RESEARCHER, project="p1")})
    assert accounts.authenticate_token(token, now=later).grants == frozenset()
    with pytest.raises(HygieError, match="no project named 'p2'"):
        accounts.review(CONSOLE, "rita", Grant(Role.RESEARCHER, project="p2"), now=later)
    with pytest.raises(HygieError):
        accounts.review(CONSOLE, "rita", Grant(Role.AUDITOR), now=later)
    accounts.review(CONSOLE, "rita", Grant(Role.RESEARCHER, project="p1"), now=later)
    member = accounts.authenticate_token(token, now=later)
    ref = ProjectRef("p1", "active")
    assert decide(member, Action.JOB_SUBMIT, ref, now=later).allowed
    assert not decide(accounts.principal("rita", now=later + REVIEW_PERIOD), Action.JOB_SUBMIT, ref, now=later).allowed


def test_researcher_grants_count_only_while_training_is_valid(accounts, sink) -> None:
    projects = Projects(accounts.store, events=accounts.events)
    projects.create(CONSOLE, "p1", title="P1", purpose="Training test", now=T0)
    _add(accounts, "rita", Grant(Role.AUDITOR))
    projects.add_member(CONSOLE, "p1", "rita", now=T0)
    member = Grant(Role.RESEARCHER, project="p1")
    assert accounts.principal("rita", now=T0).grants == frozenset({Grant(Role.AUDITOR)})  # auditors need none
    [pending] = [r for r in accounts.review_alert(CONSOLE, now=T0) if r.grant == member]
    assert pending.trained is False and sink.events[-1].details == {"due": 0, "lapsed": 0, "untrained": 1}

    for course, completed, expires, error in [
        ("", T0.date(), None, "1 to 120 characters"),
        ("GDPR", T0.date() + DAY, None, "completed in the future"),
        ("GDPR", T0.date(), T0.date(), "expires .* before or when"),
    ]:
        with pytest.raises(HygieError, match=error):
            accounts.record_training(CONSOLE, "rita", course, completed, expires, now=T0)
    with pytest.raises(HygieError):
        accounts.record_training(Principal("nobody"), "rita", "GDPR", T0.date(), now=T0)
    info = accounts.record_training(CONSOLE, "rita", "GDPR", T0.date(), T0.date() + 10 * DAY, now=T0)
    assert info.valid and sink.events[-1].action == "user.training" and sink.events[-1].details["course"] == "GDPR"
    assert member in accounts.principal("rita", now=T0 + 10 * DAY).grants  # valid through its last day
    assert member not in accounts.principal("rita", now=T0 + 11 * DAY).grants
    assert Grant(Role.AUDITOR) in accounts.principal("rita", now=T0 + 11 * DAY).grants
    accounts.record_training(CONSOLE, "rita", "GDPR refresher", (T0 + 11 * DAY).date(), now=T0 + 11 * DAY)
    assert member in accounts.principal("rita", now=T0 + 11 * DAY).grants  # the latest record counts
    assert [t.course for t in accounts.trainings("rita", now=T0 + 11 * DAY)] == ["GDPR refresher", "GDPR"]


runner = CliRunner()


def test_cli_lists_alerts_and_reviews(home, settings) -> None:
    with open_store(settings) as store:
        Accounts(store, hasher=FAST).add_user(CONSOLE, "ann", "correct horse battery")
        Accounts(store, hasher=FAST).grant(CONSOLE, "ann", Grant(Role.AUDITOR))
    listed = runner.invoke(app, ["user", "reviews", "--json"])
    assert listed.exit_code == 0, listed.output
    row = json.loads(listed.output.splitlines()[0])
    assert (row["user"], row["role"], row["status"], row["reviewed_at"]) == ("ann", "auditor", "current", None)
    assert runner.invoke(app, ["user", "reviews", "--check"]).exit_code == 0

    with open_store(settings) as store, store.session() as session:  # the grant was given 400 days ago
        session.execute(update(RoleGrant).values(granted_at=dt.datetime.now(dt.UTC) - 400 * DAY))
    check = runner.invoke(app, ["user", "reviews", "--check"])
    assert check.exit_code == 1 and "lapsed" in check.output and "1 grant(s) need attention" in check.output
    missing = runner.invoke(app, ["user", "review", "ann", "--role", "operator"])
    assert missing.exit_code != 0 and "does not have the role operator" in missing.output
    done = runner.invoke(app, ["user", "review", "ann", "--role", "auditor"])
    assert done.exit_code == 0 and "ann keeps auditor for 365 more days" in done.output
    assert runner.invoke(app, ["user", "reviews", "--check"]).exit_code == 0
    with open_store(settings) as store:
        Projects(store).create(CONSOLE, "p1", title="P1", purpose="Training test")
        Accounts(store, hasher=FAST).add_user(CONSOLE, "rita", "correct horse battery")
        Accounts(store, hasher=FAST).grant(CONSOLE, "rita", Grant(Role.RESEARCHER, project="p1"))
    untrained = runner.invoke(app, ["user", "reviews", "--check", "--json"])
    assert untrained.exit_code == 1 and '"trained": false' in untrained.output
    bad = runner.invoke(app, ["user", "training", "rita", "--course", "GDPR", "--completed", "last week"])
    assert bad.exit_code != 0 and "--completed takes a date YYYY-MM-DD" in bad.output
    today = dt.datetime.now(dt.UTC).date()
    ok = runner.invoke(app, ["user", "training", "rita", "--course", "GDPR", "--completed", str(today)])
    assert ok.exit_code == 0 and f"rita passed 'GDPR' on {today}" in ok.output
    assert "GDPR" in runner.invoke(app, ["user", "trainings", "rita"]).output
    assert runner.invoke(app, ["user", "reviews", "--check"]).exit_code == 0
    audit = b"".join(p.read_bytes() for p in (home / "audit").rglob("*") if p.is_file()).decode()
    assert '"role.review_alert"' in audit and '"role.review"' in audit
