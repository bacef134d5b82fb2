"""Empirical calibration: the null distribution fitted on negative controls."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hygie.analyses.comparative.calibration import calibrate, fit_null


def test_fit_null_recovers_a_known_systematic_error() -> None:
    rng = np.random.default_rng(42)
    n = 4000
    se = rng.uniform(0.05, 0.4, n)
    estimates = 0.2 + rng.normal(0, 0.15, n) + rng.normal(0, se)
    null = fit_null(estimates, se)
    assert null is not None
    assert null.mean == pytest.approx(0.2, abs=0.015)
    assert null.sd == pytest.approx(0.15, abs=0.015)
    assert null.controls == n


def test_no_systematic_error_gives_a_null_sd_near_zero() -> None:
    rng = np.random.default_rng(1)
    se = np.full(3000, 0.2)
    null = fit_null(rng.normal(0, se), se)
    assert null is not None and abs(null.mean) < 0.02 and null.sd < 0.03


def test_too_few_controls_give_no_null() -> None:
    assert fit_null(np.array([0.1, np.nan, 0.3]), np.array([0.1, 0.1, 0.2])) is None


def test_calibrated_p_and_interval_by_hand() -> None:
    null = fit_null(np.array([0.1, 0.3, 0.2, 0.2]), np.array([0.1, 0.1, 0.1, 0.1]))
    assert null is not None
    c = calibrate(0.7, 0.2, null)
    total = math.sqrt(null.sd**2 + 0.04)
    assert c.log_rr == pytest.approx(0.7 - null.mean) and c.se == pytest.approx(total)
    assert c.lower == pytest.approx(math.exp(0.7 - null.mean - 1.959964 * total), rel=1e-6)
    assert c.p_value == pytest.approx(math.erfc(abs(0.7 - null.mean) / total / math.sqrt(2)))
