"""Portal sessions in the metadata store (SQLite and PostgreSQL): idle and absolute limits, logout, ending every
session of an account, nothing usable stored, and the throttled ``last_seen_at`` write."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from hygie.api.sessions import TOUCH_SECONDS, SessionStore
from hygie.governance.accounts import Accounts
from hygie.governance.models import WebSession
from hygie.governance.roles import Principal

CONSOLE = Principal.console("test")
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def _accounts(store) -> Accounts:
    accounts = Accounts(store)
    for name in ("ada", "bob"):
        accounts.add_user(CONSOLE, name, "a-long-password-1", full_name=name.title())
    return accounts


def _sessions(store, now: list[dt.datetime]) -> SessionStore:
    return SessionStore(store, idle_seconds=600, max_seconds=3600, clock=lambda: now[0])


def test_a_session_lives_until_idle_and_only_its_hash_is_stored(store):
    _accounts(store)
    now = [T0]
    sessions = _sessions(store, now)
    sid = sessions.create("ada")
    with store.session() as s:
        stored = s.scalars(select(WebSession.id_hash)).all()
    assert len(stored) == 1 and sid not in stored[0] and len(stored[0]) == 64
    now[0] = T0 + dt.timedelta(seconds=599)
    session = sessions.get(sid)
    assert session is not None and session.username == "ada" and session.created == T0
    assert session.principal.grants == frozenset() and not session.principal.mfa
    now[0] += dt.timedelta(seconds=599)  # active 599 s ago: still alive
    assert sessions.get(sid) is not None
    now[0] += dt.timedelta(seconds=600)
    assert sessions.get(sid) is None
    assert len(sessions) == 0  # an ended session is deleted when met
    assert sessions.get("not-a-session") is None and sessions.get(None) is None


def test_a_busy_session_still_ends_at_its_absolute_limit(store):
    _accounts(store)
    now = [T0]
    sessions = _sessions(store, now)
    sid = sessions.create("ada")
    for _ in range(11):  # a request every 5 minutes, up to 55 minutes after login
        now[0] += dt.timedelta(seconds=300)
        assert sessions.get(sid) is not None
    now[0] = T0 + dt.timedelta(seconds=3600)
    assert sessions.get(sid) is None


def test_last_seen_is_written_at_most_once_per_touch_period(store):
    _accounts(store)
    now = [T0]
    sessions = _sessions(store, now)
    sid = sessions.create("ada")

    def last_seen() -> dt.datetime:
        with store.session() as s:
            return s.scalar(select(WebSession.last_seen_at))

    now[0] = T0 + dt.timedelta(seconds=TOUCH_SECONDS - 1)
    sessions.get(sid)
    assert last_seen() == T0
    now[0] = T0 + dt.timedelta(seconds=TOUCH_SECONDS)
    sessions.get(sid)
    assert last_seen() == now[0]


def test_logout_and_account_changes_end_sessions(store):
    accounts = _accounts(store)
    now = [T0]
    sessions = _sessions(store, now)
    a1 = sessions.create("ada")
    a2 = sessions.create("ada")
    b1 = sessions.create("bob")
    assert sessions.delete(a1) is True and sessions.delete(a1) is False
    assert sessions.get(a1) is None and sessions.get(a2) is not None
    accounts.set_password(CONSOLE, "ada", "another-long-password")
    assert sessions.get(a2) is None
    b2 = sessions.create("bob")
    accounts.set_active(CONSOLE, "bob", False)
    assert sessions.get(b1) is None and sessions.get(b2) is None
    c1 = sessions.create("ada")
    assert sessions.delete_user("ada") == 1 and sessions.get(c1) is None


def test_logins_sweep_ended_sessions(store):
    _accounts(store)
    now = [T0]
    sessions = _sessions(store, now)
    for _ in range(3):
        sessions.create("ada")
    assert len(sessions) == 3
    now[0] = T0 + dt.timedelta(seconds=601)
    sessions.create("bob")
    assert len(sessions) == 1


def test_the_session_carries_the_account_as_it_stands_at_each_request(store):
    from hygie.governance.roles import Grant, Role

    accounts = _accounts(store)
    now = [T0]
    sessions = _sessions(store, now)
    sid = sessions.create("ada")
    accounts.grant(CONSOLE, "ada", Grant(Role.AUDITOR))
    assert sessions.get(sid).principal == accounts.principal("ada")
    assert sessions.get(sid).principal.grants == frozenset({Grant(Role.AUDITOR)})
    accounts.revoke(CONSOLE, "ada", Grant(Role.AUDITOR))
    assert sessions.get(sid).principal.grants == frozenset()
