"""One outcome end to end in the process (no SQL): a simulated confounded cohort with a known hazard ratio,
under each adjustment method."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit

from hygie.analyses.comparative.cohorts import OutcomeEvents
from hygie.analyses.comparative.estimation import estimate_outcome
from hygie.analyses.comparative.matching import logit_ps
from hygie.analyses.comparative.propensity import fit_propensity
from hygie.analyses.comparative.spec import ComparativeSpec

HR = 2.0


def _cohort(seed: int = 8, n: int = 6000):
    """A binary confounder raises both the chance of the target drug and the hazard (x4): crude HR >> 2."""
    rng = np.random.default_rng(seed)
    frail = rng.random(n) < 0.3
    noise = rng.random((n, 5)) < 0.2
    treated = rng.random(n) < expit(-1.0 + 2.0 * frail)
    rate = 0.0004 * np.where(frail, 4.0, 1.0) * np.where(treated, HR, 1.0)
    day = np.floor(rng.exponential(1 / rate)).astype(np.int64)
    end = np.full(n, 365)
    event_day = np.where(day <= end, day, -1)
    x = sp.csr_matrix(np.column_stack([frail, noise]).astype(float))
    return treated, end, OutcomeEvents(np.zeros(n, dtype=bool), event_day), x


@pytest.mark.parametrize(
    "adjustment",
    [
        {"method": "matching", "ratio": 1},
        {"method": "matching", "ratio": "variable", "max_ratio": 3},
        {"method": "matching", "ratio": 2},
        {"method": "stratification", "strata": 5},
    ],
)
def test_adjustment_recovers_the_simulated_hazard_ratio(adjustment: dict) -> None:
    treated, end, events, x = _cohort()
    spec = ComparativeSpec.model_validate(
        {"target": "t", "comparator": "c", "outcomes": ["o"], "adjustment": adjustment, "time_at_risk": {"start": 0}}
    )
    model = fit_propensity(x, treated, "l1", 5, 1)
    ps = expit(model.fit.linear_predictor(x))
    r = estimate_outcome(spec, "o", False, events, treated.astype(np.int8), end, ps, logit_ps(ps), x)
    assert r.crude.hr is not None and r.adjusted.hr is not None
    assert r.crude.lower > HR  # confounded upwards
    assert r.balance is not None
    assert abs(r.balance.smd_before[0]) > 0.5  # the confounder
    if adjustment["method"] == "matching":
        assert r.adjusted.lower <= HR <= r.adjusted.upper
        assert abs(r.balance.smd_after[0]) < 0.1
    else:  # a PS quintile straddles the frail and the others: some confounding remains, much less
        assert abs(math.log(r.adjusted.hr / HR)) < 0.25 * abs(math.log(r.crude.hr / HR))
        assert abs(r.balance.smd_after[0]) < 0.5 * abs(r.balance.smd_before[0])
    counts = r.adjusted_counts
    if adjustment.get("ratio") == 1:
        assert counts.target_subjects == counts.comparator_subjects
    if adjustment.get("ratio") == 2:
        assert counts.comparator_subjects == 2 * counts.target_subjects
    assert r.attrition[-1].target == counts.target_subjects
    assert set(r.km) == {"target", "comparator"}
    assert r.km["target"].survival[-1] < r.km["comparator"].survival[-1]  # the target drug harms


def test_negative_controls_get_no_balance_or_curves() -> None:
    treated, end, events, x = _cohort(n=2000)
    spec = ComparativeSpec.model_validate({"target": "t", "comparator": "c", "outcomes": ["o"]})
    ps = np.full(len(treated), treated.mean())
    r = estimate_outcome(spec, "nc", True, events, treated.astype(np.int8), end, ps, logit_ps(ps), x)
    assert r.balance is None and r.km == {}
    assert r.adjusted.hr is not None
