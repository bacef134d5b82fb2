"""``hygie audit``: checks an auditor or DPO runs on the hub, and the audit log of every CLI action.

Every audited command records one entry when it ends, through ``audited`` (a decorator, one line per
command). The actor is ``console:<login>``, the login of the operating-system account running the command,
taken from the real user id (not from ``$USER``, which anyone can set).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
import pwd
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from rich.table import Table

from hygie.cli.output import EXIT_USER_ERROR, console, err_console, handle_errors, print_json, settings
from hygie.errors import HygieError

app = typer.Typer(
    help="Audits: the tamper-evident audit log, and proofs of what the hub does not hold.", no_args_is_help=True
)

P = ParamSpec("P")
R = TypeVar("R")
_notes: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("audit_notes", default=None)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="audit")


# -- auditing CLI actions ---------------------------------------------------------------------------------------


def cli_actor() -> str:
    """``console:<login>`` of the real user running the command."""
    try:
        return f"console:{pwd.getpwuid(os.getuid()).pw_name}"
    except KeyError:
        return f"console:uid-{os.getuid()}"


def audited(action: str, obj: str | Callable[[dict[str, Any]], str]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Record one audit entry when the command ends: ``ok``, ``failed`` (non-zero exit), ``refused`` (a
    user error), ``aborted`` or ``error`` (a bug). ``obj`` is a format string over the command's parameters
    (``"release:{name}"``) or a function of them. Details come from ``audit_note`` calls in the command."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind_partial(*args, **kwargs)
            bound.apply_defaults()
            target = obj(bound.arguments) if callable(obj) else obj.format(**bound.arguments)
            notes: dict[str, Any] = {}
            token = _notes.set(notes)
            outcome = "error"
            try:
                result = func(*args, **kwargs)
                outcome = "ok"
                return result
            except typer.Exit as e:
                outcome = "ok" if e.exit_code == 0 else "failed"
                raise
            except typer.Abort:
                outcome = "aborted"
                raise
            except HygieError as e:
                outcome = "refused"
                notes["error"] = type(e).__name__  # never the message: it may quote input values
                raise
            except BaseException as e:
                notes["error"] = type(e).__name__
                raise
            finally:
                _notes.reset(token)
                record_cli(action, target, outcome, **notes)

        return wrapper

    return decorate


def audit_note(**details: Any) -> None:
    """Add details to the entry the current audited command will record (counts, ids: no patient data)."""
    notes = _notes.get()
    if notes is not None:
        notes.update(details)


def record_cli(action: str, obj: str, outcome: str = "ok", **details: Any) -> None:
    from hygie.governance.audit import AuditLog

    AuditLog(settings()).record(cli_actor(), action, obj, outcome, **details)


# -- commands ---------------------------------------------------------------------------------------------------


@app.command("scan-identifiers")
@handle_errors
@audited("audit.scan-identifiers", "hygie-home")
def scan_identifiers(
    identities: list[Path] = typer.Option(..., "--identities", help="A site's identity file (repeatable)."),
) -> None:
    """Search every file under HYGIE_HOME, decrypted, for the NIRs, names and postcodes of identity files.

    Exits 1 when anything is found. Findings name the file, table and column, never the value.
    """
    from hygie.ingest.identifier_scan import scan

    findings, searched = scan(settings(), identities)
    audit_note(files=searched, findings=len(findings))
    if not findings:
        console.print(f"[green]no identifier found[/] in {searched:,} file(s) under HYGIE_HOME")
        return
    t = Table("file", "where", "kind", "count")
    for f in findings:
        t.add_row(f.file, f.where, f.kind, f"{f.count:,}")
    console.print(t)
    console.print(f"[bold red]{len(findings)} finding(s)[/] in {searched:,} file(s)")
    raise typer.Exit(EXIT_USER_ERROR)


@app.command("alerts")
@handle_errors
@audited("audit.alerts", "audit-log")
def alerts(
    since: str | None = typer.Option(None, "--since", help="From this UTC date or time (ISO, e.g. 2026-11-01)."),
    timezone: str = typer.Option("Europe/Paris", "--timezone", help="The hub's local time, for working hours."),
    as_json: bool = typer.Option(False, "--json", help="One JSON alert per line."),
) -> None:
    """Run the anomaly rules on the audit log: bulk downloads, repeated rejected outputs, repeated refusals,
    activity outside working hours. Exits 1 when any alert is raised (for cron or monitoring)."""
    from zoneinfo import ZoneInfoNotFoundError

    from hygie.governance.alerts import AlertRules, find_alerts
    from hygie.governance.audit import AuditLog

    try:
        rules = AlertRules(timezone=timezone)
        found = find_alerts(AuditLog(settings()).entries(since=since), rules)
    except (ZoneInfoNotFoundError, ValueError):
        raise HygieError(f"--timezone: unknown time zone {timezone!r} (e.g. Europe/Paris)") from None
    audit_note(alerts=len(found), rules=sorted({a.rule for a in found}))
    if as_json:
        for a in found:
            print_json({"rule": a.rule, "actor": a.actor, "count": a.count, "first": a.first.isoformat(),
                        "last": a.last.isoformat(), "summary": a.summary})  # fmt: skip
    elif found:
        t = Table("rule", "actor", "events", "first (UTC)", "last (UTC)", "what")
        for a in found:
            t.add_row(a.rule, a.actor, str(a.count), f"{a.first:%Y-%m-%d %H:%M}", f"{a.last:%Y-%m-%d %H:%M}", a.summary)
        console.print(t)
    else:
        console.print("no alert")
    if found:
        raise typer.Exit(1)


@app.command("verify")
@handle_errors
def verify(
    public_key: Path | None = typer.Option(
        None, "--public-key", help="The audit public key you pinned (default: the one the hub publishes)."
    ),
    checkpoint: list[Path] = typer.Option(
        [], "--checkpoint", help="A checkpoint you kept from an earlier visit (repeatable)."
    ),
) -> None:
    """Check the whole audit log: hashes, chain, Merkle roots and checkpoint signatures.

    Exits 1 naming the first bad entry and the kind of problem (modified, deleted, inserted-or-reordered,
    truncated, rewritten, forged-checkpoint...).
    """
    from hygie.governance.audit import AuditLog, Checkpoint, load_public_key

    log = AuditLog(settings())
    trusted = []
    for path in checkpoint:
        try:
            trusted.append(Checkpoint.from_note(path.read_text()))
        except (OSError, ValueError) as e:
            raise HygieError(f"{path}: not a hygie audit checkpoint ({e})") from None
    result = log.verify(public_key=load_public_key(public_key) if public_key else None, trusted=trusted)
    if result.ok:
        console.print(
            f"[green]audit log intact[/]: {result.entries:,} entries, {result.checkpoints:,} signed checkpoint(s)"
        )
        return
    first = result.first
    assert first is not None
    err_console.print(f"[bold red]audit log damaged[/] at entry {first.seq} ({first.kind}): {first.message}")
    for f in result.findings:
        if f is not first:
            err_console.print(f"  also: {f}", highlight=False)
    raise typer.Exit(EXIT_USER_ERROR)


@app.command("log")
@handle_errors
def show_log(
    since: str | None = typer.Option(None, "--since", help="From this UTC date or time (ISO, e.g. 2026-11-01)."),
    actor: str | None = typer.Option(None, "--actor", help="Only this actor, e.g. cli:alice."),
    action: str | None = typer.Option(None, "--action", help="Only this action or family, e.g. release."),
    as_json: bool = typer.Option(False, "--json", help="One JSON entry per line, as stored."),
) -> None:
    """Print audit entries, oldest first (the auditor's view)."""
    from hygie.governance.audit import AuditLog

    entries = AuditLog(settings()).entries(since=since, actor=actor, action=action)
    if as_json:
        for e in entries:
            print_json(e.to_json())
        return
    t = Table("#", "time (UTC)", "actor", "action", "object", "outcome", "details")
    for e in entries:
        details = ", ".join(f"{k}={v}" for k, v in e.details.items())
        t.add_row(str(e.seq), e.time[:19].replace("T", " "), e.actor, e.action, e.object, e.outcome, details)
    console.print(t)


@app.command("purge")
@handle_errors
def purge_old(
    retention_days: int | None = typer.Option(
        None, "--retention-days", help="Keep this many days (365-1095; default HYGIE_AUDIT_RETENTION_DAYS or 365)."
    ),
) -> None:
    """Remove the content of entries past the retention period; their hashes stay, so the log still verifies."""
    from hygie.governance.audit import AuditLog
    from hygie.governance.audit_retention import check_days, purge
    from hygie.governance.audit_retention import retention_days as configured

    days = check_days(retention_days) if retention_days is not None else configured()
    done = purge(AuditLog(settings()), cli_actor(), days=days)
    if done.entry is None:
        console.print(f"nothing older than {days} days (cutoff {done.cutoff[:10]}) left to purge")
    else:
        console.print(f"purged the content of {done.purged} entries up to #{done.up_to} (older than {days} days); "
                      f"recorded as entry #{done.entry.seq}, covered by a new checkpoint")  # fmt: skip


@app.command("checkpoint")
@handle_errors
def checkpoint_now(
    out: Path | None = typer.Option(None, "--out", help="Also write the signed checkpoint to this file."),
) -> None:
    """Sign a checkpoint of the log now and print it; give it to the DPO or an external witness."""
    from hygie.governance.audit import AuditLog

    cp = AuditLog(settings()).checkpoint()
    if cp is None:
        raise HygieError("the audit log is empty: nothing to sign")
    if out is not None:
        out.write_text(cp.signed_note())
    console.print(cp.signed_note(), highlight=False, markup=False)


@app.command("public-key")
@handle_errors
def public_key_command() -> None:
    """Print the audit public key (auditors pin it and pass it to `hygie audit verify --public-key`)."""
    from hygie.governance.audit import AuditLog

    log = AuditLog(settings())
    log.signer()
    console.print(log.public_key_file.read_text().strip(), highlight=False, markup=False)
