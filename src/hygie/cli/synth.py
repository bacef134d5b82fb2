"""``hygie synth``: synthetic EMC2-like extracts of four hospitals, with noisy identities and planted truths."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.table import Table

from hygie.cli.output import console, handle_errors, print_json, progress
from hygie.errors import HygieError
from hygie.synth.config import SynthConfig
from hygie.synth.generate import generate

DEFAULT_PATIENTS = 20_000


def register(root: typer.Typer) -> None:
    root.command("synth")(synth)


@handle_errors
def synth(
    patients: int = typer.Option(DEFAULT_PATIENTS, "--patients", "-n", help="Number of distinct persons."),
    seed: int = typer.Option(42, "--seed", "-s", help="Random seed: the same seed gives the same files."),
    out: Path = typer.Option(..., "--out", "-o", help="New or empty folder to write the four sites into."),
    workers: int = typer.Option(
        min(2, os.cpu_count() or 1), "--workers", help="Processes: 1, or 2 (sites c and d in a second process)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Generate four synthetic hospital extracts (OMOP CSV, OMOP Parquet, FHIR NDJSON, OMOP source codes), a
    vocabulary and a truth folder (planted rates, hazard ratios, linkage ground truth)."""
    if patients < 1:
        raise HygieError(f"--patients must be at least 1 (got {patients})")
    if seed < 0:
        raise HygieError(f"--seed must be zero or positive (got {seed})")
    with progress(not as_json) as step:
        summary = generate(SynthConfig(patients=patients, seed=seed), out, step, workers=workers)
    if as_json:
        print_json(summary)
        return
    t = Table("site", "persons", "records", title=f"hygie synth: {patients:,} persons, seed {seed} (SYNTHETIC)")
    for site, persons in summary["persons_per_site"].items():
        t.add_row(site, f"{persons:,}", f"{sum(summary['rows'][site].values()):,}")
    console.print(t)
    console.print(
        f"{summary['clinical_rows']:,} records in {summary['seconds']} s, written to {out}\n"
        f"Load an OMOP site: [bold]uv run hygie cdm load {out}/site_a/cdm --release synth-a --synthetic[/]\n"
        f"Planted truths and linkage ground truth (never deposit them): {out}/truth/"
    )
