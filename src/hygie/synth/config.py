"""Parameters of the synthetic population: sites, overlap, noise and planted truths, in one place.

The planted truths (incidence rates, hazard ratios) are parameters here and are written to the truth file as
they were used, so that an analysis can be checked against them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STUDY_START = np.datetime64("2015-01-01", "D")
STUDY_END = np.datetime64("2024-12-31", "D")  # last observed day (inclusive)
CHUNK_PERSONS = 10_000  # fixed, so that the output depends only on (patients, seed)


@dataclass(frozen=True)
class Site:
    key: str  # "a".."d"
    name: str
    city: str
    format: str  # "omop_csv", "omop_parquet", "fhir", "omop_source_csv"
    departments: tuple[str, ...]  # where its patients mostly live (postcodes)


SITES: tuple[Site, ...] = (
    Site("a", "Hospices Civils de Lyon (synthetic)", "Lyon", "omop_csv", ("69", "01", "38", "42")),
    Site("b", "Centre de lutte contre le cancer, Lyon (synthetic)", "Lyon", "omop_parquet", ("69", "01", "71", "2A")),
    Site("c", "CHRU de Nancy (synthetic)", "Nancy", "fhir", ("54", "57", "88", "55")),
    Site(
        "d", "Hopital prive a but non lucratif, Paris (synthetic)", "Paris", "omop_source_csv", ("75", "92", "93", "2B")
    ),
)

# Age groups of the planted incidence truths: [low, high) in years.
AGE_GROUPS: tuple[tuple[int, int], ...] = ((0, 40), (40, 60), (60, 80), (80, 130))


@dataclass(frozen=True)
class NoiseConfig:
    """Rates of identity noise, per identity record (one record per patient per site)."""

    missing_nir: float = 0.15
    family_name_typo: float = 0.04
    given_name_typo: float = 0.03
    day_month_swap: float = 0.02  # applied only where the swap gives another valid date
    changed_family_name: float = 0.06  # e.g. a married name; applied to women only, so about half this overall


@dataclass(frozen=True)
class HazardRatioTruth:
    target: str
    comparator: str
    outcome: str
    hazard_ratio: float
    time_at_risk_days: int


def _default_incidence() -> dict[str, dict[str, tuple[float, ...]]]:
    # Per 100,000 person-years by age group (AGE_GROUPS) for men (M) and women (F).
    return {
        "mi": {"M": (30.0, 250.0, 600.0, 1400.0), "F": (8.0, 70.0, 250.0, 900.0)},
        "stroke": {"M": (15.0, 120.0, 450.0, 1500.0), "F": (12.0, 90.0, 350.0, 1400.0)},
        "aki": {"M": (40.0, 150.0, 500.0, 1600.0), "F": (35.0, 110.0, 400.0, 1300.0)},
        "gi_bleed": {"M": (30.0, 100.0, 250.0, 600.0), "F": (20.0, 70.0, 200.0, 500.0)},
        "t2d": {"M": (80.0, 700.0, 1200.0, 1000.0), "F": (60.0, 450.0, 900.0, 800.0)},
        "hypertension": {"M": (150.0, 2200.0, 3500.0, 4000.0), "F": (100.0, 1800.0, 3500.0, 4500.0)},
        "af": {"M": (10.0, 200.0, 900.0, 2500.0), "F": (5.0, 100.0, 600.0, 2000.0)},
        "ckd": {"M": (20.0, 150.0, 800.0, 2500.0), "F": (20.0, 130.0, 700.0, 2300.0)},
        "breast_cancer": {"M": (0.5, 1.5, 3.0, 4.0), "F": (40.0, 300.0, 400.0, 350.0)},
        "prostate_cancer": {"M": (1.0, 200.0, 700.0, 600.0), "F": (0.0, 0.0, 0.0, 0.0)},
        "lung_cancer": {"M": (3.0, 80.0, 250.0, 300.0), "F": (2.0, 40.0, 100.0, 100.0)},
        "colon_cancer": {"M": (3.0, 50.0, 180.0, 350.0), "F": (3.0, 40.0, 120.0, 280.0)},
    }


@dataclass(frozen=True)
class SynthConfig:
    patients: int = 20_000
    seed: int = 42
    # Fraction of persons seen at 2 sites and at 3 sites (about 10% at two or more).
    two_sites: float = 0.085
    three_sites: float = 0.015
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    incidence: dict[str, dict[str, tuple[float, ...]]] = field(default_factory=_default_incidence)
    # Outcomes whose incidence is planted exactly (by age group and sex, independent of anything else).
    incidence_truth_outcomes: tuple[str, ...] = ("mi", "stroke", "aki", "t2d", "hypertension", "af", "ckd")
    nsaid_users: float = 0.20  # of adults, new users of an NSAID during follow-up
    # GI bleeding in the year after NSAID initiation: baseline per year for a 60-year-old without comorbidity.
    gi_bleed_tar_base: float = 0.03
    gi_bleed_age_per_decade: float = 0.35  # log-hazard per 10 years of age
    gi_bleed_comorbidity: float = 0.4  # log-hazard per chronic condition (T2D, hypertension, AF, CKD)
    hazard_ratios: tuple[HazardRatioTruth, ...] = (HazardRatioTruth("diclofenac", "celecoxib", "gi_bleed", 1.5, 365),)
    negative_controls: tuple[HazardRatioTruth, ...] = (
        HazardRatioTruth("diclofenac", "celecoxib", "mi", 1.0, 365),
        HazardRatioTruth("diclofenac", "celecoxib", "stroke", 1.0, 365),
        HazardRatioTruth("diclofenac", "celecoxib", "aki", 1.0, 365),
    )
    # Visit rates per person-year: outpatient = base + slope * age.
    op_visits_base: float = 1.5
    op_visits_per_year_of_age: float = 0.07
    er_visits: float = 0.15
    ip_stays_base: float = 0.05
    ip_stays_per_year_of_age: float = 0.004

    def __post_init__(self) -> None:
        if self.patients < 1:
            raise ValueError("patients must be at least 1")

    @property
    def chunks(self) -> int:
        return -(-self.patients // CHUNK_PERSONS)

    def describe(self) -> dict:
        return {
            "patients": self.patients,
            "seed": self.seed,
            "study_start": str(STUDY_START),
            "study_end": str(STUDY_END),
            "generated_with": f"hygie synth (chunks of {CHUNK_PERSONS} persons)",
        }
