"""``hygie pseudonymise``: hashing identities where they are, with a key held apart (``hygie keys``
``new-linkage-key`` makes one)."""

from __future__ import annotations

from pathlib import Path

import typer

from hygie.cli.output import console, handle_errors
from hygie.ingest.pseudonymise import LinkageKey, pseudonymise_file


def register(root: typer.Typer) -> None:
    root.command("pseudonymise")(pseudonymise)


@handle_errors
def pseudonymise(
    identities: Path = typer.Argument(
        ..., help="Identity CSV: local_id, nir, family_name, given_name, birth_date (YYYY-MM-DD), sex (M/F), postcode."
    ),
    key: Path = typer.Option(..., "--key", help="Linkage key file (from a trusted third party)."),
    out: Path = typer.Option(..., "--out", help="Token CSV to write (must not exist)."),
) -> None:
    """Replace identities by keyed hashes (run at the site: identities never reach the hub)."""
    report = pseudonymise_file(identities, out, LinkageKey.load(key))
    console.print(f"wrote {report.records:,} token record(s) to {out}")
    assert report.missing is not None
    for field, n in sorted(report.missing.items()):
        console.print(f"  {field}: absent or invalid in {n:,} record(s)")
    if report.invalid_nir:
        console.print(
            f"  [yellow]{report.invalid_nir:,} NIR value(s) had a wrong structure or key: hashed as absent[/]"
        )
