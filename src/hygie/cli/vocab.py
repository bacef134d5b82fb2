"""``hygie vocab``: install and list vocabularies (Athena downloads) used to map source codes."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from hygie.cli.audit import audit_note, audited
from hygie.cli.output import console, handle_errors, progress, settings
from hygie.ingest.vocabulary import install_vocabulary, vocabulary_store

app = typer.Typer(
    help="Vocabularies: OMOP standardised vocabularies from Athena, installed once.", no_args_is_help=True
)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="vocab")


@app.command("load")
@handle_errors
@audited("vocab.load", "vocabulary:{name}")
def load(
    folder: Path = typer.Argument(..., help="Folder of an Athena download (CONCEPT.csv, CONCEPT_RELATIONSHIP.csv...)."),
    name: str = typer.Option(..., "--name", "-n", help="Name of the installed vocabulary, e.g. v5-2026-10."),
) -> None:
    """Install a vocabulary; it is immutable once installed."""
    with progress():
        vocabulary = install_vocabulary(folder, name, settings())
    m = vocabulary.manifest
    audit_note(concepts=m.tables["concept"].rows)
    console.print(
        f"installed vocabulary [bold]{m.name}[/]: "
        + ", ".join(f"{t.name} {t.rows:,}" for t in m.tables.values() if t.rows)
    )


@app.command("list")
@handle_errors
def list_vocabularies() -> None:
    """List installed vocabularies."""
    t = Table("name", "installed", "concepts", "relationships")
    for v in vocabulary_store(settings()).list():
        m = v.manifest
        t.add_row(m.name, m.created_at, f"{m.tables['concept'].rows:,}", f"{m.tables['concept_relationship'].rows:,}")
    console.print(t)
