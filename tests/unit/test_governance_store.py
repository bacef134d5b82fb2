"""The metadata store: migrations build exactly the models, on SQLite and PostgreSQL; safe defaults on SQLite."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from hygie.errors import HygieError
from hygie.governance.models import Base, RoleGrant, User
from hygie.governance.store import current_revision, database_url, engine_for, head_revision, open_store


def test_migrations_build_exactly_the_models(store):
    assert current_revision(store.engine) == head_revision()
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_foreign_keys_and_unique_constraints_are_enforced(store):
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(IntegrityError), store.session() as s:
        s.add(RoleGrant(user_id=999, role="auditor", scope_key="", granted_at=now, granted_by="t"))
    with store.session() as s:
        s.add(User(username="u", full_name="U", kind="person", created_at=now, created_by="t"))
    with pytest.raises(IntegrityError), store.session() as s:
        s.add(User(username="u", full_name="U2", kind="person", created_at=now, created_by="t"))
    with store.session() as s:
        user = s.scalar(select(User))
        assert user.created_at == now and user.created_at.tzinfo is not None  # UTC, aware, on both databases


def test_sqlite_defaults(settings, monkeypatch):
    monkeypatch.delenv("HYGIE_DATABASE_URL", raising=False)
    assert database_url(settings) == f"sqlite:///{settings.home / 'metadata.db'}"
    with open_store(settings) as store, store.engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert (settings.home / "metadata.db").exists()


def test_the_url_comes_from_the_environment(settings, monkeypatch):
    monkeypatch.setenv("HYGIE_DATABASE_URL", "postgresql+psycopg://hub:secret@127.0.0.1:1/db")
    assert database_url(settings) == "postgresql+psycopg://hub:secret@127.0.0.1:1/db"
    with pytest.raises(HygieError, match=r"cannot open the metadata store postgresql\+psycopg://hub:\*\*\*@") as e:
        open_store(settings)
    assert "secret" not in str(e.value)
    monkeypatch.setenv("HYGIE_DATABASE_URL", "mysql://x@y/z")
    with pytest.raises(HygieError, match="unsupported metadata database"):
        open_store(settings)


def test_an_out_of_date_schema_is_refused_without_upgrade(settings):
    url = database_url(settings)
    engine_for(url).dispose()  # creates nothing: the database is empty
    with pytest.raises(HygieError, match="hygie admin migrate"):
        open_store(settings, upgrade=False)
    open_store(settings).close()
    open_store(settings, upgrade=False).close()


def test_concurrent_openers_migrate_once(settings):
    """Three processes open a new store at the same time: one migrates, none fails."""
    code = (
        "import sys; from pathlib import Path; from hygie.config import Settings; "
        "from hygie.governance.store import open_store; "
        "h = Path(sys.argv[1]); open_store(Settings(home=h, master_key_file=h / 'k')).close()"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(settings.home)], stderr=subprocess.PIPE) for _ in range(3)
    ]
    errors = [p.communicate()[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    with open_store(settings) as store:
        assert current_revision(store.engine) == head_revision()


def test_a_malformed_database_url_is_refused_without_repeating_it():
    with pytest.raises(HygieError, match="HYGIE_DATABASE_URL is not a database URL") as refused:
        engine_for("::not-a-url:s3cret-pw@db")
    assert "s3cret-pw" not in str(refused.value)
