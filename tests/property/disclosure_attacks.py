"""An attacker for the disclosure tests: what someone holding every released table can work out.

Written apart from ``hygie.disclosure`` (it shares no code with the module's own audit) and stronger in what it
knows: the whole shape of the underlying table (every level of every dimension, which level is the total of an
additive margin), so it writes the margin equations of the full table, including cells no output ever showed.
It attacks with

- linear algebra: the equations with every visible value substituted; an unknown cell is recovered when its row
  of the null space is zero (numpy SVD);
- intervals: the same equations with bounds (counts >= 0; a cell it knows to be small in the masked range; a
  rounded count within the values that round to it), solved for the min and max of each unknown cell by linear
  programming (scipy); a cell whose range holds one whole number is recovered;
- differences: two visible values of statistics known to overlap (a cohort and a larger one, a release and
  its update) whose difference is a small count.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.optimize import linprog

from hygie.analyses.base import ResultTable, TableStructure

Cell = tuple[tuple[str, str], ...]  # (dimension, level), in the shape's dimension order
TOTAL = "All"


@dataclass(frozen=True)
class Shape:
    """The underlying table: dimensions with their levels; ``additive`` ones have a total level ``TOTAL``."""

    levels: Mapping[str, Sequence[str]]
    additive: frozenset[str]

    def dimension_levels(self, dim: str) -> list[str]:
        return [*self.levels[dim], TOTAL] if dim in self.additive else list(self.levels[dim])

    def cells(self) -> list[Cell]:
        dims = list(self.levels)
        return [
            tuple(zip(dims, combo, strict=True))
            for combo in itertools.product(*(self.dimension_levels(d) for d in dims))
        ]

    def base_cells(self) -> list[Cell]:
        dims = list(self.levels)
        return [tuple(zip(dims, combo, strict=True)) for combo in itertools.product(*(self.levels[d] for d in dims))]

    def value(self, base: Mapping[Cell, int], cell: Cell) -> int:
        """A cell's count from the base (no total level) counts."""
        choices = [self.levels[d] if level == TOTAL else [level] for d, level in cell]
        dims = [d for d, _ in cell]
        return sum(base[tuple(zip(dims, combo, strict=True))] for combo in itertools.product(*choices))

    def equations(self) -> list[tuple[Cell, list[Cell]]]:
        """Every margin equation of the full table: a total cell and the cells it sums."""
        found = []
        for cell in self.cells():
            for k, (dim, level) in enumerate(cell):
                if level == TOTAL:
                    parts = [(*cell[:k], (dim, other), *cell[k + 1 :]) for other in self.levels[dim]]
                    found.append((cell, parts))
        return found

    def table(
        self,
        name: str,
        values: Mapping[Cell, int],
        cells: Iterable[Cell] | None = None,
        labels: Mapping[str, str] | None = None,
        recompute: bool = False,
    ) -> ResultTable:
        """A result table of ``cells`` (default: all): a count ``n``, a rate derived from it, and a person-time
        column that is neither key nor count; ``labels`` adds constant key columns (a cohort's name)."""
        cells = list(self.cells() if cells is None else cells)
        labels = dict(labels or {})
        columns: dict[str, list] = {k: [v] * len(cells) for k, v in labels.items()}
        columns |= {d: [dict(c)[d] for c in cells] for d in self.levels}
        columns["n"] = [values[c] for c in cells]
        columns["person_years"] = [1000.0] * len(cells)
        columns["rate"] = [values[c] / 1000 for c in cells]
        return ResultTable(
            name,
            pa.table(columns),
            counts={"n": ("rate",)},
            structure=TableStructure(
                keys=(*labels, *self.levels),
                margins=dict.fromkeys(self.additive, TOTAL),
                recompute=_rate_from_counts if recompute else None,
            ),
        )


def _rate_from_counts(rows: pa.Table) -> pa.Table:
    rate = pc.divide(pc.cast(rows.column("n"), pa.float64()), rows.column("person_years"))
    return rows.set_column(rows.schema.get_field_index("rate"), "rate", rate)


def released(shape: Shape, table: ResultTable) -> dict[Cell, int | None]:
    """What a released table shows: each cell's count, None when masked."""
    rows = table.rows.to_pylist()
    return {tuple((d, str(r[d])) for d in shape.levels): r["n"] for r in rows}


def _system(shape: Shape, visible: Mapping[Cell, float]) -> tuple[list[Cell], np.ndarray, np.ndarray]:
    unknown = [c for c in shape.cells() if c not in visible]
    index = {c: j for j, c in enumerate(unknown)}
    rows, rhs = [], []
    for total, parts in shape.equations():
        row = np.zeros(len(unknown))
        b = 0.0
        for cell, sign in ((total, 1.0), *((p, -1.0) for p in parts)):
            if cell in index:
                row[index[cell]] += sign
            else:
                b -= sign * visible[cell]
        if row.any():
            rows.append(row)
            rhs.append(b)
    a = np.array(rows) if rows else np.zeros((0, len(unknown)))
    return unknown, a, np.array(rhs)


def linear_recoveries(shape: Shape, visible: Mapping[Cell, float]) -> dict[Cell, float]:
    """Unknown cells that the margin equations fix once the visible values are substituted."""
    unknown, a, b = _system(shape, visible)
    if not unknown or a.shape[0] == 0:
        return {}
    _, singular, vt = np.linalg.svd(a)
    rank = int((singular > 1e-9).sum())
    null = vt[rank:].T  # columns span the null space
    solution = np.linalg.lstsq(a, b, rcond=None)[0]
    return {c: float(solution[j]) for j, c in enumerate(unknown) if np.linalg.norm(null[j]) < 1e-9}


def interval_recoveries(
    shape: Shape, bounds: Mapping[Cell, tuple[float, float | None]], targets: Iterable[Cell]
) -> dict[Cell, tuple[float, float]]:
    """Targets whose feasible range under the equations and ``bounds`` (default >= 0) holds one whole number."""
    cells = shape.cells()
    index = {c: j for j, c in enumerate(cells)}
    a = []
    for total, parts in shape.equations():
        row = np.zeros(len(cells))
        row[index[total]] = 1.0
        for p in parts:
            row[index[p]] -= 1.0
        a.append(row)
    a_eq = np.array(a) if a else None
    b_eq = np.zeros(len(a)) if a else None
    box = [bounds.get(c, (0.0, None)) for c in cells]
    found = {}
    for target in targets:
        objective = np.zeros(len(cells))
        objective[index[target]] = 1.0
        low = linprog(objective, A_eq=a_eq, b_eq=b_eq, bounds=box, method="highs")
        high = linprog(-objective, A_eq=a_eq, b_eq=b_eq, bounds=box, method="highs")
        assert low.status in (0, 3) and high.status in (0, 3), "the attacker's own knowledge is inconsistent"
        if low.status == 0 and high.status == 0 and math.floor(-high.fun + 1e-6) - math.ceil(low.fun - 1e-6) < 1:
            found[target] = (low.fun, -high.fun)
    return found


def rounding_preimage(shown: int, rounding: str, max_masked: int) -> tuple[float, float]:
    """The exact counts a visible rounded count can come from (visible: above the masked range, or zero)."""
    if rounding == "none" or shown == 0:
        return float(shown), float(shown)
    low, high = (shown - 2, shown + 2) if rounding == "base5" else (shown - 2, shown + 3)
    return float(max(low, max_masked + 1)), float(high)


def small_differences(
    first: Mapping[Cell, int | None], second: Mapping[Cell, int | None], max_masked: int
) -> list[Cell]:
    """Cells visible in both outputs whose values differ by a small count (1..max_masked)."""
    return [
        c
        for c, v in second.items()
        if v is not None and first.get(c) is not None and 1 <= abs(v - first[c]) <= max_masked  # type: ignore[operator]
    ]
