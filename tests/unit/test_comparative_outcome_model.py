"""Cox and Kaplan-Meier against closed forms worked by hand and a brute-force partial likelihood."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize

from hygie.analyses.comparative.outcome_model import Z95, cox, hazard_ratio, kaplan_meier


def test_cox_without_ties_matches_the_hand_solution() -> None:
    # Target: event day 1, censored day 4; comparator: events days 2 and 3. The score equation reduces to
    # r^2 + r - 1 = 0 for r = exp(beta): the HR is (sqrt(5) - 1) / 2.
    time = np.array([1, 4, 2, 3])
    event = np.array([1, 0, 1, 1])
    treated = np.array([1, 1, 0, 0])
    hr = hazard_ratio(time, event, treated)
    assert hr.hr == pytest.approx((math.sqrt(5) - 1) / 2, rel=1e-9)


def test_tied_events_efron_and_breslow_match_the_hand_solutions() -> None:
    # Day 1: one target and one comparator event, a comparator at risk until day 2.
    # Efron: 1 - r/(r+2) - r/(r+3) = 0 -> r = sqrt(6); Breslow: 1 - 2r/(r+2) = 0 -> r = 2.
    time, event, treated = np.array([1, 1, 2]), np.array([1, 1, 0]), np.array([1, 0, 0])
    assert hazard_ratio(time, event, treated, ties="efron").hr == pytest.approx(math.sqrt(6), rel=1e-9)
    assert hazard_ratio(time, event, treated, ties="breslow").hr == pytest.approx(2.0, rel=1e-9)


def _brute_partial_likelihood(beta: float, time, event, x, strata, ties: str) -> float:
    total = 0.0
    for s in np.unique(strata):
        m = strata == s
        t, e, z = time[m], event[m], x[m]
        for day in np.unique(t[e]):
            dead = (t == day) & e
            risk = t >= day
            d = int(dead.sum())
            total += float((z[dead] * beta).sum())
            r0 = float(np.exp(z[risk] * beta).sum())
            if ties == "breslow":
                total -= d * math.log(r0)
            else:
                d0 = float(np.exp(z[dead] * beta).sum())
                total -= sum(math.log(r0 - k / d * d0) for k in range(d))
    return total


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_stratified_cox_maximises_the_brute_force_partial_likelihood(ties: str) -> None:
    rng = np.random.default_rng(3)
    n = 80
    x = rng.integers(0, 2, n).astype(float)
    time = rng.integers(1, 9, n).astype(float)  # many ties
    event = rng.random(n) < 0.6
    strata = rng.integers(0, 4, n)
    fit = cox(time, event, x[:, None], strata, ties)
    best = scipy.optimize.minimize_scalar(lambda b: -_brute_partial_likelihood(b, time, event, x, strata, ties))
    assert fit.converged
    assert fit.coef[0] == pytest.approx(best.x, abs=1e-5)
    assert fit.log_likelihood == pytest.approx(_brute_partial_likelihood(fit.coef[0], time, event, x, strata, ties))
    # Standard error: the inverse of the observed information (numerical second derivative).
    h = 1e-4
    f = lambda b: _brute_partial_likelihood(b, time, event, x, strata, ties)  # noqa: E731
    second = (f(fit.coef[0] + h) - 2 * f(fit.coef[0]) + f(fit.coef[0] - h)) / h**2
    assert fit.se[0] == pytest.approx(1 / math.sqrt(-second), rel=1e-3)


def test_two_covariates_match_the_brute_force_gradient_zero() -> None:
    rng = np.random.default_rng(5)
    n = 120
    x = np.column_stack([rng.integers(0, 2, n), rng.normal(size=n)])
    time = rng.exponential(10, n).round() + 1
    event = rng.random(n) < 0.7
    fit = cox(time, event, x)

    def loglik(beta: np.ndarray) -> float:
        eta = x @ beta
        total = 0.0
        for day in np.unique(time[event]):
            dead, risk = (time == day) & event, time >= day
            r0, d0, d = np.exp(eta[risk]).sum(), np.exp(eta[dead]).sum(), int(dead.sum())
            total += eta[dead].sum() - sum(math.log(r0 - k / d * d0) for k in range(d))
        return total

    best = scipy.optimize.minimize(lambda b: -loglik(b), np.zeros(2), method="Nelder-Mead",
                                   options={"xatol": 1e-8, "fatol": 1e-12, "maxiter": 5000})  # fmt: skip
    np.testing.assert_allclose(fit.coef, best.x, atol=1e-4)


def test_hazard_ratio_interval_and_p_value_are_wald() -> None:
    rng = np.random.default_rng(9)
    n = 400
    treated = rng.integers(0, 2, n)
    time = np.ceil(rng.exponential(1 / np.where(treated, 0.02, 0.01))).clip(max=200)
    event = time < 200
    hr = hazard_ratio(time, event, treated)
    assert hr.log_hr is not None and hr.se_log_hr is not None
    assert hr.lower == pytest.approx(math.exp(hr.log_hr - Z95 * hr.se_log_hr))
    assert hr.upper == pytest.approx(math.exp(hr.log_hr + Z95 * hr.se_log_hr))
    assert hr.p_value == pytest.approx(math.erfc(abs(hr.log_hr / hr.se_log_hr) / math.sqrt(2)))
    assert 1.4 < hr.hr < 2.8  # simulated at 2


def test_no_event_in_one_group_gives_no_estimate() -> None:
    hr = hazard_ratio(np.array([1, 2, 3, 4]), np.array([1, 1, 0, 0]), np.array([1, 1, 0, 0]))
    assert hr.hr is None and hr.lower is None and hr.p_value is None


def test_kaplan_meier_and_greenwood_by_hand() -> None:
    # Six persons: events at 1, 2, 3, 5; censored at 2 and 4.
    km = kaplan_meier(np.array([1, 2, 2, 3, 4, 5]), np.array([1, 1, 0, 1, 0, 1]))
    assert km.time.tolist() == [0, 1, 2, 3, 5]
    assert km.n_at_risk.tolist() == [6, 6, 5, 3, 1]
    np.testing.assert_allclose(km.survival, [1, 5 / 6, 5 / 6 * 4 / 5, 5 / 6 * 4 / 5 * 2 / 3, 0])
    # Greenwood at day 2: sum d/(n(n-d)) = 1/(6*5) + 1/(5*4); log-log interval S^exp(+-z se/|log S|).
    s = 2 / 3
    v = 1 / 30 + 1 / 20
    se = math.sqrt(v) / abs(math.log(s))
    assert km.lower[2] == pytest.approx(s ** math.exp(Z95 * se))
    assert km.upper[2] == pytest.approx(s ** math.exp(-Z95 * se))
    assert math.isnan(km.lower[0]) and math.isnan(km.lower[-1])  # survival 1 and 0: no interval


def test_weighted_kaplan_meier_with_unit_weights_is_the_plain_one() -> None:
    rng = np.random.default_rng(2)
    time, event = rng.integers(1, 30, 50), rng.random(50) < 0.5
    plain, weighted = kaplan_meier(time, event), kaplan_meier(time, event, np.ones(50))
    np.testing.assert_allclose(plain.survival, weighted.survival)
    # Doubling every weight changes nothing but the Greenwood sum (halved).
    doubled = kaplan_meier(time, event, np.full(50, 2.0))
    np.testing.assert_allclose(doubled.survival, plain.survival)
    assert doubled.n_at_risk.tolist() == plain.n_at_risk.tolist()
