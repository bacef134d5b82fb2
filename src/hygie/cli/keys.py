"""``hygie keys``: the hub's keys (master key rotation and status) and pseudonymisation keys for sites."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from hygie.cli.audit import audit_note, audited
from hygie.cli.output import console, handle_errors, print_json, progress, settings

app = typer.Typer(help="Keys: master key rotation and status, linkage keys for sites.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="keys")


@app.command("new-linkage-key")
@handle_errors
def new_linkage_key(
    path: Path = typer.Argument(..., help="Where to write the key (mode 0600; never overwritten)."),
) -> None:
    """Create a linkage key. Give the same key to every site that must be linked; keep it off the hub."""
    from hygie.ingest.pseudonymise import LinkageKey

    key = LinkageKey.generate(path)
    console.print(f"wrote linkage key {key.key_id} to {path}")


@app.command("status")
@handle_errors
def key_status(as_json: bool = typer.Option(False, "--json", help="Print the status as JSON.")) -> None:
    """The master key in use, and how many data keys each master key (version) wraps, per kind."""
    from hygie.keys_rotation import status

    report = status(settings())
    if as_json:
        print_json(report.to_json())
        return
    console.print(f"KMS: {report.kms}; new data keys are wrapped with [bold]{report.wrapping_key}[/]")
    if report.pending_rotation:
        console.print("[yellow]a rotation is under way: run `hygie keys rotate-master` again to finish it[/]")
    t = Table("kind", "master key", "version", "data keys")
    for (kind, key_id, version), n in sorted(report.counts.items()):
        t.add_row(kind, key_id, version if version != key_id else "", f"{n:,}")
    console.print(t)
    for stray in report.strays:
        console.print(f"[red]unknown key holder[/]: {stray}")


@app.command("rotate-master")
@handle_errors
@audited("keys.rotate-master", "master-key")
def rotate_master_command(
    keep_old: Path | None = typer.Option(
        None, "--keep-old", help="File keys: copy the old master key here first (for backups still under it)."
    ),
    retire: bool = typer.Option(
        True, "--retire/--no-retire", help="KMS: refuse older key versions once everything is re-wrapped."
    ),
) -> None:
    """Re-wrap every data key (releases, deposits, vocabularies; results follow their release) under a new
    master key. Crash-safe: if interrupted, run it again to finish; everything stays readable meanwhile."""
    from hygie.keys_rotation import rotate_master

    with progress() as step:
        report = rotate_master(settings(), keep_old=keep_old, retire=retire, step=step)
    audit_note(old_key=report.old_key, new_key=report.new_key, rewrapped=report.rewrapped)
    console.print(
        f"[green]master key rotated[/]: {report.old_key} -> [bold]{report.new_key}[/]; "
        f"{report.rewrapped:,} data key(s) re-wrapped"
        + (f", {report.already:,} already under the new key" if report.already else "")
    )
