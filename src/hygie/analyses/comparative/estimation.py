"""One outcome of a comparative study, in the process: study population for the outcome, crude and adjusted
hazard ratios, balance and Kaplan-Meier curves. Pure functions of arrays (no SQL, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from hygie.analyses.comparative import matching
from hygie.analyses.comparative.balance import Balance, balance
from hygie.analyses.comparative.cohorts import AttritionStep, OutcomeEvents
from hygie.analyses.comparative.outcome_model import HazardRatio, KaplanMeier, hazard_ratio, kaplan_meier
from hygie.analyses.comparative.spec import ComparativeSpec


@dataclass(frozen=True)
class GroupCounts:
    target_subjects: int
    comparator_subjects: int
    target_events: int
    comparator_events: int
    target_days: int
    comparator_days: int


@dataclass(frozen=True)
class OutcomeResult:
    outcome: str
    negative_control: bool
    attrition: list[AttritionStep]
    crude: HazardRatio
    crude_counts: GroupCounts
    adjusted: HazardRatio
    adjusted_counts: GroupCounts
    balance: Balance | None  # covariates of the outcome's population, before and after adjustment
    subjects_before: tuple[np.ndarray, np.ndarray] | None  # persons with each covariate (target, comparator)
    subjects_after: tuple[np.ndarray, np.ndarray] | None
    km: dict[str, KaplanMeier]  # "target" / "comparator": adjusted curves


def _counts(treated: np.ndarray, event: np.ndarray, days: np.ndarray) -> GroupCounts:
    t = treated.astype(bool)
    return GroupCounts(
        int(t.sum()),
        int((~t).sum()),
        int(event[t].sum()),
        int(event[~t].sum()),
        int(days[t].sum()),
        int(days[~t].sum()),
    )


def _with_covariate(x: sp.csr_matrix, members: np.ndarray) -> np.ndarray:
    return np.asarray((x[members] != 0).sum(axis=0)).ravel().astype(np.int64)


def adjustment_strata(
    spec: ComparativeSpec, ps: np.ndarray, logit: np.ndarray, treated: np.ndarray
) -> tuple[np.ndarray, str]:
    """Matched set or PS stratum of each person (-1: left out), and the attrition reason of that step."""
    a = spec.adjustment
    if a.method == "stratification":
        return matching.stratify(ps, treated, a.strata), f"In a PS stratum holding both groups ({a.strata} strata)"
    stratum = matching.match(logit, treated, a.caliper, a.comparators_per_target)
    if a.ratio != "variable" and a.comparators_per_target > 1:  # a fixed ratio: sets with fewer are dropped
        sets, size = np.unique(stratum[stratum >= 0], return_counts=True)
        short = np.isin(stratum, sets[size < a.comparators_per_target + 1])
        stratum[short] = matching.UNMATCHED
    ratio = f"up to {a.max_ratio}" if a.ratio == "variable" else str(a.ratio)
    caliper = "no caliper" if not a.caliper else f"caliper {a.caliper} SD of the logit PS"
    return stratum, f"Matched (1:{ratio}, {caliper})"


def estimate_outcome(
    spec: ComparativeSpec,
    outcome: str,
    negative_control: bool,
    events: OutcomeEvents,
    treated: np.ndarray,
    tar_end_day: np.ndarray,
    ps: np.ndarray,
    logit: np.ndarray,
    x: sp.csr_matrix,
) -> OutcomeResult:
    start = spec.time_at_risk.start
    treated = treated.astype(bool)
    attrition = []
    keep = np.ones(len(treated), dtype=bool)
    if spec.prior_outcome_washout is not False:
        keep &= ~events.prior
        attrition.append(_step(f"No {outcome} before the risk window", treated, keep))
    keep &= tar_end_day >= start
    attrition.append(_step("At least one day at risk", treated, keep))
    event = events.event_day >= 0
    time = np.where(event, events.event_day, tar_end_day).astype(np.int64)
    days = np.clip(time - start + 1, 0, None)
    ties = spec.outcome_model.ties
    idx = np.flatnonzero(keep)
    crude = hazard_ratio(time[idx], event[idx], treated[idx], None, ties)
    crude_counts = _counts(treated[idx], event[idx], days[idx])
    stratum, reason = adjustment_strata(spec, ps[idx], logit[idx], treated[idx])
    inside = stratum != matching.UNMATCHED
    adjusted_rows = idx[inside]
    attrition.append(_step(reason, treated, np.isin(np.arange(len(treated)), adjusted_rows)))
    adjusted = hazard_ratio(time[adjusted_rows], event[adjusted_rows], treated[adjusted_rows], stratum[inside], ties)
    adjusted_counts = _counts(treated[adjusted_rows], event[adjusted_rows], days[adjusted_rows])
    weights = matching.att_weights(stratum, treated[idx])
    km: dict[str, KaplanMeier] = {}
    bal = subjects_before = subjects_after = None
    if not negative_control:
        bal = balance(x[idx], treated[idx], weights)
        subjects_before = (_with_covariate(x, idx[treated[idx]]), _with_covariate(x, idx[~treated[idx]]))
        subjects_after = (
            _with_covariate(x, adjusted_rows[treated[adjusted_rows]]),
            _with_covariate(x, adjusted_rows[~treated[adjusted_rows]]),
        )
        for group, members in (("target", treated[idx]), ("comparator", ~treated[idx])):
            m = members & inside
            km[group] = kaplan_meier(time[idx][m], event[idx][m], weights[m])
    return OutcomeResult(
        outcome,
        negative_control,
        attrition,
        crude,
        crude_counts,
        adjusted,
        adjusted_counts,
        bal,
        subjects_before,
        subjects_after,
        km,
    )


def _step(reason: str, treated: np.ndarray, keep: np.ndarray) -> AttritionStep:
    return AttritionStep(reason, int((keep & treated).sum()), int((keep & ~treated).sum()))
