"""``hygie cohort``: generate ATLAS/Circe cohort definitions on a release."""

from __future__ import annotations

import csv
from pathlib import Path

import typer
from rich.table import Table

from hygie.cli.audit import audit_note, audited
from hygie.cli.output import console, err_console, handle_errors, print_json, progress, settings
from hygie.cohorts.service import CohortDefinition, CohortResult, generate
from hygie.releases import ReleaseStore

app = typer.Typer(help="Cohorts: run ATLAS/Circe cohort definitions on a release.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="cohort")


def write_csv(result: CohortResult, folder: Path) -> Path:
    """``<folder>/<name>.csv`` with ``subject_id, cohort_start_date, cohort_end_date`` (ISO dates)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result.name}.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["subject_id", "cohort_start_date", "cohort_end_date"])
        for row in result.rows.to_pylist():
            start, end = row["cohort_start_date"].isoformat(), row["cohort_end_date"].isoformat()
            writer.writerow([row["subject_id"], start, end])
    return path


@app.command("generate")
@handle_errors
@audited("cohort.generate", "release:{release}")
def generate_command(
    files: list[Path] = typer.Argument(..., help="Circe cohort definition files (JSON); name = file name."),
    release: str = typer.Option(..., "--release", "-r", help="Release to run on."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line per definition."),
    out: Path | None = typer.Option(None, "--out", help="Write each cohort's rows to DIR/<name>.csv."),
    engine: str = typer.Option("duckdb", "--engine", help="duckdb (default) or spark."),
) -> None:
    """Generate cohorts; rows are kept (encrypted) in the release's results area."""
    config = settings()
    target = ReleaseStore(config).get(release)
    definitions = [CohortDefinition.from_file(f) for f in files]
    with progress(not as_json) as step:
        step(f"generating {len(definitions)} cohort(s) on {release}")
        results = generate(target, definitions, config, engine=engine)
    audit_note(cohorts=[r.name for r in results][:50], engine=engine, exported=out is not None)
    for result in results:
        if out is not None:
            write_csv(result, out)
        for warning in result.warnings:
            err_console.print(f"[yellow]warning:[/] {result.name}: {warning}", highlight=False)
    if as_json:
        for result in results:
            print_json(result.summary())
        return
    table = Table("cohort", "subjects", "records", "inclusion rules (subjects remaining)")
    for result in results:
        rules = "; ".join(f"{r.name}: {r.subjects:,}" for r in result.inclusion_rules)
        table.add_row(result.name, f"{result.subjects:,}", f"{result.records:,}", rules)
    console.print(table)
    if out is not None:
        console.print(f"wrote {len(results)} CSV file(s) to {out}")
