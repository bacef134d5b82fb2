"""The study-file sections of incidence and prevalence, named after DARWIN EU's arguments in snake_case.

Semantics: ``docs/incidence-prevalence.md`` (from DARWIN EU IncidencePrevalence 1.2.1).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from hygie.analyses.base import Spec

Interval = Literal["years", "quarters", "months", "weeks", "overall"]
Sex = Literal["Both", "Male", "Female"]
INFINITE = math.inf


def _days_or_inf(value: object) -> float:
    """A number of days, or ``inf`` (written ``inf``, ``Inf`` or ``.inf`` in YAML)."""
    if isinstance(value, str) and value.strip().lower() in ("inf", "+inf", ".inf", "infinity"):
        return INFINITE
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a whole number of days or inf")
    if value != INFINITE and (value < 0 or value != int(value)):
        raise ValueError("must be a whole number of days (>= 0) or inf")
    return float(value)


class TargetSpec(Spec):
    """Restrict a denominator to the time persons spend in a target cohort (generateTargetDenominatorCohortSet)."""

    cohort: str
    requirements_at_entry: bool = True
    time_at_risk: tuple[int, float] = (0, INFINITE)  # days from target entry: (start, end); end may be inf

    @field_validator("time_at_risk", mode="before")
    @classmethod
    def _time_at_risk(cls, value: object) -> object:
        if isinstance(value, list | tuple) and len(value) == 2:
            start, end = value
            if isinstance(start, bool) or not isinstance(start, int) or start < 0:
                raise ValueError("time_at_risk start must be a whole number of days >= 0")
            end = _days_or_inf(end)
            if end < start:
                raise ValueError("time_at_risk end must not be before its start")
            return (start, end)
        raise ValueError("time_at_risk must be [start, end] in days (end may be inf)")


class DenominatorSpec(Spec):
    """generateDenominatorCohortSet: one denominator cohort per (age group, sex, prior observation)."""

    cohort_date_range: tuple[dt.date | None, dt.date | None] = (None, None)  # None = from the data
    age_groups: list[tuple[int, int]] = Field(default_factory=lambda: [(0, 150)], min_length=1)
    sex: list[Sex] = Field(default_factory=lambda: ["Both"], min_length=1)
    days_prior_observation: list[int] = Field(default_factory=lambda: [0], min_length=1)
    requirement_interactions: bool = True
    target: TargetSpec | None = None

    @field_validator("age_groups")
    @classmethod
    def _age_groups(cls, value: list[tuple[int, int]]) -> list[tuple[int, int]]:
        for low, high in value:
            if low < 0 or high < low:
                raise ValueError(f"age group [{low}, {high}]: need 0 <= lower <= upper")
        return value

    @field_validator("days_prior_observation")
    @classmethod
    def _prior(cls, value: list[int]) -> list[int]:
        if any(d < 0 for d in value):
            raise ValueError("days_prior_observation must be >= 0")
        return value

    @model_validator(mode="after")
    def _range(self) -> DenominatorSpec:
        start, end = self.cohort_date_range
        if start and end and end < start:
            raise ValueError("cohort_date_range ends before it starts")
        return self


class CensorSpec(Spec):
    cohort: str  # a study cohort; exactly one record per person
    cohort_definition_id: int | None = None


class IncidenceSpec(Spec):
    """estimateIncidence."""

    denominator: str
    outcomes: list[str] = Field(min_length=1)
    interval: list[Interval] = Field(default_factory=lambda: ["years"], min_length=1)
    complete_database_intervals: bool = True
    outcome_washout: float = INFINITE  # days, or inf
    repeated_events: bool = False
    censor: CensorSpec | None = None
    strata: list[list[str]] = Field(default_factory=list)  # columns of the denominator to stratify by
    include_overall_strata: bool = True

    @field_validator("interval", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("outcome_washout", mode="before")
    @classmethod
    def _washout(cls, value: object) -> float:
        return _days_or_inf(value)


class PrevalenceSpec(Spec):
    """estimatePointPrevalence / estimatePeriodPrevalence."""

    denominator: str
    outcomes: list[str] = Field(min_length=1)
    type: Literal["point", "period"] = "point"
    interval: list[Interval] = Field(default_factory=lambda: ["years"], min_length=1)
    time_point: Literal["start", "middle", "end"] = "start"  # point prevalence only
    full_contribution: bool = False  # period prevalence only
    complete_database_intervals: bool = True  # period prevalence only
    level: Literal["person", "record"] = "person"
    strata: list[list[str]] = Field(default_factory=list)
    include_overall_strata: bool = True

    @field_validator("interval", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _point_has_no_overall(self) -> PrevalenceSpec:
        if self.type == "point" and "overall" in self.interval:
            raise ValueError("point prevalence needs calendar intervals: 'overall' applies to period prevalence")
        return self
