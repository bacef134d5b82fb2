"""Standardised mean differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from hygie.analyses.comparative.balance import balance, imbalanced, smd, weighted_moments


def test_smd_of_a_binary_covariate_by_hand() -> None:
    # Target 3 of 10 with it, comparator 6 of 12: (0.3 - 0.5) / sqrt((0.21 + 0.25) / 2).
    x = sp.csr_matrix(np.r_[np.ones(3), np.zeros(7), np.ones(6), np.zeros(6)][:, None])
    treated = np.r_[np.ones(10), np.zeros(12)].astype(bool)
    b = balance(x, treated, np.ones(22))
    assert b.smd_before[0] == pytest.approx((0.3 - 0.5) / math.sqrt((0.21 + 0.25) / 2))
    assert b.smd_after[0] == pytest.approx(b.smd_before[0])


def test_weighted_moments_of_a_continuous_covariate() -> None:
    values = np.array([1.0, 2.0, 4.0, 0.0])
    weights = np.array([1.0, 1.0, 2.0, 0.0])
    m = weighted_moments(sp.csr_matrix(values[:, None]), weights)
    mean = (1 + 2 + 8) / 4
    assert m.mean[0] == pytest.approx(mean)
    assert m.var[0] == pytest.approx((1 * (1 - mean) ** 2 + (2 - mean) ** 2 + 2 * (4 - mean) ** 2) / 4)


def test_weights_after_adjustment_change_the_comparator_means() -> None:
    x = sp.csr_matrix(np.array([[1.0], [1.0], [0.0], [0.0]]))
    treated = np.array([True, False, False, True])
    after = np.array([1.0, 1.0, 0.0, 0.0])  # only the first matched pair counts
    b = balance(x, treated, after)
    assert b.target_after.mean[0] == 1.0 and b.comparator_after.mean[0] == 1.0
    assert b.smd_after[0] == 0.0


def test_constant_covariates_and_the_imbalance_count() -> None:
    target = weighted_moments(sp.csr_matrix(np.ones((3, 1))), np.ones(3))
    comparator = weighted_moments(sp.csr_matrix(np.zeros((3, 1))), np.ones(3))
    assert smd(target, target)[0] == 0.0
    assert smd(target, comparator)[0] == np.inf
    assert imbalanced(np.array([0.05, -0.1, 0.2, np.nan, -np.inf])) == 3
