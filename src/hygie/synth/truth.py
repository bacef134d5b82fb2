"""The truth file: what was planted (rates, hazard ratios, noise) and what the generated population realised.

Written to ``<out>/truth/``, outside every site folder: it is for evaluating ingestion, linkage and analyses, and
is never deposited. ``linkage.csv`` says which local ids are the same person.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from hygie.synth.clinical import CHRONIC, NSAIDS, Chunk
from hygie.synth.config import AGE_GROUPS, SITES, HazardRatioTruth, SynthConfig
from hygie.synth.population import DAYS_PER_YEAR, NO_SITE

SEXES = ("M", "F")


def realised_incidence(chunk: Chunk, outcome: str) -> tuple[np.ndarray, np.ndarray]:
    """(events, person-days) by age group x sex (M, F) among persons free of ``outcome`` at entry.

    Time runs from entry to the first event (inclusive) or the end of follow-up, split by the age group the person
    is in, exactly as the hazard was planted.
    """
    p = chunk.persons
    onset = chunk.onsets[outcome]
    at_risk = ~chunk.prevalent[outcome]
    has = ~np.isnat(onset)
    end = np.where(has, onset, p.exit) + np.timedelta64(1, "D")
    events = np.zeros((len(AGE_GROUPS), 2), dtype=np.int64)
    days = np.zeros((len(AGE_GROUPS), 2), dtype=np.int64)
    for k, (low, high) in enumerate(AGE_GROUPS):
        lo = p.birth + np.round(low * DAYS_PER_YEAR).astype(np.int64).astype("timedelta64[D]")
        hi = p.birth + np.round(high * DAYS_PER_YEAR).astype(np.int64).astype("timedelta64[D]")
        length = np.clip((np.minimum(end, hi) - np.maximum(p.entry, lo)).astype(np.int64), 0, None)
        hit = has & (onset >= lo) & (onset < hi)
        for j, female in enumerate((False, True)):
            m = at_risk & (p.female == female)
            days[k, j] += int(length[m].sum())
            events[k, j] += int((hit & m).sum())
    return events, days


def poisson_fit(x: np.ndarray, y: np.ndarray, exposure: np.ndarray, iterations: int = 100) -> np.ndarray | None:
    """Maximum-likelihood Poisson regression (log link, log exposure offset) by damped Newton-Raphson; None when
    it does not converge (too few events for the covariates)."""
    beta = np.zeros(x.shape[1])
    beta[0] = np.log(max(y.sum(), 0.5) / exposure.sum())
    offset = np.log(exposure)
    for _ in range(iterations):
        mu = np.exp(np.clip(x @ beta + offset, -700, 700))
        try:
            step = np.linalg.solve((x * mu[:, None]).T @ x + 1e-9 * np.eye(x.shape[1]), x.T @ (y - mu))
        except np.linalg.LinAlgError:
            return None
        beta += np.clip(step, -2.0, 2.0)  # damped: no overshoot on sparse data
        if np.max(np.abs(step)) < 1e-10:
            return beta if np.all(np.isfinite(beta)) else None
    return None


MIN_EVENTS = 5  # per arm, before a rate ratio is estimated


class Truth:
    """Accumulates the truth over chunks; ``write`` produces truth.json, linkage.csv and nsaid_cohort.csv."""

    def __init__(self, config: SynthConfig, folder: Path) -> None:
        self.config = config
        self.folder = folder
        folder.mkdir(parents=True)
        self.events = {o: np.zeros((len(AGE_GROUPS), 2), dtype=np.int64) for o in config.incidence_truth_outcomes}
        self.days = {o: np.zeros((len(AGE_GROUPS), 2), dtype=np.int64) for o in config.incidence_truth_outcomes}
        self.persons = 0
        self.sites_per_person = np.zeros(4, dtype=np.int64)
        self.noise_counts: dict[str, int] = {}
        self.identity_records = 0
        self.women_records = 0
        self.nsaid: list[dict[str, np.ndarray]] = []
        self._linkage: pacsv.CSVWriter | None = None

    def add(self, chunk: Chunk, linkage: pa.Table, noise: dict[str, np.ndarray], women: int) -> None:
        for o in self.config.incidence_truth_outcomes:
            e, d = realised_incidence(chunk, o)
            self.events[o] += e
            self.days[o] += d
        p = chunk.persons
        self.persons += len(p)
        self.sites_per_person += np.bincount((p.sites != NO_SITE).sum(axis=1), minlength=4)
        for k, v in noise.items():
            self.noise_counts[k] = self.noise_counts.get(k, 0) + int(v.sum())
        self.identity_records += linkage.num_rows
        self.women_records += women
        if self._linkage is None:
            self._linkage = pacsv.CSVWriter(self.folder / "linkage.csv", linkage.schema)
        self._linkage.write_table(linkage)
        u = chunk.nsaid
        outcome_days = {}
        for o in ("mi", "stroke", "aki"):
            on = chunk.onsets[o][u.person]
            day = (on - u.index_date).astype(np.int64)
            # -2: the outcome happened before initiation (excluded from a new-user analysis of it)
            outcome_days[o] = np.where(np.isnat(on), -1, np.where(day < 0, -2, np.where(day < u.tar_days, day, -1)))
        self.nsaid.append(
            {
                "person_key": p.pid[u.person],
                "drug": np.array(NSAIDS, dtype=object)[u.drug],
                "index_date": u.index_date,
                "age": np.round(u.age, 3),
                "female": p.female[u.person],
                "comorbidities": u.comorbidities,
                "tar_days": u.tar_days,
                "gi_bleed_day": u.event_day,
                "prior_gi_bleed": u.prior_bleed,
                **{f"{o}_day": v for o, v in outcome_days.items()},
            }
        )

    def write(self, summary: dict) -> dict:
        if self._linkage is not None:
            self._linkage.close()
        cohort = {k: np.concatenate([c[k] for c in self.nsaid]) for k in self.nsaid[0]} if self.nsaid else {}
        if cohort:
            types = {"drug": pa.string(), "female": pa.bool_(), "prior_gi_bleed": pa.bool_(), "age": pa.float64()}
            table = pa.table({k: pa.array(v, types.get(k)) for k, v in cohort.items()})
            pacsv.write_csv(table, self.folder / "nsaid_cohort.csv")
        c = self.config
        truth = {
            "about": "Planted truths of a hygie synthetic population. For evaluation only: never deposit this folder.",
            "config": c.describe(),
            "age_groups": [list(g) for g in AGE_GROUPS],
            "incidence_per_100000_person_years": [
                {
                    "outcome": o,
                    "age_group": f"{lo}-{hi - 1}",
                    "sex": sex,
                    "planted": c.incidence[o][sex][k],
                    "realised": round(1e5 * int(self.events[o][k, j]) / (int(self.days[o][k, j]) / DAYS_PER_YEAR), 3)
                    if self.days[o][k, j]
                    else None,
                    "events": int(self.events[o][k, j]),
                    "person_years": round(int(self.days[o][k, j]) / DAYS_PER_YEAR, 2),
                }
                for o in c.incidence_truth_outcomes
                for k, (lo, hi) in enumerate(AGE_GROUPS)
                for j, sex in enumerate(SEXES)
            ],
            "incidence_definition": (
                "first occurrence during follow-up among persons free of the condition at entry (conditions present "
                "at entry are recorded on the first day of observation); age group = exact age at the time at risk"
            ),
            "hazard_ratios": [
                self._hr(t, cohort, "gi_bleed_day") | {"negative_control": False} for t in c.hazard_ratios
            ],
            "negative_controls": [
                self._hr(t, cohort, f"{t.outcome}_day") | {"negative_control": True} for t in c.negative_controls
            ],
            "gi_bleed_model": {
                "time_at_risk": "from the first NSAID prescription (day 0) for 365 days, intention to treat",
                "baseline_per_year_at_60": c.gi_bleed_tar_base,
                "log_hazard_per_decade_of_age": c.gi_bleed_age_per_decade,
                "log_hazard_per_comorbidity": c.gi_bleed_comorbidity,
                "comorbidities": list(CHRONIC),
                "channelling": "celecoxib is preferred for older and more comorbid patients (confounding by "
                "indication): the crude comparison is biased, adjustment for age and comorbidities "
                "recovers the planted ratio",
            },
            "linkage": {
                "persons": self.persons,
                "persons_by_number_of_sites": {str(k): int(v) for k, v in enumerate(self.sites_per_person) if k},
                "fraction_at_two_or_more_sites": round(
                    float(self.sites_per_person[2:].sum()) / max(self.persons, 1), 5
                ),
                "identity_records": self.identity_records,
                "file": "linkage.csv (site, local_id, person_key and the noise applied to that record)",
            },
            "noise": {
                "configured": asdict(c.noise),
                "realised_fraction_of_records": {
                    k: round(v / max(self.identity_records, 1), 5) for k, v in sorted(self.noise_counts.items())
                },
                "changed_family_name_applies_to": "women only",
                "realised_changed_family_name_among_women": round(
                    self.noise_counts.get("changed_family_name", 0) / max(self.women_records, 1), 5
                ),
            },
            "sites": [{"key": s.key, "name": s.name, "format": s.format} for s in SITES],
            "summary": summary,
        }
        (self.folder / "truth.json").write_text(json.dumps(truth, indent=2, default=str) + "\n", encoding="utf-8")
        return truth

    @staticmethod
    def _hr(t: HazardRatioTruth, cohort: dict[str, np.ndarray], column: str) -> dict:
        out = {
            "target": t.target,
            "comparator": t.comparator,
            "outcome": t.outcome,
            "planted": t.hazard_ratio,
            "time_at_risk_days": t.time_at_risk_days,
        }
        if not cohort:
            return out
        keep = np.isin(cohort["drug"], [t.target, t.comparator]) & (cohort[column] != -2)
        if t.outcome == "gi_bleed":
            keep &= ~cohort["prior_gi_bleed"]
        y = (cohort[column][keep] >= 0).astype(float)
        exposure = np.where(y > 0, cohort[column][keep] + 1, cohort["tar_days"][keep]).astype(float)
        treated = (cohort["drug"][keep] == t.target).astype(float)
        age = cohort["age"][keep]
        ones = np.ones(len(y))
        estimates = {
            "users_target": int(treated.sum()),
            "users_comparator": int(len(y) - treated.sum()),
            "events_target": int(y[treated > 0].sum()),
            "events_comparator": int(y[treated == 0].sum()),
        }
        if min(estimates["events_target"], estimates["events_comparator"]) >= MIN_EVENTS:
            crude = poisson_fit(np.column_stack([ones, treated]), y, exposure)
            groups = [((age >= lo) & (age < hi)).astype(float) for lo, hi in AGE_GROUPS[1:]]
            x = np.column_stack(
                [
                    ones,
                    treated,
                    (age - 60) / 10,
                    cohort["comorbidities"][keep],
                    cohort["female"][keep].astype(float),
                    *groups,
                ]
            )
            x = x[:, (np.ptp(x, axis=0) > 0) | (np.arange(x.shape[1]) == 0)]
            adjusted = poisson_fit(x, y, exposure)
            estimates |= {
                "realised_crude_rate_ratio": None if crude is None else round(float(np.exp(crude[1])), 4),
                "realised_adjusted_rate_ratio": None if adjusted is None else round(float(np.exp(adjusted[1])), 4),
                "adjusted_for": "age (linear and by age group), sex, number of comorbidities",
            }
        return out | estimates
