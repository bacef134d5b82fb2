"""The whole story in headless Chromium against a real ``hygie serve`` and a real worker process:
the operator creates an account and a project, the researcher submits a study, the worker runs it, two output
checkers approve it, the researcher reads the results and downloads them. Then the negative paths."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
import zipfile

import pytest

from tests.e2e.conftest import stop
from tests.web_helpers import Account
from tests.web_story import RELEASE, hub_with_people

WORKER = (
    "from hygie.config import Settings; from hygie.governance.store import open_store; "
    "from hygie.jobs.worker import run_forever; "
    "run_forever(open_store(Settings.from_env()), poll_seconds=0.5)"
)


@pytest.fixture
def worker(settings, tmp_path):
    log = (tmp_path / "worker.out").open("w")
    process = subprocess.Popen([sys.executable, "-c", WORKER], env={**os.environ, "HYGIE_HOME": str(settings.home)},
                               stdout=log, stderr=log)  # fmt: skip
    yield process
    stop(process)


def sign_in(page, url: str, account: Account) -> None:
    page.goto(url + "/login")
    page.fill("input[name=username]", account.username)
    page.fill("input[name=password]", account.password)
    code = account.code()
    if code:
        page.fill("input[name=code]", code)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("header .who span").inner_text() == account.username


@pytest.mark.slow
def test_operator_researcher_worker_two_checkers_download_and_the_negative_paths(
    settings, tmp_path, server, worker, new_page
):
    story = hub_with_people(settings, tmp_path, project=False)
    url = server.url

    # 1. The operator creates the researcher's account (TOTP secret shown once) and the project.
    page, console = new_page()
    sign_in(page, url, story.operator)
    page.click("nav >> text=Operations")
    page.fill("#new-user input[name=username]", "rachel")
    page.fill("#new-user input[name=full_name]", "Rachel Researcher")
    page.fill("#new-user input[name=password]", "blue-meadow-password-42")
    page.click("#new-user button[type=submit]")
    secret = page.locator("#totp-secret").inner_text()
    rachel = Account("rachel", "blue-meadow-password-42", secret, [])

    page.goto(url + "/operator")  # her grants count only once her training is recorded (safe people)
    page.fill("#training-rachel input[name=course]", "Data protection on the hub")
    page.fill("#training-rachel input[name=completed_on]", dt.date.today().isoformat())
    page.click("#training-rachel button[type=submit]")
    assert f"until {dt.date.today() + dt.timedelta(days=3 * 365)}" in page.locator("#users + table").inner_text()
    page.fill("#new-project input[name=name]", "flu")
    page.fill("#new-project input[name=title]", "Flu burden")
    page.fill("#new-project textarea[name=purpose]", "Count GI bleeds and MIs")
    page.fill("#new-project input[name=legal_basis]", "MR-004")
    page.fill("#new-project input[name=valid_until]", (dt.date.today() + dt.timedelta(days=100)).isoformat())
    page.click("#new-project button[type=submit]")
    page.fill("#scope input[name=releases]", RELEASE)
    page.click("#scope button[type=submit]")
    page.fill("#members input[name=username]", "rachel")
    page.click("#members button[type=submit]")
    page.select_option("#status select[name=change]", "approve")
    page.click("#status button[type=submit]")  # confirms the dialog (conftest accepts dialogs)
    assert page.locator("#project-status").inner_text() == "active"
    assert console.errors == []

    # 2. The researcher submits the study file and its two Circe cohorts.
    page, console = new_page()
    sign_in(page, url, rachel)
    page.click("nav >> text=Projects")
    page.click("text=flu")
    page.set_input_files("#submit-study input[name=study]", str(story.study_file))
    page.set_input_files("#submit-study input[name=cohorts]", [str(p) for p in story.cohort_files])
    page.click("#submit-study button[type=submit]")
    assert page.url.startswith(url + "/jobs/")
    job_url = page.url

    # 3. The worker runs it; the page follows the job by itself (polling) and reloads when it ends.
    page.locator("#job-status.succeeded").wait_for(timeout=120_000)
    assert "running study web-study" in page.locator("#job-log").inner_text()
    page.fill("#request-release textarea[name=justification]", "counts for the paper")
    page.click("#request-release button[type=submit]")
    assert page.locator("#output-status").inner_text() == "pending"
    output_url = page.url
    output_path = output_url.removeprefix(url)
    output_id = output_path.rsplit("/", 1)[1]
    assert console.errors == []

    # 4. Two output checkers approve.
    for checker in story.checkers:
        p, c = new_page()
        sign_in(p, url, checker)
        p.click("nav >> text=Review queue")
        p.click(f"#pending >> text={output_id}")
        assert "No finding" in p.locator("#findings").inner_text()
        assert "cohort_counts" in p.content()
        p.fill("#review-form textarea[name=comment]", "aggregate counts only")
        p.click("#review-form button[value=approve]")
        assert p.url == url + "/review"
        assert c.errors == []

    # 5. The researcher reads and downloads the released results.
    page.goto(output_url)
    assert page.locator("#output-status").inner_text() == "released"
    assert page.locator("#table-cohort_counts").is_visible()
    with page.expect_download() as download:
        page.click("#download-all")
    names = zipfile.ZipFile(io.BytesIO(download.value.path().read_bytes())).namelist()
    assert "cohort_counts.csv" in names
    assert console.errors == []

    # Negative: a researcher of another project sees neither the project nor its outputs.
    from tests.web_story import make_project

    make_project(settings, "other", ["rob"])
    p, _ = new_page()
    sign_in(p, url, story.other_researcher)
    assert p.goto(url + "/projects/flu").status == 403
    assert p.goto(url + output_path).status == 404
    assert p.goto(url + f"/api/v1/outputs/{output_id}/download").status == 403
    assert p.goto(url + job_url.removeprefix(url)).status == 403

    # Negative: a checker never reviews their own request (rachel becomes a checker, requests, cannot approve).
    from hygie.governance.accounts import Accounts
    from hygie.governance.roles import Grant, Role
    from hygie.governance.store import open_store
    from tests.web_helpers import CONSOLE

    with open_store(settings) as store:
        Accounts(store).grant(CONSOLE, "rachel", Grant(Role.OUTPUT_CHECKER))
    page.goto(url + "/projects/flu")
    page.set_input_files("#submit-study input[name=study]", str(story.study_file))
    page.set_input_files("#submit-study input[name=cohorts]", [str(p) for p in story.cohort_files])
    page.click("#submit-study button[type=submit]")
    page.locator("#job-status.succeeded").wait_for(timeout=120_000)
    page.click("#request-release button[type=submit]")
    own_id = page.url.rsplit("/", 1)[1]
    page.goto(url + "/review")
    assert page.locator(f"#pending >> text={own_id}").count() == 0
    response = page.goto(url + f"/review/{own_id}")
    assert response.status == 403
    assert "never reviews their own request" in page.locator("p.error").inner_text()

    # Negative: anonymous visitors reach only the public pages.
    p, _ = new_page()
    for path in ("/projects/flu", output_path, "/review", "/operator", "/audit"):
        p.goto(url + path)
        assert p.url.startswith(url + "/login?next="), path
    assert p.goto(url + f"/api/v1/outputs/{output_id}/download").status == 401
    p.goto(url + "/")
    registry = p.locator("#project-flu").inner_text()
    assert "Flu burden" in registry and f"output {output_id}: web-study" in registry
