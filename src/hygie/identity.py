"""Direct identifiers, defined once: the French NIR and the normalisation of names before keyed hashing.

Used by the synthetic generator (to make valid identities) and by ingestion (to check and hash them).
No function here logs or returns an identifier in a message.
"""

from __future__ import annotations

import re
import unicodedata

# Corsica: departments 2A and 2B count as 19 and 18 in the key computation.
_CORSICA = {"2A": "19", "2B": "18"}
_NIR = re.compile(r"[12][0-9]{4}(?:[0-9]{2}|2A|2B)[0-9]{6}[0-9]{2}")


def nir_key(nir13: str) -> int:
    """The 2-digit control key of a 13-character NIR body: 97 - (body mod 97)."""
    dept = nir13[5:7]
    number = int(nir13[:5] + _CORSICA.get(dept, dept) + nir13[7:])
    return 97 - number % 97


def nir_is_valid(nir: str) -> bool:
    """True when ``nir`` has the 15-character NIR structure and a correct key."""
    return bool(_NIR.fullmatch(nir)) and nir_key(nir[:13]) == int(nir[13:])


def normalise_nir(raw: str | None) -> str | None:
    """The NIR without spaces, dots or dashes, upper-case; None when absent or invalid."""
    if raw is None:
        return None
    nir = re.sub(r"[\s.\-]", "", raw).upper()
    return nir if nir and nir_is_valid(nir) else None


def normalise_name(raw: str | None) -> str | None:
    """Upper-case ASCII letters only: accents removed, spaces, hyphens and apostrophes dropped."""
    if raw is None:
        return None
    ascii_ = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Z]", "", ascii_.upper())
    return name or None


_SOUNDEX = {
    c: d
    for d, letters in {"1": "BFPV", "2": "CGJKQSXZ", "3": "DT", "4": "L", "5": "MN", "6": "R"}.items()
    for c in letters
}


def soundex(name: str | None) -> str | None:
    """Classic 4-character Soundex of a normalised name: spelling variants and most typos share it."""
    if not name:
        return None
    code, last = name[0], _SOUNDEX.get(name[0], "")
    for c in name[1:]:
        digit = _SOUNDEX.get(c, "")
        if digit and digit != last:
            code += digit
        if c not in "HW":
            last = digit
    return (code + "000")[:4]
