"""Entry point of the ``hygie`` command. Each command group lives in its own module and registers here."""

from __future__ import annotations

import sys

import typer

from hygie import __version__
from hygie.cli import (
    audit,
    backup,
    cdm,
    cohort,
    datasets,
    demo,
    jobs,
    keys,
    optout,
    projects,
    pseudonymise,
    release,
    serve,
    sites,
    study,
    synth,
    users,
    vocab,
)
from hygie.cli import disclosure as disclosure_cli
from hygie.cli.output import EXIT_INTERNAL_ERROR

app = typer.Typer(
    name="hygie",
    help="hygie: an open, self-hostable health data hub (OMOP CDM warehouse, studies without row-level access).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

# Command modules, in pipeline order. Each exposes `register(app)`.
# One module per line: branches that add a command group touch one line each.
for module in (
    synth,
    sites,
    pseudonymise,
    keys,
    vocab,
    cdm,
    release,
    audit,
    datasets,
    cohort,
    study,
    disclosure_cli,
    users,
    projects,
    optout,
    jobs,
    serve,
    backup,
    demo,
):
    module.register(app)


@app.callback(invoke_without_command=True)
def _main(
    version: bool = typer.Option(False, "--version", help="Print hygie's version and exit.", is_eager=True),
) -> None:
    """State lives in HYGIE_HOME (default ./.hygie)."""
    if version:
        typer.echo(__version__)
        raise typer.Exit()


def run() -> None:
    try:
        app()
    except SystemExit:
        raise
    except BaseException:  # pragma: no cover - last resort; commands handle their own errors
        sys.exit(EXIT_INTERNAL_ERROR)
