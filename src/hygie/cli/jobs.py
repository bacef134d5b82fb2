"""``hygie job`` (submit, follow, cancel, run the worker) and ``hygie output`` (the airlock).

Who acts: with ``HYGIE_TOKEN`` set, the account that API token belongs to; with ``--as USER``, that account
(password from ``--password-file`` or a prompt, TOTP code from ``--totp`` or a prompt); otherwise the operator at
the server's console. Researchers and output checkers therefore use ``--as`` or a token.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.table import Table

from hygie.cli.output import console, handle_errors, print_json, settings
from hygie.governance.roles import Principal
from hygie.governance.store import Store, open_store

job_app = typer.Typer(help="Jobs: studies run on a project's approved data by the worker.", no_args_is_help=True)
output_app = typer.Typer(help="Outputs: the airlock (automated checks, two checkers, release).", no_args_is_help=True)

AS_USER = typer.Option(None, "--as", help="Act as this account (researcher, output checker...).")
PASSWORD_FILE = typer.Option(None, "--password-file", help="Read the --as account's password from this file.")
TOTP = typer.Option(None, "--totp", help="The --as account's current TOTP code.")


def register(root: typer.Typer) -> None:
    root.add_typer(job_app, name="job")
    root.add_typer(output_app, name="output")


@contextmanager
def acting(user: str | None, password_file: Path | None, totp: str | None) -> Iterator[tuple[Store, Principal]]:
    """The open metadata store and who acts (see the module docstring)."""
    from hygie.governance.accounts import Accounts

    store = open_store(settings())
    try:
        accounts = Accounts(store)
        token = os.environ.get("HYGIE_TOKEN")
        if token:
            principal = accounts.authenticate_token(token)
        elif user:
            password = (
                password_file.read_text().rstrip("\n") if password_file else getpass.getpass(f"password for {user}: ")
            )
            code = totp if totp is not None else (None if _no_totp(accounts, user) else input("TOTP code: "))
            principal = accounts.authenticate(user, password, code)
        else:
            principal = Principal.console(getpass.getuser())
        yield store, principal
    finally:
        store.close()


def _no_totp(accounts: object, user: str) -> bool:
    info = accounts.get(user)  # type: ignore[attr-defined]
    return not getattr(info, "totp_enrolled", False)


# -- jobs ---------------------------------------------------------------------------------------------------


@job_app.command("submit")
@handle_errors
def submit(
    project: str = typer.Argument(..., help="Project to run the study for."),
    study: Path = typer.Argument(..., help="Study file (YAML); the Circe files it names travel with it."),
    release: str = typer.Option(..., "--release", "-r", help="A release in the project's approved scope."),
    engine: str = typer.Option("duckdb", "--engine", help="duckdb (default) or spark."),
    as_json: bool = typer.Option(False, "--json"),
    user: str | None = AS_USER,
    password_file: Path | None = PASSWORD_FILE,
    totp: str | None = TOTP,
) -> None:
    """Queue a study; the worker runs it on the project's scope, opted-out patients removed."""
    from hygie.jobs.queue import Jobs

    with acting(user, password_file, totp) as (store, principal):
        job = Jobs(store).submit(principal, project, study, release, engine=engine)
    if as_json:
        print_json(job.__dict__)
        return
    console.print(f"job {job.id} queued: study {job.study_name} on {job.release} for project {job.project}")


@job_app.command("list")
@handle_errors
def list_jobs(
    project: str | None = typer.Option(None, "--project"),
    as_json: bool = typer.Option(False, "--json"),
    user: str | None = AS_USER,
    password_file: Path | None = PASSWORD_FILE,
    totp: str | None = TOTP,
) -> None:
    """Jobs you may see."""
    from hygie.jobs.queue import Jobs

    with acting(user, password_file, totp) as (store, principal):
        jobs = Jobs(store).list(principal, project)
    if as_json:
        for job in jobs:
            print_json(job.__dict__)
        return
    table = Table("id", "project", "study", "release", "status", "submitted by", "message")
    for j in jobs:
        table.add_row(str(j.id), j.project, j.study_name, j.release, j.status, j.submitted_by, j.message)
    console.print(table)


@job_app.command("show")
@handle_errors
def show_job(
    job_id: int = typer.Argument(...),
    user: str | None = AS_USER,
    password_file: Path | None = PASSWORD_FILE,
    totp: str | None = TOTP,
) -> None:
    """A job's state and its log (hygie's own progress lines; never patient values)."""
    from hygie.jobs.queue import Jobs

    with acting(user, password_file, totp) as (store, principal):
        jobs = Jobs(store)
        job = jobs.view(principal, job_id)
        log = jobs.log(principal, job_id)
    print_json(job.__dict__)
    console.print(log, highlight=False, markup=False, end="")


@job_app.command("cancel")
@handle_errors
def cancel(
    job_id: int = typer.Argument(...),
    user: str | None = AS_USER,
    password_file: Path | None = PASSWORD_FILE,
    totp: str | None = TOTP,
) -> None:
    """Cancel a queued job, or stop a running one."""
    from hygie.jobs.queue import Jobs

    with acting(user, password_file, totp) as (store, principal):
        job = Jobs(store).cancel(principal, job_id)
    console.print(f"job {job.id}: {job.status}{' (stopping)' if job.status == 'running' else ''}")


@job_app.command("worker")
@handle_errors
def worker(
    once: bool = typer.Option(False, "--once", help="Run at most one job, then exit."),
    poll: float = typer.Option(2.0, "--poll", help="Seconds between looks at an empty queue."),
) -> None:
    """Run queued jobs (a separate process from the web server and the CLI)."""
    from hygie.jobs.worker import run_forever, run_once

    store = open_store(settings())
    try:
        if once:
            job = run_once(store)
            console.print("no queued job" if job is None else f"job {job.id}: {job.status} ({job.message})")
        else:
            run_forever(store, poll_seconds=poll)
    finally:
        store.close()


# -- outputs ------------------------------------------------------------------------------------------------


def _show(info: object) -> None:
    data = dict(info.__dict__)  # type: ignore[attr-defined]
    data["reviews"] = [r.__dict__ for r in data["reviews"]]
    print_json(data)


@output_app.command("request")
@handle_errors
def request(
    job_id: int = typer.Argument(..., help="A finished job."),
    justification: str = typer.Option("", "--justification", help="Why these outputs should leave."),
    user: str | None = AS_USER,
    password_file: Path | None = PASSWORD_FILE,
    totp: str | None = TOTP,
) -> None:
    """Ask for a job's outputs to be released; automated checks run at once."""
    from hygie.jobs.airlock import Airlock

    with acting(user, password_file, totp) as (store, principal):
        info = Airlock(store).request(principal, job_id, justification=justification)
    console.print(f"output {info.id}: {info.status} ({len(info.files)} file(s), {len(info.findings)} finding(s))")
    for finding in info.findings:
        console.print(f"  blocked: {finding['file']}: {finding['reason']}", highlight=False)


@output_app.command("list")
@handle_errors
def list_outputs(
    status: str | None = typer.Option(None, "--status", help="pending, blocked, rejected or released."),
    as_json: bool = typer.Option(False, "--json"),
    user: str | None = AS_USER,
    password_file: Path | None = PASSWORD_FILE,
    totp: str | None = TOTP,
) -> None:
    """Output requests you may see (the review queue for checkers)."""
    from hygie.jobs.airlock import Airlock

    with acting(user, password_file, totp) as (store, principal):
        outputs = Airlock(store).list(principal, status=status)
    if as_json:
        for info in outputs:
            _show(info)
        return
    table = Table("id", "job", "project", "requested by", "status", "approvals", "files", "findings")
    for o in outputs:
        table.add_row(str(o.id), str(o.job_id), o.project, o.requested_by, o.status, str(o.approvals),
                      str(len(o.files)), str(len(o.findings)))  # fmt: skip
    console.print(table)


@output_app.command("show")
@handle_errors
def show_output(
    request_id: int = typer.Argument(...),
    user: str | None = AS_USER,
    password_file: Path | None = PASSWORD_FILE,
    totp: str | None = TOTP,
) -> None:
    """An output request: files, automated findings, disclosure flags, reviews."""
    from hygie.jobs.airlock import Airlock

    with acting(user, password_file, totp) as (store, principal):
        airlock = Airlock(store)
        if not any(o.id == request_id for o in airlock.list(principal)):
            from hygie.governance.permissions import PermissionDenied

            raise PermissionDenied(f"{principal.name} may not see output {request_id}")
        _show(airlock.get(request_id))


@output_app.command("review")
@handle_errors
def review(
    request_id: int = typer.Argument(...),
    approve: bool = typer.Option(False, "--approve"),
    reject: bool = typer.Option(False, "--reject"),
    comment: str = typer.Option("", "--comment"),
    user: str | None = AS_USER,
    password_file: Path | None = PASSWORD_FILE,
    totp: str | None = TOTP,
) -> None:
    """Approve or reject an output request (two approvals release it; never your own request)."""
    from hygie.errors import HygieError
    from hygie.jobs.airlock import Airlock

    if approve == reject:
        raise HygieError("give exactly one of --approve or --reject")
    with acting(user, password_file, totp) as (store, principal):
        info = Airlock(store).review(principal, request_id, approve=approve, comment=comment)
    console.print(f"output {info.id}: {info.status} ({info.approvals} approval(s))")


@output_app.command("download")
@handle_errors
def download(
    request_id: int = typer.Argument(...),
    to: Path = typer.Option(..., "--to", help="Folder to copy the released files into."),
    user: str | None = AS_USER,
    password_file: Path | None = PASSWORD_FILE,
    totp: str | None = TOTP,
) -> None:
    """Copy a released output's files (checked against their recorded sha256)."""
    from hygie.jobs.airlock import Airlock

    with acting(user, password_file, totp) as (store, principal):
        files = Airlock(store).download(principal, request_id, to)
    console.print(json.dumps([str(f) for f in files]))
