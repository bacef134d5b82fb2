"""``hygie demo``: the main job on embedded defaults, end to end, for a first look."""

from __future__ import annotations

import os
import shutil

import typer

from hygie import datasets as registry
from hygie.cli.cdm import print_summary, report_load
from hygie.cli.output import console, handle_errors, progress, settings
from hygie.config import Settings
from hygie.engine.duckdb import DuckDBEngine
from hygie.errors import HygieError
from hygie.ingest.cdm_load import load_cdm
from hygie.releases import ReleaseStore
from hygie.releases.summary import summarise
from hygie.synth.config import SynthConfig
from hygie.synth.generate import generate

DEMO_RELEASE = "demo-gibleed"
DEMO_SYNTH_PATIENTS = 20_000  # issue 3: the demo's population; HYGIE_DEMO_PATIENTS overrides it (e.g. in tests)
DEMO_SYNTH_RELEASE = "demo-synth-site-a"


def register(root: typer.Typer) -> None:
    root.command("demo")(demo)


def _synthetic_sites(s: Settings, store: ReleaseStore) -> None:
    """First step: a small synthetic population in the four hospitals' own formats; site a loaded as a release."""
    folder = s.home / "synth" / "demo"
    patients = _demo_patients()
    if (folder / "truth" / "truth.json").is_file():
        console.print(f"0. synthetic hospital extracts already in {folder}; reusing them")
    else:
        if folder.exists():  # left by an interrupted run: generations are never mixed
            shutil.rmtree(folder)
        console.print(f"0. generating {patients:,} synthetic patients in four hospital extracts")
        with progress() as step:
            summary = generate(SynthConfig(patients=patients, seed=42), folder, step,
                               workers=min(2, os.cpu_count() or 1))
        console.print(f"   {summary['clinical_rows']:,} records in {summary['seconds']} s, written to {folder}")
    if not store.exists(DEMO_SYNTH_RELEASE):
        with progress() as step:
            release = load_cdm(folder / "site_a" / "cdm", DEMO_SYNTH_RELEASE, s, synthetic=True,
                               description="hygie synth demo: site a (OMOP CSV)", origin="hygie synth", step=step)
        report_load(release)


def _demo_patients() -> int:
    value = os.environ.get("HYGIE_DEMO_PATIENTS", str(DEMO_SYNTH_PATIENTS))
    if not value.isdigit() or int(value) < 1:
        raise HygieError(f"HYGIE_DEMO_PATIENTS must be a positive whole number (got {value!r})")
    return int(value)


@handle_errors
def demo() -> None:
    """Load the bundled GiBleed dataset into a release and summarise it."""
    s = settings()
    store = ReleaseStore(s)
    console.rule("[bold]hygie demo")
    console.print(f"HYGIE_HOME = {s.home}")
    _synthetic_sites(s, store)
    if store.exists(DEMO_RELEASE):
        console.print(f"release {DEMO_RELEASE} already exists (releases are immutable); reusing it")
        release = store.get(DEMO_RELEASE)
    else:
        d = registry.get("gibleed")
        console.print(f"1. loading {d.description}")
        with progress() as step:
            release = load_cdm(
                d.folder,
                DEMO_RELEASE,
                s,
                synthetic=True,
                description=d.description,
                origin="dataset gibleed",
                step=step,
                allow_duplicate_keys=d.allow_duplicate_keys,
            )
        report_load(release)
    console.print("2. summary of the release")
    with DuckDBEngine(release, s) as engine:
        print_summary(summarise(engine))
    console.rule()
    console.print(
        f"Next: [bold]uv run hygie release show {DEMO_RELEASE}[/], "
        f"[bold]uv run hygie cdm summary --release {DEMO_RELEASE} --json[/]"
    )
