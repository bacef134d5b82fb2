"""What an audit entry may say: the validator that keeps patient data out of the audit log.

The log is read by auditors and kept for years, outside the encrypted data plane, so it must never carry a
patient-level value. Every field of an entry (object, actor, details) is checked before it is written; a value
that looks like a direct identifier is refused with an error naming the field, never the value:
- a NIR (13 or 15 characters, with or without spaces, as a token on its own);
- a calendar date without a time (a date of birth looks like that; timestamps with a time are allowed);
- an e-mail address or a French phone number;
- a field named like an identity attribute (name, nir, birth date, address, postcode...);
- text too long to be a label (free text is where identities hide).
Values are strings, integers (|n| < 2**53), booleans, null, and lists or objects of them: no floats, so the
canonical JSON of an entry is the same in every language (RFC 8785 for this value domain).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from hygie.errors import HygieError

MAX_TEXT = 300  # characters in one value
MAX_ITEMS = 100  # items in one list or object
MAX_DEPTH = 3
_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
_NIR = re.compile(
    r"(?<![0-9A-Za-z])[12]\s?[0-9]{2}\s?(?:[0-9]{2}|2A|2B)\s?[0-9]{2}\s?[0-9]{3}\s?[0-9]{3}(?:\s?[0-9]{2})?(?![0-9A-Za-z])"
)
_DATE = re.compile(
    r"(?<![0-9])(?:(?:18|19|20)[0-9]{2}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12][0-9]|3[01])(?![0-9T:])"
    r"|(?:0?[1-9]|[12][0-9]|3[01])[-/.](?:0?[1-9]|1[0-2])[-/.](?:18|19|20)[0-9]{2}(?![0-9]))"
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?<![0-9A-Za-z])(?:\+33\s?|0)[1-9](?:[\s.-]?[0-9]{2}){4}(?![0-9A-Za-z])")
# Field names that announce an identity attribute (English and French), matched as words of the key.
_IDENTITY_WORDS = frozenset(
    {
        "name", "names", "surname", "firstname", "lastname", "forename", "nom", "prenom", "nir", "ssn", "insee",
        "birth", "birthdate", "dob", "naissance", "address", "adresse", "postcode", "zipcode", "zip", "email",
        "mail", "phone", "telephone", "ipp", "mrn",
    }
)  # fmt: skip


class AuditDataError(HygieError):
    """An audit entry would carry patient-like data; it was not written."""


def check_entry_fields(actor: str, action: str, obj: str, outcome: str, details: Mapping[str, Any]) -> None:
    """Raise ``AuditDataError`` when any field looks like patient data or is not a plain JSON label."""
    for field, value in (("actor", actor), ("action", action), ("object", obj), ("outcome", outcome)):
        if not isinstance(value, str) or not value:
            raise AuditDataError(f"audit field '{field}' must be a non-empty string")
        _check_text(field, value, staff=field == "actor")
    if not re.fullmatch(r"[a-z][a-z0-9_.-]{0,63}", action):
        raise AuditDataError("audit field 'action' must be a dotted lower-case name such as 'release.build'")
    _check_value("details", dict(details), 0)


def _check_value(where: str, value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise AuditDataError(f"audit {where}: nested too deeply")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) >= 2**53:
            raise AuditDataError(f"audit {where}: integer out of the portable range (give it as text)")
        return
    if isinstance(value, float):
        raise AuditDataError(f"audit {where}: floats are not allowed (give the number as text)")
    if isinstance(value, str):
        _check_text(where, value)
        return
    if isinstance(value, list | tuple):
        if len(value) > MAX_ITEMS:
            raise AuditDataError(f"audit {where}: more than {MAX_ITEMS} items (an audit entry is not a data dump)")
        for i, item in enumerate(value):
            _check_value(f"{where}[{i}]", item, depth + 1)
        return
    if isinstance(value, dict):
        if len(value) > MAX_ITEMS:
            raise AuditDataError(f"audit {where}: more than {MAX_ITEMS} fields")
        for key, item in value.items():
            if not isinstance(key, str) or not _KEY.fullmatch(key):
                raise AuditDataError(f"audit {where}: field names are lower_case identifiers, not {key!r}")
            words = set(key.split("_"))
            if words & _IDENTITY_WORDS:
                raise AuditDataError(
                    f"audit {where}.{key}: a field named like an identity attribute is refused (no patient data)"
                )
            _check_value(f"{where}.{key}", item, depth + 1)
        return
    raise AuditDataError(f"audit {where}: unsupported value type {type(value).__name__}")


def _check_text(where: str, text: str, *, staff: bool = False) -> None:
    """``staff``: the actor may be a staff e-mail address (not patient data); the other checks still apply."""
    if len(text) > MAX_TEXT:
        raise AuditDataError(f"audit {where}: text longer than {MAX_TEXT} characters (no free text)")
    if any(ord(c) < 32 for c in text):
        raise AuditDataError(f"audit {where}: control characters are not allowed")
    for kind, pattern in (("a NIR", _NIR), ("a date (of birth?)", _DATE), ("an e-mail", _EMAIL), ("a phone", _PHONE)):
        if pattern.search(text) and not (staff and pattern is _EMAIL):
            raise AuditDataError(f"audit {where}: the value looks like {kind}; patient data never enter the log")
