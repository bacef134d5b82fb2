"""Secondary (complementary) suppression: no masked cell may be recomputed from what is visible.

A table declares additive margins (``TableStructure.margins``): in rows agreeing on every other key, the total
level's count is the sum of the other levels' counts. Each such group is one linear equation. Masking proceeds in
two stages, each to a fixed point:

1. the line rule (cheap, classic): a group with exactly one masked cell gets a second one, its smallest visible
   non-zero member (zeros last, the total last among equals);
2. the audit, which the line rule alone does not satisfy (a masked cell bridging two masked cycles of a 2-D
   table is determined although every line has two masked cells):
   - linear audit: the equations of this table and of the project's earlier outputs of the same table, with the
     visible values substituted, are solved for the masked cells; a masked cell whose value the system fixes
     (its row of the null space is zero) is disclosed. Across outputs, a group's total minus the components
     known for it leaves a "rest" (levels never released): a rest the system fixes to a small count is
     disclosed too (a total released once, minus strata released later).
   - bounds audit: counts are non-negative and primary-masked cells lie in the masked range; a masked cell
     whose feasible interval under these bounds (linear programming) holds a single integer is disclosed.
   Each disclosed cell gets one more visible cell of its equations masked, the smallest non-zero first.

Only cells of the table being released are masked: earlier outputs are fixed. A disclosure that no cell of the
new table takes part in is reported as unprotectable (it was already possible from earlier outputs).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import null_space
from scipy.optimize import linprog

from hygie.disclosure.history import Label

PRIMARY, SECONDARY, DIFFERENCING, MISSING = "primary", "secondary", "differencing", "missing"
PROTECTED = frozenset({PRIMARY, SECONDARY, DIFFERENCING})  # masked by disclosure control: must stay unknown
NEW = 0  # origin of the table being released; earlier outputs are 1, 2, ...
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


@dataclass(frozen=True)
class _Output:
    origin: int
    labels: Sequence[Label]
    known: Sequence[int | None]  # the value an attacker sees; None when masked
    margins: Mapping[str, str]


@dataclass
class _System:
    """Linear equations over the unknown cells (masked cells, rests), the visible values moved to the right."""

    variables: list[Hashable] = field(default_factory=list)  # ("cell", origin, row) or ("rest", margin, rest)
    index: dict[Hashable, int] = field(default_factory=dict)
    equations: list[dict[int, float]] = field(default_factory=list)
    rhs: list[float] = field(default_factory=list)
    visible_new: list[list[int]] = field(default_factory=list)  # per equation: visible rows of the new table

    def add(self, terms: Sequence[tuple[float, Hashable]], outputs: Mapping[int, _Output]) -> None:
        coefficients: dict[int, float] = {}
        rhs = 0.0
        visible = []
        for coefficient, ref in terms:
            if ref[0] == "cell":
                _, origin, row = ref
                value = outputs[origin].known[row]
                if value is not None:
                    rhs -= coefficient * value
                    if origin == NEW:
                        visible.append(row)
                    continue
            var = self.index.setdefault(ref, len(self.variables))
            if var == len(self.variables):
                self.variables.append(ref)
            coefficients[var] = coefficients.get(var, 0.0) + coefficient
        coefficients = {v: c for v, c in coefficients.items() if c}
        if coefficients:
            self.equations.append(coefficients)
            self.rhs.append(rhs)
            self.visible_new.append(visible)

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


def _build(outputs: Sequence[_Output], margins: Mapping[str, str]) -> _System:
    """The equations an attacker holding ``outputs`` can write (see the module docstring)."""
    by_origin = {o.origin: o for o in outputs}
    system = _System()
    for out in outputs:  # each output's own groups, complete by the table's contract
        for g in margin_groups(out.labels, out.margins):
            if g.total is not None and g.components:
                terms = [(1.0, ("cell", out.origin, g.total))]
                terms += [(-1.0, ("cell", out.origin, c)) for c in g.components]
                system.add(terms, by_origin)
    if len(outputs) < 2:
        return system
    # Across outputs: a total from one output and levels from others, with a rest for levels never released.
    cells: dict[Label, list[tuple[int, int]]] = {}
    for out in outputs:
        for row, label in enumerate(out.labels):
            cells.setdefault(label, []).append((out.origin, row))
    for column, total_label in margins.items():
        groups: dict[Label, tuple[set[Label], set[Label]]] = {}
        for label in cells:
            level = dict(label).get(column)
            if level is None:
                continue
            totals, levels = groups.setdefault(tuple(kv for kv in label if kv[0] != column), (set(), set()))
            (totals if level == total_label else levels).add(label)
        for rest, (totals, levels) in groups.items():
            if not totals or not levels:
                continue
            (total,) = totals
            complete = any(_has_all(by_origin[o], total, levels) for o, _ in cells[total])
            terms = [(1.0, _representative(cells[total], by_origin))]
            terms += [(-1.0, _representative(cells[level], by_origin)) for level in sorted(levels)]
            if not complete:
                terms.append((-1.0, ("rest", column, rest)))
            system.add(terms, by_origin)
    return system


def _has_all(out: _Output, total: Label, levels: set[Label]) -> bool:
    present = set(out.labels)
    return total in present and levels <= present


def _representative(cells: Sequence[tuple[int, int]], outputs: Mapping[int, _Output]) -> Hashable:
    """The cell standing for a statistic: the new table's when it has one, else a visible earlier one."""
    for origin, row in cells:
        if origin == NEW:
            return ("cell", origin, row)
    for origin, row in cells:
        if outputs[origin].known[row] is not None:
            return ("cell", origin, row)
    origin, row = cells[0]
    return ("cell", origin, row)


def _determined(system: _System) -> dict[Hashable, float]:
    """Unknowns the equations fix, with their values (least squares, exact when the data are consistent)."""
    fixed: dict[Hashable, float] = {}
    for variables, equations in system.components():
        a, b = system.matrix(variables, equations)
        basis = null_space(a)
        solution = np.linalg.lstsq(a, b, rcond=None)[0]
        for j, v in enumerate(variables):
            if basis.shape[1] == 0 or np.linalg.norm(basis[j]) < _TOLERANCE:
                fixed[system.variables[v]] = float(solution[j])
    return fixed


def _pinned(system: _System, bounds: Mapping[Hashable, tuple[float, float | None]]) -> list[Hashable]:
    """Unknowns whose feasible integer range under the bounds is one value (linear programming)."""
    pinned = []
    for variables, equations in system.components():
        a, b = system.matrix(variables, equations)
        box = [bounds.get(system.variables[v], (0.0, None)) for v in variables]
        for j, v in enumerate(variables):
            ref = system.variables[v]
            if ref not in bounds:
                continue
            objective = np.zeros(len(variables))
            objective[j] = 1.0
            low = linprog(objective, A_eq=a, b_eq=b, bounds=box, method="highs")
            high = linprog(-objective, A_eq=a, b_eq=b, bounds=box, method="highs")
            if low.status != 0 or high.status != 0:
                continue  # unbounded above (fine) or inconsistent inputs: nothing pinned here
            if math.floor(-high.fun + 1e-6) - math.ceil(low.fun - 1e-6) < 1:
                pinned.append(ref)
    return pinned


def _repair(system: _System, ref: Hashable, column: CountColumn) -> int | None:
    """The visible cell of the new table to mask so that ``ref`` is no longer fixed."""
    var = system.index[ref]
    touching = [e for e, eq in enumerate(system.equations) if var in eq]
    pick = _cheapest(column, [row for e in touching for row in system.visible_new[e]])
    if pick is not None:
        return pick
    for variables, equations in system.components():  # none beside it: anywhere it is connected to
        if var in variables:
            return _cheapest(column, [row for e in equations for row in system.visible_new[e]])
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
    earlier = [_Output(k + 1, h.labels, h.values, h.margins) for k, h in enumerate(history)]
    merged_margins = {**{k: v for h in history for k, v in h.margins.items()}, **margins}
    already = set(_determined(_build(earlier, merged_margins))) if len(earlier) else set()
    ignored: set[Hashable] = set()
    for _ in range(_MAX_ROUNDS):
        known = [v if r is None else None for v, r in zip(column.values, column.reasons, strict=True)]
        new = _Output(NEW, column.labels, known, margins)
        system = _build([new, *earlier], merged_margins)
        disclosed = [
            ref
            for ref, value in _determined(system).items()
            if ref not in ignored and _sensitive(ref, value, column, already, smallest_masked, max_masked)
        ]
        if not disclosed:
            own = _build([new], margins)
            bounds = {
                ("cell", NEW, i): (float(smallest_masked), float(max_masked)) if r == PRIMARY else (0.0, None)
                for i, r in enumerate(column.reasons)
                if r in PROTECTED
            }
            disclosed = [ref for ref in _pinned(own, bounds) if ref not in ignored]
            system = own
        if not disclosed:
            return len(ignored)
        picks = set()
        for ref in disclosed:
            pick = _repair(system, ref, column)
            if pick is None:
                ignored.add(ref)
            else:
                picks.add(pick)
        for pick in picks:
            column.reasons[pick] = SECONDARY
        complete_lines(column, groups)
    raise RuntimeError("secondary suppression did not converge")  # each round masks a cell: cannot happen


def _sensitive(
    ref: Hashable, value: float, column: CountColumn, already: set[Hashable], smallest: int, largest: int
) -> bool:
    """Is it a disclosure that ``ref`` is fixed (to ``value``)?"""
    if ref in already:
        return False  # fixed by earlier outputs alone: not this release's doing
    kind, origin, row = ref  # type: ignore[misc]
    if kind == "rest":
        return smallest <= round(value) <= largest
    if origin == NEW:
        return column.reasons[row] in PROTECTED
    return True  # a cell masked in an earlier output
