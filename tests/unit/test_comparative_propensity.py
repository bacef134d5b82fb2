"""The propensity model: likelihood and gradient, penalised fits against independent optimisers, CV, AUC."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp

from hygie.analyses.comparative.propensity import (
    auc,
    equipoise,
    fit_logistic,
    fit_propensity,
    folds,
    log_likelihood,
    objective,
    preference_score,
    strength_max,
)


def _data(n: int = 600, p: int = 8, seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray]:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n, p)) < rng.uniform(0.05, 0.5, p)).astype(float)
    beta = np.r_[1.0, -1.0, 0.5, np.zeros(p - 3)]
    y = (rng.random(n) < 1 / (1 + np.exp(-(-0.3 + dense @ beta)))).astype(float)
    return sp.csr_matrix(dense), y


def test_log_likelihood_is_the_bernoulli_one() -> None:
    eta = np.array([-2.0, 0.0, 3.0])
    y = np.array([0.0, 1.0, 1.0])
    p = 1 / (1 + np.exp(-eta))
    assert log_likelihood(eta, y) == pytest.approx(float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p))))
    assert np.isfinite(log_likelihood(np.array([800.0, -800.0]), np.array([1.0, 0.0])))


def test_gradient_matches_finite_differences() -> None:
    x, y = _data(200, 5)
    params = np.random.default_rng(1).normal(size=6)
    _, grad = objective(params, x, y, "l2", 0.3)
    numeric = scipy.optimize.approx_fprime(params, lambda q: objective(q, x, y, "l2", 0.3)[0], 1e-7)
    np.testing.assert_allclose(grad, numeric, atol=1e-6)


def test_l2_with_a_tiny_penalty_is_the_unpenalised_fit() -> None:
    x, y = _data()
    fit = fit_logistic(x, y, "l2", 1e-10)
    dense = np.column_stack([np.ones(x.shape[0]), x.toarray()])
    unpenalised = scipy.optimize.minimize(
        lambda b: -log_likelihood(dense @ b, y), np.zeros(dense.shape[1]), method="BFGS",
        jac=lambda b: -dense.T @ (y - 1 / (1 + np.exp(-dense @ b))), options={"gtol": 1e-10},
    )  # fmt: skip
    np.testing.assert_allclose(np.r_[fit.intercept, fit.coef], unpenalised.x, atol=1e-4)
    assert fit.converged


def test_l2_fit_is_the_penalised_optimum() -> None:
    x, y = _data()
    strength = 0.05
    fit = fit_logistic(x, y, "l2", strength)
    reference = scipy.optimize.minimize(
        objective, np.zeros(x.shape[1] + 1), args=(x, y, "l2", strength), jac=True, method="BFGS",
        options={"gtol": 1e-12},
    )  # fmt: skip
    np.testing.assert_allclose(np.r_[fit.intercept, fit.coef], reference.x, atol=1e-5)


def test_l1_fit_satisfies_the_lasso_optimality_conditions() -> None:
    x, y = _data(800, 10)
    strength = 0.01
    fit = fit_logistic(x, y, "l1", strength)
    n = x.shape[0]
    residual = y - 1 / (1 + np.exp(-fit.linear_predictor(x)))
    score = x.T @ residual / n
    assert abs(residual.sum() / n) < 1e-6  # unpenalised intercept
    active = fit.coef != 0
    np.testing.assert_allclose(score[active], strength * np.sign(fit.coef[active]), atol=1e-5)
    assert np.all(np.abs(score[~active]) <= strength + 1e-6)
    assert (~active).any() and active.any()  # the noise covariates are dropped at this strength


def test_l1_at_the_top_strength_keeps_no_covariate() -> None:
    x, y = _data()
    fit = fit_logistic(x, y, "l1", strength_max(x, y) * 1.001)
    assert not fit.coef.any()
    assert fit.intercept == pytest.approx(np.log(y.mean() / (1 - y.mean())), abs=1e-6)


def test_folds_are_stratified_and_seeded() -> None:
    y = np.r_[np.ones(30), np.zeros(70)].astype(np.int8)
    f = folds(y, 5, seed=4)
    for k in range(5):
        assert (y[f == k] == 1).sum() == 6 and (y[f == k] == 0).sum() == 14
    assert np.array_equal(f, folds(y, 5, seed=4)) and not np.array_equal(f, folds(y, 5, seed=5))


def test_cross_validation_picks_the_best_held_out_strength_and_is_deterministic() -> None:
    x, y = _data(500, 12, seed=7)
    model = fit_propensity(x, y.astype(np.int8), "l1", cv_folds=4, seed=1)
    assert model.strength == max(model.cv, key=lambda s: model.cv[s])
    again = fit_propensity(x, y.astype(np.int8), "l1", cv_folds=4, seed=1)
    np.testing.assert_array_equal(model.fit.coef, again.fit.coef)
    assert len(model.cv) == 10


def test_auc_is_the_probability_a_target_scores_higher() -> None:
    rng = np.random.default_rng(2)
    score = rng.integers(0, 5, 60).astype(float)  # with ties
    treated = rng.integers(0, 2, 60)
    t, c = score[treated == 1], score[treated == 0]
    pairs = (t[:, None] > c[None, :]).mean() + 0.5 * (t[:, None] == c[None, :]).mean()
    assert auc(score, treated) == pytest.approx(pairs)


def test_preference_score_and_equipoise() -> None:
    treated = np.r_[np.ones(25), np.zeros(75)]
    ps = np.full(100, 0.25)  # the PS equals the target share: no preference at all
    np.testing.assert_allclose(preference_score(ps, treated), 0.5)
    assert equipoise(ps, treated) == 1.0
    assert equipoise(np.r_[np.full(25, 0.99), np.full(75, 0.01)], treated) == 0.0
