"""Empirical calibration with negative controls (Schuemie et al.): the estimates of outcomes not caused by
either drug show the study's systematic error; a normal distribution of that error is fitted and p-values and
confidence intervals are widened (and shifted) by it.

Model: a negative control's log hazard ratio b_i = mu + e_i + s_i, with the systematic error e_i ~ N(0, tau^2)
and the sampling error s_i ~ N(0, se_i^2); mu and tau are fitted by maximum likelihood (b_i ~ N(mu, tau^2 +
se_i^2)). For an estimate (b, se), the calibrated p-value is two-sided for z = (b - mu) / sqrt(tau^2 + se^2), and
the calibrated 95% CI is exp(b - mu +/- 1.96 sqrt(tau^2 + se^2)): the systematic error is assumed the same
whatever the true effect (the simplest of the published models; documented in docs/decisions/0011).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize
from scipy.stats import norm

MIN_CONTROLS = 3  # fewer usable negative-control estimates: no calibration
Z95 = float(norm.ppf(0.975))


@dataclass(frozen=True)
class NullDistribution:
    mean: float
    sd: float
    controls: int


def fit_null(log_rr: np.ndarray, se: np.ndarray) -> NullDistribution | None:
    """Maximum-likelihood (mean, sd) of the systematic error from negative-control estimates; None with fewer
    than MIN_CONTROLS finite estimates."""
    log_rr, se = np.asarray(log_rr, dtype=float), np.asarray(se, dtype=float)
    ok = np.isfinite(log_rr) & np.isfinite(se) & (se > 0)
    b, s = log_rr[ok], se[ok]
    if len(b) < MIN_CONTROLS:
        return None

    def negative_log_likelihood(params: np.ndarray) -> float:
        mu, tau = params
        return float(-norm.logpdf(b, mu, np.sqrt(tau**2 + s**2)).sum())

    start = np.array([float(np.mean(b)), max(float(np.std(b)), 0.1)])
    result = scipy.optimize.minimize(
        negative_log_likelihood, start, method="L-BFGS-B", bounds=[(None, None), (0.0, None)],
        options={"ftol": 1e-14, "gtol": 1e-10},
    )  # fmt: skip
    return NullDistribution(float(result.x[0]), float(abs(result.x[1])), len(b))


@dataclass(frozen=True)
class Calibrated:
    log_rr: float
    se: float  # sqrt(tau^2 + se^2): the systematic and the sampling error together
    lower: float
    upper: float
    p_value: float


def calibrate(log_rr: float, se: float, null: NullDistribution) -> Calibrated:
    total = float(np.sqrt(null.sd**2 + se**2))
    shifted = log_rr - null.mean
    return Calibrated(
        shifted,
        total,
        float(np.exp(shifted - Z95 * total)),
        float(np.exp(shifted + Z95 * total)),
        float(2 * norm.sf(abs(shifted) / total)),
    )
