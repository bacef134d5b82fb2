"""``hygie datasets``: example datasets shipped with hygie."""

from __future__ import annotations

import typer

from hygie import datasets as registry
from hygie.cli.cdm import report_load
from hygie.cli.output import console, handle_errors, progress, settings
from hygie.ingest.cdm_load import load_cdm

app = typer.Typer(help="Example datasets shipped with hygie (no download).", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="datasets")


@app.command("list")
@handle_errors
def list_datasets() -> None:
    """List the bundled datasets."""
    for d in registry.DATASETS.values():
        console.print(f"[bold]{d.name}[/]: {d.description}")


@app.command("load")
@handle_errors
def load(
    name: str = typer.Argument(..., help="Dataset name, e.g. gibleed."),
    release: str | None = typer.Option(None, "--release", "-r", help="Release name (default: the dataset name)."),
) -> None:
    """Load a bundled dataset as a new (synthetic) release."""
    d = registry.get(name)
    with progress() as step:
        result = load_cdm(
            d.folder,
            release or d.name,
            settings(),
            synthetic=d.synthetic,
            description=d.description,
            origin=f"dataset {d.name}",
            step=step,
            allow_duplicate_keys=d.allow_duplicate_keys,
        )
    report_load(result)
