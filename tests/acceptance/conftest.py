"""GiBleed, loaded once per test session into its own HYGIE_HOME (loading takes a few seconds)."""

from __future__ import annotations

import pytest

from hygie import datasets
from hygie.config import Settings
from hygie.ingest.cdm_load import load_cdm
from hygie.releases import Release


@pytest.fixture(scope="session")
def gibleed_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("gibleed_home")
    return Settings(home=home, master_key_file=home / "keys" / "master.key")


@pytest.fixture(scope="session")
def gibleed(gibleed_settings: Settings) -> Release:
    dataset = datasets.get("gibleed")
    return load_cdm(dataset.folder, "gibleed", gibleed_settings, synthetic=True, allow_duplicate_keys=True)
