"""``hygie site`` and ``hygie ingest``: data providers and their deposits."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from hygie.cli.audit import audit_note, audited
from hygie.cli.output import console, handle_errors, progress, settings, warn
from hygie.errors import HygieError
from hygie.ingest.deposit import ingest
from hygie.ingest.sites import FORMATS, SiteRegistry

app = typer.Typer(help="Data providers (hospital sites) and their deposits.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="site")
    root.command("ingest")(ingest_command)


def _vocabularies(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        table, sep, vocabulary = pair.partition("=")
        if not sep or not table or not vocabulary:
            raise HygieError(f"--source-vocabulary takes TABLE=VOCABULARY_ID, not {pair!r}")
        out[table.strip()] = vocabulary.strip()
    return out


@app.command("add")
@handle_errors
@audited("site.add", "site:{name}")
def add(
    name: str = typer.Argument(..., help="Short site name, e.g. chu-nancy."),
    format: str = typer.Option(..., "--format", help=f"What the site deposits: {' or '.join(FORMATS)}."),
    source_vocabulary: list[str] = typer.Option(
        [],
        "--source-vocabulary",
        help="TABLE=VOCABULARY_ID of the site's source codes (default ICD10, ATC, LOINC, CCAM); repeatable.",
    ),
) -> None:
    """Register a data provider."""
    site = SiteRegistry(settings()).add(name, format, _vocabularies(source_vocabulary))
    console.print(f"added site [bold]{site.name}[/] ({site.format})")


@app.command("list")
@handle_errors
def list_sites() -> None:
    """List sites with their latest deposit."""
    registry = SiteRegistry(settings())
    t = Table("site", "format", "deposits", "latest")
    for site in registry.list():
        deposits = registry.deposits(site).list()
        t.add_row(site.name, site.format, str(len(deposits)), deposits[-1].name if deposits else "")
    console.print(t)


@handle_errors
@audited("deposit.ingest", "site:{site}")
def ingest_command(
    site: str = typer.Argument(..., help="Site name (see `hygie site list`)."),
    folder: Path = typer.Argument(..., help="The deposit: cdm/ with one file per table, and identities.csv."),
    vocabulary: str | None = typer.Option(None, "--vocabulary", help="Installed vocabulary (default: latest)."),
    identities: Path | None = typer.Option(None, "--identities", help="Identity file (default DIR/identities.csv)."),
    synthetic: bool = typer.Option(False, "--synthetic", help="The deposit holds synthetic patients."),
) -> None:
    """Validate, pseudonymise and map a site's extract into an encrypted deposit (idempotent)."""
    s = settings()
    with progress() as step:
        result = ingest(
            SiteRegistry(s).get(site),
            folder,
            s,
            vocabulary=vocabulary,
            synthetic=synthetic,
            identities=identities,
            step=step,
        )
    m = result.deposit.manifest
    audit_note(deposit=m.name, created=result.created, rows=sum(t.rows for t in m.tables.values()))
    if not result.created:
        console.print(f"this extract was already deposited as {m.name}: nothing changed")
        return
    rows = sum(t.rows for n, t in m.tables.items() if n != "identity_tokens")
    console.print(
        f"[green]deposit {m.name}[/] of site {site}: {rows:,} rows, {m.rejected_rows:,} rejected, "
        f"{m.flagged_rows:,} flagged, {m.tables['identity_tokens'].rows:,} identities hashed"
    )
    for w in m.warnings:
        warn(w)
