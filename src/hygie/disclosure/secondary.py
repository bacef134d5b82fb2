"""Secondary (complementary) suppression: no masked cell may be recomputed from what is visible.

A table declares additive margins (``TableStructure.margins``): in rows agreeing on every other key, the total
level's count is the sum of the other levels' counts. Each such group is one linear equation. Masking proceeds in
two stages, the whole to a fixed point:

1. the line rule (cheap, classic): a group with exactly one masked cell gets a second one, its smallest visible
   non-zero member (zeros last, the total last among equals);
2. the audit, needed because the line rule is not enough (a masked cell bridging two masked cycles of a 2-D
   table is determined although every line has two masked cells; two masked 10s under a visible total):
   - linear audit. The statistics of this table and of the project's earlier outputs of the same table are laid
     out as one full table (every combination of the margin levels seen, in every context of the other keys).
     A statistic is known when any output shows it, however old; the others (masked, never released) are the
     unknowns of the margin equations. An unknown whose row of the null space is zero is fixed by what is
     visible: a disclosure when it is masked, or when it was never released and is a small count (a total
     released once minus the strata released now). Two views are audited: levels seen are all there are, and
     (with earlier outputs) a group no single output holds whole may have unseen levels, summed in a "rest".
     What earlier outputs fix on their own is not this table's doing and is left alone.
   - bounds audit, on this table: counts are non-negative and primary-masked cells lie in the masked range; a
     masked cell whose feasible range under these bounds (closed form for one equation, linear programming
     beyond) holds a single whole number is disclosed.
   Each disclosed statistic gets one more cell of the new table masked, the smallest non-zero visible one of
   its equations first.

Only cells of the table being released are masked: earlier outputs are fixed. A disclosure that no cell of the
new table can prevent is counted as unprotectable.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hygie.disclosure.history import Label

PRIMARY, SECONDARY, DIFFERENCING, MISSING = "primary", "secondary", "differencing", "missing"
PROTECTED = frozenset({PRIMARY, SECONDARY, DIFFERENCING})  # masked by disclosure control: must stay unknown
REST = "\x00rest"  # the level standing for levels of a margin that no output shows
_TOLERANCE = 1e-8
_MAX_ROUNDS = 10_000


@dataclass
class CountColumn:
    """One count column of the table being released: exact values and why each cell is masked (None: visible)."""

    labels: list[Label]
    values: list[int | None]
    reasons: list[str | None]


@dataclass(frozen=True)
class ReleasedColumn:
    """One count column of an earlier output, as released (None: masked)."""

    labels: list[Label]
    values: list[int | None]
    margins: Mapping[str, str]


@dataclass(frozen=True)
class Group:
    """One additive margin group: ``total`` (row index or None) is the sum of ``components``."""

    margin: str
    rest: Label
    total: int | None
    components: tuple[int, ...]


def margin_groups(labels: Sequence[Label], margins: Mapping[str, str]) -> list[Group]:
    """The additive groups of a table: rows agreeing on every key but ``margin``, split into total and levels."""
    groups = []
    for column, total_label in margins.items():
        found: dict[Label, tuple[list[int], list[int]]] = {}
        for i, label in enumerate(labels):
            level = dict(label).get(column)
            if level is None:
                continue
            rest = tuple(kv for kv in label if kv[0] != column)
            totals, components = found.setdefault(rest, ([], []))
            (totals if level == total_label else components).append(i)
        for rest, (totals, components) in found.items():
            if len(totals) > 1:
                raise ValueError(f"margin {column!r}: several total rows for the same keys; declare the table's keys")
            groups.append(Group(column, rest, totals[0] if totals else None, tuple(components)))
    return groups


def complete_lines(column: CountColumn, groups: Sequence[Group]) -> None:
    """The line rule, to a fixed point: no margin group keeps exactly one protected masked cell."""
    changed = True
    while changed:
        changed = False
        for g in groups:
            if g.total is None or not g.components:
                continue
            members = (g.total, *g.components)
            masked = [i for i in members if column.reasons[i] is not None]
            if len(masked) != 1 or column.reasons[masked[0]] not in PROTECTED:
                continue
            pick = _cheapest(column, [i for i in members if column.reasons[i] is None], g.total)
            if pick is not None:
                column.reasons[pick] = SECONDARY
                changed = True


def _cheapest(column: CountColumn, candidates: Sequence[int], total: int | None = None) -> int | None:
    """The visible cell whose masking loses least: smallest non-zero count, zeros last, a total after its parts."""
    visible = [i for i in candidates if column.reasons[i] is None and column.values[i] is not None]
    if not visible:
        return None
    return min(visible, key=lambda i: (column.values[i] == 0, column.values[i], i == total, i))


@dataclass
class _System:
    """Linear equations over the statistics nobody shows, the visible values moved to the right-hand side.

    A variable is a statistic (its label): what an attacker needs is the value, whichever output it came from.
    """

    known: Mapping[Label, float]  # every statistic some output shows (the new table's value first)
    candidates: Mapping[Label, int]  # statistics only the new table shows: row to mask to hide them
    variables: list[Label] = field(default_factory=list)
    index: dict[Label, int] = field(default_factory=dict)
    equations: list[dict[int, float]] = field(default_factory=list)
    rhs: list[float] = field(default_factory=list)
    maskable: list[list[int]] = field(default_factory=list)  # per equation: new-table rows whose mask helps

    def add(self, terms: Sequence[tuple[float, Label]]) -> None:
        coefficients: dict[int, float] = {}
        rhs = 0.0
        maskable = []
        for coefficient, label in terms:
            if label in self.known:
                rhs -= coefficient * self.known[label]
                if label in self.candidates:
                    maskable.append(self.candidates[label])
                continue
            var = self.index.setdefault(label, len(self.variables))
            if var == len(self.variables):
                self.variables.append(label)
            coefficients[var] = coefficients.get(var, 0.0) + coefficient
        coefficients = {v: c for v, c in coefficients.items() if c}
        if coefficients:
            self.equations.append(coefficients)
            self.rhs.append(rhs)
            self.maskable.append(maskable)

    def components(self) -> list[tuple[list[int], list[int]]]:
        """Connected components: (variables, equations) that share no variable with the others."""
        parent = list(range(len(self.variables)))

        def find(v: int) -> int:
            while parent[v] != v:
                parent[v] = parent[parent[v]]
                v = parent[v]
            return v

        for eq in self.equations:
            first, *others = eq
            for other in others:
                parent[find(other)] = find(first)
        by_root: dict[int, tuple[list[int], list[int]]] = {}
        for e, eq in enumerate(self.equations):
            by_root.setdefault(find(next(iter(eq))), ([], []))[1].append(e)
        for v in range(len(self.variables)):
            if find(v) in by_root:
                by_root[find(v)][0].append(v)
        return list(by_root.values())

    def matrix(self, variables: Sequence[int], equations: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        local = {v: j for j, v in enumerate(variables)}
        a = np.zeros((len(equations), len(variables)))
        for row, e in enumerate(equations):
            for v, c in self.equations[e].items():
                a[row, local[v]] = c
        return a, np.array([self.rhs[e] for e in equations])


def _build(
    new: CountColumn,
    earlier: Sequence[ReleasedColumn],
    margins: Mapping[str, str],
    rests: bool,
    with_new: bool = True,
) -> tuple[_System, set[Label]]:
    """The equations an attacker holding ``earlier`` outputs and the ``new`` table (as masked so far) can write,
    and the statistics some output holds.

    The statistics are laid out as a full table: for each context (the values of the key columns that are not
    margins), every combination of the levels of the margin columns seen in any output. A statistic shown by any
    output is known (an attacker uses any value shown, however old); one no output shows is unknown, whether
    masked or never released. Each total-level statistic equals the sum of its margin's other levels; with
    ``rests``, a group no single output holds whole also counts a "rest" (levels no output shows, which an
    attacker knowing the domain of the margin may know). Without, the levels seen are taken as all there are.
    ``with_new`` False: what the earlier outputs alone disclose, laid out with the new table's levels too.
    """
    known: dict[Label, float] = {}
    candidates: dict[Label, int] = {}
    held: list[set[Label]] = []  # the statistics of each output
    for out in earlier:
        held.append(set(out.labels))
        for label, value in zip(out.labels, out.values, strict=True):
            if value is not None:
                known.setdefault(label, float(value))
    layout = set(new.labels).union(*held)
    if with_new:
        held.append(set(new.labels))
        for row, (label, value, reason) in enumerate(zip(new.labels, new.values, new.reasons, strict=True)):
            if reason is None and value is not None:
                if label not in known:
                    candidates[label] = row
                known[label] = float(value)
    present = set().union(*held)
    system = _System(known, candidates)
    columns = {k for label in layout for k, _ in label}
    active = {m: t for m, t in margins.items() if m in columns}
    levels: dict[str, set[str]] = {m: set() for m in active}
    contexts: set[Label] = set()
    for label in layout:
        values = dict(label)
        if active and all(m in values for m in active):
            for m in active:
                levels[m].add(values[m])
            contexts.add(tuple(kv for kv in label if kv[0] not in active))
    order = sorted(active)
    for context in contexts:
        for m in order:
            parts = sorted(levels[m] - {active[m]})
            if active[m] not in levels[m] or not parts:
                continue
            others = [o for o in order if o != m]
            for combo in itertools.product(*(sorted(levels[o]) for o in others)):
                fixed = (*context, *zip(others, combo, strict=True))
                total = tuple(sorted((*fixed, (m, active[m]))))
                levels_ = [tuple(sorted((*fixed, (m, p)))) for p in parts]
                terms = [(1.0, total), *((-1.0, level) for level in levels_)]
                if rests and not any(total in h and all(level in h for level in levels_) for h in held):
                    # no output holds the whole group: levels no output shows may exist, summed in a "rest"
                    terms.append((-1.0, tuple(sorted((*fixed, (m, REST))))))
                system.add(terms)
    return system, present


def _determined(system: _System) -> dict[Label, float]:
    """Unknowns the equations fix, with their values (least squares, exact when the data are consistent)."""
    from scipy.linalg import null_space  # scipy loads in a second: only when a table needs it

    fixed: dict[Label, float] = {}
    for variables, equations in system.components():
        if len(equations) == 1:  # one equation fixes its unknown only when it has one
            if len(variables) == 1:
                (v,) = variables
                fixed[system.variables[v]] = system.rhs[equations[0]] / system.equations[equations[0]][v]
            continue
        a, b = system.matrix(variables, equations)
        basis = null_space(a)
        solution = np.linalg.lstsq(a, b, rcond=None)[0]
        for j, v in enumerate(variables):
            if basis.shape[1] == 0 or np.linalg.norm(basis[j]) < _TOLERANCE:
                fixed[system.variables[v]] = float(solution[j])
    return fixed


def _pinned(
    system: _System, bounds: Mapping[Label, tuple[float, float | None]], solved: dict[tuple, list[Label]]
) -> list[Label]:
    """Unknowns whose feasible integer range under the bounds (default: >= 0) is one value.

    A component of one equation is solved in closed form; larger ones by linear programming. ``solved`` keeps
    the answer per component across rounds (a round changes only the components it masked a cell of).
    """
    pinned = []
    for variables, equations in system.components():
        box = [bounds.get(system.variables[v], (0.0, None)) for v in variables]
        targets = [j for j, v in enumerate(variables) if system.variables[v] in bounds]
        if not targets:
            continue
        key = (
            tuple(system.variables[v] for v in variables),
            tuple((tuple(sorted(system.equations[e].items())), system.rhs[e]) for e in equations),
            tuple(box),
        )
        if key in solved:
            pinned += solved[key]
            continue
        if len(equations) == 1:
            (e,) = equations
            coefficients = [system.equations[e][v] for v in variables]
            ranges = {j: _one_equation_range(coefficients, system.rhs[e], box, j) for j in targets}
        else:
            a, b = system.matrix(variables, equations)
            free = _spread(a, b, box)  # cells shown to take two values apart need no exact range
            ranges = {j: _lp_range(a, b, box, j) for j in targets if j not in free}
        solved[key] = [
            system.variables[variables[j]]
            for j, found in ranges.items()
            if found is not None and math.floor(found[1] + 1e-6) - math.ceil(found[0] - 1e-6) < 1
        ]
        pinned += solved[key]
    return pinned


def _one_equation_range(
    coefficients: Sequence[float], rhs: float, box: Sequence[tuple[float, float | None]], j: int
) -> tuple[float, float] | None:
    """The range of unknown ``j`` in ``sum(c * x) = rhs`` with each x in its box; None when unbounded or empty."""
    low_rest, high_rest = 0.0, 0.0  # range of the sum of the other terms
    for k, (c, (lo, hi)) in enumerate(zip(coefficients, box, strict=True)):
        if k == j:
            continue
        ends = (c * lo, math.inf if hi is None else c * hi) if c > 0 else (-math.inf if hi is None else c * hi, c * lo)
        low_rest += ends[0]
        high_rest += ends[1]
    c = coefficients[j]
    ends = sorted(((rhs - high_rest) / c, (rhs - low_rest) / c))
    lo, hi = box[j]
    low, high = max(ends[0], lo), min(ends[1], math.inf if hi is None else hi)
    if low > high + 1e-9 or math.isinf(high):
        return None
    return low, high


def _spread(a: np.ndarray, b: np.ndarray, box: Sequence[tuple[float, float | None]]) -> set[int]:
    """Unknowns seen to vary by at least 1 across a few vertices of the feasible set (a cheap certificate that
    they are not pinned: four linear programs for the whole component instead of two per unknown)."""
    from scipy.optimize import linprog

    n = a.shape[1]
    capped = [(lo, 1e9 if hi is None else hi) for lo, hi in box]  # unbounded cells reach the cap: they vary
    signs = np.where(np.random.default_rng(n).random((2, n)) < 0.5, -1.0, 1.0)
    points = []
    for objective in (np.ones(n), -np.ones(n), *signs):
        result = linprog(objective, A_eq=a, b_eq=b, bounds=capped, method="highs")
        if result.status == 0:
            points.append(result.x)
    if len(points) < 2:
        return set()
    stacked = np.array(points)
    return {j for j in range(n) if stacked[:, j].max() - stacked[:, j].min() >= 1 + 1e-6}


def _lp_range(
    a: np.ndarray, b: np.ndarray, box: Sequence[tuple[float, float | None]], j: int
) -> tuple[float, float] | None:
    from scipy.optimize import linprog

    objective = np.zeros(a.shape[1])
    objective[j] = 1.0
    low = linprog(objective, A_eq=a, b_eq=b, bounds=box, method="highs")
    high = linprog(-objective, A_eq=a, b_eq=b, bounds=box, method="highs")
    if low.status != 0 or high.status != 0:
        return None  # unbounded above (fine) or inconsistent inputs: nothing pinned here
    return low.fun, -high.fun


def _repair(system: _System, label: Label, column: CountColumn) -> int | None:
    """The visible cell of the new table to mask so that ``label`` is no longer fixed."""
    var = system.index[label]
    touching = [e for e, eq in enumerate(system.equations) if var in eq]
    pick = _cheapest(column, [row for e in touching for row in system.maskable[e]])
    if pick is not None:
        return pick
    for variables, equations in system.components():  # none beside it: anywhere it is connected to
        if var in variables:
            return _cheapest(column, [row for e in equations for row in system.maskable[e]])
    return None


def suppress(
    column: CountColumn,
    margins: Mapping[str, str],
    history: Sequence[ReleasedColumn],
    smallest_masked: int,
    max_masked: int,
) -> int:
    """Mask cells of ``column`` (reason "secondary") until no protected cell can be recomputed.

    Returns the number of disclosures that masking the new table cannot prevent (zero unless earlier outputs
    disclose on their own).
    """
    groups = margin_groups(column.labels, margins)
    complete_lines(column, groups)
    if not groups and not history:
        return 0
    merged_margins = {**{k: v for h in history for k, v in h.margins.items()}, **margins}
    # An attacker may or may not know levels no output shows: both views are audited.
    views = (False, True) if history else (False,)
    already: set[Label] = set()  # what earlier outputs disclose on their own, in either view: not this table's doing
    for rests in views:
        already |= set(_determined(_build(column, history, merged_margins, rests, with_new=False)[0]))
    rows = {label: i for i, label in enumerate(column.labels)}
    ignored: set[Label] = set()
    solved: dict[tuple, list[Label]] = {}
    for _ in range(_MAX_ROUNDS):
        disclosed = []
        for rests in views:
            system, present = _build(column, history, merged_margins, rests)
            disclosed = [
                label
                for label, value in _determined(system).items()
                if label not in ignored
                and label not in already
                and _sensitive(label, value, column, rows, present, smallest_masked, max_masked)
            ]
            if disclosed:
                break
        if not disclosed:
            system, _ = _build(column, (), margins, rests=False)
            bounds = {
                label: (float(smallest_masked), float(max_masked)) if r == PRIMARY else (0.0, None)
                for label, r in zip(column.labels, column.reasons, strict=True)
                if r in PROTECTED
            }
            disclosed = [label for label in _pinned(system, bounds, solved) if label not in ignored]
        if not disclosed:
            return len(ignored)
        picks = set()
        for label in disclosed:
            pick = _repair(system, label, column)
            if pick is None:
                ignored.add(label)
            else:
                picks.add(pick)
        for pick in picks:
            column.reasons[pick] = SECONDARY
        complete_lines(column, groups)
    raise RuntimeError("secondary suppression did not converge")  # each round masks a cell: cannot happen


def _sensitive(
    label: Label,
    value: float,
    column: CountColumn,
    rows: Mapping[Label, int],
    present: set[Label],
    smallest: int,
    largest: int,
) -> bool:
    """Is it a disclosure that the statistic ``label`` is fixed (to ``value``)?"""
    if label in rows:
        return column.reasons[rows[label]] in PROTECTED
    if label in present:
        return True  # masked in an earlier output
    return smallest <= round(value) <= largest  # never released (or a rest): a disclosure when small
