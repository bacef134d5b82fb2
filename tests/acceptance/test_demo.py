"""`hygie demo`: synthetic extracts -> deposits -> a linked, quality-checked release; GiBleed beside it."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
from typer.testing import CliRunner

from hygie.api.demo import create_demo_accounts
from hygie.cli.demo import DEMO_RELEASE, GIBLEED_RELEASE, SITES, extracts_folder, study_folder
from hygie.cli.main import app
from hygie.config import Settings
from hygie.ingest.identifier_scan import scan
from hygie.ingest.sites import SiteRegistry
from hygie.releases import ReleaseStore

runner = CliRunner()


@pytest.mark.slow
def test_demo_runs_the_data_side_end_to_end_and_again(
    home: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYGIE_DEMO_PATIENTS", "2000")  # the demo's 20,000 take longer than a test should
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    folder = extracts_folder(settings)
    assert home not in folder.parents  # the hospitals' extracts are not the hub's
    truth = json.loads((folder / "truth" / "truth.json").read_text())
    assert truth["linkage"]["persons"] == 2000

    registry = SiteRegistry(settings)
    assert {s.name for s in registry.list()} == {name for _, name, _ in SITES}
    assert all(len(registry.deposits(s).list()) == 1 for s in registry.list())
    release = ReleaseStore(settings).get(DEMO_RELEASE)
    assert release.manifest.synthetic
    persons = release.manifest.tables["person"].rows
    assert abs(persons - 2000) <= 20  # linkage recovers the population (precision and recall >= 0.98)
    assert "precision 1.0000" in output or "precision 0.99" in output
    assert {r["status"] for r in release.manifest.quality} == {"pass"}
    assert ReleaseStore(settings).exists(GIBLEED_RELEASE)
    assert "celecoxib_age40_male: 266 persons" in output  # OHDSI CohortGenerator's published count
    assert "gi_bleed: 479 persons" in output

    # A study on the synthetic release, with its report; then accounts to try the portal with.
    study = study_folder(settings)
    assert (study / "report.html").is_file() and "SYNTHETIC" in (study / "report.html").read_text()
    incidence = pacsv.read_csv(study / "incidence.csv")
    assert incidence.num_rows > 0 and pc.sum(incidence["outcome_count"]).as_py() > 0
    assert "hygie serve" in output
    for username, _, password_file in create_demo_accounts(settings, show=None):
        assert username in output and stat.S_IMODE(password_file.stat().st_mode) == 0o600
        assert password_file.read_text().strip() not in result.output  # passwords are never printed

    # Identities stayed in the extracts: none is stored anywhere under HYGIE_HOME.
    identity_files = [folder / f"site_{s}" / "identities.csv" for s in "abd"]
    findings, _ = scan(settings, identity_files)
    assert findings == []

    again = runner.invoke(app, ["demo"])
    assert again.exit_code == 0, again.output
    assert "reusing them" in " ".join(again.output.split())
    assert "already deposited" in again.output
    assert len(ReleaseStore(settings).list()) == 2


def test_a_bad_demo_population_is_a_user_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYGIE_DEMO_PATIENTS", "many")
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 1
    assert "HYGIE_DEMO_PATIENTS" in result.stderr
