"""The story every portal test shares: a release, an active project with a researcher, two checkers, an auditor,
and a study file with Circe cohorts (jobs accept Circe cohorts only)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from hygie.config import Settings
from hygie.governance.projects import Projects, Scope
from hygie.governance.roles import Grant, Role
from hygie.governance.store import open_store
from hygie.ingest.cdm_load import load_cdm
from tests.study_files import write_small_cdm, write_study
from tests.web_helpers import CONSOLE, Account, add_account, operator

RELEASE = "small"
STUDY = """\
name: web-study
description: cohort counts submitted through the portal
cohorts:
  gi_bleed: {circe: cohorts/gi_bleed.json}
  mi: {circe: cohorts/mi.json}
analyses:
  - cohort_counts: {}
"""


@dataclass
class Story:
    operator: Account
    researcher: Account
    other_researcher: Account
    checkers: tuple[Account, Account]
    auditor: Account
    study_file: Path
    cohort_files: list[Path]


def hub_with_people(settings: Settings, tmp_path: Path, *, synthetic: bool = True, project: bool = True) -> Story:
    load_cdm(write_small_cdm(tmp_path / "cdm"), RELEASE, settings, synthetic=synthetic)
    olivia = operator(settings)
    rita = add_account(settings, "rita")
    rob = add_account(settings, "rob")
    checkers = (add_account(settings, "carl", Grant(Role.OUTPUT_CHECKER)),
                add_account(settings, "cleo", Grant(Role.OUTPUT_CHECKER)))  # fmt: skip
    ada = add_account(settings, "ada", Grant(Role.AUDITOR), totp=False)
    if project:
        make_project(settings, "flu", ["rita"])
        make_project(settings, "other", ["rob"])
    study = write_study(tmp_path / "study", STUDY)
    return Story(olivia, rita, rob, checkers, ada, study, sorted((study.parent / "cohorts").glob("*.json")))


def make_project(settings: Settings, name: str, members: list[str]) -> None:
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=90)
    with open_store(settings) as store:
        projects = Projects(store)
        projects.create(CONSOLE, name, title=f"Project {name}", purpose=f"Purpose of {name}",
                        legal_basis="MR-004", valid_until=until)  # fmt: skip
        projects.set_scope(CONSOLE, name, Scope(releases=(RELEASE,)))
        projects.approve(CONSOLE, name)
        for member in members:
            projects.add_member(CONSOLE, name, member)


def run_worker_once(settings: Settings) -> object:
    from hygie.jobs.worker import run_once

    with open_store(settings) as store:
        return run_once(store)
