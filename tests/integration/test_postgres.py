"""The metadata store on a real PostgreSQL server (a private cluster started for the test session).

The governance service tests (tests/unit/test_governance_*.py) already run on both SQLite and PostgreSQL through
the ``store`` fixture; here: the console end to end with ``HYGIE_DATABASE_URL``, concurrent migrations under
the advisory lock, and migrations down and up again.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from alembic import command
from typer.testing import CliRunner

from hygie.cli.main import app
from hygie.governance.store import alembic_config, current_revision, engine_for, head_revision
from tests.postgres_cluster import fresh_database
from tests.unit.test_deposit import NIR

PASSWORD = "correct horse battery"


@pytest.fixture
def pg_url(postgres_url):
    with fresh_database(postgres_url, f"t_{uuid.uuid4().hex}") as url:
        yield url


def hygie(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def every_value(url: str) -> str:
    """Every value of every table of the database, as text."""
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain) as con:
        tables = [r[0] for r in con.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return "\n".join(str(con.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)


def test_the_console_on_postgresql(pg_url, home, monkeypatch, tmp_path):
    monkeypatch.setenv("HYGIE_DATABASE_URL", pg_url)
    migrated = hygie("admin", "migrate")
    assert migrated.exit_code == 0, migrated.output
    assert (
        "postgresql+psycopg://hub:***@127.0.0.1" in migrated.stdout and f"revision {head_revision()}" in migrated.stdout
    )
    password = tmp_path / "pw"
    password.write_text(PASSWORD + "\n")
    steps = [
        ("user", "add", "alice", "--role", "output_checker", "--password-file", str(password)),
        ("user", "totp-enrol", "alice"),
        ("user", "token", "create", "alice", "laptop"),
        ("project", "create", "p1", "--title", "t", "--purpose", "p", "--legal-basis", "MR-004"),
        ("user", "add", "bob", "--role", "researcher", "--project", "p1", "--password-file", str(password)),
    ]
    outputs = []
    for step in steps:
        done = hygie(*step)
        assert done.exit_code == 0, (step, done.output)
        outputs.append(done.stdout)
    nirs = tmp_path / "nirs.csv"
    nirs.write_text(f"nir\n{NIR}\n")
    entered = hygie("optout", "add", "--nir-file", str(nirs))
    assert entered.exit_code == 0 and "1 patient(s) entered" in entered.stdout
    assert "1 patient(s) opted out" in hygie("optout", "list").stdout
    assert "bob" in hygie("project", "show", "p1").stdout
    stored = every_value(pg_url)
    token = next(w for w in outputs[2].split() if w.startswith("hyg_"))
    secret = outputs[1].split("secret: ")[1].split()[0]
    for never_stored in (NIR, token, secret, PASSWORD):
        assert never_stored not in stored
    assert "$argon2id$" in stored
    assert not (home / "metadata.db").exists()  # everything went to PostgreSQL


def test_concurrent_openers_migrate_once(pg_url, tmp_path):
    code = (
        "import sys; from pathlib import Path; from hygie.config import Settings; "
        "from hygie.governance.store import open_store; "
        "h = Path(sys.argv[1]); open_store(Settings(home=h, master_key_file=h / 'k'), sys.argv[2]).close()"
    )
    command_line = [sys.executable, "-c", code, str(tmp_path / "home"), pg_url]
    procs = [subprocess.Popen(command_line, stderr=subprocess.PIPE) for _ in range(3)]
    errors = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    engine = engine_for(pg_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_migrations_go_down_and_up_again(pg_url):
    engine = engine_for(pg_url)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "head")
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "base")
        assert current_revision(engine) is None
        plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain) as con:
            left = [r[0] for r in con.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        assert left == ["alembic_version"]
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "head")
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_the_migration_files_are_part_of_the_package():
    import hygie.governance

    versions = Path(hygie.governance.__file__).parent / "migrations" / "versions"
    assert sorted(p.name for p in versions.glob("0*.py")) == [
        "0001_governance_core.py",
        "0002_jobs_and_outputs.py",
        "0003_web_sessions.py",
        "0004_safe_people.py",
    ]
