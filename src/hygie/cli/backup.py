"""``hygie backup``: encrypted backups of the hub, their verification, and restore drills."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from hygie.cli.audit import audit_note, audited
from hygie.cli.output import console, fail, handle_errors, print_json, progress, settings

app = typer.Typer(
    help="Encrypted backups of HYGIE_HOME: create, verify, restore (with a restore drill).", no_args_is_help=True
)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="backup")


@app.command("create")
@handle_errors
@audited("backup.create", lambda p: f"backup:{Path(p['out']).name}")
def create(
    out: Path = typer.Argument(..., help="The backup file to write (new, outside HYGIE_HOME)."),
) -> None:
    """Back up HYGIE_HOME into one encrypted file (keys excluded: escrow them apart)."""
    from hygie.backup import create_backup

    with progress() as step:
        report = create_backup(settings(), out, step=step)
    audit_note(backup_id=report.header.backup_id, files=len(report.files), bytes=report.total_bytes)
    console.print(
        f"[green]backup written[/]: {out} ({len(report.files):,} files, {report.total_bytes / 1e6:,.1f} MB before "
        f"encryption); metadata store: {report.header.metadata_store}"
    )
    console.print("keys are not in the backup: keep the master key (or KMS access) to restore it")


@app.command("verify")
@handle_errors
@audited("backup.verify", lambda p: f"backup:{Path(p['file']).name}")
def verify(
    file: Path = typer.Argument(..., help="The backup file."),
    as_json: bool = typer.Option(False, "--json", help="Print the file list as JSON."),
) -> None:
    """Decrypt and check every chunk and every file of a backup, writing nothing."""
    from hygie.backup import verify_backup

    report = verify_backup(settings(), file)
    audit_note(backup_id=report.header.backup_id, files=len(report.files))
    if as_json:
        print_json({"header": report.header.to_json() | {"key": None}, "files": [f.__dict__ for f in report.files]})
        return
    console.print(
        f"[green]backup intact[/]: {len(report.files):,} files, {report.total_bytes / 1e6:,.1f} MB, "
        f"created {report.header.created} by hygie {report.header.hygie_version}"
    )


@app.command("restore")
@handle_errors
@audited("backup.restore", lambda p: f"backup:{Path(p['file']).name}")
def restore(
    file: Path = typer.Argument(..., help="The backup file."),
    into: Path = typer.Option(..., "--into", help="A new (or empty) folder to restore the hub into."),
) -> None:
    """Restore a backup into a new folder, then run the restore drill on it (releases, audit log, store)."""
    from hygie.backup import restore_backup, restore_checks
    from hygie.config import Settings

    current = settings()
    report = restore_backup(current, file, into)
    restored = Settings(**{**current.__dict__, "home": into.absolute()})
    checks = restore_checks(restored)
    failed = [c for c in checks if not c.ok]
    audit_note(backup_id=report.header.backup_id, files=len(report.files), checks=len(checks), failed=len(failed))
    table = Table("check", "result", "detail")
    for c in checks:
        table.add_row(c.what, "[green]ok[/]" if c.ok else "[red]FAILED[/]", c.detail)
    console.print(table)
    if failed:
        fail(f"restored into {into}, but {len(failed)} check(s) failed")
    console.print(f"[green]restored[/] {len(report.files):,} files into {into}; use it with HYGIE_HOME={into}")
