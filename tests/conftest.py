"""Shared fixtures: every test gets its own HYGIE_HOME, so tests never see each other's state."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hygie.config import Settings

# pytest-xdist's workers start with COLUMNS=80 and LINES=24; Rich's consoles (created when hygie.cli is imported)
# would freeze that width and wrap the CLI's output, unlike a plain run. Tests that need a width pass COLUMNS.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the slow tests first: with several workers (``make test``), the long ones then overlap each other and
    the short ones fill in after, instead of one long test finishing alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "hygie_home"
    monkeypatch.setenv("HYGIE_HOME", str(path))
    monkeypatch.delenv("HYGIE_MASTER_KEY_FILE", raising=False)
    yield path


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory):
    """One local Spark session for the whole run (starting the JVM takes seconds); nothing is downloaded."""
    from hygie.engine.spark import local_session

    home = tmp_path_factory.mktemp("spark_home")
    session = local_session(Settings(home=home, master_key_file=home / "keys" / "master.key"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL server for the whole run (tests/postgres_cluster.py; scripts/postgres.sh installs it)."""
    from tests.postgres_cluster import running_cluster

    with running_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, settings: Settings) -> Iterator[object]:
    """An open metadata store, on SQLite under HYGIE_HOME and on a fresh PostgreSQL database."""
    from hygie.governance.store import open_store
    from tests.postgres_cluster import fresh_database

    with contextlib.ExitStack() as stack:
        url = None
        if request.param == "postgresql":
            url = stack.enter_context(fresh_database(request.getfixturevalue("postgres_url"), f"t_{uuid.uuid4().hex}"))
        opened = open_store(settings, url)
        stack.callback(opened.close)
        yield opened
