"""Identities: names, NIR (French national health number), postcodes, and the controlled noise of each site's copy.

NIR = sex (1) + year (2) + month (2) + department of birth (2: 01-95, 2A, 2B) + commune (3) + order (3),
then a 2-digit key = 97 - (number mod 97), where Corsica's 2A and 2B count as 19 and 18.
Names are built from short lists of the most common French names: no real person is described.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hygie.identity import nir_is_valid, nir_key  # noqa: F401 - one NIR definition, re-exported
from hygie.synth.config import NoiseConfig

FAMILY_NAMES = (
    "MARTIN",
    "BERNARD",
    "THOMAS",
    "PETIT",
    "ROBERT",
    "RICHARD",
    "DURAND",
    "DUBOIS",
    "MOREAU",
    "LAURENT",
    "SIMON",
    "MICHEL",
    "LEFEBVRE",
    "LEROY",
    "ROUX",
    "DAVID",
    "BERTRAND",
    "MOREL",
    "FOURNIER",
    "GIRARD",
    "BONNET",
    "DUPONT",
    "LAMBERT",
    "FONTAINE",
    "ROUSSEAU",
    "VINCENT",
    "MULLER",
    "LEFEVRE",
    "FAURE",
    "ANDRE",
    "MERCIER",
    "BLANC",
    "GUERIN",
    "BOYER",
    "GARNIER",
    "CHEVALIER",
    "FRANCOIS",
    "LEGRAND",
    "GAUTHIER",
    "GARCIA",
    "PERRIN",
    "ROBIN",
    "CLEMENT",
    "MORIN",
    "NICOLAS",
    "HENRY",
    "ROUSSEL",
    "MATHIEU",
    "GAUTIER",
    "MASSON",
)
MALE_NAMES = (
    "JEAN",
    "PIERRE",
    "MICHEL",
    "ANDRE",
    "PHILIPPE",
    "ALAIN",
    "NICOLAS",
    "CHRISTOPHE",
    "PATRICK",
    "DANIEL",
    "BERNARD",
    "FREDERIC",
    "LAURENT",
    "STEPHANE",
    "DAVID",
    "ERIC",
    "JULIEN",
    "SEBASTIEN",
    "THOMAS",
    "FRANCOIS",
    "LUCAS",
    "HUGO",
    "LOUIS",
    "GABRIEL",
    "ARTHUR",
    "JULES",
    "MAXIME",
    "ANTOINE",
    "PAUL",
    "JACQUES",
)
FEMALE_NAMES = (
    "MARIE",
    "NATHALIE",
    "ISABELLE",
    "SYLVIE",
    "CATHERINE",
    "FRANCOISE",
    "MARTINE",
    "CHRISTINE",
    "MONIQUE",
    "VALERIE",
    "SANDRINE",
    "SOPHIE",
    "STEPHANIE",
    "CELINE",
    "JULIE",
    "AURELIE",
    "CAROLINE",
    "CAMILLE",
    "EMMA",
    "LEA",
    "CHLOE",
    "MANON",
    "INES",
    "JADE",
    "LOUISE",
    "ALICE",
    "ANNE",
    "NICOLE",
    "JEANNE",
    "PAULINE",
)
# Departments of birth: metropolitan 01-95 without 20, plus Corsica (2A, 2B).
DEPARTMENTS = (*(f"{d:02d}" for d in range(1, 96) if d != 20), "2A", "2B")
_DEPT_KEY_NUMBER = {d: (19 if d == "2A" else 18 if d == "2B" else int(d)) for d in DEPARTMENTS}
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class Identities:
    """True identity of each person of a chunk (the sites' copies add noise)."""

    family: np.ndarray  # object (str)
    given: np.ndarray
    nir: np.ndarray
    birth_dept: np.ndarray
    residence_dept: np.ndarray
    postcode: np.ndarray


def make_identities(
    rng: np.random.Generator, female: np.ndarray, birth: np.ndarray, main_site_departments: list[tuple[str, ...]]
) -> Identities:
    n = len(female)
    family = np.array(FAMILY_NAMES, dtype=object)[rng.integers(0, len(FAMILY_NAMES), n)]
    given = np.where(
        female,
        np.array(FEMALE_NAMES, dtype=object)[rng.integers(0, len(FEMALE_NAMES), n)],
        np.array(MALE_NAMES, dtype=object)[rng.integers(0, len(MALE_NAMES), n)],
    )
    # Residence near the main site (70% its own department); birth in the residence department for 60%.
    residence = np.array(
        [
            deps[0] if u < 0.7 or len(deps) == 1 else deps[1 + int(v * (len(deps) - 1))]
            for deps, u, v in zip(main_site_departments, rng.random(n), rng.random(n), strict=True)
        ],
        dtype=object,
    )
    born_elsewhere = rng.random(n) >= 0.6
    birth_dept = np.where(
        born_elsewhere, np.array(DEPARTMENTS, dtype=object)[rng.integers(0, len(DEPARTMENTS), n)], residence
    )
    years = birth.astype("datetime64[Y]").astype(np.int64) + 1970
    months = birth.astype("datetime64[M]").astype(np.int64) % 12 + 1
    commune = rng.integers(1, 990, n)
    order = rng.integers(1, 1000, n)
    sex = np.where(female, 2, 1)
    dept_num = np.array([_DEPT_KEY_NUMBER[d] for d in birth_dept], dtype=np.int64)
    number = sex * 10**12 + (years % 100) * 10**10 + months * 10**8 + dept_num * 10**6 + commune * 10**3 + order
    key = 97 - number % 97
    nir = np.array(
        [
            f"{s}{y % 100:02d}{m:02d}{d}{c:03d}{o:03d}{k:02d}"
            for s, y, m, d, c, o, k in zip(sex, years, months, birth_dept, commune, order, key, strict=True)
        ],
        dtype=object,
    )
    # Corsican postcodes are 20xxx, whatever the department code.
    prefix = np.where(np.isin(residence, ["2A", "2B"]), "20", residence)
    postcode = np.array([f"{p}{r:03d}" for p, r in zip(prefix, rng.integers(0, 1000, n), strict=True)], dtype=object)
    return Identities(family, given, nir, birth_dept, residence, postcode)


def typo(rng: np.random.Generator, name: str) -> str:
    """One keyboard slip: substitute, delete, transpose or double a letter."""
    if len(name) < 2:
        return name + _LETTERS[int(rng.integers(0, 26))]
    i = int(rng.integers(0, len(name) - 1))
    kind = int(rng.integers(0, 4))
    if kind == 0:
        letter = _LETTERS[int(rng.integers(0, 26))]
        if letter == name[i]:
            letter = "E" if name[i] != "E" else "A"
        return name[:i] + letter + name[i + 1 :]
    if kind == 1:
        return name[:i] + name[i + 1 :]
    if kind == 2 and name[i] != name[i + 1]:
        return name[:i] + name[i + 1] + name[i] + name[i + 2 :]
    return name[:i] + name[i] + name[i:]


@dataclass
class IdentityRecords:
    """A site's copy of identities, one row per (person, site), with the noise that was applied."""

    family: np.ndarray
    given: np.ndarray
    nir: np.ndarray  # None where missing
    birth: np.ndarray  # datetime64[D]
    noise_missing_nir: np.ndarray
    noise_family_typo: np.ndarray
    noise_given_typo: np.ndarray
    noise_day_month_swap: np.ndarray
    noise_changed_family: np.ndarray


def noisy_copies(
    rng: np.random.Generator,
    truth: Identities,
    female: np.ndarray,
    birth: np.ndarray,
    idx: np.ndarray,
    noise: NoiseConfig,
) -> IdentityRecords:
    """The identity records of persons ``idx`` (repeats allowed: one per site), each with independent noise."""
    m = len(idx)
    family = truth.family[idx].copy()
    given = truth.given[idx].copy()
    nir = truth.nir[idx].copy()
    b = birth[idx].copy()
    missing = rng.random(m) < noise.missing_nir
    nir[missing] = None
    changed = (rng.random(m) < noise.changed_family_name) & female[idx]
    new_family = np.array(FAMILY_NAMES, dtype=object)[rng.integers(0, len(FAMILY_NAMES), m)]
    changed &= new_family != family
    family[changed] = new_family[changed]
    fam_typo = rng.random(m) < noise.family_name_typo
    for i in np.flatnonzero(fam_typo):
        family[i] = typo(rng, family[i])
    giv_typo = rng.random(m) < noise.given_name_typo
    for i in np.flatnonzero(giv_typo):
        given[i] = typo(rng, given[i])
    # Day/month swap, only where it gives another valid date.
    months = b.astype("datetime64[M]")
    day = (b - months).astype(np.int64) + 1
    month = months.astype(np.int64) % 12 + 1
    year = b.astype("datetime64[Y]")
    swappable = (day <= 12) & (day != month)
    # The rate is of all records: draw among the swappable ones (about 4 in 10) at the matching higher rate.
    share = max(float(swappable.mean()), 1e-9) if m else 1.0
    swap = (rng.random(m) < min(1.0, noise.day_month_swap / share)) & swappable
    swapped = year + (day - 1).astype("timedelta64[M]")
    swapped = swapped.astype("datetime64[D]") + (month - 1).astype("timedelta64[D]")
    b = np.where(swap, swapped, b)
    return IdentityRecords(family, given, nir, b, missing, fam_typo, giv_typo, swap, changed)
