"""The researcher -> worker -> two checkers -> download workflow through the API and the pages, on real
governance, job and airlock services (the worker runs the study in its child process)."""

from __future__ import annotations

import io
import zipfile

from tests.web_helpers import client, csrf_of, sign_in
from tests.web_story import RELEASE, hub_with_people, run_worker_once


def submit(c, story, project="flu"):
    token = csrf_of(c, f"/projects/{project}")
    files = [("study", ("study.yaml", story.study_file.read_bytes(), "application/x-yaml"))]
    files += [("cohorts", (p.name, p.read_bytes(), "application/json")) for p in story.cohort_files]
    return c.post(f"/projects/{project}/jobs", data={"csrf_token": token, "release": RELEASE}, files=files,
                  follow_redirects=False)  # fmt: skip


def test_study_goes_from_submission_to_download_with_two_checkers(settings, tmp_path):
    story = hub_with_people(settings, tmp_path)
    rita = client(settings)
    sign_in(rita, story.researcher)
    submitted = submit(rita, story)
    assert submitted.status_code == 303, submitted.text
    job_path = submitted.headers["location"]
    job_id = int(job_path.rsplit("/", 1)[1])
    assert rita.get(f"/api/v1/jobs/{job_id}").json()["status"] == "queued"
    assert 'data-poll="/api/v1/jobs/' in rita.get(job_path).text

    finished = run_worker_once(settings)
    assert finished.status == "succeeded", finished.message
    page = rita.get(job_path).text
    assert "Request the release" in page
    token = csrf_of(rita, job_path)
    requested = rita.post(f"/jobs/{job_id}/outputs", data={"csrf_token": token, "justification": "paper"},
                          follow_redirects=False)  # fmt: skip
    assert requested.status_code == 303
    output_id = int(requested.headers["location"].rsplit("/", 1)[1])
    output = rita.get(f"/api/v1/outputs/{output_id}").json()
    assert output["status"] == "pending", output
    # Before release: no file for the researcher.
    assert rita.get(f"/api/v1/outputs/{output_id}/download").status_code == 403

    for checker in story.checkers:
        c = client(settings)
        sign_in(c, checker)
        queue = c.get("/review").text
        assert f'href="/review/{output_id}"' in queue
        review = c.get(f"/review/{output_id}").text
        assert "Automated checks" in review and "cohort_counts" in review
        token = csrf_of(c, f"/review/{output_id}")
        assert c.post(f"/review/{output_id}", data={"csrf_token": token, "decision": "approve"}).status_code == 200
    released = rita.get(f"/api/v1/outputs/{output_id}").json()
    assert released["status"] == "released" and len(released["reviews"]) == 2

    page = rita.get(f"/outputs/{output_id}").text
    assert "Download all files" in page and "cohort_counts" in page
    archive = rita.get(f"/api/v1/outputs/{output_id}/download")
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
    assert "cohort_counts.csv" in names and "manifest.json" in names
    one = rita.get(f"/api/v1/outputs/{output_id}/files/cohort_counts.csv")
    assert one.status_code == 200 and '"gi_bleed",14,16' in one.text  # synthetic release: no masking
    assert one.content == (settings.home / "outputs" / str(output_id) / "cohort_counts.csv").read_bytes()
    registry = client(settings).get("/api/v1/registry").json()
    assert registry[0]["name"] == "flu"


def test_negative_paths_other_project_own_request_and_rejection_needs_a_comment(settings, tmp_path):
    story = hub_with_people(settings, tmp_path)
    rita = client(settings)
    sign_in(rita, story.researcher)
    job_id = int(submit(rita, story).headers["location"].rsplit("/", 1)[1])
    run_worker_once(settings)
    token = csrf_of(rita, f"/jobs/{job_id}")
    output = rita.post(f"/api/v1/jobs/{job_id}/outputs", json={}, headers={"X-CSRF-Token": token}).json()

    rob = client(settings)
    sign_in(rob, story.other_researcher)
    assert rob.get("/projects/flu").status_code == 403
    assert rob.get(f"/api/v1/jobs/{job_id}").status_code == 403
    assert rob.get(f"/api/v1/outputs/{output['id']}").status_code == 404
    assert rob.get(f"/outputs/{output['id']}").status_code == 404
    assert rob.get(f"/api/v1/outputs/{output['id']}/download").status_code == 403
    assert submit(rob, story, project="flu").status_code == 403
    assert [p["name"] for p in rob.get("/api/v1/projects").json()] == ["other"]

    # A researcher who is also a checker cannot review their own request.
    from hygie.governance.accounts import Accounts
    from hygie.governance.roles import Grant, Role
    from hygie.governance.store import open_store
    from tests.web_helpers import CONSOLE

    with open_store(settings) as store:
        Accounts(store).grant(CONSOLE, "rita", Grant(Role.OUTPUT_CHECKER))
    token = csrf_of(rita, "/review")
    assert f'href="/review/{output["id"]}"' not in rita.get("/review").text
    own = rita.post(f"/review/{output['id']}", data={"csrf_token": token, "decision": "approve"})
    assert own.status_code == 403 and "never reviews their own request" in own.text

    carl = client(settings)
    sign_in(carl, story.checkers[0])
    token = csrf_of(carl, "/review")
    no_comment = carl.post(f"/api/v1/outputs/{output['id']}/reviews", json={"decision": "reject"},
                           headers={"X-CSRF-Token": token})  # fmt: skip
    assert no_comment.status_code == 400 and "needs a comment" in no_comment.json()["detail"]
    body = {"decision": "reject", "comment": "too detailed"}
    rejected = carl.post(f"/api/v1/outputs/{output['id']}/reviews", json=body, headers={"X-CSRF-Token": token})
    assert rejected.json()["status"] == "rejected"


def test_json_calls_with_a_session_cookie_need_the_csrf_header(settings, tmp_path):
    story = hub_with_people(settings, tmp_path, project=False)
    c = client(settings)
    sign_in(c, story.operator)
    body = {"username": "newbie", "full_name": "New Bie", "password": "a-long-enough-password"}
    assert c.post("/api/v1/users", json=body).status_code == 403
    token = csrf_of(c, "/operator")
    assert c.post("/api/v1/users", json=body, headers={"X-CSRF-Token": token}).status_code == 201
