"""``hygie user`` and ``hygie admin``: accounts, roles, second factors, API tokens; the metadata store's schema.

The CLI is the operator's console: whoever runs it on the server acts as the local operator (principal
``console:<OS user>``), since a shell there also holds the keys. The web portal and the API authenticate users
with their own accounts (docs/governance.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.table import Table

from hygie.cli.output import console, handle_errors, parse_day, settings
from hygie.errors import HygieError
from hygie.governance.roles import Grant, Principal, Role, parse_role
from hygie.governance.store import Store, current_revision, database_url, describe, engine_for, migrate, open_store

app = typer.Typer(help="Accounts, roles, second factors and API tokens (the operator's console).", no_args_is_help=True)
tokens = typer.Typer(help="API tokens: shown once at creation, stored hashed.", no_args_is_help=True)
app.add_typer(tokens, name="token")
ROLES_HELP = ", ".join(r.value for r in Role) + "."
admin = typer.Typer(help="Administration of the hub's metadata store.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="user")
    root.add_typer(admin, name="admin")


def operator() -> Principal:
    """The principal every CLI command acts as: the local operator at the server's console."""
    return Principal.console(getpass.getuser())


def say(text: str) -> None:
    """One message on one line whatever the terminal width (logs and grep find it whole)."""
    console.print(text, soft_wrap=True, highlight=False)


@contextlib.contextmanager
def opened_store() -> Iterator[Store]:
    with open_store(settings()) as store:
        yield store


def grant_from_options(role: str, site: str | None, project: str | None) -> Grant:
    return Grant(parse_role(role), site=site, project=project)


def read_password(password_file: Path | None, *, confirm: bool = True) -> str:
    """The first line of ``password_file``, or a hidden prompt (typed twice)."""
    if password_file is None:
        return typer.prompt("password", hide_input=True, confirmation_prompt=confirm)
    try:
        lines = password_file.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise HygieError(f"{password_file}: cannot be read ({e.strerror})") from None
    if not lines or not lines[0]:
        raise HygieError(f"{password_file}: the first line must hold the password")
    return lines[0]


@app.command("add")
@handle_errors
def add(
    name: str = typer.Argument(..., help="Username (lowercase letters, digits, '.', '_', '-')."),
    role: str | None = typer.Option(
        None, "--role", help="operator, data_provider, researcher, output_checker, auditor."
    ),
    site: str | None = typer.Option(None, "--site", help="The site of a data_provider."),
    project: str | None = typer.Option(None, "--project", help="The project of a researcher."),
    full_name: str | None = typer.Option(None, "--full-name", help="The person's name (default: the username)."),
    email: str | None = typer.Option(None, "--email", help="The person's e-mail (one account per address)."),
    password_file: Path | None = typer.Option(None, "--password-file", help="Read the password from this file."),
    service: bool = typer.Option(False, "--service", help="A service account: API tokens only, no password."),
) -> None:
    """Create an account (and grant it a role). Prompts for the password unless --password-file is given."""
    from hygie.governance.accounts import Accounts

    grant = grant_from_options(role, site, project) if role else None
    password = None if service else read_password(password_file)
    with opened_store() as store:
        accounts = Accounts(store)
        accounts.add_user(
            operator(), name, password, full_name=full_name, email=email, kind="service" if service else "person"
        )
        if grant is not None:
            accounts.grant(operator(), name, grant)
    console.print(f"added user [bold]{name}[/]" + (f" ({grant})" if grant else ""))
    if grant is not None and grant.role.value != "auditor" and not service:
        console.print(f"next: `hygie user totp-enrol {name}` (a second factor is required for this role)")


@app.command("grant")
@handle_errors
def grant_role(
    name: str = typer.Argument(..., help="Username."),
    role: str = typer.Option(..., "--role", help=ROLES_HELP),
    site: str | None = typer.Option(None, "--site", help="The site of a data_provider."),
    project: str | None = typer.Option(None, "--project", help="The project of a researcher."),
) -> None:
    """Grant a role to an account."""
    from hygie.governance.accounts import Accounts

    grant = grant_from_options(role, site, project)
    with opened_store() as store:
        Accounts(store).grant(operator(), name, grant)
    console.print(f"{name} is now {grant}")


@app.command("revoke-role")
@handle_errors
def revoke_role(
    name: str = typer.Argument(..., help="Username."),
    role: str = typer.Option(..., "--role", help="The role to take away."),
    site: str | None = typer.Option(None, "--site", help="The site of a data_provider."),
    project: str | None = typer.Option(None, "--project", help="The project of a researcher."),
) -> None:
    """Take a role away from an account."""
    from hygie.governance.accounts import Accounts

    grant = grant_from_options(role, site, project)
    with opened_store() as store:
        Accounts(store).revoke(operator(), name, grant)
    console.print(f"{name} is no longer {grant}")


@app.command("list")
@handle_errors
def list_users() -> None:
    """List accounts with their roles and second factor."""
    from hygie.governance.accounts import Accounts

    with opened_store() as store:
        users = Accounts(store).list()
    t = Table("user", "name", "kind", "active", "roles", "TOTP", "locked until")
    for u in users:
        roles = ", ".join(sorted(str(g) for g in u.grants))
        locked = f"{u.locked_until:%Y-%m-%d %H:%M}" if u.locked_until else ""
        t.add_row(
            u.username,
            u.full_name,
            u.kind,
            "yes" if u.active else "no",
            roles,
            "yes" if u.totp_enrolled else "",
            locked,
        )
    console.print(t)


@app.command("review")
@handle_errors
def review(
    name: str = typer.Argument(..., help="Username."),
    role: str = typer.Option(..., "--role", help="The role reviewed."),
    site: str | None = typer.Option(None, "--site", help="The site of a data_provider."),
    project: str | None = typer.Option(None, "--project", help="The project of a researcher."),
) -> None:
    """Confirm after review that an account still needs a role: it stays in force for another year."""
    from hygie.governance.accounts import Accounts
    from hygie.governance.safe_people import REVIEW_PERIOD

    grant = grant_from_options(role, site, project)
    with opened_store() as store:
        Accounts(store).review(operator(), name, grant)
    say(f"reviewed: {name} keeps {grant} for {REVIEW_PERIOD.days} more days")


@app.command("training")
@handle_errors
def training(
    name: str = typer.Argument(..., help="Username."),
    course: str = typer.Option(..., "--course", help="The course passed, e.g. 'SNDS data protection'."),
    completed: str = typer.Option(..., "--completed", help="Date passed, YYYY-MM-DD."),
    expires: str | None = typer.Option(None, "--expires", help="Valid through this date (default: 3 years)."),
) -> None:
    """Record a training the person passed (researchers need a valid one for their grants to count)."""
    from hygie.governance.accounts import Accounts

    until = parse_day(expires, "--expires") if expires else None
    with opened_store() as store:
        info = Accounts(store).record_training(operator(), name, course, parse_day(completed, "--completed"), until)
    say(f"recorded: {name} passed {info.course!r} on {info.completed_on}, valid through {info.expires_on}")


@app.command("trainings")
@handle_errors
def trainings(name: str | None = typer.Argument(None, help="Username (default: every account).")) -> None:
    """Training records, with whether each is valid today."""
    from hygie.governance.accounts import Accounts

    with opened_store() as store:
        found = Accounts(store).trainings(name)
    t = Table("user", "course", "completed", "valid through", "valid today")
    for r in found:
        t.add_row(r.username, r.course, f"{r.completed_on}", f"{r.expires_on}", "yes" if r.valid else "no")
    console.print(t)


@app.command("reviews")
@handle_errors
def reviews(
    check: bool = typer.Option(
        False, "--check", help="Alert: list grants due, lapsed or untrained, record the alert, exit 1 if any."
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table."),
) -> None:
    """The periodic review of access rights: every grant with its deadline (due: within 30 days; lapsed:
    suspended until reviewed) and, for roles that need it, whether a valid training covers it."""
    import json

    from hygie.governance.accounts import Accounts

    with opened_store() as store:
        accounts = Accounts(store)
        found = accounts.review_alert(operator()) if check else accounts.grant_reviews()
    if as_json:
        for r in found:
            print(json.dumps({
                "user": r.username, "role": str(r.grant), "granted_at": r.granted_at.isoformat(),
                "reviewed_at": r.reviewed_at.isoformat() if r.reviewed_at else None, "reviewed_by": r.reviewed_by,
                "deadline": r.deadline.isoformat(), "status": r.status.value, "trained": r.trained,
            }))  # fmt: skip
    else:
        t = Table("user", "role", "granted", "last review", "deadline", "status", "training")
        for r in found:
            last = f"{r.reviewed_at:%Y-%m-%d} by {r.reviewed_by}" if r.reviewed_at else ""
            training = "" if r.trained is None else "valid" if r.trained else "MISSING OR EXPIRED"
            t.add_row(
                r.username, str(r.grant), f"{r.granted_at:%Y-%m-%d}", last, f"{r.deadline:%Y-%m-%d}", r.status, training
            )
        console.print(t)
    if check and found:
        if not as_json:
            say(f"{len(found)} grant(s) need attention: `hygie user review NAME --role ...`, `hygie user training ...`")
        raise typer.Exit(1)


@app.command("totp-enrol")
@handle_errors
def totp_enrol(name: str = typer.Argument(..., help="Username.")) -> None:
    """Create the account's TOTP secret (replacing any earlier one); printed once, hand it to the person."""
    from hygie.governance.accounts import Accounts

    with opened_store() as store:
        enrolment = Accounts(store).enrol_totp(operator(), name)
    console.print(f"TOTP for [bold]{name}[/] (shown once; scan the URI as a QR code or type the secret):")
    console.print(enrolment.uri, highlight=False, soft_wrap=True)
    console.print(f"secret: {enrolment.secret}", highlight=False)


@app.command("password")
@handle_errors
def set_password(
    name: str = typer.Argument(..., help="Username."),
    password_file: Path | None = typer.Option(None, "--password-file", help="Read the password from this file."),
) -> None:
    """Set an account's password (and unlock it)."""
    from hygie.governance.accounts import Accounts

    password = read_password(password_file)
    with opened_store() as store:
        Accounts(store).set_password(operator(), name, password)
    console.print(f"password of {name} changed")


@app.command("disable")
@handle_errors
def disable(name: str = typer.Argument(..., help="Username.")) -> None:
    """Disable an account: no login, no token works any more (its records stay)."""
    from hygie.governance.accounts import Accounts

    with opened_store() as store:
        Accounts(store).set_active(operator(), name, False)
    console.print(f"disabled {name}")


@app.command("enable")
@handle_errors
def enable(name: str = typer.Argument(..., help="Username.")) -> None:
    """Enable a disabled account again (and clear a lockout)."""
    from hygie.governance.accounts import Accounts

    with opened_store() as store:
        Accounts(store).set_active(operator(), name, True)
    console.print(f"enabled {name}")


@tokens.command("create")
@handle_errors
def token_create(
    name: str = typer.Argument(..., help="Username."),
    token_name: str = typer.Argument(..., help="A name for the token, e.g. laptop."),
    days: int | None = typer.Option(90, "--days", help="Days until it expires (0: never)."),
) -> None:
    """Create an API token for an account; the token is printed once and never stored."""
    from hygie.governance.accounts import Accounts, utcnow

    expires = utcnow() + dt.timedelta(days=days) if days else None
    with opened_store() as store:
        info, secret = Accounts(store).create_token(operator(), name, token_name, expires_at=expires)
    until = f"until {info.expires_at:%Y-%m-%d}" if info.expires_at else "without expiry"
    console.print(f"token [bold]{token_name}[/] of {name}, valid {until} (shown once):")
    console.print(secret, highlight=False, soft_wrap=True)


@tokens.command("list")
@handle_errors
def token_list(name: str = typer.Argument(..., help="Username.")) -> None:
    """List an account's tokens (never their secrets)."""
    from hygie.governance.accounts import Accounts

    with opened_store() as store:
        found = Accounts(store).tokens(name)
    t = Table("token", "created", "expires", "revoked", "last used")
    for tok in found:
        t.add_row(
            *(
                tok.name,
                *(
                    f"{d:%Y-%m-%d %H:%M}" if d else ""
                    for d in (tok.created_at, tok.expires_at, tok.revoked_at, tok.last_used_at)
                ),
            )
        )
    console.print(t)


@tokens.command("revoke")
@handle_errors
def token_revoke(
    name: str = typer.Argument(..., help="Username."),
    token_name: str = typer.Argument(..., help="The token's name."),
) -> None:
    """Revoke an API token at once."""
    from hygie.governance.accounts import Accounts

    with opened_store() as store:
        Accounts(store).revoke_token(operator(), name, token_name)
    console.print(f"revoked token {token_name} of {name}")


@admin.command("migrate")
@handle_errors
def admin_migrate() -> None:
    """Bring the metadata store (HYGIE_DATABASE_URL, default HYGIE_HOME/metadata.db) to the newest schema."""
    url = database_url(settings())
    engine = engine_for(url)
    try:
        before, after = migrate(engine)
        assert current_revision(engine) == after
    finally:
        engine.dispose()
    where = describe(url)
    if before == after:
        console.print(f"{where}: already at revision {after}", soft_wrap=True)
    else:
        console.print(f"{where}: migrated from {before or 'an empty database'} to revision {after}", soft_wrap=True)


@admin.command("halt")
@handle_errors
def admin_halt(
    reason: str = typer.Option(..., "--reason", help="Why (recorded in the audit log)."),
    project: str | None = typer.Option(None, "--project", help="Halt this project only (default: the whole hub)."),
) -> None:
    """The kill switch: suspend every active project (or one), revoke API tokens, end portal sessions, stop
    jobs; pending output requests are frozen. Nothing is deleted. Undo with `hygie admin resume`."""
    from hygie.governance.halt import KillSwitch

    with opened_store() as store:
        r = KillSwitch(store).halt(operator(), reason, project=project)
    say(
        f"[bold red]halted[/] {r.scope}: {len(r.projects)} project(s) suspended, {r.tokens_revoked} token(s) revoked, "
        f"{r.sessions_ended} session(s) ended, {r.jobs_stopped} job(s) stopped, {r.outputs_frozen} output "
        "request(s) frozen"
    )


@admin.command("resume")
@handle_errors
def admin_resume(
    project: str | None = typer.Option(None, "--project", help="Resume this project only (default: all)."),
) -> None:
    """Re-approve the projects a halt suspended. Revoked tokens stay revoked: users ask for new ones."""
    from hygie.governance.halt import KillSwitch

    with opened_store() as store:
        r = KillSwitch(store).resume(operator(), project=project)
    say(f"resumed {r.scope}: {len(r.projects)} project(s) active again ({', '.join(r.projects) or 'none'})")
