"""``hygie audit``: checks an auditor or DPO runs on the hub."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from hygie.cli.output import EXIT_USER_ERROR, console, handle_errors, settings

app = typer.Typer(help="Audits: prove what the hub does and does not hold.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="audit")


@app.command("scan-identifiers")
@handle_errors
def scan_identifiers(
    identities: list[Path] = typer.Option(..., "--identities", help="A site's identity file (repeatable)."),
) -> None:
    """Search every file under HYGIE_HOME, decrypted, for the NIRs, names and postcodes of identity files.

    Exits 1 when anything is found. Findings name the file, table and column, never the value.
    """
    from hygie.ingest.identifier_scan import scan

    findings, searched = scan(settings(), identities)
    if not findings:
        console.print(f"[green]no identifier found[/] in {searched:,} file(s) under HYGIE_HOME")
        return
    t = Table("file", "where", "kind", "count")
    for f in findings:
        t.add_row(f.file, f.where, f.kind, f"{f.count:,}")
    console.print(t)
    console.print(f"[bold red]{len(findings)} finding(s)[/] in {searched:,} file(s)")
    raise typer.Exit(EXIT_USER_ERROR)
