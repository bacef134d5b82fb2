"""``hygie cdm``: load OMOP CDM files into a release, summarise a release, document the schema."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from hygie.cdm.docs import schema_markdown
from hygie.cli.audit import audit_note, audited
from hygie.cli.output import console, handle_errors, print_json, progress, settings, warn
from hygie.engine.duckdb import DuckDBEngine
from hygie.ingest.cdm_load import load_cdm
from hygie.ingest.quality import QualityConfig
from hygie.releases import Release, ReleaseStore
from hygie.releases.summary import summarise

app = typer.Typer(help="OMOP CDM tables: load, summarise, document.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="cdm")


def report_load(release: Release) -> None:
    m = release.manifest
    rows = sum(t.rows for t in m.tables.values())
    console.print(
        f"[green]published release [bold]{m.name}[/][/] (#{m.sequence}): {len(m.lineage)} file(s), "
        f"{rows:,} rows, {m.rejected_rows:,} rejected, {m.flagged_rows:,} flagged"
        + (" [yellow](SYNTHETIC)[/]" if m.synthetic else "")
    )
    for w in m.warnings:
        warn(w)


@app.command("load")
@handle_errors
@audited("cdm.load", "release:{release}")
def load(
    folder: Path = typer.Argument(..., help="Folder with one CSV or Parquet file per CDM table."),
    release: str = typer.Option(..., "--release", "-r", help="Name of the new release."),
    synthetic: bool = typer.Option(False, "--synthetic", help="Mark the release as synthetic (not real patients)."),
    description: str = typer.Option("", "--description", help="Free text stored in the manifest."),
    quality_config: Path | None = typer.Option(
        None, "--quality-config", help="JSON of per-check overrides: {name: {threshold_pct, severity}}."
    ),
    allow_duplicate_keys: bool = typer.Option(
        False,
        "--allow-duplicate-keys",
        help="Keep event rows whose record id repeats (flagged) instead of refusing the file.",
    ),
) -> None:
    """Load OMOP CDM 5.3/5.4 tables into a new immutable release (CDM 5.3 is upgraded to 5.4)."""
    with progress() as step:
        result = load_cdm(
            folder,
            release,
            settings(),
            synthetic=synthetic,
            description=description,
            step=step,
            allow_duplicate_keys=allow_duplicate_keys,
            quality=QualityConfig.from_file(quality_config) if quality_config else None,
        )
    audit_note(rows=sum(t.rows for t in result.manifest.tables.values()), synthetic=synthetic)
    report_load(result)


@app.command("summary")
@handle_errors
def summary(
    release: str = typer.Option(..., "--release", "-r", help="Release to summarise."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Persons by sex and birth decade, observation time, records per table, top concepts per domain."""
    s = settings()
    with DuckDBEngine(ReleaseStore(s).get(release), s) as engine:
        data = summarise(engine)
    if as_json:
        print_json(data)
        return
    print_summary(data)


def print_summary(data: dict) -> None:
    console.print(
        f"[bold]{data['release']}[/]: {data['persons']:,} persons"
        + (" [yellow](SYNTHETIC)[/]" if data["synthetic"] else "")
    )
    t = Table("sex", "persons")
    for r in data["persons_by_sex"]:
        t.add_row(r["sex"], f"{r['persons']:,}")
    console.print(t)
    bands = Table("sex", "born", "persons")
    for r in data["persons_by_sex_and_birth_decade"]:
        bands.add_row(r["sex"], r["birth_years"], f"{r['persons']:,}")
    console.print(bands)
    o = data["observation"]
    console.print(
        f"observation: {o['periods']:,} periods of {o['persons']:,} persons, {o['first_start']} to "
        f"{o['last_end']}, {o['person_years']:,} person-years, median {o['median_days']:,} days"
    )
    rows = Table("table", "records")
    for name, n in data["records_per_table"].items():
        rows.add_row(name, f"{n:,}")
    console.print(rows)
    for table, concepts in data["top_concepts"].items():
        t = Table("concept_id", "concept", "records", "persons", title=f"top concepts: {table}")
        for c in concepts:
            t.add_row(str(c["concept_id"]), c["concept_name"], f"{c['records']:,}", f"{c['persons']:,}")
        console.print(t)


@app.command("schema")
@handle_errors
def schema(
    version: str = typer.Option("5.4", "--version", help="CDM version: 5.4 or 5.3."),
    out: Path | None = typer.Option(None, "--out", help="Write Markdown to this file instead of printing."),
) -> None:
    """Print the CDM schema hygie uses (tables, columns, types, keys) as Markdown."""
    text = schema_markdown(version)
    if out:
        out.write_text(text)
        console.print(f"wrote {out}")
    else:
        typer.echo(text)
