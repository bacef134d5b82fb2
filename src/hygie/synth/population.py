"""Persons of one chunk: sex, birth date (French age/sex pyramid), follow-up, death, and the sites they attend.

Pure functions of a ``numpy.random.Generator``; arrays are indexed by the person's position in the chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hygie.synth.config import SITES, STUDY_END, STUDY_START, SynthConfig

DAYS_PER_YEAR = 365.25
NO_SITE = -1
MAX_SITES = 3

# France, 1 January 2015 (INSEE, thousands, rounded): 5-year age bands, men then women. The two bands of
# negative age are the children born during the study window (about 800,000 births a year).
_BANDS = np.arange(-10, 100, 5)
_MEN = np.array(
    [
        2000,
        2000,
        2000,
        2120,
        2090,
        2050,
        1880,
        1880,
        1960,
        2030,
        2200,
        2230,
        2160,
        2030,
        1930,
        1750,
        1140,
        960,
        760,
        430,
        140,
        25,
    ],
    dtype=float,
)
_WOMEN = np.array(
    [
        1910,
        1910,
        1910,
        2030,
        1990,
        1960,
        1850,
        1930,
        2040,
        2090,
        2230,
        2280,
        2250,
        2150,
        2080,
        1930,
        1330,
        1230,
        1130,
        830,
        380,
        100,
    ],
    dtype=float,
)

# Gompertz mortality: hazard per year = exp(A + B * age), times 0.6 for women.
_GOMPERTZ_A, _GOMPERTZ_B, _WOMEN_MORTALITY = -10.4, 0.095, 0.6
_ALREADY_FOLLOWED = 0.55  # persons already followed on 1 January 2015
_LOST = 0.10  # persons lost to follow-up before the end of the window


@dataclass
class Persons:
    pid: np.ndarray  # global person number (0..patients-1), int64
    female: np.ndarray  # bool
    birth: np.ndarray  # datetime64[D]
    entry: np.ndarray  # first day of follow-up, datetime64[D]
    exit: np.ndarray  # last day of follow-up (inclusive), datetime64[D]
    died: np.ndarray  # bool: exit is the date of death
    sites: np.ndarray  # (n, MAX_SITES) int8 site index or NO_SITE; column 0 is the main site
    site_entry: np.ndarray  # (n, MAX_SITES) datetime64[D]: first day the person is seen at that site

    def __len__(self) -> int:
        return len(self.pid)

    def age_at(self, when: np.ndarray) -> np.ndarray:
        """Exact age in years (float) at ``when``."""
        return (when - self.birth).astype(np.float64) / DAYS_PER_YEAR


def demographics(rng: np.random.Generator, first_pid: int, n: int) -> Persons:
    """Sex, birth date and follow-up of ``n`` persons; sites are assigned later (they depend on diagnoses)."""
    weights = np.concatenate([_MEN, _WOMEN])
    band = rng.choice(len(weights), size=n, p=weights / weights.sum())
    female = band >= len(_MEN)
    low = _BANDS[band % len(_MEN)]
    age_at_start = np.maximum(low + rng.random(n) * 5.0, -9.9)  # born by the end of 2024
    birth = STUDY_START - np.round(age_at_start * DAYS_PER_YEAR).astype("timedelta64[D]")
    window = (STUDY_END - STUDY_START).astype(np.int64)
    late = rng.random(n) >= _ALREADY_FOLLOWED
    entry = np.where(late, STUDY_START + (rng.random(n) * window).astype("timedelta64[D]"), STUDY_START)
    entry = np.maximum(entry, birth)
    # Time to death from entry (Gompertz, inverted cumulative hazard).
    age_entry = (entry - birth).astype(np.float64) / DAYS_PER_YEAR
    a = np.exp(_GOMPERTZ_A + _GOMPERTZ_B * age_entry) * np.where(female, _WOMEN_MORTALITY, 1.0)
    years = np.log1p(rng.exponential(size=n) * _GOMPERTZ_B / a) / _GOMPERTZ_B
    death = entry + np.minimum(years * DAYS_PER_YEAR, 50_000).astype("timedelta64[D]")
    lost = np.where(
        rng.random(n) < _LOST,
        entry + (rng.random(n) * (STUDY_END - entry).astype(np.int64)).astype("timedelta64[D]"),
        STUDY_END,
    )
    exit_ = np.minimum(np.minimum(death, lost), STUDY_END)
    died = death <= np.minimum(lost, STUDY_END)
    sites = np.full((n, MAX_SITES), NO_SITE, dtype=np.int8)
    site_entry = np.repeat(entry[:, None], MAX_SITES, axis=1)
    return Persons(
        np.arange(first_pid, first_pid + n, dtype=np.int64), female, birth, entry, exit_, died, sites, site_entry
    )


# Main-site weights: persons with cancer go mostly to the cancer centre (site b).
_MAIN_SITE = np.array([0.38, 0.04, 0.29, 0.29])
_MAIN_SITE_CANCER = np.array([0.15, 0.60, 0.12, 0.13])


def assign_sites(rng: np.random.Generator, persons: Persons, cancer: np.ndarray, config: SynthConfig) -> None:
    """Choose each person's sites (1 to 3, distinct) and the day each extra site first sees them."""
    n = len(persons)
    w = np.where(cancer[:, None], _MAIN_SITE_CANCER[None, :], _MAIN_SITE[None, :])
    # Weighted sampling without replacement: sort exponential keys scaled by the weights.
    keys = rng.exponential(size=(n, len(SITES))) / w
    order = np.argsort(keys, axis=1).astype(np.int8)
    u = rng.random(n)
    count = np.where(u < config.three_sites, 3, np.where(u < config.three_sites + config.two_sites, 2, 1))
    for k in range(MAX_SITES):
        persons.sites[:, k] = np.where(count > k, order[:, k], NO_SITE)
    span = (persons.exit - persons.entry).astype(np.int64)
    for k in range(1, MAX_SITES):
        offset = (rng.random(n) * span * 0.7).astype("timedelta64[D]")
        persons.site_entry[:, k] = persons.entry + offset


def site_of_events(rng: np.random.Generator, persons: Persons, person_idx: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """The site recording each event: the main site, or another site already seeing the person (weights 1 for the
    main site and 0.6 for the others together: 3 events in 8 once a second site is active)."""
    sites = persons.sites[person_idx]
    active = (sites != NO_SITE) & (persons.site_entry[person_idx] <= dates[:, None])
    active[:, 0] = True
    others = active[:, 1:].sum(axis=1)
    u = rng.random(len(dates))
    go_other = (others > 0) & (u < 0.6 / (1.0 + 0.6))
    second = rng.random(len(dates))
    # Among the active other sites, pick one uniformly.
    which = np.floor(second * np.maximum(others, 1)).astype(np.int64)
    cum = np.cumsum(active[:, 1:], axis=1)
    chosen = 1 + np.argmax(cum > which[:, None], axis=1)
    pick = np.where(go_other, chosen, 0)
    return sites[np.arange(len(dates)), pick]
