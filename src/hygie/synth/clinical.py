"""Clinical events of one chunk of persons: diagnoses, visits, drugs, labs, procedures, deaths.

Everything is generated at the person level first (onset dates from planted age/sex hazards, NSAID new users
with a planted hazard ratio), then turned into records, each recorded at one of the sites the person attends.
All functions are vectorised over persons or records and pure given the ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hygie.synth.config import AGE_GROUPS, CHUNK_PERSONS, SITES, SynthConfig
from hygie.synth.identities import Identities, make_identities
from hygie.synth.population import (
    DAYS_PER_YEAR,
    MAX_SITES,
    NO_SITE,
    Persons,
    assign_sites,
    demographics,
    site_of_events,
)
from hygie.synth.vocabulary import CODE_INDEX

NAT = np.datetime64("NaT", "D")
CHRONIC = ("t2d", "hypertension", "af", "ckd")
CANCERS = ("breast_cancer", "prostate_cancer", "lung_cancer", "colon_cancer")
ACUTE = ("mi", "stroke", "aki", "gi_bleed")  # outcomes: an emergency visit then an inpatient stay
COMORBIDITIES = CHRONIC  # counted at NSAID initiation (confounders of the planted hazard ratio)
NSAIDS = ("celecoxib", "diclofenac", "ibuprofen")
VISIT_KINDS = ("OP", "IP", "ER")
OP, IP, ER = 0, 1, 2
FILL_DAYS = 30


Records = dict[str, np.ndarray]


def concat(parts: list[Records]) -> Records:
    keys = parts[0].keys()
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def take(records: Records, mask: np.ndarray) -> Records:
    return {k: v[mask] for k, v in records.items()}


@dataclass
class NsaidUsers:
    """New users of an NSAID: the cohort of the planted hazard ratio (one row per user)."""

    person: np.ndarray
    drug: np.ndarray  # index into NSAIDS
    index_date: np.ndarray
    age: np.ndarray
    comorbidities: np.ndarray
    tar_days: np.ndarray  # days at risk in the year after initiation (shorter when follow-up ends)
    event_day: np.ndarray  # day of GI bleeding after initiation, -1 if none in the time at risk
    prior_bleed: np.ndarray  # a GI bleeding before initiation (excluded by a new-user design)


@dataclass
class Chunk:
    index: int
    persons: Persons
    identities: Identities
    onsets: dict[str, np.ndarray]  # first occurrence per condition (NaT if none); prevalent ones at entry
    prevalent: dict[str, np.ndarray]  # bool: the condition was already there at entry
    nsaid: NsaidUsers
    visits: Records = field(default_factory=dict)  # person, site, start, end, kind
    conditions: Records = field(default_factory=dict)  # person, site, date, code, visit
    drugs: Records = field(default_factory=dict)  # person, site, start, end, code, admin, days, quantity, visit
    measurements: Records = field(default_factory=dict)  # person, site, date, code, value, visit
    procedures: Records = field(default_factory=dict)  # person, site, date, code, visit
    deaths: Records = field(default_factory=dict)  # person, site, date
    periods: Records = field(default_factory=dict)  # person, site, start, end

    def rows(self) -> int:
        return sum(
            len(t["person"])
            for t in (
                self.visits,
                self.conditions,
                self.drugs,
                self.measurements,
                self.procedures,
                self.deaths,
                self.periods,
            )
        )


def _days(x: np.ndarray | float) -> np.ndarray:
    return np.asarray(np.round(x), dtype=np.int64).astype("timedelta64[D]")


def first_event(
    rng: np.random.Generator,
    persons: Persons,
    rates: dict[str, tuple[float, ...]],
    start: np.ndarray,
    end: np.ndarray,
) -> np.ndarray:
    """First event in [start, end] of a hazard constant within each age group (per 100,000 person-years by sex).

    Exact: the exponential waiting time is drawn afresh in each age group crossed (memorylessness).
    """
    n = len(persons)
    out = np.full(n, NAT)
    found = np.zeros(n, dtype=bool)
    stop = end + np.timedelta64(1, "D")
    for k, (low, high) in enumerate(AGE_GROUPS):
        rate = np.where(persons.female, rates["F"][k], rates["M"][k]) / 1e5 / DAYS_PER_YEAR
        seg_start = np.maximum(start, persons.birth + _days(low * DAYS_PER_YEAR))
        seg_end = np.minimum(stop, persons.birth + _days(high * DAYS_PER_YEAR))
        length = (seg_end - seg_start).astype(np.int64)
        wait = rng.exponential(size=n) / np.maximum(rate, 1e-300)
        hit = ~found & (length > 0) & (wait < length)
        out[hit] = seg_start[hit] + np.floor(wait[hit]).astype(np.int64).astype("timedelta64[D]")
        found |= hit
    return out


def _cumulative_hazard(persons: Persons, rates: dict[str, tuple[float, ...]], age: np.ndarray) -> np.ndarray:
    h = np.zeros(len(age))
    for k, (low, high) in enumerate(AGE_GROUPS):
        rate = np.where(persons.female, rates["F"][k], rates["M"][k]) / 1e5
        h += rate * np.clip(age - low, 0, high - low)
    return h


def expand(starts: np.ndarray, counts: np.ndarray, step_days: int) -> tuple[np.ndarray, np.ndarray]:
    """Repeat each start ``counts`` times, ``step_days`` apart: (index of the start, date)."""
    idx = np.repeat(np.arange(len(starts)), counts)
    offset = np.arange(len(idx)) - np.repeat(np.cumsum(counts) - counts, counts)
    return idx, starts[idx] + (offset * step_days).astype("timedelta64[D]")


def uniform_dates(rng: np.random.Generator, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    span = (end - start).astype(np.int64) + 1
    return start + np.floor(rng.random(len(start)) * span).astype(np.int64).astype("timedelta64[D]")


def generate_chunk(config: SynthConfig, index: int) -> Chunk:
    """Chunk ``index`` of the population: persons ``index * CHUNK_PERSONS`` onwards, from its own seeded stream."""
    rng = np.random.default_rng([config.seed, index])
    first = index * CHUNK_PERSONS
    n = min(CHUNK_PERSONS, config.patients - first)
    persons = demographics(rng, first, n)
    age_entry = persons.age_at(persons.entry)

    onsets: dict[str, np.ndarray] = {}
    prevalent: dict[str, np.ndarray] = {}
    for key in (*CHRONIC, *CANCERS):
        rates = config.incidence[key]
        prev = rng.random(n) < 1.0 - np.exp(-_cumulative_hazard(persons, rates, age_entry))
        incident = first_event(rng, persons, rates, persons.entry, persons.exit)
        onsets[key] = np.where(prev, persons.entry, incident)
        prevalent[key] = prev
    for key in ACUTE:
        onsets[key] = first_event(rng, persons, config.incidence[key], persons.entry, persons.exit)
        prevalent[key] = np.zeros(n, dtype=bool)

    cancer = np.zeros(n, dtype=bool)
    for key in CANCERS:
        cancer |= ~np.isnat(onsets[key])
    assign_sites(rng, persons, cancer, config)
    identities = make_identities(
        rng, persons.female, persons.birth, [SITES[s].departments for s in persons.sites[:, 0]]
    )
    nsaid, gi_dates, gi_person = _nsaid_users(rng, persons, onsets, config)
    chunk = Chunk(index, persons, identities, onsets, prevalent, nsaid)
    _clinical_records(rng, chunk, config, gi_person, gi_dates)
    return chunk


def _nsaid_users(
    rng: np.random.Generator, persons: Persons, onsets: dict[str, np.ndarray], config: SynthConfig
) -> tuple[NsaidUsers, np.ndarray, np.ndarray]:
    """NSAID new users and the GI bleeding events of everyone (background, then the planted time at risk)."""
    n = len(persons)
    one_year = np.timedelta64(365, "D")
    eligible = (persons.exit - persons.entry) > one_year
    earliest = np.maximum(persons.entry + one_year, persons.birth + _days(18 * DAYS_PER_YEAR))
    eligible &= earliest < persons.exit
    user = eligible & (rng.random(n) < config.nsaid_users)
    who = np.flatnonzero(user)
    index_date = uniform_dates(rng, earliest[who], persons.exit[who])
    age = (index_date - persons.birth[who]).astype(np.float64) / DAYS_PER_YEAR
    comorb = np.zeros(len(who), dtype=np.int64)
    for key in COMORBIDITIES:
        o = onsets[key][who]
        comorb += (~np.isnat(o) & (o <= index_date)).astype(np.int64)
    # Channelling: celecoxib (COX-2 selective) goes to older, more comorbid patients.
    ibuprofen = rng.random(len(who)) < 0.3
    logit = -0.5 + 0.3 * (age - 60.0) / 10.0 + 0.4 * comorb
    celecoxib = rng.random(len(who)) < 1.0 / (1.0 + np.exp(-logit))
    drug = np.where(ibuprofen, 2, np.where(celecoxib, 0, 1))
    hr = {t.target: t.hazard_ratio for t in config.hazard_ratios if t.outcome == "gi_bleed"}
    drug_hr = np.array([hr.get(d, 1.0) for d in NSAIDS])[drug]
    per_day = (
        config.gi_bleed_tar_base
        / DAYS_PER_YEAR
        * np.exp(config.gi_bleed_age_per_decade * (age - 60.0) / 10.0 + config.gi_bleed_comorbidity * comorb)
        * drug_hr
    )
    tar_days = np.minimum(365, (persons.exit[who] - index_date).astype(np.int64) + 1)
    wait = rng.exponential(size=len(who)) / per_day
    event = wait < tar_days
    event_day = np.where(event, np.floor(wait).astype(np.int64), -1)
    # Background GI bleeding outside the time at risk; within it, only the planted hazard applies.
    background = onsets["gi_bleed"].copy()
    bg_who = background[who]
    in_tar = ~np.isnat(bg_who) & (bg_who >= index_date) & (bg_who < index_date + tar_days.astype("timedelta64[D]"))
    bg_who[in_tar] = NAT
    background[who] = bg_who
    prior = ~np.isnat(bg_who) & (bg_who < index_date)
    gi_person = np.concatenate([np.flatnonzero(~np.isnat(background)), who[event]])
    gi_dates = np.concatenate(
        [background[~np.isnat(background)], index_date[event] + event_day[event].astype("timedelta64[D]")]
    )
    users = NsaidUsers(who, drug, index_date, age, comorb, tar_days, event_day, prior)
    return users, gi_dates, gi_person


def _visit_records(
    rng: np.random.Generator,
    persons: Persons,
    person: np.ndarray,
    date: np.ndarray,
    kind: int,
    site: np.ndarray | None = None,
    length: np.ndarray | None = None,
) -> Records:
    if site is None:
        site = site_of_events(rng, persons, person, date)
    end = date if length is None else np.minimum(date + length.astype("timedelta64[D]"), persons.exit[person])
    return {
        "person": person,
        "site": site.astype(np.int8),
        "start": date,
        "end": end,
        "kind": np.full(len(person), kind, dtype=np.int8),
    }


def _clinical_records(
    rng: np.random.Generator, chunk: Chunk, config: SynthConfig, gi_person: np.ndarray, gi_dates: np.ndarray
) -> None:
    p = chunk.persons
    n = len(p)
    years = ((p.exit - p.entry).astype(np.float64) + 1) / DAYS_PER_YEAR
    age_mid = p.age_at(p.entry) + years / 2
    visits: list[Records] = []
    # First visit at each site the person attends (the observation period starts there).
    for k in range(MAX_SITES):
        has = p.sites[:, k] != NO_SITE
        idx = np.flatnonzero(has)
        visits.append(_visit_records(rng, p, idx, p.site_entry[idx, k], OP, site=p.sites[idx, k]))
    # Routine outpatient, emergency and inpatient visits.
    op_rate = config.op_visits_base + config.op_visits_per_year_of_age * age_mid
    ip_rate = config.ip_stays_base + config.ip_stays_per_year_of_age * age_mid
    for kind, rate in ((OP, op_rate), (ER, np.full(n, config.er_visits)), (IP, ip_rate)):
        counts = rng.poisson(rate * years)
        idx = np.repeat(np.arange(n), counts)
        dates = uniform_dates(rng, p.entry[idx], p.exit[idx])
        length = rng.geometric(0.3, len(idx)) if kind == IP else None
        visits.append(_visit_records(rng, p, idx, dates, kind, length=length))
    # Diagnosis visits: an outpatient visit at the onset of a chronic disease or cancer found during follow-up;
    # an emergency visit then a stay for an acute outcome.
    cond_parts: list[Records] = []
    diag_visits: list[Records] = []
    diag_codes: list[np.ndarray] = []
    for key in (*CHRONIC, *CANCERS):
        o = chunk.onsets[key]
        idx = np.flatnonzero(~np.isnat(o) & ~chunk.prevalent[key])
        diag_visits.append(_visit_records(rng, p, idx, o[idx], OP))
        diag_codes.append(np.full(len(idx), CODE_INDEX[key]))
    acute: list[tuple[str, np.ndarray, np.ndarray]] = [
        (key, np.flatnonzero(~np.isnat(chunk.onsets[key])), chunk.onsets[key][~np.isnat(chunk.onsets[key])])
        for key in ACUTE
        if key != "gi_bleed"
    ]
    acute.append(("gi_bleed", gi_person, gi_dates))
    for key, idx, dates in acute:
        er = _visit_records(rng, p, idx, dates, ER)
        stay = _visit_records(rng, p, idx, dates, IP, site=er["site"], length=rng.geometric(0.25, len(idx)))
        visits.append(er)
        diag_visits.append(stay)
        diag_codes.append(np.full(len(idx), CODE_INDEX[key]))
    all_visits = concat(visits + diag_visits)
    first_diag = sum(len(v["person"]) for v in visits)
    diag = concat(diag_visits)
    cond_parts.append(
        {
            "person": diag["person"],
            "site": diag["site"],
            "date": diag["start"],
            "code": np.concatenate(diag_codes),
            "visit": first_diag + np.arange(len(diag["person"])),
        }
    )
    # Prevalent conditions: recorded at the first visit at the main site. Every person has a main site, so the
    # first block of visits holds exactly one visit per person, in person order: visit position = person index.
    for key in (*CHRONIC, *CANCERS):
        idx = np.flatnonzero(chunk.prevalent[key])
        cond_parts.append(
            {
                "person": idx,
                "site": p.sites[idx, 0].astype(np.int8),
                "date": p.entry[idx],
                "code": np.full(len(idx), CODE_INDEX[key]),
                "visit": idx,
            }
        )
    # Known chronic diseases are coded again at later visits (half of outpatient, most inpatient visits).
    vp, vstart, vkind = all_visits["person"], all_visits["start"], all_visits["kind"]
    for key in (*CHRONIC, *CANCERS):
        o = chunk.onsets[key][vp]
        known = ~np.isnat(o) & (o < vstart)
        keep = known & (rng.random(len(vp)) < np.where(vkind == IP, 0.9, 0.5))
        v = np.flatnonzero(keep)
        cond_parts.append(
            {
                "person": vp[v],
                "site": all_visits["site"][v],
                "date": vstart[v],
                "code": np.full(len(v), CODE_INDEX[key]),
                "visit": v,
            }
        )
    chunk.visits = all_visits
    chunk.conditions = concat(cond_parts)
    chunk.measurements = _labs(rng, chunk, all_visits)
    chunk.drugs, inr = _drugs(rng, chunk, all_visits)
    chunk.measurements = concat([chunk.measurements, inr])
    chunk.procedures = _procedures(rng, chunk, all_visits, diag, first_diag, np.concatenate(diag_codes))
    died = np.flatnonzero(p.died)
    chunk.deaths = {"person": died, "site": p.sites[died, 0].astype(np.int8), "date": p.exit[died]}
    periods = []
    for k in range(MAX_SITES):
        idx = np.flatnonzero(p.sites[:, k] != NO_SITE)
        periods.append(
            {"person": idx, "site": p.sites[idx, k].astype(np.int8), "start": p.site_entry[idx, k], "end": p.exit[idx]}
        )
    chunk.periods = concat(periods)


_PANEL = ("creatinine", "potassium", "sodium", "hemoglobin", "glucose")


def _lab_values(rng: np.random.Generator, key: str, female: np.ndarray, sick: np.ndarray) -> np.ndarray:
    m = len(female)
    if key == "creatinine":
        base = np.where(female, 65.0, 80.0)
        return np.round(np.where(sick, rng.normal(170, 45, m), rng.normal(base, 14, m)).clip(25), 0)
    if key == "hba1c":
        return np.round(np.where(sick, rng.normal(7.3, 1.1, m), rng.normal(5.4, 0.3, m)).clip(4), 1)
    if key == "hemoglobin":
        return np.round(rng.normal(np.where(female, 13.2, 14.6), 1.2, m).clip(6), 1)
    if key == "potassium":
        return np.round(rng.normal(4.2, 0.4, m).clip(2.5), 1)
    if key == "sodium":
        return np.round(rng.normal(140, 2.5, m), 0)
    if key == "glucose":
        return np.round(np.where(sick, rng.normal(8.5, 2.0, m), rng.normal(5.2, 0.6, m)).clip(2.5), 1)
    return np.round(rng.normal(2.5, 0.5, m).clip(0.8), 1)  # INR under a vitamin K antagonist


def _labs(rng: np.random.Generator, chunk: Chunk, visits: Records) -> Records:
    p = chunk.persons
    vp, kind = visits["person"], visits["kind"]
    panel = rng.random(len(vp)) < np.where(kind == OP, 0.6, 0.95)
    parts = []
    ckd = ~np.isnat(chunk.onsets["ckd"][vp]) & (chunk.onsets["ckd"][vp] <= visits["start"])
    t2d = ~np.isnat(chunk.onsets["t2d"][vp]) & (chunk.onsets["t2d"][vp] <= visits["start"])
    for key in _PANEL:
        v = np.flatnonzero(panel)
        sick = ckd[v] if key == "creatinine" else t2d[v]
        parts.append(
            {
                "person": vp[v],
                "site": visits["site"][v],
                "date": visits["start"][v],
                "code": np.full(len(v), CODE_INDEX[key]),
                "value": _lab_values(rng, key, p.female[vp[v]], sick),
                "visit": v,
            }
        )
    v = np.flatnonzero((t2d & (rng.random(len(vp)) < 0.6)) | (rng.random(len(vp)) < 0.03))
    parts.append(
        {
            "person": vp[v],
            "site": visits["site"][v],
            "date": visits["start"][v],
            "code": np.full(len(v), CODE_INDEX["hba1c"]),
            "value": _lab_values(rng, "hba1c", p.female[vp[v]], t2d[v]),
            "visit": v,
        }
    )
    return concat(parts)


def _fills(
    rng: np.random.Generator,
    p: Persons,
    person: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    code: np.ndarray,
    quantity: float,
) -> Records:
    """Monthly prescriptions from ``start`` to ``end`` (inclusive)."""
    counts = ((end - start).astype(np.int64) // FILL_DAYS + 1).clip(0)
    i, dates = expand(start, counts, FILL_DAYS)
    fill_end = np.minimum(dates + np.timedelta64(FILL_DAYS - 1, "D"), p.exit[person[i]])
    return {
        "person": person[i],
        "site": site_of_events(rng, p, person[i], dates),
        "start": dates,
        "end": fill_end,
        "code": code[i],
        "admin": np.zeros(len(i), dtype=bool),
        "days": np.full(len(i), FILL_DAYS, dtype=np.int64),
        "quantity": np.full(len(i), quantity),
        "visit": np.full(len(i), -1, dtype=np.int64),
    }


def _choose(rng: np.random.Generator, options: tuple[str, ...], weights: tuple[float, ...], m: int) -> np.ndarray:
    pick = rng.choice(len(options), size=m, p=np.array(weights) / sum(weights))
    return np.array([CODE_INDEX[o] for o in options])[pick]


def _drugs(rng: np.random.Generator, chunk: Chunk, visits: Records) -> tuple[Records, Records]:
    p = chunk.persons
    on = chunk.onsets
    parts: list[Records] = []
    # Metformin for type 2 diabetes.
    idx = np.flatnonzero(~np.isnat(on["t2d"]) & (rng.random(len(p)) < 0.8))
    parts.append(_fills(rng, p, idx, on["t2d"][idx], p.exit[idx], np.full(len(idx), CODE_INDEX["metformin"]), 60))
    # Oral anticoagulant for atrial fibrillation.
    idx = np.flatnonzero(~np.isnat(on["af"]) & (rng.random(len(p)) < 0.85))
    codes = _choose(rng, ("apixaban", "rivaroxaban", "warfarin"), (0.45, 0.30, 0.25), len(idx))
    anticoag = _fills(rng, p, idx, on["af"][idx], p.exit[idx], codes, 60)
    parts.append(anticoag)
    # Statin for diabetes or hypertension.
    cardio = np.minimum(
        np.where(np.isnat(on["t2d"]), np.datetime64("2100-01-01"), on["t2d"]),
        np.where(np.isnat(on["hypertension"]), np.datetime64("2100-01-01"), on["hypertension"]),
    )
    idx = np.flatnonzero((cardio <= p.exit) & (rng.random(len(p)) < 0.45))
    codes = _choose(rng, ("simvastatin", "atorvastatin"), (0.5, 0.5), len(idx))
    parts.append(_fills(rng, p, idx, cardio[idx], p.exit[idx], codes, 30))
    # NSAID new users: 1 to 6 monthly prescriptions, a PPI alongside for some.
    u = chunk.nsaid
    months = np.minimum(rng.geometric(0.45, len(u.person)), 6)
    end = np.minimum(u.index_date + (months * FILL_DAYS - 1).astype("timedelta64[D]"), p.exit[u.person])
    codes = np.array([CODE_INDEX[d] for d in NSAIDS])[u.drug]
    parts.append(_fills(rng, p, u.person, u.index_date, end, codes, 60))
    ppi = rng.random(len(u.person)) < 0.3
    codes = _choose(rng, ("omeprazole", "pantoprazole"), (0.6, 0.4), int(ppi.sum()))
    parts.append(_fills(rng, p, u.person[ppi], u.index_date[ppi], end[ppi], codes, 30))
    # Long-term PPI for a few adults.
    adult_start = np.maximum(p.entry, p.birth + _days(18 * DAYS_PER_YEAR))
    idx = np.flatnonzero((adult_start < p.exit) & (rng.random(len(p)) < 0.04))
    start = uniform_dates(rng, adult_start[idx], p.exit[idx])
    codes = _choose(rng, ("omeprazole", "pantoprazole"), (0.6, 0.4), len(idx))
    parts.append(_fills(rng, p, idx, start, p.exit[idx], codes, 30))
    # Inpatient administrations: heparin prophylaxis and paracetamol during stays.
    stays = np.flatnonzero(visits["kind"] == IP)
    for key, prob in (("heparin", 0.6), ("acetaminophen", 0.8)):
        s = stays[rng.random(len(stays)) < prob]
        parts.append(
            {
                "person": visits["person"][s],
                "site": visits["site"][s],
                "start": visits["start"][s],
                "end": visits["end"][s],
                "code": np.full(len(s), CODE_INDEX[key]),
                "admin": np.ones(len(s), dtype=bool),
                "days": ((visits["end"][s] - visits["start"][s]).astype(np.int64) + 1),
                "quantity": ((visits["end"][s] - visits["start"][s]).astype(np.float64) + 1),
                "visit": s,
            }
        )
    drugs = concat(parts)
    # INR at each warfarin prescription, recorded where it was prescribed.
    w = np.flatnonzero(anticoag["code"] == CODE_INDEX["warfarin"])
    inr = {
        "person": anticoag["person"][w],
        "site": anticoag["site"][w],
        "date": anticoag["start"][w],
        "code": np.full(len(w), CODE_INDEX["inr"]),
        "value": _lab_values(rng, "inr", p.female[anticoag["person"][w]], np.ones(len(w), dtype=bool)),
        "visit": np.full(len(w), -1, dtype=np.int64),
    }
    return drugs, inr


def _procedures(
    rng: np.random.Generator, chunk: Chunk, visits: Records, diag: Records, first_diag: int, diag_codes: np.ndarray
) -> Records:
    parts: list[Records] = []
    for cond, proc, prob in (("gi_bleed", "endoscopy", 0.9), ("mi", "ecg", 1.0), ("af", "ecg", 0.8)):
        d = np.flatnonzero((diag_codes == CODE_INDEX[cond]) & (rng.random(len(diag_codes)) < prob))
        parts.append(
            {
                "person": diag["person"][d],
                "site": diag["site"][d],
                "date": diag["start"][d],
                "code": np.full(len(d), CODE_INDEX[proc]),
                "visit": first_diag + d,
            }
        )
    # Chemotherapy sessions at the cancer diagnosis visit.
    cancer = np.isin(diag_codes, [CODE_INDEX[c] for c in CANCERS]) & (rng.random(len(diag_codes)) < 0.7)
    d = np.flatnonzero(cancer)
    parts.append(
        {
            "person": diag["person"][d],
            "site": diag["site"][d],
            "date": diag["start"][d],
            "code": np.full(len(d), CODE_INDEX["chemotherapy"]),
            "visit": first_diag + d,
        }
    )
    return concat(parts)
