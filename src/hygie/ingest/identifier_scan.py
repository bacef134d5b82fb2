"""``hygie audit scan-identifiers``: prove that no identity of the deposits is stored anywhere.

Given the identity files that sites hold (which never enter ``HYGIE_HOME``), every file under ``HYGIE_HOME``
is searched: the raw bytes of every other file (manifests, logs, staging and spill leftovers; the keys folder
excepted; names only in text files, since four letters occur by chance in binary ones), and the decrypted
values of every encrypted table (releases, deposits, vocabularies). Found are reported as file,
table, column and count: the identifiers themselves are never printed.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from hygie.config import Settings
from hygie.engine.duckdb import connect, parquet_source, register_key
from hygie.errors import InputError, Problem
from hygie.identity import normalise_nir
from hygie.releases import ReleaseStore
from hygie.sql import literal

_WORD = re.compile(r"[^\W\d_]+")  # a run of letters
_OPAQUE = re.compile(r"[A-Za-z0-9+/=]{20,}")  # hashes, base64 key blobs
MIN_NAME_LENGTH = 4  # shorter names ("LI", "NG") are too common inside ordinary words and codes


@dataclass(frozen=True)
class Finding:
    file: str  # relative to HYGIE_HOME
    where: str  # "bytes" or "table.column"
    kind: str  # nir, name, postcode
    count: int


def identifiers(files: list[Path]) -> dict[str, set[str]]:
    """NIRs, names and postcodes of identity files (the site's own copies, read where they are)."""
    found: dict[str, set[str]] = {"nir": set(), "name": set(), "postcode": set()}
    for path in files:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "local_id" not in [c.lower() for c in reader.fieldnames]:
                raise InputError(Problem(path.name, "not an identity file (no local_id column)", row=0))
            for row in reader:
                row = {k.lower(): (v or "").strip() for k, v in row.items() if k}
                nir = normalise_nir(row.get("nir"))
                if nir:
                    found["nir"].add(nir)
                for field in ("family_name", "given_name"):
                    if len(row.get(field, "")) >= MIN_NAME_LENGTH:
                        found["name"].add(row[field].upper())
                if row.get("postcode"):
                    found["postcode"].add(row["postcode"])
    return found


def scan(settings: Settings, identity_files: list[Path]) -> tuple[list[Finding], int]:
    """Findings, and the number of files searched."""
    wanted = identifiers(identity_files)
    findings: list[Finding] = []
    searched = 0
    home = settings.home
    keys = home / "keys"
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        if keys in path.parents:
            continue  # key material: random bytes, no text
        searched += 1
        if path.suffix == ".parquet":
            continue  # encrypted tables: searched by value, decrypted, below
        data = path.read_bytes()
        hits = {"nir": sum(1 for v in wanted["nir"] if v.encode() in data)}
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:  # binary (spill files...): a 4-letter name occurs in random bytes by chance
            text = None
        if text is not None:
            hits["name"] = len(_names_in(text, wanted["name"]))
        for kind, count in hits.items():
            if count:
                findings.append(Finding(str(path.relative_to(home)), "bytes", kind, count))
    findings.extend(_scan_tables(settings, wanted))
    return findings, searched


def _names_in(text: str, names: set[str]) -> set[str]:
    """Names that occur as whole words: a 4-letter name inside an ordinary word or a path is no disclosure.

    Hashes and wrapped keys (hex, base64) are random letters: a name read inside one is chance, not a leak.
    """
    upper = _OPAQUE.sub(lambda m: " " if _is_opaque(m.group()) else m.group(), text).upper()
    words = set(_WORD.findall(upper))
    found = {n for n in names if n in words}
    for name in names - found:
        if not _WORD.fullmatch(name) and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", upper):
            found.add(name)  # composed names ("JEAN-PIERRE", "LE GOFF") matched with their separators
    return found


def _is_opaque(token: str) -> bool:
    return any(c.isdigit() or c in "+/=" for c in token)


def _stores(settings: Settings) -> list[ReleaseStore]:
    stores = [ReleaseStore(settings), ReleaseStore(settings, root=settings.vocabularies_dir, kind="vocabulary")]
    if settings.sites_dir.exists():
        stores += [
            ReleaseStore(settings, root=p / "deposits", kind="deposit")
            for p in sorted(settings.sites_dir.iterdir())
            if (p / "deposits").is_dir()
        ]
    return stores


def _scan_tables(settings: Settings, wanted: dict[str, set[str]]) -> list[Finding]:
    findings = []
    for store in _stores(settings):
        for release in store.list():
            con = connect(settings, allowed_dirs=[release.path])
            try:
                con.execute("CREATE TEMP TABLE _wanted (kind VARCHAR, value VARCHAR)")
                for kind, values in wanted.items():
                    if values:
                        rows = ", ".join(f"({literal(kind)}, {literal(v)})" for v in sorted(values))
                        con.execute(f"INSERT INTO _wanted VALUES {rows}")
                register_key(con, "k", release.data_key(settings))
                files = [p for p in release.path.glob("*.parquet")]
                for file in files:
                    source = parquet_source(str(file), "k")
                    text_columns = [
                        (name, kind == "JSON")
                        for name, kind in con.execute(
                            f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {source})"
                        ).fetchall()
                        if kind in ("VARCHAR", "JSON")
                    ]
                    for column, is_json in text_columns:
                        # Exact values (hash join); inside JSON records, every string value.
                        values = (
                            f'SELECT unnest(regexp_extract_all(upper(CAST("{column}" AS VARCHAR)), '
                            f'\'"([^"]*)"\', 1)) AS value FROM {source}'
                            if is_json
                            else f'SELECT upper(CAST("{column}" AS VARCHAR)) AS value FROM {source}'
                        )
                        for kind, n in con.execute(
                            f"SELECT w.kind, count(*) FROM ({values}) v JOIN _wanted w USING (value) GROUP BY 1"
                        ).fetchall():
                            rel = file.relative_to(settings.home)
                            findings.append(Finding(str(rel), f"{file.stem}.{column}", kind, n))
            finally:
                con.close()
    return findings
