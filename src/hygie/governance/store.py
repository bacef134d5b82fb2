"""The metadata store: accounts, roles, projects, the opt-out register (and later jobs and outputs).

SQLite at ``HYGIE_HOME/metadata.db`` by default (WAL journal, foreign keys enforced), or any database named by
``HYGIE_DATABASE_URL`` (PostgreSQL: ``postgresql+psycopg://user:password@host:port/db``). Opening the store
brings its schema to the newest Alembic revision shipped in ``hygie/governance/migrations``; concurrent openers
serialise on a lock (a file lock for SQLite, an advisory lock for PostgreSQL) so only one of them migrates.
See docs/decisions/0013-governance-store-accounts-permissions.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from hygie.config import Settings
from hygie.errors import HygieError
from hygie.governance.readcache import ReadCache

MIGRATIONS = Path(__file__).parent / "migrations"
_SERIALISED = "hygie_serialised"
_PG_MIGRATION_LOCK = 0x68796769  # "hygi": the advisory lock id serialising migrations on PostgreSQL


def database_url(settings: Settings, environ: dict[str, str] | None = None) -> str:
    """``HYGIE_DATABASE_URL`` when set, else the SQLite file ``HYGIE_HOME/metadata.db``."""
    env = os.environ if environ is None else environ
    return env.get("HYGIE_DATABASE_URL") or f"sqlite:///{settings.home / 'metadata.db'}"


def describe(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


@dataclass
class Store:
    """An open metadata store. ``session()`` gives a unit of work committed on success, rolled back on error."""

    engine: Engine
    settings: Settings

    def __post_init__(self) -> None:
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Rows read on every portal request, kept while nothing is committed to the store (``readcache``).
        self.reads = ReadCache(self.engine)

    @contextlib.contextmanager
    def session(self, *, serialised: bool = False) -> Iterator[Session]:
        """A transaction. ``serialised``: it reads what it then writes (a counter...), so on SQLite it takes the
        write lock first (PostgreSQL callers lock their rows with ``SELECT ... FOR UPDATE``). Never open another
        serialised session inside one: on SQLite the inner one would wait for the outer one."""
        with self._sessions.begin() as session:
            if serialised:
                session.connection(execution_options={_SERIALISED: True})
            yield session

    @property
    def url(self) -> str:
        return describe(self.engine.url.render_as_string(hide_password=False))

    def close(self) -> None:
        self.reads.close()
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def engine_for(url: str) -> Engine:
    """An engine for ``url``: SQLite with WAL and foreign keys on every connection, or PostgreSQL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        # The value is not repeated: a malformed URL may still hold a password (and the portal logs this error).
        raise HygieError(
            "HYGIE_DATABASE_URL is not a database URL (expected e.g. postgresql+psycopg://user@host/db)"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            cursor.execute("PRAGMA foreign_keys=ON")  # SQLite leaves them off unless asked, per connection
            cursor.execute("PRAGMA synchronous=NORMAL")  # durable with WAL at a transaction boundary
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Connection) -> None:
            # pysqlite starts a transaction only at the first write, after the reads that write may depend on
            # (a lost update). ``Store.session(serialised=True)`` starts it at once with the write lock, so
            # read-then-write transactions (failure counters, TOTP steps) run one after the other.
            if connection.get_execution_options().get(_SERIALISED, False):
                connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if parsed.get_backend_name() == "postgresql":
        _check_hosts(parsed)
        return create_engine(parsed, pool_pre_ping=True)
    raise HygieError(f"unsupported metadata database {describe(url)}: use sqlite or postgresql+psycopg")


def _check_hosts(parsed: URL) -> None:
    """The PostgreSQL server must be on this machine or attested as EU/EEA-hosted (``hygie.jurisdiction``)."""
    from hygie.jurisdiction import check_endpoint

    for host in filter(None, [parsed.host, *str(parsed.query.get("host", "")).split(",")]):
        if not host.startswith("/"):  # a Unix socket directory is on this machine
            check_endpoint("HYGIE_DATABASE_URL (the metadata store)", host)


def alembic_config(connection: Connection | None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config(None))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        lock_path = Path(f"{database}.migrate-lock") if database and database != ":memory:" else None
        with contextlib.ExitStack() as stack:
            if lock_path is not None:
                handle = stack.enter_context(lock_path.open("a"))
                fcntl.flock(handle, fcntl.LOCK_EX)
            with engine.begin() as connection:
                yield connection
        return
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _PG_MIGRATION_LOCK})
        connection.commit()
        try:
            with connection.begin():
                yield connection
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _PG_MIGRATION_LOCK})
            connection.commit()


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Upgrade the schema to the newest revision; returns (revision before, revision after)."""
    head = head_revision()
    before = current_revision(engine)
    if before == head:
        return before, head  # the usual case: no lock taken
    with _migration_lock(engine) as connection:
        before = MigrationContext.configure(connection).get_current_revision()
        if before != head:
            command.upgrade(alembic_config(connection), "head")
    return before, head


def open_store(settings: Settings, url: str | None = None, *, upgrade: bool = True) -> Store:
    """Open the metadata store named by ``url`` (default: ``database_url(settings)``), migrated to the newest
    schema unless ``upgrade`` is false (then an out-of-date schema is an error)."""
    url = url or database_url(settings)
    engine = engine_for(url)
    try:
        if upgrade:
            migrate(engine)
        elif current_revision(engine) != head_revision():
            raise HygieError(f"the metadata store {describe(url)} is not up to date: run `hygie admin migrate`")
    except HygieError:
        engine.dispose()
        raise
    except Exception as e:
        engine.dispose()
        if e.__class__.__module__.startswith(("sqlalchemy", "psycopg", "sqlite3")):
            raise HygieError(f"cannot open the metadata store {describe(url)}: {e.__class__.__name__}") from e
        raise
    return Store(engine, settings)
