"""The metadata store's read cache (``governance.readcache``), the principal kept with cached rows
(``accounts.AccountRows``) and what the portal renders once per snapshot (``api.fragments``): nothing read is
used after any connection, of any process, committed a change; rules that depend on the time still apply at
every request."""

from __future__ import annotations

import datetime as dt
import sqlite3

from hygie.api.fragments import Fragments
from hygie.governance.accounts import AccountRows, Accounts, principal_columns, principal_joins
from hygie.governance.readcache import ReadCache
from hygie.governance.roles import Grant, Principal, Role
from hygie.governance.safe_people import REVIEW_PERIOD, next_change
from hygie.governance.store import open_store

CONSOLE = Principal.console("test")
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def _loader(calls: list[int], value: object):
    def load() -> object:
        calls.append(1)
        return value

    return load


def test_rows_are_read_again_after_any_commit_of_any_connection(store, settings):
    """On SQLite the rows are kept until anything is committed: by this store, by another store on the same file
    (another process of ``hygie serve --workers N``) or by a plain SQLite connection. PostgreSQL has no such
    counter: every call reads."""
    accounts = Accounts(store)
    accounts.add_user(CONSOLE, "ada", "a-long-password-1", full_name="Ada")
    calls: list[int] = []
    load = _loader(calls, ["row"])
    assert store.reads.get("k", load) == ["row"] and store.reads.get("k", load) == ["row"]
    if not store.reads.enabled:
        assert store.engine.dialect.name == "postgresql" and len(calls) == 2
        return
    assert len(calls) == 1
    accounts.set_active(CONSOLE, "ada", False)  # a commit through this store's engine
    store.reads.get("k", load)
    assert len(calls) == 2
    with open_store(settings) as other:  # another engine on the same file: another process
        Accounts(other).set_active(CONSOLE, "ada", True)
    store.reads.get("k", load)
    assert len(calls) == 3
    with sqlite3.connect(settings.home / "metadata.db") as raw:
        raw.execute("UPDATE users SET full_name = 'Ada L.' WHERE username = 'ada'")
    store.reads.get("k", load)
    store.reads.get("k", load)
    assert len(calls) == 4


def test_misses_are_not_kept_and_the_cache_is_bounded(settings):
    with open_store(settings) as store:
        cache = ReadCache(store.engine, max_entries=2)
        calls: list[int] = []
        for _ in range(3):
            assert cache.get("unknown", _loader(calls, [])) == []
        assert len(calls) == 3  # an unknown cookie or token costs a query each time, and takes no room
        for key in ("a", "b", "c", "c"):
            cache.get(key, _loader(calls, [key]))
        assert len(calls) == 3 + 4  # "c" found no room: read each time
        cache.get("a", _loader(calls, ["a"]))
        assert len(calls) == 7
        cache.close()


def test_kept_rows_give_the_principal_the_rules_give_at_each_moment(settings):
    """Rows kept by the cache are turned into a principal again when a grant's standing may change: a grant
    stops counting the moment its review deadline passes, a researcher's the day after their training ends."""
    from sqlalchemy import select

    from hygie.governance.models import User
    from hygie.governance.projects import Projects

    with open_store(settings) as store:
        accounts, projects = Accounts(store), Projects(store)
        accounts.add_user(CONSOLE, "ada", "a-long-password-1", full_name="Ada")
        projects.create(CONSOLE, "p1", title="P1", purpose="x", legal_basis="MR-004")
        accounts.grant(CONSOLE, "ada", Grant(Role.AUDITOR), now=T0)
        accounts.grant(CONSOLE, "ada", Grant(Role.RESEARCHER, project="p1"), now=T0)
        trained_until = (T0 + dt.timedelta(days=30)).date()
        accounts.record_training(CONSOLE, "ada", "Data protection", T0.date(), expires_on=trained_until)
        u = User.__table__
        query = select(*principal_columns()).select_from(principal_joins(u)).where(u.c.username == "ada")
        with store.engine.connect() as connection:
            account = AccountRows(connection.execute(query).all())
    both = frozenset({Grant(Role.AUDITOR), Grant(Role.RESEARCHER, project="p1")})
    first = account.principal(T0 + dt.timedelta(days=1))
    assert first.grants == both
    assert account.principal(T0 + dt.timedelta(days=2)) is first  # nothing changed: the same principal
    end_of_training = dt.datetime.combine(trained_until + dt.timedelta(days=1), dt.time(), dt.UTC)
    assert account.principal(end_of_training - dt.timedelta(seconds=1)).grants == both
    assert account.principal(end_of_training).grants == frozenset({Grant(Role.AUDITOR)})
    assert account.principal(T0 + REVIEW_PERIOD - dt.timedelta(seconds=1)).grants == frozenset({Grant(Role.AUDITOR)})
    assert account.principal(T0 + REVIEW_PERIOD).grants == frozenset()
    assert account.principal(T0 + dt.timedelta(days=1)).grants == both  # a clock set back: derived again
    assert next_change(Role.AUDITOR, T0, None, T0) == T0 + REVIEW_PERIOD
    assert next_change(Role.RESEARCHER, T0, trained_until, T0) == end_of_training
    assert next_change(Role.AUDITOR, T0, trained_until, T0) == T0 + REVIEW_PERIOD  # auditors need no training
    assert next_change(Role.AUDITOR, T0, None, T0 + REVIEW_PERIOD) is None  # lapsed for good


def test_fragments_are_rendered_once_per_objects_by_identity():
    fragments = Fragments(size=2)
    renders: list[int] = []
    a, b = Principal("ada"), Principal("ada")  # equal, not the same object
    render = lambda: renders.append(1) or len(renders)  # noqa: E731
    assert fragments.get("me", (a,), render) == 1
    assert fragments.get("me", (a,), render) == 1
    assert fragments.get("me", (b,), render) == 2  # a new snapshot (after a change) is rendered anew
    assert fragments.get("other", (a,), render) == 3
    assert fragments.get("me", (a,), render) == 4  # the oldest entries went beyond the size


def test_a_forked_process_reads_with_a_connection_of_its_own(settings):
    """A process forked after the cache opened its connection (a job runner, a worker) does not use the
    parent's SQLite connection: it opens its own and keeps nothing of the parent's."""
    import os

    with open_store(settings) as store:
        calls: list[int] = []
        store.reads.get("k", _loader(calls, ["row"]))
        parent_watch = store.reads._watch
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report whether it read the store again, with its own connection
            ok = store.reads.get("k", _loader(calls, ["row"])) == ["row"] and store.reads._watch is not parent_watch
            os.write(write, b"1" if ok and len(calls) == 2 else b"0")
            os._exit(0)
        os.waitpid(pid, 0)
        assert os.read(read, 1) == b"1"
        store.reads.get("k", _loader(calls, ["row"]))
        assert len(calls) == 1 and store.reads._watch is parent_watch  # the parent's cache is untouched
