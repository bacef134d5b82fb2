"""Adjustment sets on the propensity score: greedy nearest-neighbour matching on the logit PS with a caliper
(1:1, 1:k or variable ratio), and stratification into PS quantiles.

Both return a stratum per person (-1: left out). A matched set is a target and its comparators (the stratum is
the target's position); a PS stratum is a quantile of the pooled PS distribution.

Matching is done in rounds: round r gives a r-th comparator to each target that got one in every earlier round.
Within a round the result is that of global greedy matching: the closest available (target, comparator) pair is
taken first (ties: the lower target position, then the comparator lower in (logit PS, position) order), then the
next closest among those left, until no pair lies within the caliper. It is computed lazily: a heap holds each
target's nearest available comparator, refreshed when that comparator has gone to a closer pair.
"""

from __future__ import annotations

import heapq

import numpy as np
from scipy.special import logit as _logit

UNMATCHED = -1


def logit_ps(ps: np.ndarray) -> np.ndarray:
    return _logit(np.clip(ps, 1e-12, 1 - 1e-12))


def caliper_width(logit: np.ndarray, caliper: float | None) -> float:
    """The caliper on the logit scale: ``caliper`` standard deviations of the logit PS (inf without caliper)."""
    if caliper is None or caliper == 0:
        return float("inf")
    return float(caliper * np.std(logit))


class _Available:
    """Comparators sorted by (score, position), with deletions: the nearest available one on each side of a
    value in near-constant time (two union-find 'next available' pointers)."""

    def __init__(self, score: np.ndarray, comparators: np.ndarray) -> None:
        order = np.lexsort((comparators, score[comparators]))
        self.members = comparators[order]
        self.values = score[self.members]
        n = len(self.members)
        self.right = np.arange(n + 1)  # right[i]: smallest available rank >= i (n: none)
        self.left = np.arange(n + 1)  # left[i + 1]: largest available rank <= i (0: none)
        # First rank of each run of equal values: among equally near comparators the lowest rank wins.
        first = np.ones(n, dtype=bool)
        first[1:] = self.values[1:] != self.values[:-1]
        self.run_start = np.maximum.accumulate(np.where(first, np.arange(n), 0)) if n else np.empty(0, np.int64)

    @staticmethod
    def _find(parent: np.ndarray, i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return int(root)

    def remove(self, rank: int) -> None:
        self.right[rank] = rank + 1
        self.left[rank + 1] = rank

    def nearest(self, value: float, pos: int) -> tuple[float, int]:
        """(distance, rank) of the nearest available comparator to ``value`` (``pos``: its insertion rank);
        (inf, -1) when none is left."""
        best = (float("inf"), -1)
        r = self._find(self.right, pos)
        if r < len(self.members):
            best = (float(self.values[r] - value), r)
        l_plus = self._find(self.left, pos)  # left[pos] covers ranks <= pos - 1
        if l_plus > 0:
            lo = self._find(self.right, int(self.run_start[l_plus - 1]))
            candidate = (float(value - self.values[lo]), lo)
            if candidate < best:
                best = candidate
        return best


def _match_round(score: np.ndarray, targets: np.ndarray, available: _Available, width: float) -> list[tuple[int, int]]:
    """One greedy round: the closest (target, comparator) pair first (ties: lower target position, then lower
    comparator rank), each target at most one comparator, every pair within ``width``."""
    positions = np.searchsorted(available.values, score[targets], side="left")
    heap: list[tuple[float, int, int, int]] = []
    for t, pos in zip(targets.tolist(), positions.tolist(), strict=True):
        d, rank = available.nearest(float(score[t]), pos)
        if d <= width:
            heap.append((d, t, rank, pos))
    heapq.heapify(heap)
    taken: set[int] = set()
    pairs = []
    while heap:
        d, t, rank, pos = heapq.heappop(heap)
        if rank in taken:  # stale: the comparator went to a closer pair; look again
            d, rank = available.nearest(float(score[t]), pos)
            if d <= width:
                heapq.heappush(heap, (d, t, rank, pos))
            continue
        taken.add(rank)
        available.remove(rank)
        pairs.append((t, int(available.members[rank])))
    return pairs


def match(logit: np.ndarray, treated: np.ndarray, caliper: float | None = 0.2, max_ratio: int = 1) -> np.ndarray:
    """Matched set of each person (the target's position), or -1. Up to ``max_ratio`` comparators per target,
    each within ``caliper`` SD of the logit PS of its target."""
    width = caliper_width(logit, caliper)
    treated = treated.astype(bool)
    stratum = np.full(len(logit), UNMATCHED, dtype=np.int64)
    available = _Available(logit, np.flatnonzero(~treated))
    targets = np.flatnonzero(treated)
    for _ in range(max_ratio):
        pairs = np.array(_match_round(logit, targets, available, width), dtype=np.int64).reshape(-1, 2)
        if not len(pairs):
            break
        stratum[pairs[:, 0]] = pairs[:, 0]
        stratum[pairs[:, 1]] = pairs[:, 0]
        targets = np.sort(pairs[:, 0])  # only targets matched in this round may get another comparator
    return stratum


def stratify(ps: np.ndarray, treated: np.ndarray, strata: int) -> np.ndarray:
    """PS stratum (0..strata-1) of each person by quantiles of the pooled PS; persons of a stratum without both
    groups are left out (-1)."""
    if not len(ps):
        return np.empty(0, dtype=np.int64)
    edges = np.quantile(ps, np.linspace(0, 1, strata + 1)[1:-1])
    stratum = np.searchsorted(edges, ps, side="right").astype(np.int64)
    treated = treated.astype(bool)
    for s in range(strata):
        members = stratum == s
        if not (treated & members).any() or not (~treated & members).any():
            stratum[members] = UNMATCHED
    return stratum


def att_weights(stratum: np.ndarray, treated: np.ndarray) -> np.ndarray:
    """Weights that make the comparators of each stratum count as much as its targets (targets 1, comparators
    n_targets/n_comparators of their stratum, persons left out 0): the 'after adjustment' weighting of balance
    and Kaplan-Meier curves."""
    treated = treated.astype(bool)
    weights = np.zeros(len(stratum))
    inside = stratum != UNMATCHED
    if not inside.any():
        return weights
    codes, index = np.unique(stratum[inside], return_inverse=True)
    n_t = np.bincount(index, weights=treated[inside].astype(float), minlength=len(codes))
    n_c = np.bincount(index, weights=(~treated[inside]).astype(float), minlength=len(codes))
    ratio = np.divide(n_t, n_c, out=np.zeros_like(n_t), where=n_c > 0)
    w = np.where(treated[inside], 1.0, ratio[index])
    w[treated[inside] & (n_c[index] == 0)] = 0.0
    weights[inside] = w
    return weights
