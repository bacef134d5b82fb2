"""The study-file section of a comparative new-user cohort study (``analyses: - comparative: {...}``).

Target and comparator are study cohorts of drug *users* (every exposure era, e.g. a Circe definition with a
drug-exposure entry event, all events, exit at the end of continuous exposure); the analysis derives the new
users itself (first era, ``washout_days`` of prior observation, persons in both cohorts removed). Outcomes and
negative controls are study cohorts whose start dates are the events. Semantics: ``docs/comparative.md``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from hygie.analyses.base import Spec

Domain = Literal["condition", "drug", "procedure", "measurement", "observation"]


class TimeAtRiskSpec(Spec):
    """Days relative to the index date (the first exposure): the risk window is ``[index + start, index + end]``.

    ``intention_to_treat`` keeps it whatever happens to the exposure; ``on_treatment`` also stops it at the end of
    the first exposure era plus ``grace_days``. Both stop at the end of the observation period.
    """

    start: int = 1
    end: int = 365
    design: Literal["intention_to_treat", "on_treatment"] = "intention_to_treat"
    grace_days: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _order(self) -> TimeAtRiskSpec:
        if self.start < 0:
            raise ValueError("time_at_risk start must be >= 0 days after the index date")
        if self.end < self.start:
            raise ValueError(f"time_at_risk end ({self.end}) must not be before its start ({self.start})")
        return self


class CovariatesSpec(Spec):
    """Baseline covariates: one binary covariate per (domain, window, concept) and, with ``demographics``,
    sex, 5-year age groups and index year. Windows are ``[start, end]`` days relative to the index date."""

    windows: list[tuple[int, int]] = Field(default_factory=lambda: [(-365, -1)], min_length=1)
    domains: list[Domain] = Field(default_factory=lambda: ["condition", "drug", "procedure"])
    demographics: bool = True
    exclude_concept_ids: list[int] = Field(default_factory=list)  # e.g. the study drugs themselves
    min_subjects: int = Field(1, ge=1)  # a covariate present in fewer persons is dropped

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: list[tuple[int, int]]) -> list[tuple[int, int]]:
        for start, end in value:
            if end < start:
                raise ValueError(f"covariate window [{start}, {end}]: end before start")
            if end > 0:
                raise ValueError(f"covariate window [{start}, {end}]: baseline windows must end on or before day 0")
        return value


class PropensitySpec(Spec):
    """Large-scale propensity model: logistic regression with an L1 or L2 penalty chosen by cross-validation."""

    penalty: Literal["l1", "l2"] = "l1"
    cv_folds: int = Field(5, ge=2, le=20)
    max_covariates: int | None = Field(None, ge=1)  # keep the most frequent covariates
    seed: int = 42  # folds are drawn from it: same data, same seed, same model
    # The penalty grid; default: 10 values from the strength that zeroes every coefficient down to 1/1000 of it.
    strengths: list[float] | None = None

    @field_validator("strengths")
    @classmethod
    def _strengths(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (not value or any(s < 0 for s in value)):
            raise ValueError("strengths must be a non-empty list of penalties >= 0")
        return value


class AdjustmentSpec(Spec):
    """Matching on the logit of the propensity score, or stratification into quantiles of it."""

    method: Literal["matching", "stratification"] = "matching"
    ratio: int | Literal["variable"] = 1  # comparators per target (an exact number), or "variable"
    max_ratio: int = Field(4, ge=1)  # the cap of variable-ratio matching
    caliper: float | None = Field(0.2, ge=0)  # in standard deviations of the logit PS; None: no caliper
    strata: int = Field(5, ge=2, le=100)

    @field_validator("ratio")
    @classmethod
    def _ratio(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("ratio must be a whole number >= 1 or 'variable'")
        return value

    @property
    def comparators_per_target(self) -> int:
        return self.max_ratio if self.ratio == "variable" else int(self.ratio)


class OutcomeModelSpec(Spec):
    ties: Literal["efron", "breslow"] = "efron"


class ComparativeSpec(Spec):
    """One comparison: target versus comparator new users, for each outcome (and negative control)."""

    target: str
    comparator: str
    outcomes: list[str] = Field(min_length=1)
    negative_controls: list[str] = Field(default_factory=list)
    washout_days: int = Field(365, ge=0)  # prior observation required at the first exposure
    # Remove persons with the outcome before the risk window starts: true = at any time before, a number = within
    # that many days before, false = keep them.
    prior_outcome_washout: bool | int = True
    time_at_risk: TimeAtRiskSpec = Field(default_factory=TimeAtRiskSpec)
    covariates: CovariatesSpec = Field(default_factory=CovariatesSpec)
    propensity: PropensitySpec = Field(default_factory=PropensitySpec)
    adjustment: AdjustmentSpec = Field(default_factory=AdjustmentSpec)
    outcome_model: OutcomeModelSpec = Field(default_factory=OutcomeModelSpec)

    @field_validator("prior_outcome_washout")
    @classmethod
    def _prior(cls, value: bool | int) -> bool | int:
        if not isinstance(value, bool) and value < 0:
            raise ValueError("prior_outcome_washout must be true, false or a number of days >= 0")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> ComparativeSpec:
        if self.target == self.comparator:
            raise ValueError("target and comparator must be different cohorts")
        named = [self.target, self.comparator]
        for name in (*self.outcomes, *self.negative_controls):
            if name in named:
                raise ValueError(f"cohort {name!r} is named twice (exposures, outcomes and negative controls differ)")
            named.append(name)
        return self
