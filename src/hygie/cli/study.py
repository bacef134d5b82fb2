"""``hygie study``: validate and run study files; publish the study-file JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from hygie.cli.output import console, err_console, handle_errors, print_json, settings
from hygie.errors import HygieError

app = typer.Typer(help="Studies: run a study file (cohorts + analyses) on a release.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="study")


def schema_text() -> str:
    from hygie.analyses.registry import analyses
    from hygie.studies.model import json_schema

    return json.dumps(json_schema(analyses()), indent=2) + "\n"


@app.command("run")
@handle_errors
def run_command(
    spec: Path = typer.Argument(..., help="The study file (YAML)."),
    release: str = typer.Option(..., "--release", "-r", help="Release to run on."),
    out: Path = typer.Option(..., "--out", help="Folder for the results (written atomically)."),
    engine: str = typer.Option("duckdb", "--engine", help="duckdb (default) or spark."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists and is not empty."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's manifest as JSON."),
) -> None:
    """Run a study: one CSV and Parquet file per result table, manifest.json and report.html in --out."""
    from hygie.studies import load_study, run_study

    def step(message: str) -> None:
        if not as_json:
            err_console.print(f"[dim]-[/] {message}", highlight=False)

    if engine not in ("duckdb", "spark"):
        raise HygieError(f"unknown engine {engine!r}: use duckdb or spark")
    step(f"validating {spec}")
    study = load_study(spec)
    run = run_study(study, release, settings(), engine=engine, out=out, force=force, step=step)
    if as_json:
        print_json(run.manifest)
        return
    table = Table("result table", "rows", "masked cells")
    for name, entry in run.manifest["tables"].items():
        masked = sum(f["cells"] for f in entry["disclosure_flags"])
        table.add_row(name, f"{entry['rows']:,}", f"{masked:,}")
    console.print(table)
    if run.manifest["release"]["synthetic"]:
        console.print("[bold red]SYNTHETIC release[/]: disclosure control not applied")
    console.print(f"wrote {run.out} (report: {run.report})")


@app.command("validate")
@handle_errors
def validate_command(spec: Path = typer.Argument(..., help="The study file (YAML).")) -> None:
    """Check a study file (sections, cohort files, references) without running it; exit 1 listing the errors."""
    from hygie.studies import load_study

    study = load_study(spec)
    console.print(
        f"{spec}: valid study {study.name!r}: {len(study.cohorts)} cohort(s), "
        f"{len(study.denominators)} denominator(s), {len(study.analyses)} analysis(es)"
    )


@app.command("schema")
@handle_errors
def schema_command(
    out: Path | None = typer.Option(None, "--out", help="Write the JSON Schema to FILE instead of printing it."),
) -> None:
    """The JSON Schema of study files (for editors; docs/study-schema.json is this output)."""
    text = schema_text()
    if out is None:
        typer.echo(text, nl=False)
        return
    out.write_text(text)
    console.print(f"wrote {out}")
