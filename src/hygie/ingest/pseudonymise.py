"""Keyed hashing of identities into linkage tokens, so that identities stop at the site or at ingestion.

An identity record (local id, NIR, names, birth date, sex, postcode) becomes a token record: each
quasi-identifier is replaced by HMAC-SHA256(linkage key, "<field>|<normalised value>"), truncated to 128
bits. Equal values give equal tokens under the same key, so the hub can link on tokens without ever seeing
identities; without the key a token reveals nothing (no dictionary attack on birth dates or postcodes).
Tokens for phonetic codes and for the birth date with day and month swapped let linkage tolerate typos and
swaps. See docs/decisions/0006-pseudonymisation-and-linkage-tokens.md.

The linkage key is held by whoever hashes: a trusted third party's key given to every site
(``hygie pseudonymise``), or the hub's own (``HYGIE_HOME/keys/linkage.key``) when identities reach the hub.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hygie.errors import HygieError, InputError, Problem
from hygie.identity import normalise_name, normalise_nir, soundex

IDENTITY_COLUMNS = ("local_id", "nir", "family_name", "given_name", "birth_date", "sex", "postcode")
REQUIRED_IDENTITY_COLUMNS = ("local_id", "birth_date", "sex")
TOKEN_COLUMNS = (
    "local_id_token",
    "nir_token",
    "birth_date_token",
    "birth_date_swapped_token",
    "birth_year_token",
    "sex",
    "family_name_token",
    "family_name_soundex_token",
    "given_name_token",
    "given_name_soundex_token",
    "postcode_token",
)
KEY_BYTES = 32
TOKEN_HEX = 32  # 128 bits: collisions are negligible at national scale
_BLOCK = 64  # SHA-256's block size, in bytes


class LinkageKey:
    """The secret of keyed hashing. Its id (a fingerprint) is recorded with tokens, never the key itself."""

    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES:
            raise HygieError(f"a linkage key needs at least {KEY_BYTES} bytes, found {len(key)}")
        self._key = key
        # HMAC-SHA256 (RFC 2104) from its two keyed SHA-256 states, computed once: a token copies them, which
        # costs half of copying an ``hmac`` object (its Python wrapper). Equal to ``hmac.new`` (tests pin it).
        block = (hashlib.sha256(key).digest() if len(key) > _BLOCK else key).ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self.key_id = hashlib.sha256(b"hygie-linkage-key-id" + key).hexdigest()[:16]

    @classmethod
    def generate(cls, path: Path) -> LinkageKey:
        """Write a new random key to ``path`` (mode 0600); refuses to overwrite an existing key."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise HygieError(f"{path} already exists: a linkage key is never overwritten") from None
        key = os.urandom(KEY_BYTES)
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64encode(key) + b"\n")
        return cls(key)

    @classmethod
    def load(cls, path: Path) -> LinkageKey:
        try:
            raw = path.read_bytes().strip()
        except OSError as e:
            raise HygieError(f"{path}: cannot read the linkage key ({e.strerror})") from None
        try:
            return cls(base64.b64decode(raw, validate=True))
        except ValueError:
            raise HygieError(f"{path}: not a linkage key (expected base64 text)") from None

    def token(self, field: str, value: str | None) -> str | None:
        if value is None:
            return None
        inner = self._inner.copy()
        inner.update(f"{field}|{value}".encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()[:TOKEN_HEX]


@dataclass
class TokenReport:
    """What happened to the identities: counts only, never values."""

    records: int = 0
    missing: Counter[str] | None = None  # field -> records where it was absent or invalid
    invalid_nir: int = 0

    def __post_init__(self) -> None:
        self.missing = self.missing or Counter()


def _birth_date(raw: str | None) -> dt.date | None:
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw.strip())
    except ValueError:
        return None


def _swapped(d: dt.date) -> dt.date | None:
    """The date with day and month exchanged, when that is another valid date (a frequent entry error)."""
    if d.day > 12 or d.day == d.month:
        return None
    return dt.date(d.year, d.day, d.month)


def _sex(raw: str | None) -> str | None:
    value = (raw or "").strip().upper()[:1]
    return value if value in ("M", "F") else None


# Values shared by many records (dates, years, names, postcodes) are hashed once per run: a bounded memo per
# field (tens of MB at most), so that unique values (local ids, NIRs) never fill memory. Tokens are the same
# with or without it.
MEMO_LIMIT = 200_000


class _Memo:
    """``fn(value)`` remembered for up to MEMO_LIMIT distinct values; later values are computed each time."""

    def __init__(self, fn: Callable[[str], tuple]) -> None:
        self._fn = fn
        self._seen: dict[str, tuple] = {}

    def __call__(self, value: str) -> tuple:
        found = self._seen.get(value)
        if found is None:
            found = self._fn(value)
            if len(self._seen) < MEMO_LIMIT:
                self._seen[value] = found
        return found


def _birth_tokens(key: LinkageKey, raw: str) -> tuple[str | None, str | None, str | None]:
    """Tokens of a birth date, of its day/month swap and of its year (None when invalid or not applicable)."""
    birth = _birth_date(raw)
    if birth is None:
        return (None, None, None)
    swapped = _swapped(birth)
    return (
        key.token("birth_date", birth.isoformat()),
        key.token("birth_date", swapped.isoformat() if swapped else None),
        key.token("birth_year", str(birth.year)),
    )


def _name_tokens(key: LinkageKey, field: str, raw: str) -> tuple[str | None, str | None]:
    """Tokens of a normalised name and of its Soundex code."""
    name = normalise_name(raw)
    return (key.token(field, name), key.token(f"{field}_soundex", soundex(name)))


def tokenise(records: Iterable[dict[str, str | None]], key: LinkageKey, report: TokenReport) -> Iterator[dict]:
    """Token records for identity records (dicts with IDENTITY_COLUMNS); pure apart from ``report``."""
    assert report.missing is not None
    births = _Memo(lambda raw: _birth_tokens(key, raw))
    families = _Memo(lambda raw: _name_tokens(key, "family_name", raw))
    givens = _Memo(lambda raw: _name_tokens(key, "given_name", raw))
    postcodes = _Memo(lambda value: (key.token("postcode", value),))
    for r in records:
        report.records += 1
        raw_nir = (r.get("nir") or "").strip() or None
        nir = normalise_nir(raw_nir)
        if raw_nir and nir is None:
            report.invalid_nir += 1
        raw_birth = r.get("birth_date")
        birth, swapped, year = births(raw_birth) if raw_birth else (None, None, None)
        raw_family, raw_given = r.get("family_name"), r.get("given_name")
        family, family_soundex = families(raw_family) if raw_family is not None else (None, None)
        given, given_soundex = givens(raw_given) if raw_given is not None else (None, None)
        postcode = (r.get("postcode") or "").strip() or None
        local_id = (r.get("local_id") or "").strip() or None
        values = {
            "local_id_token": key.token("local_id", local_id),
            "nir_token": key.token("nir", nir),
            "birth_date_token": birth,
            "birth_date_swapped_token": swapped,
            "birth_year_token": year,
            "sex": _sex(r.get("sex")),
            "family_name_token": family,
            "family_name_soundex_token": family_soundex,
            "given_name_token": given,
            "given_name_soundex_token": given_soundex,
            "postcode_token": postcodes(postcode)[0] if postcode else None,
        }
        for name in (
            "local_id_token",
            "nir_token",
            "birth_date_token",
            "sex",
            "family_name_token",
            "given_name_token",
            "postcode_token",
        ):
            if values[name] is None:
                report.missing[name.removesuffix("_token")] += 1
        yield values


def pseudonymise_file(identities: Path, out: Path, key: LinkageKey) -> TokenReport:
    """Hash an identity CSV into a token CSV. The output holds no identifier; errors name rows, not values."""
    if out.exists():
        raise HygieError(f"{out} already exists; choose another output file")
    try:
        f = identities.open(encoding="utf-8-sig", newline="")
    except OSError as e:
        raise InputError(Problem(identities.name, f"cannot be read ({e.strerror})")) from None
    with f:
        reader = csv.DictReader(f)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED_IDENTITY_COLUMNS if c not in columns]
        unknown = [c for c in columns if c not in IDENTITY_COLUMNS]
        problems = []
        if missing:
            problems.append(Problem(identities.name, f"required column(s) missing: {', '.join(missing)}", row=0))
        if unknown:
            problems.append(Problem(identities.name, f"unknown column(s): {', '.join(unknown)}", row=0))
        if problems:
            raise InputError(problems)
        reader.fieldnames = columns
        report = TokenReport()
        partial = out.with_name(out.name + ".partial")
        try:
            with partial.open("w", newline="") as g:
                writer = csv.DictWriter(g, fieldnames=[*TOKEN_COLUMNS, "key_id"])
                writer.writeheader()
                for tokens in tokenise(_checked(reader, identities.name), key, report):
                    writer.writerow({**tokens, "key_id": key.key_id})
            os.replace(partial, out)  # the token file appears whole or not at all
        finally:
            partial.unlink(missing_ok=True)
    return report


def _checked(reader: csv.DictReader, file: str) -> Iterator[dict[str, str | None]]:
    for i, row in enumerate(reader, start=1):
        if None in row or any(v is None for v in row.values()):
            raise InputError(Problem(file, "wrong number of fields", row=i))
        if not (row.get("local_id") or "").strip():
            raise InputError(Problem(file, "required value is missing", row=i, column="local_id"))
        yield row
