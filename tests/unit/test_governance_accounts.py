"""Accounts on SQLite and PostgreSQL: passwords, second factor, lockout, tokens, roles, events."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import shutil
import tempfile
from pathlib import Path

import pyotp
import pytest
from argon2 import PasswordHasher, Type
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sqlalchemy import select

from hygie.config import Settings
from hygie.errors import ConflictError, HygieError
from hygie.governance.accounts import (
    LOCKOUT,
    MAX_FAILURES,
    TOKEN_USE_RECORD,
    TOTP_STEP,
    Accounts,
    AuthenticationError,
)
from hygie.governance.events import MemorySink
from hygie.governance.models import ApiToken, TotpSecret, User
from hygie.governance.permissions import Action, PermissionDenied, decide
from hygie.governance.roles import Grant, Principal, Role
from hygie.governance.store import open_store

OPERATOR = Principal.console("root")
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
PASSWORD = "correct horse battery"


@pytest.fixture
def sink():
    return MemorySink()


# argon2id with light parameters: the same code path, fast enough for a shared 2-core machine; production
# parameters are checked once below.
FAST = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


@pytest.fixture
def accounts(store, sink):
    return Accounts(store, events=sink, hasher=FAST)


def test_default_hasher_is_argon2id_with_rfc9106_parameters(store):
    hasher = Accounts(store, events=MemorySink()).hasher
    assert hasher.type is Type.ID and hasher.memory_cost >= 64 * 1024 and hasher.time_cost >= 3


def code(secret: str, at: dt.datetime) -> str:
    return pyotp.TOTP(secret).at(at)


def test_add_user_hashes_the_password_with_argon2id(accounts, store, sink):
    info = accounts.add_user(OPERATOR, "alice", PASSWORD, full_name="Alice A", email="alice@example.org", now=T0)
    assert info.username == "alice" and info.active and not info.totp_enrolled and info.grants == frozenset()
    with store.session() as s:
        stored = s.scalar(select(User.password_hash).where(User.username == "alice"))
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert [(e.actor, e.action, e.object, e.outcome) for e in sink.events] == [
        ("console:root", "user.create", "user:alice", "ok")
    ]


@pytest.mark.parametrize(
    ("password", "reason"),
    [("short", "at least 12"), ("x" * 1025, "at most"), ("my-alice-password", "must not contain the username")],
)
def test_password_policy(accounts, password, reason):
    with pytest.raises(HygieError, match=reason):
        accounts.add_user(OPERATOR, "alice", password)


def test_one_account_per_person(accounts):
    accounts.add_user(OPERATOR, "alice", PASSWORD, email="alice@example.org")
    with pytest.raises(ConflictError, match="already exists"):
        accounts.add_user(OPERATOR, "alice", PASSWORD)
    with pytest.raises(ConflictError, match="one account per person"):
        accounts.add_user(OPERATOR, "alice2", PASSWORD, email="alice@example.org")


def test_only_an_operator_manages_accounts(accounts, sink):
    accounts.add_user(OPERATOR, "carol", PASSWORD)
    accounts.grant(OPERATOR, "carol", Grant(Role.AUDITOR))
    auditor = accounts.authenticate("carol", PASSWORD)
    with pytest.raises(PermissionDenied, match=r"carol may not user\.manage"):
        accounts.add_user(auditor, "mallory", PASSWORD)
    assert sink.events[-1].outcome == "denied" and sink.events[-1].actor == "carol"
    assert [u.username for u in accounts.list()] == ["carol"]


def test_roles_that_reach_data_need_a_second_factor(accounts):
    accounts.add_user(OPERATOR, "bob", PASSWORD)
    accounts.grant(OPERATOR, "bob", Grant(Role.OUTPUT_CHECKER))
    with pytest.raises(AuthenticationError, match="authentication failed"):
        accounts.authenticate("bob", PASSWORD, now=T0)  # no TOTP enrolled: refused
    enrolment = accounts.enrol_totp(OPERATOR, "bob", now=T0)
    assert enrolment.uri.startswith("otpauth://totp/hygie:bob?secret=")
    with pytest.raises(AuthenticationError):
        accounts.authenticate("bob", PASSWORD, None, now=T0)  # code missing
    principal = accounts.authenticate("bob", PASSWORD, code(enrolment.secret, T0), now=T0)
    assert principal.username == "bob" and principal.mfa
    assert principal.grants == frozenset({Grant(Role.OUTPUT_CHECKER)})
    # the same code is not accepted twice (replay); the next step's code is
    with pytest.raises(AuthenticationError):
        accounts.authenticate("bob", PASSWORD, code(enrolment.secret, T0), now=T0 + dt.timedelta(seconds=5))
    later = T0 + dt.timedelta(seconds=TOTP_STEP)
    assert accounts.authenticate("bob", PASSWORD, code(enrolment.secret, later), now=later).mfa


def test_totp_secret_is_encrypted_with_the_master_key(accounts, store, settings):
    accounts.add_user(OPERATOR, "bob", PASSWORD)
    secret = accounts.enrol_totp(OPERATOR, "bob").secret
    raw = base64.b32decode(secret)
    with store.session() as s:
        row = s.scalar(select(TotpSecret))
        stored = row.wrapped + row.key_id
    assert secret not in stored and base64.b64encode(raw).decode() not in stored and raw.hex() not in stored
    if store.engine.dialect.name == "sqlite":
        for f in settings.home.glob("metadata.db*"):
            data = f.read_bytes()
            assert secret.encode() not in data and raw not in data


def test_lockout_after_repeated_failures(accounts, sink):
    accounts.add_user(OPERATOR, "dave", PASSWORD)
    for i in range(MAX_FAILURES):
        with pytest.raises(AuthenticationError, match="authentication failed"):
            accounts.authenticate("dave", "wrong password!", now=T0 + dt.timedelta(seconds=i))
    with pytest.raises(AuthenticationError, match="locked until"):
        accounts.authenticate("dave", PASSWORD, now=T0 + dt.timedelta(minutes=1))  # even the right password
    assert accounts.get("dave").locked_until == T0 + dt.timedelta(seconds=MAX_FAILURES - 1) + LOCKOUT
    after = T0 + LOCKOUT + dt.timedelta(minutes=1)
    assert accounts.authenticate("dave", PASSWORD, now=after).username == "dave"
    denied = [e for e in sink.events if e.action == "auth.password" and e.outcome == "denied"]
    assert len(denied) == MAX_FAILURES + 1
    assert all(PASSWORD not in str(e.details) and "wrong password" not in str(e.details) for e in sink.events)


def test_failures_do_not_reveal_whether_an_account_exists(accounts):
    accounts.add_user(OPERATOR, "erin", PASSWORD)
    with pytest.raises(AuthenticationError) as unknown:
        accounts.authenticate("nobody", PASSWORD)
    with pytest.raises(AuthenticationError) as wrong:
        accounts.authenticate("erin", "not the password")
    assert str(unknown.value) == str(wrong.value)


def test_disabled_accounts_cannot_log_in_or_use_tokens(accounts):
    accounts.add_user(OPERATOR, "frank", PASSWORD)
    _, token = accounts.create_token(OPERATOR, "frank", "laptop")
    accounts.set_active(OPERATOR, "frank", False)
    with pytest.raises(AuthenticationError):
        accounts.authenticate("frank", PASSWORD)
    with pytest.raises(AuthenticationError):
        accounts.authenticate_token(token)
    accounts.set_active(OPERATOR, "frank", True)
    assert accounts.authenticate_token(token).username == "frank"


def test_api_tokens_are_stored_hashed_and_can_be_revoked_or_expire(accounts, store):
    accounts.add_user(OPERATOR, "gina", PASSWORD)
    accounts.grant(OPERATOR, "gina", Grant(Role.AUDITOR))
    info, token = accounts.create_token(OPERATOR, "gina", "ci", expires_at=T0 + dt.timedelta(days=30), now=T0)
    assert token.startswith("hyg_") and len(token) > 40
    with store.session() as s:
        hashes = list(s.scalars(select(ApiToken.token_hash)))
    assert token not in hashes and len(hashes) == 1 and len(hashes[0]) == 64
    principal = accounts.authenticate_token(token, now=T0 + dt.timedelta(days=1))
    assert principal.username == "gina" and decide(principal, Action.AUDIT_READ, now=T0).allowed
    with pytest.raises(AuthenticationError):
        accounts.authenticate_token(token, now=T0 + dt.timedelta(days=30))  # expired
    with pytest.raises(AuthenticationError):
        accounts.authenticate_token(token + "x", now=T0)
    accounts.revoke_token(OPERATOR, "gina", "ci", now=T0)
    with pytest.raises(AuthenticationError):
        accounts.authenticate_token(token, now=T0 + dt.timedelta(days=1))
    [listed] = accounts.tokens("gina")
    assert listed.name == info.name == "ci" and listed.revoked_at == T0


def test_token_use_is_audited_once_per_period_and_refusals_always(accounts, sink, store):
    accounts.add_user(OPERATOR, "gus", PASSWORD)
    _, token = accounts.create_token(OPERATOR, "gus", "loop", now=T0)
    before = len(sink.events)
    for minute in range(12):  # a script calling the API every 30 s for 6 minutes
        accounts.authenticate_token(token, now=T0 + dt.timedelta(seconds=30 * minute))
    for _ in range(3):
        with pytest.raises(AuthenticationError):
            accounts.authenticate_token(token + "x", now=T0)
    uses = [(e.action, e.outcome, e.at) for e in sink.events[before:]]
    assert uses == [
        ("auth.token", "ok", T0), ("auth.token", "ok", T0 + TOKEN_USE_RECORD), *[("auth.token", "denied", T0)] * 3
    ]  # fmt: skip
    with store.session() as s:
        assert s.scalar(select(ApiToken.last_used_at)) == T0 + TOKEN_USE_RECORD


def test_tokens_need_the_second_factor_first(accounts):
    accounts.add_user(OPERATOR, "hana", PASSWORD)
    accounts.grant(OPERATOR, "hana", Grant(Role.OPERATOR))
    with pytest.raises(HygieError, match="must enrol a second factor"):
        accounts.create_token(OPERATOR, "hana", "api")
    accounts.enrol_totp(OPERATOR, "hana")
    _, token = accounts.create_token(OPERATOR, "hana", "api")
    principal = accounts.authenticate_token(token)
    assert principal.mfa and decide(principal, Action.USER_MANAGE, now=T0).allowed


def test_service_accounts_use_tokens_only(accounts):
    accounts.add_user(OPERATOR, "exporter", None, kind="service")
    with pytest.raises(HygieError, match="cannot hold the operator role"):
        accounts.grant(OPERATOR, "exporter", Grant(Role.OPERATOR))
    accounts.grant(OPERATOR, "exporter", Grant(Role.AUDITOR))
    with pytest.raises(AuthenticationError):
        accounts.authenticate("exporter", "")
    _, token = accounts.create_token(OPERATOR, "exporter", "nightly")
    assert accounts.authenticate_token(token).grants == frozenset({Grant(Role.AUDITOR)})


def test_grants_check_their_scope(accounts, settings):
    from hygie.errors import NotFoundError
    from hygie.ingest.sites import SiteRegistry

    accounts.add_user(OPERATOR, "ivan", PASSWORD)
    with pytest.raises(HygieError, match="granted on one site"):
        accounts.grant(OPERATOR, "ivan", Grant(Role.DATA_PROVIDER))
    with pytest.raises(NotFoundError, match="no site named 'chu-x'"):
        accounts.grant(OPERATOR, "ivan", Grant(Role.DATA_PROVIDER, site="chu-x"))
    SiteRegistry(settings).add("chu-x", "omop")
    accounts.grant(OPERATOR, "ivan", Grant(Role.DATA_PROVIDER, site="chu-x"))
    with pytest.raises(ConflictError):
        accounts.grant(OPERATOR, "ivan", Grant(Role.DATA_PROVIDER, site="chu-x"))
    assert accounts.get("ivan").grants == frozenset({Grant(Role.DATA_PROVIDER, site="chu-x")})
    accounts.revoke(OPERATOR, "ivan", Grant(Role.DATA_PROVIDER, site="chu-x"))
    assert accounts.get("ivan").grants == frozenset()


def test_concurrent_failures_all_count(accounts):
    """Failed attempts arriving together are each counted: the account locks however they interleave."""
    from concurrent.futures import ThreadPoolExecutor

    accounts.add_user(OPERATOR, "kim", PASSWORD)

    def attempt(i: int) -> str:
        try:
            accounts.authenticate("kim", f"wrong password {i}", now=T0)
        except AuthenticationError as e:
            return str(e)
        return "accepted"

    with ThreadPoolExecutor(max_workers=MAX_FAILURES) as pool:
        outcomes = list(pool.map(attempt, range(MAX_FAILURES)))
    assert all("authentication failed" in o for o in outcomes)
    with pytest.raises(AuthenticationError, match="locked until"):
        accounts.authenticate("kim", PASSWORD, now=T0)


class AccountOperations(RuleBasedStateMachine):
    """Random sequences of account creations, e-mail reuse, disabling and role grants on a fresh store:
    every person keeps exactly one account, and refused operations change nothing (TRE checklist #1)."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="hygie-accounts-"))
        settings = Settings(home=self.folder, master_key_file=self.folder / "keys" / "master.key")
        self.store = open_store(settings)
        self.accounts = Accounts(self.store, events=MemorySink(), hasher=FAST)
        self.owner: dict[str, str] = {}  # e-mail -> username, the model

    @rule(user=st.sampled_from(["ann", "ben", "cat", "dan"]), email=st.sampled_from(["a@x.eu", "b@x.eu", None]))
    def add(self, user, email):
        exists = user in {u.username for u in self.accounts.list()}
        taken = email is not None and email in self.owner
        try:
            self.accounts.add_user(OPERATOR, user, PASSWORD, email=email)
        except ConflictError:
            assert exists or taken
            return
        assert not exists and not taken
        if email is not None:
            self.owner[email] = user

    @rule(user=st.sampled_from(["ann", "ben"]), role=st.sampled_from([Role.AUDITOR, Role.OUTPUT_CHECKER]))
    def grant(self, user, role):
        with contextlib.suppress(HygieError):  # already granted
            self.accounts.grant(OPERATOR, user, Grant(role))

    @rule(user=st.sampled_from(["ann", "ben", "cat"]))
    def disable(self, user):
        with contextlib.suppress(HygieError):  # no such user yet
            self.accounts.set_active(OPERATOR, user, False)

    @invariant()
    def one_account_per_person(self):
        users = self.accounts.list()
        emails = [u.email for u in users if u.email is not None]
        assert len(emails) == len(set(emails))
        assert {u.email: u.username for u in users if u.email is not None} == self.owner

    def teardown(self):
        self.store.close()
        shutil.rmtree(self.folder, ignore_errors=True)


AccountOperations.TestCase.settings = hypothesis_settings(max_examples=15, stateful_step_count=12, deadline=None)
test_account_operations = AccountOperations.TestCase
