"""``hygie project``: approved projects, their scope, members and validity (the operator's console)."""

from __future__ import annotations

import datetime as dt

import typer
from rich.table import Table

from hygie.cli.output import console, handle_errors, parse_day, print_json
from hygie.cli.users import opened_store, operator, say
from hygie.governance.projects import ProjectInfo, Projects, Scope

app = typer.Typer(help="Projects: purpose, legal basis, scope, members, validity.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="project")


def _date(value: str | None, option: str) -> dt.date | None:
    return parse_day(value, option) if value is not None else None


def _start_of(day: dt.date | None) -> dt.datetime | None:
    return dt.datetime.combine(day, dt.time(), dt.UTC) if day else None


def _end_of(day: dt.date | None) -> dt.datetime | None:
    """Validity "until 2027-06-30" includes that whole day (UTC)."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC) if day else None


def _names(values: list[str]) -> tuple[str, ...] | None:
    """Repeated or comma-separated values; None (no restriction) when none were given."""
    names = tuple(v.strip() for value in values for v in value.split(",") if v.strip())
    return names or None


def _when(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else ""


def _as_json(p: ProjectInfo) -> dict[str, object]:
    return {
        "name": p.name,
        "title": p.title,
        "purpose": p.purpose,
        "legal_basis": p.legal_basis,
        "status": p.status,
        "valid_from": p.valid_from,
        "valid_until": p.valid_until,
        "scope": {
            "releases": list(p.releases),
            "sites": list(p.sites) if p.sites is not None else None,
            "tables": list(p.tables) if p.tables is not None else None,
            "window_start": p.window_start,
            "window_end": p.window_end,
        },
        "members": list(p.members),
        "created_by": p.created_by,
        "approved_by": p.approved_by,
        "approved_at": p.approved_at,
        "end_reason": p.end_reason,
    }


@app.command("create")
@handle_errors
def create(
    name: str = typer.Argument(..., help="Short project name, e.g. nsaid-gi-bleed."),
    title: str = typer.Option(..., "--title", help="What the project is, in a line."),
    purpose: str = typer.Option("", "--purpose", help="Why the data are needed (public interest)."),
    legal_basis: str = typer.Option("", "--legal-basis", help="e.g. 'MR-004 declaration 2026-0042'."),
    valid_from: str | None = typer.Option(None, "--valid-from", help="First day of access (YYYY-MM-DD, UTC)."),
    valid_until: str | None = typer.Option(None, "--valid-until", help="Last day of access, included (YYYY-MM-DD)."),
) -> None:
    """Create a project as a draft."""
    with opened_store() as store:
        Projects(store).create(
            operator(),
            name,
            title=title,
            purpose=purpose,
            legal_basis=legal_basis,
            valid_from=_start_of(_date(valid_from, "--valid-from")),
            valid_until=_end_of(_date(valid_until, "--valid-until")),
        )
    say(f"created project [bold]{name}[/] (draft): next set-scope, add-member, approve")


@app.command("update")
@handle_errors
def update(
    name: str = typer.Argument(..., help="Project name."),
    title: str | None = typer.Option(None, "--title"),
    purpose: str | None = typer.Option(None, "--purpose"),
    legal_basis: str | None = typer.Option(None, "--legal-basis"),
    valid_from: str | None = typer.Option(None, "--valid-from", help="YYYY-MM-DD"),
    valid_until: str | None = typer.Option(None, "--valid-until", help="YYYY-MM-DD, included."),
) -> None:
    """Change a project's description or validity (an active project may only end sooner)."""
    with opened_store() as store:
        Projects(store).update(
            operator(),
            name,
            title=title,
            purpose=purpose,
            legal_basis=legal_basis,
            valid_from=_start_of(_date(valid_from, "--valid-from")),
            valid_until=_end_of(_date(valid_until, "--valid-until")),
        )
    say(f"updated project {name}")


@app.command("set-scope")
@handle_errors
def set_scope(
    name: str = typer.Argument(..., help="Project name."),
    release: list[str] = typer.Option(..., "--release", help="A release the project may use (repeatable)."),
    site: list[str] = typer.Option([], "--site", help="Only records from these sites (default: all)."),
    table: list[str] = typer.Option([], "--table", help="Only these CDM tables (default: all)."),
    start: str | None = typer.Option(None, "--from", help="Only records on or after this date."),
    end: str | None = typer.Option(None, "--to", help="Only records on or before this date."),
) -> None:
    """Set what a draft or suspended project may use: releases, sites, CDM tables, a time window."""
    releases = _names(release) or ()
    scope = Scope(releases, _names(site), _names(table), _date(start, "--from"), _date(end, "--to"))
    with opened_store() as store:
        info = Projects(store).set_scope(operator(), name, scope)
    say(f"scope of {name}: {_scope_text(info)}")


def _scope_text(p: ProjectInfo) -> str:
    parts = [
        f"releases {', '.join(p.releases) or 'none'}",
        f"sites {', '.join(p.sites) if p.sites is not None else 'all'}",
        f"tables {', '.join(p.tables) if p.tables is not None else 'all'}",
    ]
    if p.window_start or p.window_end:
        parts.append(f"records {p.window_start or '...'} to {p.window_end or '...'}")
    return "; ".join(parts)


@app.command("add-member")
@handle_errors
def add_member(
    name: str = typer.Argument(..., help="Project."), user: str = typer.Argument(..., help="Username.")
) -> None:
    """Make a user a researcher of the project."""
    with opened_store() as store:
        Projects(store).add_member(operator(), name, user)
    say(f"{user} is a researcher of {name}")


@app.command("remove-member")
@handle_errors
def remove_member(
    name: str = typer.Argument(..., help="Project."), user: str = typer.Argument(..., help="Username.")
) -> None:
    """Remove a researcher from the project (at once)."""
    with opened_store() as store:
        Projects(store).remove_member(operator(), name, user)
    say(f"{user} is no longer a member of {name}")


@app.command("approve")
@handle_errors
def approve(name: str = typer.Argument(..., help="Project name.")) -> None:
    """Activate a complete draft (or a suspended project): its members may submit studies."""
    with opened_store() as store:
        info = Projects(store).approve(operator(), name)
    say(f"project [bold]{name}[/] is active until {_when(info.valid_until)}")


@app.command("suspend")
@handle_errors
def suspend(
    name: str = typer.Argument(..., help="Project name."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded)."),
) -> None:
    """Suspend an active project: every member action stops until it is approved again."""
    with opened_store() as store:
        Projects(store).suspend(operator(), name, reason)
    say(f"project {name} is suspended")


@app.command("revoke")
@handle_errors
def revoke(
    name: str = typer.Argument(..., help="Project name."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded)."),
) -> None:
    """Revoke a project for good: every member action stops at once."""
    with opened_store() as store:
        Projects(store).revoke(operator(), name, reason)
    say(f"project {name} is revoked")


@app.command("expire-due")
@handle_errors
def expire_due() -> None:
    """Record the expiry of every project whose validity has ended (access already stopped then)."""
    with opened_store() as store:
        names = Projects(store).expire_due(operator())
    say(f"expired: {', '.join(names)}" if names else "no project to expire")


@app.command("teardown")
@handle_errors
def teardown(name: str = typer.Argument(..., help="Project name (revoked or expired).")) -> None:
    """Delete an ended project's workspace (job folders) and record the proof of deletion."""
    from hygie.jobs.teardown import teardown as tear_down

    with opened_store() as store:
        done = tear_down(store, operator(), name)
    if done.record is None:
        say(f"project {name}: nothing left to delete")
    else:
        say(f"project {name}: deleted {done.jobs} job folder(s), {done.files} file(s), {done.bytes} bytes; "
            f"deletion record {done.record} (sha256 {done.digest}, in the audit log)")  # fmt: skip


@app.command("teardown-due")
@handle_errors
def teardown_due(
    after_days: int = typer.Option(30, "--after-days", min=0, help="Days after a project ended (default 30)."),
) -> None:
    """Tear down every project that ended at least --after-days ago and still has a workspace (for cron)."""
    from hygie.jobs.teardown import teardown_due as tear_down_due

    with opened_store() as store:
        done = tear_down_due(store, operator(), after=dt.timedelta(days=after_days))
    for t in done:
        say(f"project {t.project}: deleted {t.jobs} job folder(s), {t.files} file(s); record sha256 {t.digest}")
    if not done:
        say("no project to tear down")


@app.command("list")
@handle_errors
def list_projects() -> None:
    """List projects with their status and validity."""
    with opened_store() as store:
        found = Projects(store).list()
    t = Table("project", "title", "status", "valid from", "valid until", "members")
    for p in found:
        t.add_row(p.name, p.title, p.status, _when(p.valid_from), _when(p.valid_until), str(len(p.members)))
    console.print(t)


@app.command("show")
@handle_errors
def show(
    name: str = typer.Argument(..., help="Project name."),
    as_json: bool = typer.Option(False, "--json", help="Print the project as JSON."),
) -> None:
    """Show a project: purpose, legal basis, scope, members, validity, approvals."""
    with opened_store() as store:
        p = Projects(store).view(operator(), name)
    if as_json:
        print_json(_as_json(p))
        return
    t = Table(show_header=False)
    for key, value in (
        ("project", f"{p.name}: {p.title}"),
        ("status", p.status + (f" ({p.end_reason})" if p.end_reason else "")),
        ("purpose", p.purpose),
        ("legal basis", p.legal_basis),
        ("valid", f"{_when(p.valid_from) or 'from approval'} to {_when(p.valid_until) or '(not set)'}"),
        ("scope", _scope_text(p)),
        ("members", ", ".join(p.members) or "none"),
        ("created", f"{_when(p.created_at)} by {p.created_by}"),
        ("approved", f"{_when(p.approved_at)} by {p.approved_by}" if p.approved_by else ""),
    ):
        t.add_row(key, value)
    console.print(t)
