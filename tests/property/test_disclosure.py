"""Disclosure control against an attacker: for random tables with margins, nothing masked can be worked out.

The attacker (``disclosure_attacks``) knows the full shape of each table and the policy; it solves the margin
equations (exactly and with bounds), subtracts overlapping outputs and undoes rounding. Every test asserts that
it recovers no masked value, plus the invariants of the policy.
"""

from __future__ import annotations

from collections.abc import Mapping

from disclosure_attacks import (
    TOTAL,
    Cell,
    Shape,
    interval_recoveries,
    linear_recoveries,
    released,
    rounding_preimage,
    small_differences,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hygie.disclosure import DisclosurePolicy, ReleasedHistory, apply_policy

BUDGET = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
POLICIES = [
    DisclosurePolicy(),
    DisclosurePolicy(zeros="mask"),
    DisclosurePolicy.from_mapping({"profile": "opensafely", "rounding": "none"}),
]


@st.composite
def shapes(draw: st.DrawFn, additive_at_least: int = 0) -> Shape:
    dims = draw(st.integers(1, 3))
    most = {1: 5, 2: 4, 3: 3}[dims]
    levels = {f"d{i}": [f"l{j}" for j in range(draw(st.integers(2, most)))] for i in range(dims)}
    flags = draw(st.lists(st.booleans(), min_size=dims, max_size=dims))
    additive = {d for d, f in zip(levels, flags, strict=True) if f}
    if len(additive) < additive_at_least:
        additive |= set(list(levels)[:additive_at_least])
    return Shape(levels, frozenset(additive))


COUNTS = st.one_of(st.just(0), st.integers(1, 10), st.integers(1, 4), st.integers(11, 40))


@st.composite
def tables(draw: st.DrawFn, additive_at_least: int = 0) -> tuple[Shape, dict[Cell, int]]:
    shape = draw(shapes(additive_at_least))
    base = {c: draw(COUNTS) for c in shape.base_cells()}
    return shape, {c: shape.value(base, c) for c in shape.cells()}


@st.composite
def additions(draw: st.DrawFn, shape: Shape, persons: st.SearchStrategy[int]) -> dict[Cell, int]:
    """A few more persons spread over the base cells (an overlapping cohort, an update of the data)."""
    base_cells = shape.base_cells()
    extra = dict.fromkeys(base_cells, 0)
    for _ in range(draw(persons)):
        extra[draw(st.sampled_from(base_cells))] += 1
    return extra


def grown(shape: Shape, values: Mapping[Cell, int], extra: Mapping[Cell, int]) -> dict[Cell, int]:
    return {c: values[c] + shape.value(extra, c) for c in shape.cells()}


def bounds_for(
    shape: Shape, shown: Mapping[Cell, int | None], truth: Mapping[Cell, int], policy: DisclosurePolicy
) -> dict[Cell, tuple[float, float | None]]:
    """What the attacker knows of each cell: visible (or its rounding preimage), or small when it was small."""
    known: dict[Cell, tuple[float, float | None]] = {}
    for cell, value in shown.items():
        if value is not None:
            known[cell] = rounding_preimage(value, policy.rounding, policy.max_masked)
        elif policy.is_small(truth[cell]):
            known[cell] = (float(policy.smallest_masked), float(policy.max_masked))
    return known


def assert_invariants(shown: Mapping[Cell, int | None], table_rows: list[dict], policy: DisclosurePolicy) -> None:
    for value in shown.values():
        assert value is None or value > policy.max_masked or (value == 0 and policy.zeros == "show")
    for row in table_rows:
        assert (row["n"] is None) == (row["rate"] is None)  # derived masked iff its count is


@BUDGET
@given(data=tables(), policy=st.sampled_from(POLICIES))
def test_margins_recover_no_masked_cell(data, policy):
    shape, truth = data
    table = shape.table("t", truth)
    outcome = apply_policy([table], policy)
    (out,) = outcome.tables
    shown = released(shape, out)
    assert_invariants(shown, out.rows.to_pylist(), policy)
    visible = {c: float(v) for c, v in shown.items() if v is not None}
    assert linear_recoveries(shape, visible) == {}
    masked = [c for c, v in shown.items() if v is None]
    assert interval_recoveries(shape, bounds_for(shape, shown, truth, policy), masked) == {}
    # idempotent: what was released passes unchanged
    again = apply_policy(outcome.tables, policy).tables[0]
    assert again.rows.equals(out.rows)
    # flags count masked cells by rule, and carry no value
    assert sum(f.cells for f in outcome.flags if f.rule != "rounding") == len(masked)
    for f in outcome.flags:
        assert f.rule in {"primary", "secondary"} and "rate" in f.detail


@BUDGET
@given(data=tables(additive_at_least=1), policy=st.sampled_from(POLICIES), split=st.randoms(use_true_random=False))
def test_totals_minus_strata_across_outputs(data, policy, split):
    """One output shows some rows (totals, say), a later one the others: together they disclose nothing."""
    shape, truth = data
    cells = shape.cells()
    first = [c for c in cells if split.random() < 0.5] or cells[:1]
    second = [c for c in cells if c not in first or split.random() < 0.3] or cells[-1:]
    out1 = apply_policy([shape.table("t", truth, first)], policy).tables[0]
    history = ReleasedHistory().with_output("o1", [out1])
    out2 = apply_policy([shape.table("t", truth, second)], policy, history=history).tables[0]
    shown1, shown2 = released(shape, out1), released(shape, out2)
    visible = {c: float(v) for s in (shown1, shown2) for c, v in s.items() if v is not None}
    masked = {c for s in (shown1, shown2) for c, v in s.items() if v is None} - set(visible)
    already = linear_recoveries(shape, {c: float(v) for c, v in shown1.items() if v is not None})
    for cell, value in linear_recoveries(shape, visible).items():
        if cell in already:
            continue  # worked out from the first output alone (a sum of what it shows), which passed on its own
        assert cell not in masked, "a masked cell is recovered from the two outputs"
        assert not policy.is_small(round(value)), "a small count never released is recovered"


@BUDGET
@given(data=tables(), policy=st.sampled_from(POLICIES), st_data=st.data(), twin=st.booleans())
def test_overlapping_cohorts_and_twins(data, policy, st_data, twin):
    """Cohort B is cohort A plus a few persons (exactly one: a twin); their outputs differ by no small count."""
    shape, truth = data
    extra = st_data.draw(additions(shape, st.just(1) if twin else st.integers(1, 10)))
    bigger = grown(shape, truth, extra)
    out_a = apply_policy([shape.table("t", truth, labels={"cohort": "A"})], policy).tables[0]
    history = ReleasedHistory().with_output("o1", [out_a])
    aliases = {"cohort": {"B": "A"}}
    out_b = apply_policy(
        [shape.table("t", bigger, labels={"cohort": "B"})], policy, history=history, aliases=aliases
    ).tables[0]
    shown_a, shown_b = released(shape, out_a), released(shape, out_b)
    assert small_differences(shown_a, shown_b, policy.max_masked) == []
    visible_b = {c: float(v) for c, v in shown_b.items() if v is not None}
    assert linear_recoveries(shape, visible_b) == {}


@BUDGET
@given(data=tables(), policy=st.sampled_from(POLICIES), st_data=st.data())
def test_repeated_release_with_new_persons(data, policy, st_data):
    """The same study re-run after a few persons joined: no statistic moves by a small count in the open."""
    shape, truth = data
    later = grown(shape, truth, st_data.draw(additions(shape, st.integers(1, 10))))
    out1 = apply_policy([shape.table("t", truth)], policy).tables[0]
    history = ReleasedHistory().with_output("o1", [out1])
    out2 = apply_policy([shape.table("t", later)], policy, history=history).tables[0]
    shown1, shown2 = released(shape, out1), released(shape, out2)
    assert small_differences(shown1, shown2, policy.max_masked) == []
    assert linear_recoveries(shape, {c: float(v) for c, v in shown2.items() if v is not None}) == {}


@BUDGET
@given(data=tables(), rounding=st.sampled_from(["base5", "midpoint6"]), recompute=st.booleans())
def test_rounding_cannot_be_reversed_to_a_masked_value(data, rounding, recompute):
    shape, truth = data
    policy = DisclosurePolicy(rounding=rounding)
    (out,) = apply_policy([shape.table("t", truth, recompute=recompute)], policy).tables
    shown = released(shape, out)
    for value in shown.values():
        if value is not None:
            assert value % 5 == 0 if rounding == "base5" else (value == 0 or value % 6 == 3)
    for row in out.rows.to_pylist():
        if recompute:
            assert row["rate"] == (None if row["n"] is None else row["n"] / 1000)  # from the rounded count
        else:
            assert row["rate"] is None  # left as computed, it would give the exact count back
    masked = [c for c, v in shown.items() if v is None]
    assert interval_recoveries(shape, bounds_for(shape, shown, truth, policy), masked) == {}


@BUDGET
@given(data=tables(), st_data=st.data())
def test_rounded_repeated_release(data, st_data):
    shape, truth = data
    policy = DisclosurePolicy(rounding="base5")
    later = grown(shape, truth, st_data.draw(additions(shape, st.integers(1, 10))))
    out1 = apply_policy([shape.table("t", truth)], policy).tables[0]
    history = ReleasedHistory().with_output("o1", [out1])
    out2 = apply_policy([shape.table("t", later)], policy, history=history).tables[0]
    assert small_differences(released(shape, out1), released(shape, out2), policy.max_masked) == []


def test_shape_totals_are_sums():
    shape = Shape({"sex": ["M", "F"]}, frozenset({"sex"}))
    base = {(("sex", "M"),): 3, (("sex", "F"),): 4}
    assert shape.value(base, (("sex", TOTAL),)) == 7
