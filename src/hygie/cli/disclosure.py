"""``hygie disclosure check DIR``: the airlock's automated checks on a folder of outputs, for operators."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer
from rich.table import Table

from hygie.cli.output import EXIT_USER_ERROR, console, handle_errors, print_json

app = typer.Typer(help="Disclosure control: automated checks of outputs before they leave.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="disclosure")


@app.command("check")
@handle_errors
def check(
    folder: Path = typer.Argument(..., help="Folder of output files to check."),
    policy_file: Path | None = typer.Option(None, "--policy", help="The project's policy (JSON or YAML)."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as one JSON object."),
) -> None:
    """File types, sizes, row counts and identifier-like columns; exits 1 when anything blocks release.

    Findings name a file, a column and a number of rows, never a value.
    """
    from hygie.disclosure import DisclosurePolicy  # imported when used: every hygie command loads this module
    from hygie.disclosure.checks import check_folder

    policy = DisclosurePolicy.from_file(policy_file) if policy_file else DisclosurePolicy()
    findings = check_folder(folder, policy)
    if as_json:
        print_json({"findings": [asdict(f) for f in findings], "passed": not findings})
    elif findings:
        table = Table("file", "column", "rows", "reason")
        for f in findings:
            table.add_row(f.file, f.column or "", "" if f.rows is None else str(f.rows), f.reason)
        console.print(table, soft_wrap=True)
    else:
        console.print(f"[green]passed[/]: no automated check blocks the outputs in {folder.name}")
    if findings:
        raise typer.Exit(EXIT_USER_ERROR)
