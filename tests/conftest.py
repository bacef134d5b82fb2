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
