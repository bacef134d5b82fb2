"""``hygie optout``: the register of patients who objected; entered by NIR, kept only as pseudonyms."""

from __future__ import annotations

from pathlib import Path

import typer

from hygie.cli.output import handle_errors
from hygie.cli.users import opened_store, operator, say
from hygie.governance.optout import OptOutRegister, read_nir_file

app = typer.Typer(help="Opt-out register: patients whose data no study may use.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="optout")


@app.command("add")
@handle_errors
def add(
    nir_file: Path = typer.Option(..., "--nir-file", help="CSV file with a 'nir' column, one patient a row."),
    source: str | None = typer.Option(None, "--source", help="Where the objections come from (default: file name)."),
) -> None:
    """Enter the objections of the patients in a file (all or nothing; the NIRs are not kept)."""
    nirs = read_nir_file(nir_file)
    with opened_store() as store:
        change = OptOutRegister(store).add(operator(), nirs, source=source or nir_file.name)
    say(
        f"{change.rows:,} row(s): {change.changed:,} patient(s) entered, {change.unchanged:,} already in the "
        f"register; register version {change.version}"
    )


@app.command("remove")
@handle_errors
def remove(
    nir_file: Path = typer.Option(..., "--nir-file", help="CSV file with a 'nir' column."),
    source: str | None = typer.Option(None, "--source", help="Why (default: file name)."),
) -> None:
    """Withdraw the objections of the patients in a file (they asked to be included again)."""
    nirs = read_nir_file(nir_file)
    with opened_store() as store:
        change = OptOutRegister(store).remove(operator(), nirs, source=source or nir_file.name)
    say(
        f"{change.rows:,} row(s): {change.changed:,} objection(s) withdrawn, {change.unchanged:,} not in the "
        f"register; register version {change.version}"
    )


@app.command("list")
@handle_errors
def list_register() -> None:
    """Counts only: how many patients are opted out, and the register's version."""
    with opened_store() as store:
        status = OptOutRegister(store).status()
    say(f"{status.opted_out:,} patient(s) opted out; {status.events:,} register event(s); version {status.version}")
