"""``hygie pseudonymise`` and ``hygie keys``: hashing identities where they are, with a key held apart."""

from __future__ import annotations

from pathlib import Path

import typer

from hygie.cli.output import console, handle_errors
from hygie.ingest.pseudonymise import LinkageKey, pseudonymise_file

keys = typer.Typer(help="Keys for pseudonymisation (held by the hub or a trusted third party).", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.command("pseudonymise")(pseudonymise)
    root.add_typer(keys, name="keys")


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


@keys.command("new-linkage-key")
@handle_errors
def new_linkage_key(
    path: Path = typer.Argument(..., help="Where to write the key (mode 0600; never overwritten)."),
) -> None:
    """Create a linkage key. Give the same key to every site that must be linked; keep it off the hub."""
    key = LinkageKey.generate(path)
    console.print(f"wrote linkage key {key.key_id} to {path}")
