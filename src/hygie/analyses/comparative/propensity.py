"""Large-scale propensity model: logistic regression on a sparse covariate matrix, L1 or L2 penalised, the
penalty strength chosen by k-fold cross-validation (held-out log-likelihood). Deterministic given the seed.

The objective is the mean negative log-likelihood plus ``strength * ||w||_1`` (L1) or
``strength / 2 * ||w||_2^2`` (L2); the intercept is never penalised. Both are minimised by (proximal) Newton
steps: a handful of passes over the data, each building the (covariates x covariates) Hessian; the L1 step solves
the penalised quadratic model by diagonally preconditioned proximal gradient (soft-thresholding: exact zeros).
See docs/decisions/0011.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, log_expit
from scipy.stats import rankdata

Penalty = Literal["l1", "l2"]
GRID_SIZE = 10
GRID_DECADES = 3.0  # the default grid spans strength_max down to strength_max / 10^3


@dataclass(frozen=True)
class LogisticFit:
    intercept: float
    coef: np.ndarray
    converged: bool

    def linear_predictor(self, x: sp.csr_matrix) -> np.ndarray:
        return self.intercept + x @ self.coef


@dataclass(frozen=True)
class PropensityModel:
    fit: LogisticFit
    penalty: Penalty
    strength: float  # the chosen penalty
    cv: dict[float, float] = field(default_factory=dict)  # strength -> mean held-out log-likelihood per person

    @property
    def nonzero(self) -> int:
        return int(np.count_nonzero(self.fit.coef))


def log_likelihood(eta: np.ndarray, y: np.ndarray) -> float:
    """Sum of the Bernoulli log-likelihood at linear predictor ``eta`` (stable for large |eta|)."""
    return float(np.sum(y * log_expit(eta) + (1 - y) * log_expit(-eta)))


def objective(
    params: np.ndarray, x: sp.csr_matrix, y: np.ndarray, penalty: Penalty, strength: float
) -> tuple[float, np.ndarray]:
    """Penalised mean negative log-likelihood and its gradient in ``params = (intercept, w)``."""
    n = x.shape[0]
    b0, w = params[0], params[1:]
    eta = b0 + x @ w
    loss = -log_likelihood(eta, y) / n
    residual = (expit(eta) - y) / n
    grad = np.empty_like(params)
    grad[0] = residual.sum()
    grad[1:] = x.T @ residual
    if penalty == "l2":
        loss += 0.5 * strength * float(w @ w)
        grad[1:] += strength * w
    else:
        loss += strength * float(np.abs(w).sum())  # the value only: the L1 gradient is the smooth part's
    return loss, grad


def _penalty_value(w: np.ndarray, penalty: Penalty, strength: float) -> float:
    return strength * float(np.abs(w).sum()) if penalty == "l1" else 0.5 * strength * float(w @ w)


def _quadratic_lasso(
    h: np.ndarray, c: np.ndarray, v: np.ndarray, thresholds: np.ndarray, tol: float, iterations: int = 1000
) -> np.ndarray:
    """min_v c.v + v'Hv/2 + sum(thresholds * |v|): proximal gradient in the metric diag(H) (each coordinate
    scaled by its own curvature, so rare covariates do not slow it down), accelerated with adaptive restart."""
    d = np.diag(h).copy()
    d[d <= 0] = 1e-12
    scaled = h / np.sqrt(np.outer(d, d))
    top = float(np.linalg.eigvalsh(scaled)[-1]) if len(d) <= 3000 else _power(scaled)
    metric = 1.01 * top * d  # H <= metric, coordinate-wise step 1/metric
    z, t = v.copy(), 1.0
    for _ in range(iterations):
        u = z - (c + h @ z) / metric
        new = np.sign(u) * np.maximum(np.abs(u) - thresholds / metric, 0.0)
        change = new - v
        if float(np.max(np.abs(change))) <= tol * (1.0 + float(np.max(np.abs(new)))):
            return new
        if float((z - new) @ change) > 0:
            t = 1.0
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        z = new + ((t - 1) / t_next) * change
        v, t = new, t_next
    return v


def _power(a: np.ndarray, iterations: int = 100) -> float:
    v = np.ones(a.shape[0]) / np.sqrt(a.shape[0])
    value = 1.0
    for _ in range(iterations):
        w = a @ v
        value = float(np.linalg.norm(w))
        v = w / value
    return value


def fit_logistic(
    x: sp.csr_matrix,
    y: np.ndarray,
    penalty: Penalty,
    strength: float,
    start: LogisticFit | None = None,
    tol: float = 1e-8,
    max_iter: int = 100,
) -> LogisticFit:
    """Penalised logistic regression at one strength by (proximal) Newton steps with a backtracking line search
    (``start``: warm start from a neighbouring fit). L2: Newton's step solves (H + strength I) d = -gradient.
    L1: the step minimises the quadratic model plus the L1 term (``_quadratic_lasso``)."""
    n, p = x.shape
    xa = sp.hstack([np.ones((n, 1)), x], format="csr")
    xat = xa.T.tocsr()
    pen = np.r_[0.0, np.ones(p)]
    mean = min(max(float(y.mean()), 1e-6), 1 - 1e-6)
    params = np.r_[start.intercept, start.coef] if start is not None else np.r_[np.log(mean / (1 - mean)), np.zeros(p)]

    def total(theta: np.ndarray) -> float:
        return -log_likelihood(xa @ theta, y) / n + _penalty_value(theta[1:], penalty, strength)

    value = total(params)
    for _ in range(max_iter):
        mu = expit(xa @ params)
        grad = xat @ (mu - y) / n
        h = np.asarray((xat @ xa.multiply((mu * (1 - mu) / n)[:, None])).todense())
        if penalty == "l2":
            g = grad + strength * pen * params
            step = np.linalg.solve(h + np.diag(strength * pen + 1e-12), -g)
            decrease = float(g @ step)
        else:
            target = _quadratic_lasso(h, grad - h @ params, params, strength * pen, tol * 1e-2)
            step = target - params
            decrease = float(grad @ step) + strength * float(np.abs(target[1:]).sum() - np.abs(params[1:]).sum())
        if decrease >= 0:  # no descent direction left: optimal to the solver's precision
            return LogisticFit(float(params[0]), params[1:].copy(), True)
        alpha = 1.0
        while True:
            candidate = params + alpha * step
            new_value = total(candidate)
            if new_value <= value + 1e-4 * alpha * decrease or alpha < 1e-10:
                break
            alpha /= 2
        moved = float(np.max(np.abs(candidate - params)))
        params, value = candidate, new_value
        if moved <= tol * (1.0 + float(np.max(np.abs(params)))):
            return LogisticFit(float(params[0]), params[1:].copy(), True)
    return LogisticFit(float(params[0]), params[1:].copy(), False)


def strength_max(x: sp.csr_matrix, y: np.ndarray) -> float:
    """The smallest L1 strength at which every coefficient is zero (used as the top of both grids)."""
    bound = float(np.max(np.abs(x.T @ (y - y.mean())))) / x.shape[0] if x.shape[1] else 0.0
    return max(bound, 1e-6)


def default_grid(x: sp.csr_matrix, y: np.ndarray) -> list[float]:
    top = strength_max(x, y)
    return [top * 10 ** (-GRID_DECADES * k / (GRID_SIZE - 1)) for k in range(GRID_SIZE)]


def folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold of each person, stratified by treatment so that every fold holds both groups."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    for value in (0, 1):
        members = np.flatnonzero(y == value)
        fold[rng.permutation(members)] = np.arange(len(members)) % k
    return fold


def fit_propensity(
    x: sp.csr_matrix,
    treated: np.ndarray,
    penalty: Penalty = "l1",
    cv_folds: int = 5,
    seed: int = 42,
    strengths: list[float] | None = None,
) -> PropensityModel:
    """Choose the penalty by cross-validation (largest mean held-out log-likelihood), then refit on everyone."""
    y = treated.astype(np.float64)
    grid = sorted(strengths or default_grid(x, y), reverse=True)  # strong to weak: warm starts
    fold = folds(treated, cv_folds, seed)
    scores = {s: 0.0 for s in grid}
    if len(grid) > 1:
        for k in range(cv_folds):
            train, test = fold != k, fold == k
            xt, yt = x[train], y[train]
            previous = None
            for s in grid:
                previous = fit_logistic(xt, yt, penalty, s, previous, tol=1e-6)
                scores[s] += log_likelihood(previous.linear_predictor(x[test]), y[test])
        scores = {s: v / len(y) for s, v in scores.items()}
    best = max(grid, key=lambda s: (scores[s], s))  # ties: the stronger penalty
    start = None
    for s in grid:  # the path down to the chosen strength, warm-started
        start = fit_logistic(x, y, penalty, s, start)
        if s == best:
            break
    assert start is not None
    return PropensityModel(start, penalty, best, scores if len(grid) > 1 else {})


def auc(score: np.ndarray, treated: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half)."""
    n1 = int(treated.sum())
    n0 = len(treated) - n1
    if not n1 or not n0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[treated.astype(bool)].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def preference_score(ps: np.ndarray, treated: np.ndarray) -> np.ndarray:
    """The propensity score with the groups' sizes factored out (Walker et al.): 0.5 means no preference."""
    share = float(treated.mean())
    ps = np.clip(ps, 1e-12, 1 - 1e-12)
    logit = np.log(ps / (1 - ps)) - np.log(share / (1 - share))
    return expit(logit)


def equipoise(ps: np.ndarray, treated: np.ndarray, low: float = 0.3, high: float = 0.7) -> float:
    """Share of persons whose preference score lies in [low, high] (empirical equipoise)."""
    pref = preference_score(ps, treated)
    return float(np.mean((pref >= low) & (pref <= high))) if len(pref) else float("nan")
