"""``hygie demo``: the main job on embedded defaults, end to end, for a first look."""

from __future__ import annotations

import typer

from hygie import datasets as registry
from hygie.cli.cdm import print_summary, report_load
from hygie.cli.output import console, handle_errors, progress, settings
from hygie.engine.duckdb import DuckDBEngine
from hygie.ingest.cdm_load import load_cdm
from hygie.releases import ReleaseStore
from hygie.releases.summary import summarise

DEMO_RELEASE = "demo-gibleed"


def register(root: typer.Typer) -> None:
    root.command("demo")(demo)


@handle_errors
def demo() -> None:
    """Load the bundled GiBleed dataset into a release and summarise it."""
    s = settings()
    store = ReleaseStore(s)
    console.rule("[bold]hygie demo")
    console.print(f"HYGIE_HOME = {s.home}")
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
