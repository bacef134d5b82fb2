"""The job and output commands: who acts (token, --as with password and TOTP, console) and exit codes."""

from __future__ import annotations

import datetime as dt
import json

import pyotp
from typer.testing import CliRunner

from hygie.cli.main import app
from hygie.governance.accounts import Accounts
from hygie.governance.events import MemorySink
from hygie.governance.store import open_store
from hygie.ingest.cdm_load import load_cdm
from tests.cdm_files import write_cdm
from tests.integration.test_jobs_airlock import OPERATOR, PASSWORD, counts, open_project, population, study_folder


def test_submit_run_request_review_download_from_the_command_line(settings, tmp_path, monkeypatch):
    load_cdm(write_cdm(tmp_path / "cdm", population(30, 20)), "r", settings, synthetic=False)
    with open_store(settings) as store:
        accounts = Accounts(store, events=MemorySink())
        for name in ("rita", "chloe", "carl"):
            accounts.add_user(OPERATOR, name, PASSWORD)
        accounts.record_training(OPERATOR, "rita", "Data protection", dt.datetime.now(dt.UTC).date())
        secrets = {name: accounts.enrol_totp(OPERATOR, name).secret for name in ("rita", "chloe", "carl")}
        from hygie.governance.roles import Grant, Role

        for name in ("chloe", "carl"):
            accounts.grant(OPERATOR, name, Grant(Role.OUTPUT_CHECKER))
        open_project(store, accounts, "p", "r", ["rita"])
        _, token = accounts.create_token(OPERATOR, "rita", "laptop")
    runner = CliRunner()
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")

    monkeypatch.setenv("HYGIE_TOKEN", token)
    submitted = runner.invoke(app, ["job", "submit", "p", str(study_folder(tmp_path)), "--release", "r", "--json"])
    assert submitted.exit_code == 0, submitted.output
    job_id = json.loads(submitted.stdout)["id"]
    monkeypatch.delenv("HYGIE_TOKEN")

    denied = runner.invoke(app, ["job", "submit", "p", str(study_folder(tmp_path)), "--release", "r"])
    assert denied.exit_code == 1 and "may not job.submit" in " ".join(denied.output.split())  # the console

    worked = runner.invoke(app, ["job", "worker", "--once"])
    assert worked.exit_code == 0 and "succeeded" in worked.output, worked.output

    monkeypatch.setenv("HYGIE_TOKEN", token)
    shown = runner.invoke(app, ["job", "show", str(job_id)])
    assert shown.exit_code == 0 and "study finished" in shown.output
    requested = runner.invoke(app, ["output", "request", str(job_id), "--justification", "paper"])
    assert requested.exit_code == 0 and "pending" in requested.output, requested.output
    monkeypatch.delenv("HYGIE_TOKEN")

    for checker in ("chloe", "carl"):
        code = pyotp.TOTP(secrets[checker]).now()
        args = ["output", "review", "1", "--approve", "--as", checker, "--password-file", str(password)]
        reviewed = runner.invoke(app, [*args, "--totp", code])
        assert reviewed.exit_code == 0, reviewed.output
    assert "released" in reviewed.output

    wrong = runner.invoke(app, ["output", "list", "--as", "carl", "--password-file", str(password), "--totp", "000000"])
    assert wrong.exit_code == 1 and "authentication failed" in wrong.output

    monkeypatch.setenv("HYGIE_TOKEN", token)
    downloaded = runner.invoke(app, ["output", "download", "1", "--to", str(tmp_path / "mine")])
    assert downloaded.exit_code == 0, downloaded.output
    assert counts(tmp_path / "mine") == {"bleed": 20}
