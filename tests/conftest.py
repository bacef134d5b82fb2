"""Shared fixtures: every test gets its own HYGIE_HOME, so tests never see each other's state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hygie.config import Settings


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
