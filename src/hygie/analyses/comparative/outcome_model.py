"""Outcome models: the Cox proportional hazards model (stratified, Efron or Breslow ties, Newton-Raphson) and
Kaplan-Meier curves with Greenwood confidence intervals on the log-log scale.

Times are whole days since the index date; a person censored at day t is at risk at t (an event and a censoring
on the same day: the event happens first). Efron's method is the default for tied event times: it is the closer
approximation of the exact partial likelihood when many events share a day (Breslow's is kept for comparison
with tools that use it). See docs/decisions/0011.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import norm

Ties = Literal["efron", "breslow"]
Z95 = float(norm.ppf(0.975))


@dataclass(frozen=True)
class CoxFit:
    coef: np.ndarray
    se: np.ndarray
    log_likelihood: float
    iterations: int
    converged: bool


@dataclass(frozen=True)
class HazardRatio:
    hr: float | None
    lower: float | None
    upper: float | None
    p_value: float | None
    log_hr: float | None
    se_log_hr: float | None

    @classmethod
    def missing(cls) -> HazardRatio:
        return cls(None, None, None, None, None, None)


class _RiskSets:
    """The sort and the (stratum, time) blocks of a dataset, computed once for every Newton step."""

    def __init__(self, time: np.ndarray, event: np.ndarray, strata: np.ndarray) -> None:
        order = np.lexsort((-time, strata))  # by stratum, then time descending: a prefix sum is a risk set
        self.order = order
        t, s, e = time[order], strata[order], event[order].astype(bool)
        n = len(order)
        new_stratum = np.ones(n, dtype=bool)
        new_stratum[1:] = s[1:] != s[:-1]
        self.stratum_start = np.maximum.accumulate(np.where(new_stratum, np.arange(n), 0))
        new_block = new_stratum.copy()
        new_block[1:] |= t[1:] != t[:-1]
        block = np.cumsum(new_block) - 1
        self.block_last = np.flatnonzero(np.r_[new_block[1:], True])  # last row of each block
        self.event = e
        self.event_block = block[e]
        d = np.bincount(self.event_block, minlength=len(self.block_last))
        self.blocks = np.flatnonzero(d)  # blocks holding events
        self.d = d[self.blocks]
        # Efron: one term per tied event, l = 0..d-1 within its block.
        self.rep = np.repeat(np.arange(len(self.blocks)), self.d)
        starts = np.cumsum(self.d) - self.d
        self.frac = (np.arange(len(self.rep)) - starts[self.rep]) / self.d[self.rep]

    def within(self, cumulative: np.ndarray) -> np.ndarray:
        """Prefix sums restarted at each stratum (``cumulative`` already summed over the whole sorted array)."""
        offset = np.zeros_like(cumulative)
        start = self.stratum_start
        has_before = start > 0
        offset[has_before] = cumulative[start[has_before] - 1]
        return cumulative - offset


def _partial(beta: np.ndarray, x: np.ndarray, rs: _RiskSets, ties: Ties) -> tuple[float, np.ndarray, np.ndarray]:
    """Log partial likelihood, gradient and information matrix at ``beta`` (x sorted like the risk sets)."""
    eta = x @ beta
    eta_max = eta.max() if len(eta) else 0.0
    w = np.exp(eta - eta_max)  # scaled: the likelihood is invariant to it
    wx = w[:, None] * x
    wxx = wx[:, :, None] * x[:, None, :]
    r0 = rs.within(np.cumsum(w))[rs.block_last][rs.blocks]
    r1 = rs.within(np.cumsum(wx, axis=0))[rs.block_last][rs.blocks]
    r2 = rs.within(np.cumsum(wxx, axis=0))[rs.block_last][rs.blocks]
    nb = len(rs.block_last)
    p = x.shape[1]
    ev = rs.event
    d0 = np.bincount(rs.event_block, weights=w[ev], minlength=nb)[rs.blocks]
    d1 = np.stack([np.bincount(rs.event_block, weights=wx[ev, j], minlength=nb) for j in range(p)], axis=1)[rs.blocks]
    d2 = np.stack(
        [np.bincount(rs.event_block, weights=wxx[ev, j, k], minlength=nb) for j in range(p) for k in range(p)], axis=1
    ).reshape(-1, p, p)[rs.blocks]
    if ties == "efron":
        f = rs.frac
        i = rs.rep
        phi = r0[i] - f * d0[i]
        m1 = r1[i] - f[:, None] * d1[i]
        m2 = r2[i] - f[:, None, None] * d2[i]
        dn = np.ones(len(i))
    else:
        phi, m1, m2, dn = r0, r1, r2, rs.d.astype(float)
    mean = m1 / phi[:, None]
    loglik = float(eta[ev].sum() - np.sum(dn * (np.log(phi) + eta_max)))
    grad = x[ev].sum(axis=0) - np.sum(dn[:, None] * mean, axis=0)
    info = np.sum(dn[:, None, None] * (m2 / phi[:, None, None] - mean[:, :, None] * mean[:, None, :]), axis=0)
    return loglik, grad, info


def cox(
    time: np.ndarray,
    event: np.ndarray,
    x: np.ndarray,
    strata: np.ndarray | None = None,
    ties: Ties = "efron",
    max_iter: int = 50,
    tol: float = 1e-9,
) -> CoxFit:
    """Maximum partial-likelihood fit by Newton-Raphson with step halving, from beta = 0."""
    x = np.asarray(x, dtype=float).reshape(len(time), -1)
    strata = np.zeros(len(time), dtype=np.int64) if strata is None else strata
    rs = _RiskSets(np.asarray(time, dtype=float), np.asarray(event), strata)
    xs = x[rs.order]
    beta = np.zeros(x.shape[1])
    loglik, grad, info = _partial(beta, xs, rs, ties)
    converged = False
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        try:
            step = np.linalg.solve(info, grad)
        except np.linalg.LinAlgError:
            break
        new = beta + step
        new_loglik, new_grad, new_info = _partial(new, xs, rs, ties)
        halvings = 0
        while (not np.isfinite(new_loglik) or new_loglik < loglik - 1e-12) and halvings < 30:
            step /= 2
            new = beta + step
            new_loglik, new_grad, new_info = _partial(new, xs, rs, ties)
            halvings += 1
        done = abs(new_loglik - loglik) <= tol * (abs(loglik) + tol)
        beta, loglik, grad, info = new, new_loglik, new_grad, new_info
        if done:
            converged = True
            break
    try:
        with np.errstate(invalid="ignore"):
            se = np.sqrt(np.diag(np.linalg.inv(info)))
    except np.linalg.LinAlgError:
        se = np.full(len(beta), np.nan)
    return CoxFit(beta, se, loglik, iterations, converged)


def hazard_ratio(
    time: np.ndarray, event: np.ndarray, treated: np.ndarray, strata: np.ndarray | None = None, ties: Ties = "efron"
) -> HazardRatio:
    """The hazard ratio of target versus comparator (Wald 95% CI and p); missing when it cannot be estimated
    (no event in a group within the informative strata: the likelihood has no maximum)."""
    event = np.asarray(event).astype(bool)
    treated = np.asarray(treated).astype(float)
    if not event.any() or len(np.unique(treated)) != 2:
        return HazardRatio.missing()
    fit = cox(time, event, treated[:, None], strata, ties)
    b, se = float(fit.coef[0]), float(fit.se[0])
    if not fit.converged or not np.isfinite(se) or se <= 0 or abs(b) > 15 or se > 1e3:
        return HazardRatio.missing()
    z = b / se
    return HazardRatio(
        float(np.exp(b)),
        float(np.exp(b - Z95 * se)),
        float(np.exp(b + Z95 * se)),
        float(2 * norm.sf(abs(z))),
        b,
        se,
    )


@dataclass(frozen=True)
class KaplanMeier:
    time: np.ndarray  # 0, then each day with an event
    n_at_risk: np.ndarray  # persons at risk at that time (unweighted count)
    events: np.ndarray  # weighted events on that day
    survival: np.ndarray
    lower: np.ndarray  # 95% CI, log-log transform (nan where undefined: survival 0 or 1)
    upper: np.ndarray


def kaplan_meier(time: np.ndarray, event: np.ndarray, weights: np.ndarray | None = None) -> KaplanMeier:
    """Product-limit estimate; with ``weights``, weighted events and risk sets (the adjusted curves), the
    Greenwood sum using the weighted counts."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    w = np.ones(len(time)) if weights is None else np.asarray(weights, dtype=float)
    keep = w > 0
    time, event, w = time[keep], event[keep], w[keep]
    days = np.unique(time[event])
    order = np.argsort(time)
    ts, ws = time[order], w[order]
    # At risk at t: time >= t.
    first = np.searchsorted(ts, days, side="left")
    at_risk_w = np.cumsum(ws[::-1])[::-1]
    n_w = at_risk_w[first] if len(days) else np.empty(0)
    n_count = (len(ts) - first).astype(np.int64)
    d_w = np.bincount(np.searchsorted(days, time[event]), weights=w[event], minlength=len(days))
    factor = 1 - d_w / n_w
    survival = np.cumprod(factor)
    with np.errstate(divide="ignore", invalid="ignore"):
        greenwood = np.cumsum(d_w / (n_w * (n_w - d_w)))
        se_loglog = np.sqrt(greenwood) / np.abs(np.log(survival))
        lower = survival ** np.exp(Z95 * se_loglog)
        upper = survival ** np.exp(-Z95 * se_loglog)
    undefined = (survival <= 0) | (survival >= 1) | ~np.isfinite(se_loglog)
    lower = np.where(undefined, np.nan, lower)
    upper = np.where(undefined, np.nan, upper)
    if not len(days) or days[0] > 0:  # the curve starts at 1 on day 0
        days, n_count, d_w = np.r_[0.0, days], np.r_[len(ts), n_count], np.r_[0.0, d_w]
        survival, lower, upper = np.r_[1.0, survival], np.r_[np.nan, lower], np.r_[np.nan, upper]
    return KaplanMeier(days, n_count.astype(np.int64), d_w, survival, lower, upper)
