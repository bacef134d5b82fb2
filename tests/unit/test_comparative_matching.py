"""Matching and stratification on the propensity score."""

from __future__ import annotations

import numpy as np
import pytest

from hygie.analyses.comparative.matching import UNMATCHED, att_weights, caliper_width, match, stratify


def _greedy_by_brute_force(score: np.ndarray, treated: np.ndarray, width: float, max_ratio: int) -> np.ndarray:
    """Round by round, every (target, comparator) pair sorted by (distance, target, comparator order)."""
    comparators = np.flatnonzero(~treated)
    rank = {int(c): r for r, c in enumerate(comparators[np.lexsort((comparators, score[comparators]))])}
    stratum = np.full(len(score), UNMATCHED)
    used: set[int] = set()
    active = list(np.flatnonzero(treated))
    for _ in range(max_ratio):
        edges = sorted(
            (abs(score[t] - score[c]), int(t), rank[int(c)], int(c))
            for t in active
            for c in comparators
            if int(c) not in used and abs(score[t] - score[c]) <= width
        )
        got = set()
        for _, t, _, c in edges:
            if t in got or c in used:
                continue
            got.add(t)
            used.add(c)
            stratum[t] = t
            stratum[c] = t
        active = sorted(got)
    return stratum


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_ratio", [1, 3])
def test_matching_is_greedy_nearest_neighbour(seed: int, max_ratio: int) -> None:
    rng = np.random.default_rng(seed)
    n = 70
    treated = rng.random(n) < 0.4
    score = np.round(rng.normal(size=n) + treated, 1)  # rounded: many exact ties
    expected = _greedy_by_brute_force(score, treated, caliper_width(score, 0.2), max_ratio)
    np.testing.assert_array_equal(match(score, treated, 0.2, max_ratio), expected)


def test_matching_respects_the_caliper_and_the_ratio() -> None:
    rng = np.random.default_rng(11)
    n = 2000
    treated = rng.random(n) < 0.3
    score = rng.normal(size=n) + 1.5 * treated
    width = caliper_width(score, 0.2)
    assert width == pytest.approx(0.2 * score.std())
    for ratio in (1, 2, 4):
        stratum = match(score, treated, 0.2, ratio)
        for s in np.unique(stratum[stratum != UNMATCHED]):
            members = np.flatnonzero(stratum == s)
            targets = members[treated[members]]
            assert targets.tolist() == [s]
            comparators = members[~treated[members]]
            assert 1 <= len(comparators) <= ratio
            assert np.all(np.abs(score[comparators] - score[s]) <= width)
    # Without a caliper every comparator finds a target when targets are as many.
    assert (match(score, treated, None, 1)[treated] != UNMATCHED).sum() == treated.sum()


def test_stratification_into_quintiles() -> None:
    ps = np.linspace(0.01, 0.99, 100)
    treated = (np.arange(100) % 2).astype(bool)
    strata = stratify(ps, treated, 5)
    assert np.bincount(strata).tolist() == [20] * 5
    assert np.all(np.diff(strata) >= 0)
    # A stratum with a single group is left out.
    lonely = stratify(ps, np.r_[np.zeros(20), (np.arange(80) % 2)].astype(bool), 5)
    assert (lonely[:20] == UNMATCHED).all() and (lonely[20:] != UNMATCHED).all()


def test_att_weights_balance_each_set() -> None:
    stratum = np.array([0, 0, 0, 0, 1, 1, 1, UNMATCHED])
    treated = np.array([1, 0, 0, 0, 1, 1, 0, 0], dtype=bool)
    w = att_weights(stratum, treated)
    np.testing.assert_allclose(w, [1, 1 / 3, 1 / 3, 1 / 3, 1, 1, 2, 0])
