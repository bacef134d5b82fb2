"""``hygie demo`` starts with a small synthetic population in the four hospitals' formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hygie.cli.main import app
from hygie.config import Settings
from hygie.releases import ReleaseStore

runner = CliRunner()


def test_demo_generates_the_synthetic_sites_then_reuses_them(
    home: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYGIE_DEMO_PATIENTS", "2000")  # the demo's 20,000 take longer than a test should
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    folder = home / "synth" / "demo"
    assert {p.name for p in folder.iterdir()} == {"site_a", "site_b", "site_c", "site_d", "truth", "vocabulary"}
    truth = json.loads((folder / "truth" / "truth.json").read_text())
    assert truth["linkage"]["persons"] == 2000
    store = ReleaseStore(settings)
    release = store.get("demo-synth-site-a")
    assert release.manifest.synthetic
    assert release.manifest.tables["person"].rows == truth["summary"]["persons_per_site"]["site_a"]
    again = runner.invoke(app, ["demo"])
    assert again.exit_code == 0, again.output
    assert "reusing them" in " ".join(again.output.split())


def test_a_bad_demo_population_is_a_user_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYGIE_DEMO_PATIENTS", "many")
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 1
    assert "HYGIE_DEMO_PATIENTS must be a positive whole number" in " ".join(result.output.split())
