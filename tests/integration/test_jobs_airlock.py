"""Code-to-data, end to end on real processes: a researcher submits a study, a worker runs it in a child
process on the project's scope (opted-out patients removed), two output checkers release it, members download.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow.csv as pacsv
import pytest

from hygie.errors import ConflictError, HygieError
from hygie.governance.accounts import Accounts
from hygie.governance.events import MemorySink
from hygie.governance.optout import OptOutRegister
from hygie.governance.permissions import PermissionDenied
from hygie.governance.projects import Projects, Scope
from hygie.governance.roles import Grant, Principal, Role
from hygie.governance.store import open_store
from hygie.ingest.build import build_release
from hygie.ingest.cdm_load import load_cdm
from hygie.jobs.airlock import Airlock, released_folder
from hygie.jobs.executor import JobLimits
from hygie.jobs.queue import Jobs, job_folder
from hygie.jobs.worker import run_once
from tests.cdm_files import CONCEPT, write_cdm
from tests.unit.test_deposit import NIR
from tests.unit.test_release_build import hub  # noqa: F401 - fixture: two sites' deposits

PASSWORD = "a long enough password"
OPERATOR = Principal.console("root")
BLEED = {
    "ConceptSets": [{"id": 0, "name": "bleed", "expression": {"items": [{"concept": {"CONCEPT_ID": 192671}}]}}],
    "PrimaryCriteria": {"CriteriaList": [{"ConditionOccurrence": {"CodesetId": 0}}]},
}
STUDY = """\
name: bleeds
cohorts:
  bleed: {circe: cohorts/bleed.json}
analyses:
  - cohort_counts: {}
"""


def population(persons: int, with_condition: int) -> dict[str, str]:
    """``persons`` people observed 2000-2019, the first ``with_condition`` of them with a GI bleed in 2010."""
    person = "person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id\n"
    periods = "observation_period_id,person_id,observation_period_start_date,observation_period_end_date,"
    periods += "period_type_concept_id\n"
    conditions = (
        "condition_occurrence_id,person_id,condition_concept_id,condition_start_date,condition_type_concept_id\n"
    )
    for p in range(1, persons + 1):
        person += f"{p},{8507 if p % 2 else 8532},{1940 + p % 50},0,0\n"
        periods += f"{p},{p},2000-01-01,2019-12-31,44814724\n"
        if p <= with_condition:
            conditions += f"{p},{p},192671,2010-0{1 + p % 9}-01,32020\n"
    return {
        "person.csv": person,
        "observation_period.csv": periods,
        "condition_occurrence.csv": conditions,
        "CONCEPT.csv": CONCEPT,
    }


def study_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "study"
    (folder / "cohorts").mkdir(parents=True, exist_ok=True)
    (folder / "cohorts" / "bleed.json").write_text(json.dumps(BLEED))
    (folder / "study.yaml").write_text(STUDY)
    return folder / "study.yaml"


@pytest.fixture
def store(settings):
    with open_store(settings) as opened:
        yield opened


@pytest.fixture
def people(store):
    """A researcher of the project, another project's researcher, two checkers, and a checker who is also a
    researcher of the project (she must never review her own request)."""
    accounts = Accounts(store, events=MemorySink())
    for name in ("rita", "oscar", "chloe", "carl", "rachel"):
        accounts.add_user(OPERATOR, name, PASSWORD)
        accounts.enrol_totp(OPERATOR, name)
        accounts.record_training(OPERATOR, name, "Data protection", dt.datetime.now(dt.UTC).date())
    for name in ("chloe", "carl", "rachel"):
        accounts.grant(OPERATOR, name, Grant(Role.OUTPUT_CHECKER))
    return accounts


def open_project(store, people, name: str, release: str, members: list[str], **scope: object) -> None:
    projects = Projects(store, events=MemorySink())
    projects.create(OPERATOR, name, title=name, purpose="GI bleeding in NSAID users", legal_basis="MR-004",
                    valid_until=dt.datetime.now(dt.UTC) + dt.timedelta(days=30))  # fmt: skip
    projects.set_scope(OPERATOR, name, Scope(releases=(release,), **scope))  # type: ignore[arg-type]
    projects.approve(OPERATOR, name)
    for member in members:
        projects.add_member(OPERATOR, name, member)


def counts(out: Path) -> dict[str, int | None]:
    rows = pacsv.read_csv(out / "cohort_counts.csv").to_pylist()
    return {r["cohort_name"]: r["number_subjects"] for r in rows}


def test_the_whole_story_with_disclosure_control_and_two_checkers(settings, store, people, tmp_path):
    load_cdm(write_cdm(tmp_path / "cdm", population(40, 25)), "real", settings, synthetic=False)
    open_project(store, people, "nsaids", "real", ["rita", "rachel"])
    open_project(store, people, "other", "real", ["oscar"])
    rita, oscar = people.principal("rita"), people.principal("oscar")
    chloe, carl, rachel = people.principal("chloe"), people.principal("carl"), people.principal("rachel")

    jobs = Jobs(store, events=MemorySink())
    with pytest.raises(PermissionDenied):
        jobs.submit(oscar, "nsaids", study_folder(tmp_path), "real")  # not a member
    job = jobs.submit(rita, "nsaids", study_folder(tmp_path), "real")
    assert job.status == "queued"
    assert (job_folder(store, job.id) / "bundle" / "cohorts" / "bleed.json").is_file()

    done = run_once(store, limits=JobLimits(seconds=300), events=MemorySink())
    assert done is not None and done.id == job.id
    assert done.status == "succeeded", jobs.log(rita, job.id)
    log = jobs.log(rita, job.id)
    assert "study finished" in log and "subject" not in log.lower().replace("subjects", "")
    assert "network: none (own network namespace)" in log  # TRE #10: tests/unit/test_job_sandbox.py
    out = job_folder(store, job.id) / "out"
    assert counts(out) == {"bleed": 25}  # above the threshold: shown
    assert run_once(store) is None  # the queue is empty

    airlock = Airlock(store, events=MemorySink())
    request = airlock.request(rachel, job.id, justification="table 1 of the paper")
    assert request.status == "pending" and request.findings == []
    with pytest.raises(PermissionDenied, match="own request"):
        airlock.review(rachel, request.id, approve=True)  # a checker never reviews her own request
    with pytest.raises(PermissionDenied):
        airlock.download(rita, request.id, tmp_path / "too-early")  # not released yet
    with pytest.raises(HygieError, match="comment"):
        airlock.review(chloe, request.id, approve=False)
    assert airlock.review(chloe, request.id, approve=True).status == "pending"
    with pytest.raises(ConflictError, match="already reviewed"):
        airlock.review(chloe, request.id, approve=True)
    released = airlock.review(carl, request.id, approve=True, comment="fine")
    assert released.status == "released" and released.approvals == 2
    assert all(not (p.stat().st_mode & 0o222) for p in released_folder(store, request.id).rglob("*") if p.is_file())

    files = airlock.download(rita, request.id, tmp_path / "download")
    assert {f.name for f in files} >= {"cohort_counts.csv", "manifest.json", "report.html"}
    with pytest.raises(PermissionDenied, match="not a member"):
        airlock.download(oscar, request.id, tmp_path / "stolen")  # another project's researcher
    assert [o.id for o in airlock.list(oscar)] == []
    assert [o.id for o in airlock.list(chloe)] == [request.id]
    history = settings.home / "projects" / "nsaids" / "released" / f"output-{request.id}"
    assert (history / "cohort_counts.json").is_file()  # later outputs are checked against this one

    # A tampered released file is refused at download.
    victim = released_folder(store, request.id) / "cohort_counts.csv"
    victim.chmod(0o640)
    victim.write_text("cohort_name,number_subjects\nbleed,24\n")
    with pytest.raises(HygieError, match="sha256"):
        airlock.download(rita, request.id, tmp_path / "again")


def test_small_counts_are_masked_and_a_one_person_smaller_twin_cannot_be_differenced(settings, store, people, tmp_path):
    load_cdm(write_cdm(tmp_path / "cdm", population(30, 5)), "small", settings, synthetic=False)
    open_project(store, people, "tiny", "small", ["rita"])
    rita = people.principal("rita")
    job = Jobs(store).submit(rita, "tiny", study_folder(tmp_path), "small")
    assert run_once(store).status == "succeeded"
    out = job_folder(store, job.id) / "out"
    assert counts(out) == {"bleed": None}  # 5 persons: masked
    manifest = json.loads((out / "manifest.json").read_text())
    assert any(f["rule"] == "primary" for f in manifest["disclosure"]["flags"])
    assert "5" not in (out / "cohort_counts.csv").read_text().splitlines()[1]


def test_opted_out_patients_are_removed_from_every_run(hub, settings, store, people, tmp_path):  # noqa: F811
    release = build_release("linked", settings)
    open_project(store, people, "linked", release.name, ["rita"])
    rita = people.principal("rita")
    folder = tmp_path / "s"
    (folder / "cohorts").mkdir(parents=True)
    (folder / "cohorts" / "everyone.json").write_text(
        json.dumps({"ConceptSets": [], "PrimaryCriteria": {"CriteriaList": [{"ObservationPeriod": {}}]}})
    )
    (folder / "study.yaml").write_text(
        "name: all\ncohorts:\n  everyone: {circe: cohorts/everyone.json}\nanalyses:\n  - cohort_counts: {}\n"
    )
    first = Jobs(store).submit(rita, "linked", folder / "study.yaml", release.name)
    assert run_once(store).status == "succeeded"
    before = counts(job_folder(store, first.id) / "out")["everyone"]
    assert before == 4  # a synthetic release: exempt from disclosure control

    OptOutRegister(store, events=MemorySink()).add(OPERATOR, [NIR], source="letter")
    second = Jobs(store).submit(rita, "linked", folder / "study.yaml", release.name)
    finished = run_once(store)
    assert finished.status == "succeeded"
    assert counts(job_folder(store, second.id) / "out")["everyone"] == before - 1
    assert not (job_folder(store, second.id) / "excluded_persons.txt").exists()


def test_cancel_timeout_and_revocation_stop_jobs(settings, store, people, tmp_path):
    load_cdm(write_cdm(tmp_path / "cdm", population(20, 15)), "r", settings, synthetic=True)
    open_project(store, people, "p", "r", ["rita"])
    rita, oscar = people.principal("rita"), people.principal("oscar")
    jobs = Jobs(store)
    queued = jobs.submit(rita, "p", study_folder(tmp_path), "r")
    with pytest.raises(PermissionDenied):
        jobs.cancel(oscar, queued.id)
    assert jobs.cancel(rita, queued.id).status == "cancelled"
    assert run_once(store) is None

    slow = jobs.submit(rita, "p", study_folder(tmp_path), "r")
    finished = run_once(store, limits=JobLimits(seconds=0))  # the child cannot even start in time
    assert finished.id == slow.id and finished.status == "timed_out"
    assert "time limit" in jobs.log(rita, slow.id)

    later = jobs.submit(rita, "p", study_folder(tmp_path), "r")
    Projects(store, events=MemorySink()).revoke(OPERATOR, "p", "ethics approval withdrawn")
    cut = run_once(store)
    assert cut.id == later.id and cut.status == "cancelled" and "no longer active" in cut.message
    with pytest.raises(PermissionDenied, match="not active"):
        jobs.submit(rita, "p", study_folder(tmp_path), "r")


def test_jobs_accept_circe_cohorts_only_and_releases_in_scope(settings, store, people, tmp_path):
    load_cdm(write_cdm(tmp_path / "cdm", population(20, 15)), "r", settings, synthetic=True)
    load_cdm(write_cdm(tmp_path / "cdm2", population(20, 15)), "elsewhere", settings, synthetic=True)
    open_project(store, people, "p", "r", ["rita"])
    rita = people.principal("rita")
    with pytest.raises(HygieError, match="not in project p's approved scope"):
        Jobs(store).submit(rita, "p", study_folder(tmp_path), "elsewhere")
    folder = tmp_path / "ids"
    folder.mkdir()
    (folder / "ids.csv").write_text(
        "cohort_definition_id,subject_id,cohort_start_date,cohort_end_date\n1,3,2010-01-01,2010-01-01\n"
    )
    (folder / "study.yaml").write_text(
        "name: probe\ncohorts:\n  probe: {file: ids.csv}\nanalyses:\n  - cohort_counts: {}\n"
    )
    with pytest.raises(HygieError, match="Circe"):
        Jobs(store).submit(rita, "p", folder / "study.yaml", "r")


def test_a_python_cohort_is_refused_before_any_of_its_code_runs(settings, store, people, tmp_path):
    load_cdm(write_cdm(tmp_path / "cdm", population(20, 15)), "r", settings, synthetic=True)
    open_project(store, people, "p", "r", ["rita"])
    folder = tmp_path / "code"
    folder.mkdir()
    marker = tmp_path / "ran"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\ndef cohort():\n    return None\n")
    (folder / "study.yaml").write_text(
        "name: code\ncohorts:\n  c: {python: evil.py:cohort}\nanalyses:\n  - cohort_counts: {}\n"
    )
    with pytest.raises(HygieError, match="Circe"):
        Jobs(store).submit(people.principal("rita"), "p", folder / "study.yaml", "r")
    assert not marker.exists()
