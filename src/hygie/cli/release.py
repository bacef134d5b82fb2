"""``hygie release``: list, show, verify, prepare and delete warehouse releases."""

from __future__ import annotations

import csv
from pathlib import Path

import typer
from rich.table import Table

from hygie.cli.audit import audit_note, audited
from hygie.cli.output import console, handle_errors, print_json, progress, settings, warn
from hygie.errors import HygieError
from hygie.releases import Release, ReleaseStore, read_rejects

app = typer.Typer(
    help="Warehouse releases: immutable, versioned, encrypted OMOP CDM 5.4 snapshots.", no_args_is_help=True
)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="release")


def flags(release: Release) -> str:
    return "SYNTHETIC" if release.manifest.synthetic else "real data"


@app.command("list")
@handle_errors
def list_releases(as_json: bool = typer.Option(False, "--json", help="One JSON object per release.")) -> None:
    """List releases, oldest first."""
    releases = ReleaseStore(settings()).list()
    if as_json:
        for r in releases:
            m = r.manifest
            print_json(
                {
                    "name": m.name,
                    "sequence": m.sequence,
                    "created_at": m.created_at,
                    "synthetic": m.synthetic,
                    "persons": m.tables["person"].rows if "person" in m.tables else 0,
                }
            )
        return
    if not releases:
        console.print("No release yet. Try [bold]hygie datasets load gibleed[/] or [bold]hygie cdm load DIR[/].")
        return
    t = Table("#", "name", "created", "persons", "rows", "flags")
    for r in releases:
        m = r.manifest
        t.add_row(
            str(m.sequence),
            m.name,
            m.created_at,
            f"{m.tables['person'].rows:,}",
            f"{sum(e.rows for e in m.tables.values()):,}",
            flags(r),
        )
    console.print(t)


@app.command("show")
@handle_errors
def show(
    name: str = typer.Argument(..., help="Release name."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole manifest as JSON."),
) -> None:
    """Show a release: tables with row counts, lineage, quality findings and flags."""
    release = ReleaseStore(settings()).get(name)
    m = release.manifest
    if as_json:
        print_json(m.to_json())
        return
    console.print(
        f"[bold]{m.name}[/] (#{m.sequence}), CDM {m.cdm_version}, created {m.created_at}, "
        f"[{'yellow' if m.synthetic else 'green'}]{flags(release)}[/]"
    )
    if m.description:
        console.print(m.description)
    t = Table("table", "rows", "rejected", "flagged", "from", "CDM")
    sources = {e.table: e for e in m.lineage}
    for e in m.tables.values():
        if e.rows or e.name in sources:
            src = sources.get(e.name)
            t.add_row(
                e.name,
                f"{e.rows:,}",
                f"{e.rejected_rows:,}",
                f"{e.flagged_rows:,}",
                src.source if src else "",
                src.source_cdm_version if src else "",
            )
    console.print(t)
    origins = sorted({e.origin for e in m.lineage})
    console.print(f"origin: {', '.join(origins)}")
    empty = [e.name for e in m.tables.values() if not e.rows and e.name not in sources]
    console.print(f"[dim]empty tables: {', '.join(empty)}[/]")
    for w in m.warnings:
        warn(w)
    if m.unknown_concepts:
        top = sorted(m.unknown_concepts, key=lambda u: -u.rows)[:5]
        console.print(
            "most used unknown concepts: "
            + ", ".join(f"{u.table}.{u.column}={u.concept_id} ({u.rows:,} rows)" for u in top)
        )


@app.command("rejects")
@handle_errors
def rejects(
    name: str = typer.Argument(..., help="Release name."),
    table: str | None = typer.Option(None, "--table", help="Only this CDM table."),
    out: Path | None = typer.Option(None, "--out", help="Write all of them (with row content) to this CSV file."),
    limit: int = typer.Option(20, "--limit", help="How many to print."),
) -> None:
    """Rows the load rejected or flagged, with the check and the reason (operators: row-level data)."""
    s = settings()
    rows = read_rejects(ReleaseStore(s).get(name), s, table=table)
    if out is not None:
        with out.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["table_name"])
            writer.writeheader()
            writer.writerows(rows)
        console.print(f"wrote {len(rows):,} row(s) to {out}")
        return
    t = Table("table", "row", "action", "reason")
    for r in rows[:limit]:
        t.add_row(str(r["table_name"]), str(r["source_row"]), str(r["action"]), str(r["reason"]))
    console.print(t)
    if len(rows) > limit:
        console.print(f"... {len(rows) - limit:,} more (use --limit or --out)")


@app.command("verify")
@handle_errors
def verify(name: str = typer.Argument(..., help="Release name.")) -> None:
    """Check every file of a release against the sha256 in its manifest."""
    problems = ReleaseStore(settings()).get(name).verify()
    if problems:
        raise HygieError(f"release {name} is damaged:\n" + "\n".join(problems))
    console.print(f"[green]release {name}: every file matches its manifest[/]")


@app.command("prepare")
@handle_errors
def prepare(name: str = typer.Argument(..., help="Release name.")) -> None:
    """Build the release's query store now (an encrypted DuckDB copy; else built on first DuckDB use)."""
    from hygie.engine import query_store

    report = query_store.build(ReleaseStore(settings()).get(name), settings())
    console.print(
        f"query store of release {name}: {report.tables} tables, {report.rows:,} rows, "
        f"{report.bytes / 1e6:,.1f} MB in {report.seconds:.1f} s"
    )


@app.command("delete")
@handle_errors
@audited("release.delete", "release:{name}")
def delete(
    name: str = typer.Argument(..., help="Release name."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a release and its results area (its wrapped data key goes with it)."""
    store = ReleaseStore(settings())
    store.get(name)
    if not yes and not typer.confirm(f"Delete release {name}? This cannot be undone."):
        raise typer.Abort()
    store.delete(name)
    console.print(f"deleted release {name}")


@app.command("build")
@handle_errors
@audited("release.build", "release:{name}")
def build(
    name: str = typer.Argument(..., help="Name of the new release."),
    vocabulary: str | None = typer.Option(None, "--vocabulary", help="Installed vocabulary (default: latest)."),
    match_threshold: float = typer.Option(
        0.95, "--match-threshold", min=0.5, max=1.0, help="Probabilistic linkage: the lowest match probability linked."
    ),
    probabilistic: bool = typer.Option(
        True, "--probabilistic/--deterministic-only", help="Run the probabilistic pass after the deterministic rules."
    ),
    quality_config: Path | None = typer.Option(
        None, "--quality-config", help="JSON of per-check overrides: {name: {threshold_pct, severity}}."
    ),
) -> None:
    """Combine every site's latest deposit into a new linked, pseudonymised release."""
    from hygie.ingest.build import build_release
    from hygie.ingest.quality import QualityConfig

    with progress() as step:
        release = build_release(
            name,
            settings(),
            vocabulary=vocabulary,
            step=step,
            probabilistic=probabilistic,
            match_threshold=match_threshold,
            quality=QualityConfig.from_file(quality_config) if quality_config else None,
        )
    m = release.manifest
    audit_note(persons=m.tables["person"].rows, deposits=len({e.origin for e in m.lineage}))
    linkage = m.linkage or {}
    console.print(
        f"[green]published release [bold]{m.name}[/][/] (#{m.sequence}): {m.tables['person'].rows:,} persons from "
        f"{linkage.get('records', 0):,} site records" + (" [yellow](SYNTHETIC)[/]" if m.synthetic else "")
    )
    for w in m.warnings:
        warn(w)


@app.command("linkage-check")
@handle_errors
def linkage_check(
    name: str = typer.Argument(..., help="A synthetic release built from deposits."),
    truth: Path = typer.Option(..., "--truth", help="Ground truth CSV (site, local_id, person_key)."),
    site: list[str] = typer.Option(..., "--site", help="CODE=SITE: a truth site code and its hub site name."),
) -> None:
    """Pairwise precision and recall of the release's linkage against a synthetic ground truth."""
    from hygie.ingest.linkage_evaluation import evaluate

    sites = dict(pair.split("=", 1) for pair in site if "=" in pair)
    if len(sites) != len(site):
        raise HygieError("--site takes CODE=SITE, e.g. --site a=site-a")
    s = settings()
    result = evaluate(ReleaseStore(s).get(name), s, truth, sites)
    console.print(
        f"precision {result['precision']:.4f}, recall {result['recall']:.4f} "
        f"({result['correct_pairs']:,} of {result['true_pairs']:,} true pairs found, "
        f"{result['predicted_pairs']:,} predicted, {result['records']:,} records)"
    )


@app.command("quality")
@handle_errors
def quality(
    name: str = typer.Argument(..., help="Release name."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    html: Path | None = typer.Option(None, "--html", help="Write an HTML report to this file."),
    all_checks: bool = typer.Option(False, "--all", help="Also list the checks that passed."),
) -> None:
    """The data-quality checks run when the release was published (DQD-style)."""
    from hygie.ingest.quality import html_report

    m = ReleaseStore(settings()).get(name).manifest
    if as_json:
        print_json(m.quality)
        return
    if html is not None:
        html.write_text(html_report(m.name, m.quality, synthetic=m.synthetic))
        console.print(f"wrote {html}")
        return
    t = Table("status", "check", "failing", "%", "threshold")
    for r in m.quality:
        if all_checks or r["status"] != "pass":
            t.add_row(str(r["status"]), str(r["name"]), f"{r['failing']:,}", str(r["percent"]), str(r["threshold_pct"]))
    console.print(t)
    passed = sum(1 for r in m.quality if r["status"] == "pass")
    console.print(f"{passed} of {len(m.quality)} checks passed")
