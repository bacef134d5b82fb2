"""Covariate balance: standardised mean differences (SMD) of every covariate between the groups, before and
after adjustment.

SMD = (mean_target - mean_comparator) / sqrt((var_target + var_comparator) / 2), each group's mean and variance
weighted (after adjustment: targets 1, comparators n_targets/n_comparators of their matched set or stratum, so
that each set or stratum weighs the comparators as much as its targets). A covariate constant and equal in both
groups has SMD 0; constant but different in the two groups, +/-inf.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

THRESHOLD = 0.1  # |SMD| at or above it is imbalance


@dataclass(frozen=True)
class Moments:
    mean: np.ndarray
    var: np.ndarray


def weighted_moments(x: sp.csr_matrix, weights: np.ndarray) -> Moments:
    """Weighted mean and (population) variance of each column; columns of zero total weight give nan."""
    total = float(weights.sum())
    if total <= 0:
        nan = np.full(x.shape[1], np.nan)
        return Moments(nan, nan)
    mean = np.asarray(x.T @ weights).ravel() / total
    second = np.asarray(x.multiply(x).T @ weights).ravel() / total
    return Moments(mean, np.clip(second - mean**2, 0.0, None))


def smd(target: Moments, comparator: Moments) -> np.ndarray:
    diff = target.mean - comparator.mean
    sd = np.sqrt((target.var + comparator.var) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = diff / sd
        return np.where(sd > 0, out, np.where(diff == 0, 0.0, np.sign(diff) * np.inf))


@dataclass(frozen=True)
class Balance:
    target_before: Moments
    comparator_before: Moments
    target_after: Moments
    comparator_after: Moments

    @property
    def smd_before(self) -> np.ndarray:
        return smd(self.target_before, self.comparator_before)

    @property
    def smd_after(self) -> np.ndarray:
        return smd(self.target_after, self.comparator_after)


def balance(x: sp.csr_matrix, treated: np.ndarray, weights_after: np.ndarray) -> Balance:
    treated = treated.astype(bool)
    ones = np.ones(len(treated))
    return Balance(
        weighted_moments(x, ones * treated),
        weighted_moments(x, ones * ~treated),
        weighted_moments(x, weights_after * treated),
        weighted_moments(x, weights_after * ~treated),
    )


def imbalanced(values: np.ndarray, threshold: float = THRESHOLD) -> int:
    """Covariates with |SMD| >= threshold (nan: not computable, not counted)."""
    return int(np.sum(np.abs(values[~np.isnan(values)]) >= threshold))
