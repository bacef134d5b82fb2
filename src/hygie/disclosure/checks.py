"""Automated output checks for the airlock: what a file may be before a person is asked to approve it.

Pure functions over a folder of output files. Each finding names a file, a column when there is one, a number
of rows and a reason, and blocks release; values are never reported (a finding about a NIR must not carry it).

Checked: the file type (extension allowed by the policy *and* content that matches it: a Parquet file renamed
``.csv`` or a zip renamed ``.png`` is refused), the size and row count limits of the policy, column names that
name identifiers (person ids, ``*_source_value``, names, dates of birth, addresses, row-level event ids), values
shaped like a NIR (13 or 15 characters), and active content (scripts) in HTML and SVG.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hygie.disclosure.policy import DisclosurePolicy

TEXT_TYPES = frozenset({"csv", "json", "html", "svg", "txt", "md"})
NIR_SHAPE = re.compile(r"[12][0-9]{4}(?:[0-9]{2}|2[AB])[0-9]{6}(?:[0-9]{2})?")
_NIR_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])" + NIR_SHAPE.pattern + r"(?![0-9A-Za-z])")
_IDENTIFIER_NAMES = re.compile(
    r"""^(?:
        person_id|subject_id|patient_id|patient|person_source_value|nir|nss|ssn|ins|ipp|mrn
      | .*_source_value
      | family_name|given_name|first_name|last_name|surname|birth_name|maiden_name|nom|prenom|nom_naissance
      | full_name|patient_name
      | (?:date_of_|day_of_|month_of_)?birth(?:_date|_datetime|day)?|date_of_birth|dob|birth_date|date_naissance
      | address(?:_\d)?|street|phone(?:_number)?|telephone|email|e_mail|zip|zip_code|postcode|postal_code
      | .*_(?:occurrence|exposure|detail|era)_id|visit_detail_id|measurement_id|observation_id|note_id
      | specimen_id|episode_id|provider_id|payer_plan_period_id|observation_period_id|death_id
    )$""",
    re.VERBOSE,
)
_ACTIVE = re.compile(r"<\s*script\b|<[^>]*\son[a-z]+\s*=|javascript:", re.IGNORECASE)  # scripts, handlers
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PAR1", "parquet"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"PK\x03\x04", "zip archive"),
    (b"PK\x05\x06", "zip archive"),
    (b"SQLite format 3\x00", "SQLite database"),
    (b"\x1f\x8b", "gzip archive"),
    (b"%PDF", "PDF"),
    (b"\x7fELF", "executable"),
    (b"MZ", "executable"),
    (b"ARROW1", "Arrow file"),
    (b"DUCK", "DuckDB database"),
    (b"\x80\x04", "Python pickle"),
    (b"\x80\x05", "Python pickle"),
    (b"RDX", "R data"),
)


@dataclass(frozen=True)
class Finding:
    """A reason the file cannot leave as it is (never a value from the file)."""

    file: str  # relative to the folder checked
    reason: str
    column: str | None = None
    rows: int | None = None  # the file's rows, or the rows concerned when the reason is about values


def check_folder(folder: Path, policy: DisclosurePolicy | None = None) -> list[Finding]:
    """Every finding for every file below ``folder`` (empty: the automated checks pass)."""
    policy = policy or DisclosurePolicy()
    if not folder.is_dir():
        return [Finding(folder.name, "not a folder of output files")]
    findings: list[Finding] = []
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            findings.append(Finding(name, "symbolic link: outputs are plain files"))
        elif path.is_file():
            findings.extend(check_file(path, name, policy))
    return findings


def is_identifier_name(column: str) -> bool:
    """True when a column's name says it holds a direct identifier or a row-level id."""
    return bool(_IDENTIFIER_NAMES.match(re.sub(r"[^a-z0-9]+", "_", column.strip().lower()).strip("_")))


def sniff(head: bytes) -> str | None:
    """The kind of binary content ``head`` starts with, or None when it may be text."""
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    return "binary" if b"\x00" in head else None


def check_file(path: Path, name: str, policy: DisclosurePolicy) -> list[Finding]:
    """The findings for one file (``name``: how findings name it)."""
    extension = path.suffix.lower().lstrip(".")
    size = path.stat().st_size
    if extension not in policy.file_types:
        allowed = ", ".join(policy.file_types)
        return [Finding(name, f"file type '.{extension or '(none)'}' is not allowed (allowed: {allowed})")]
    findings = []
    if size > policy.max_file_bytes:
        findings.append(Finding(name, f"{size} bytes: more than the limit of {policy.max_file_bytes}"))
        return findings  # not read further: the size alone blocks it
    data = path.read_bytes()
    kind = sniff(data[:4096])
    expected = extension if extension in ("parquet", "png") else None
    if kind != expected:
        what = kind or "text"
        return [*findings, Finding(name, f"content is {what}, not what '.{extension}' promises")]
    if extension == "parquet":
        findings.extend(_check_parquet(data, name, policy))
    elif extension in TEXT_TYPES:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return [*findings, Finding(name, "not UTF-8 text")]
        findings.extend(_check_text(text, extension, name, policy))
    return findings


def _check_parquet(data: bytes, name: str, policy: DisclosurePolicy) -> list[Finding]:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError):
        return [Finding(name, "unreadable Parquet file (encrypted or damaged)")]
    columns = {c: table.column(c).to_pylist() for c in table.column_names}
    return _check_columns(columns, table.num_rows, name, policy)


def _check_text(text: str, extension: str, name: str, policy: DisclosurePolicy) -> list[Finding]:
    if extension == "csv":
        try:
            rows = list(csv.reader(io.StringIO(text)))
        except csv.Error as e:
            return [Finding(name, f"unreadable CSV ({e})")]
        if not rows:
            return []
        header, body = rows[0], rows[1:]
        columns = {c: [r[j] if j < len(r) else None for r in body] for j, c in enumerate(header)}
        return _check_columns(columns, len(body), name, policy)
    if extension == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            return [Finding(name, f"not valid JSON (line {e.lineno})")]
        return _check_json(data, name, policy)
    findings = []
    if extension in ("html", "svg") and _ACTIVE.search(text):
        findings.append(Finding(name, "active content (script): outputs are static"))
    if extension == "svg" and "<svg" not in text:
        findings.append(Finding(name, "content is not SVG"))
    lines = sum(1 for line in text.splitlines() if _NIR_IN_TEXT.search(line))
    if lines:
        findings.append(Finding(name, "values shaped like a NIR (13 or 15 characters)", rows=lines))
    rows = text.count("\n")
    if rows > policy.max_rows:
        findings.append(Finding(name, f"{rows} lines: more than the limit of {policy.max_rows}", rows=rows))
    return findings


def _check_json(data: Any, name: str, policy: DisclosurePolicy) -> list[Finding]:
    """JSON: keys anywhere are column names; records in the longest list are rows."""
    findings = []
    keys: dict[str, int] = {}
    nir_values: dict[str, int] = {}
    longest = 0
    for path, key, value in _walk(data):
        if key is not None:
            keys[key] = keys.get(key, 0) + 1
        if isinstance(value, list):
            longest = max(longest, len(value))
        elif isinstance(value, str | int) and not isinstance(value, bool) and NIR_SHAPE.fullmatch(str(value).strip()):
            nir_values[path] = nir_values.get(path, 0) + 1
    for key, count in keys.items():
        if is_identifier_name(key):
            findings.append(Finding(name, "column names an identifier", column=key, rows=count))
    for path, count in nir_values.items():
        findings.append(Finding(name, "values shaped like a NIR (13 or 15 characters)", column=path, rows=count))
    if longest > policy.max_rows:
        findings.append(Finding(name, f"{longest} rows: more than the limit of {policy.max_rows}", rows=longest))
    return findings


def _walk(value: Any, path: str = "$", key: str | None = None) -> Iterator[tuple[str, str | None, Any]]:
    yield path, key, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}", str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v, f"{path}[]")


def _check_columns(columns: dict[str, Iterable[Any]], rows: int, name: str, policy: DisclosurePolicy) -> list[Finding]:
    findings = []
    if rows > policy.max_rows:
        findings.append(Finding(name, f"{rows} rows: more than the limit of {policy.max_rows}", rows=rows))
    for column, values in columns.items():
        if is_identifier_name(column):
            findings.append(Finding(name, "column names an identifier", column=column, rows=rows))
            continue
        shaped = sum(
            1
            for v in values
            if isinstance(v, str | int) and not isinstance(v, bool) and NIR_SHAPE.fullmatch(str(v).strip())
        )
        if shaped:
            findings.append(Finding(name, "values shaped like a NIR (13 or 15 characters)", column=column, rows=shaped))
    return findings
