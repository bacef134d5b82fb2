"""Each disclosure rule on small tables whose right answer is worked out by hand."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from hygie.analyses.base import ResultTable, TableStructure
from hygie.disclosure import DisclosurePolicy, FolderHistory, ReleasedHistory, apply_policy
from hygie.disclosure.rules import rounded
from hygie.errors import ConflictError
from tests.property.disclosure_attacks import Shape, linear_recoveries, released

SEX = TableStructure(margins={"sex": "Both"})


def by_sex(both: int, male: int, female: int, **labels: str) -> ResultTable:
    columns = {k: [v] * 3 for k, v in labels.items()}
    columns |= {"sex": ["Both", "Male", "Female"], "n": [both, male, female], "rate": [both / 7, male / 7, female / 7]}
    return ResultTable("by_sex", pa.table(columns), counts={"n": ("rate",)}, structure=SEX)


def counts(table: ResultTable, column: str = "n") -> list[int | None]:
    return table.rows.column(column).to_pylist()


def rules(outcome) -> dict[str, int]:
    return {f.rule: f.cells for f in outcome.flags}


def one_column(values: list[int | None], policy: DisclosurePolicy | None = None) -> list[int | None]:
    table = ResultTable("t", pa.table({"k": [str(i) for i in range(len(values))], "n": values}), counts={"n": ()})
    return counts(apply_policy([table], policy).tables[0])


def test_threshold_boundaries():
    assert one_column([0, 1, 10, 11, 250]) == [0, None, None, 11, 250]
    assert one_column([0, 1, 7, 8], DisclosurePolicy(max_masked=7)) == [0, None, None, 8]
    assert one_column([0, 1, 11], DisclosurePolicy(zeros="mask")) == [None, None, 11]


def test_derived_columns_are_masked_with_their_count_and_labels_never():
    table = ResultTable(
        "t",
        pa.table({"k": ["a", "b", "c"], "n": [5, 40, None], "rate": [0.5, 4.0, None], "m": [3, 3, 30]}),
        counts={"n": ("rate",), "m": ()},
    )
    outcome = apply_policy([table])
    (out,) = outcome.tables
    assert counts(out) == [None, 40, None] and counts(out, "rate") == [None, 4.0, None]
    assert counts(out, "m") == [None, None, 30]
    assert counts(out, "k") == ["a", "b", "c"]
    assert out.rows.schema == table.rows.schema
    # a count the analysis did not compute is no masking of ours: no flag
    assert [(f.column, f.rule, f.cells) for f in outcome.flags] == [("n", "primary", 1), ("m", "primary", 2)]


def test_flags_name_places_and_rules_never_values():
    outcome = apply_policy([by_sex(1234, 1227, 7)])
    text = json.dumps([f.__dict__ for f in outcome.flags])
    assert "1227" not in text and "1234" not in text and ": 7" not in text
    assert rules(outcome) == {"primary": 1, "secondary": 1}
    assert all(f.table == "by_sex" and f.column == "n" and "rate" in f.detail for f in outcome.flags)


def test_secondary_masks_the_smallest_other_cell():
    out = apply_policy([by_sex(100, 95, 5)]).tables[0]
    assert counts(out) == [100, None, None]  # Male, not the total, is the cheaper second cell
    assert counts(out, "rate")[1:] == [None, None]


def test_secondary_prefers_a_non_zero_cell():
    table = ResultTable(
        "t",
        pa.table({"sex": ["Both", "M", "F", "U"], "n": [40, 3, 0, 37]}),
        counts={"n": ()},
        structure=SEX,
    )
    # a masked 0 beside a masked 3 would give the 3 away to anyone knowing masked counts are 1..10
    assert counts(apply_policy([table]).tables[0]) == [40, None, 0, None]


def test_secondary_can_be_switched_off():
    out = apply_policy([by_sex(100, 95, 5)], DisclosurePolicy(secondary=False)).tables[0]
    assert counts(out) == [100, 95, None]


def test_bounds_audit_masks_cells_pinned_at_the_top_of_the_range():
    # 10 + 10 = 31 - 11: with both masked counts at most 10, both are 10. The line rule alone is satisfied.
    table = ResultTable(
        "t",
        pa.table({"g": ["All", "a", "b", "c"], "n": [31, 11, 10, 10]}),
        counts={"n": ()},
        structure=TableStructure(margins={"g": "All"}),
    )
    outcome = apply_policy([table])
    assert counts(outcome.tables[0]) == [31, None, None, None]
    assert rules(outcome) == {"primary": 2, "secondary": 1}


def test_bridge_between_two_masked_cycles_is_protected():
    """Every row and column has two masked cells, yet the bridging cell follows from the margins."""
    shape = Shape({"r": ["1", "2", "3", "4"], "c": ["1", "2", "3", "4"]}, frozenset({"r", "c"}))
    small = {("1", "1"): 3, ("1", "2"): 4, ("2", "1"): 5, ("2", "2"): 6, ("3", "3"): 2, ("3", "4"): 3}
    small |= {("4", "3"): 4, ("4", "4"): 5, ("1", "3"): 7}
    base = {c: small.get((c[0][1], c[1][1]), 50) for c in shape.base_cells()}
    truth = {c: shape.value(base, c) for c in shape.cells()}
    outcome = apply_policy([shape.table("t", truth)])
    shown = released(shape, outcome.tables[0])
    assert rules(outcome) == {"primary": 9, "secondary": 1}
    assert linear_recoveries(shape, {c: float(v) for c, v in shown.items() if v is not None}) == {}
    secondary_off = apply_policy([shape.table("t", truth)], DisclosurePolicy(secondary=False)).tables[0]
    visible = {c: float(v) for c, v in released(shape, secondary_off).items() if v is not None}
    assert linear_recoveries(shape, visible)  # the attacker does win without it


def test_differencing_against_released_outputs():
    history = ReleasedHistory().with_output("o1", [by_sex(100, 60, 40)])

    def again(both: int, male: int, female: int) -> list[int | None]:
        return counts(apply_policy([by_sex(both, male, female)], history=history).tables[0])

    assert again(100, 60, 40) == [100, 60, 40]  # the same values again: nothing new
    assert again(90, 50, 40) == [None, None, 40]  # 10 fewer: masked, and so is a second cell
    assert again(89, 49, 40) == [89, 49, 40]  # 11 fewer: above the threshold
    assert again(101, 60, 41) == [None, 60, None]
    outcome = apply_policy([by_sex(101, 60, 41)], history=history)
    assert rules(outcome) == {"differencing": 2}


def test_a_cohort_and_its_twin_compare_when_declared():
    first = apply_policy([by_sex(50, 25, 25, cohort="A")]).tables
    history = ReleasedHistory().with_output("o1", first)
    twin = by_sex(49, 24, 25, cohort="A_minus_one")
    undeclared = apply_policy([twin], history=history).tables[0]
    assert counts(undeclared) == [49, 24, 25]  # the limit: different labels are different statistics
    declared = apply_policy([twin], history=history, aliases={"cohort": {"A_minus_one": "A"}}).tables[0]
    assert counts(declared) == [None, None, 25]
    overlapping = apply_policy([twin], DisclosurePolicy(overlapping=("cohort",)), history=history).tables[0]
    assert counts(overlapping) == [None, None, 25]


def test_tables_of_one_call_count_as_released_for_the_later_ones():
    outcome = apply_policy([by_sex(50, 25, 25), by_sex(52, 27, 25)])
    assert counts(outcome.tables[0]) == [50, 25, 25]
    assert counts(outcome.tables[1]) == [None, None, 25]


def test_a_total_released_before_minus_a_stratum_released_now():
    history = ReleasedHistory().with_output(
        "o1", [ResultTable("by_sex", pa.table({"sex": ["Both"], "n": [100]}), counts={"n": ()}, structure=SEX)]
    )
    male_only = ResultTable("by_sex", pa.table({"sex": ["Male"], "n": [95]}), counts={"n": ()}, structure=SEX)
    outcome = apply_policy([male_only], history=history)
    assert counts(outcome.tables[0]) == [None]  # 100 - 95 would tell that 5 persons are not male
    assert rules(outcome) == {"secondary": 1}
    big_difference = male_only.rows.set_column(1, "n", pa.array([60]))
    assert counts(
        apply_policy([ResultTable("by_sex", big_difference, {"n": ()}, structure=SEX)], history=history).tables[0]
    ) == [60]


def test_a_masked_cell_of_an_earlier_output_stays_hidden():
    first = apply_policy([by_sex(100, 95, 5)]).tables  # Male and Female masked
    history = ReleasedHistory().with_output("o1", first)
    male_only = ResultTable("by_sex", pa.table({"sex": ["Male"], "n": [95]}), counts={"n": ()}, structure=SEX)
    assert counts(apply_policy([male_only], history=history).tables[0]) == [None]  # 100 - 95 gives Female


def test_rounding():
    assert [rounded(v, "base5") for v in (0, 11, 12, 13, 17, 18, 100)] == [0, 10, 10, 15, 15, 20, 100]
    assert [rounded(v, "midpoint6") for v in (0, 1, 6, 7, 12, 13, 18, 19)] == [0, 3, 3, 9, 9, 15, 15, 21]
    table = by_sex(113, 61, 52)
    outcome = apply_policy([table], DisclosurePolicy(rounding="base5"))
    out = outcome.tables[0]
    assert counts(out) == [115, 60, 50]
    assert counts(out, "rate") == [None, None, None]  # a rate of the exact count would give it back
    assert {(f.rule, f.cells) for f in outcome.flags} == {("rounding", 3)}


def test_rounding_recomputes_derived_columns_when_the_table_says_how():
    def rate(rows: pa.Table) -> pa.Table:
        return rows.set_column(2, "rate", pc.divide(pc.cast(rows.column("n"), pa.float64()), 7.0))

    table = by_sex(113, 61, 52)
    table = ResultTable(table.name, table.rows, table.counts, structure=TableStructure(SEX.keys, SEX.margins, rate))
    out = apply_policy([table], DisclosurePolicy(rounding="midpoint6")).tables[0]
    assert counts(out) == [111, 63, 51]
    assert counts(out, "rate") == [111 / 7, 63 / 7, 51 / 7]


def test_released_tables_pass_unchanged_again():
    outcome = apply_policy([by_sex(100, 95, 5)], DisclosurePolicy(rounding="base5"))
    again = apply_policy(outcome.tables, DisclosurePolicy(rounding="base5"))
    assert again.tables[0].rows.equals(outcome.tables[0].rows)


def test_tables_without_structure_keep_working():
    table = ResultTable("t", pa.table({"k": ["a"], "n": [3]}), counts={"n": ()})
    assert counts(apply_policy([table]).tables[0]) == [None]


def test_duplicate_total_rows_are_a_bug_of_the_table():
    table = ResultTable(
        "t", pa.table({"sex": ["Both", "Both", "Male"], "n": [20, 20, 20]}), counts={"n": ()}, structure=SEX
    )
    with pytest.raises(ValueError, match="several total rows"):
        apply_policy([table])


def test_folder_history_records_what_left_and_never_rewrites(tmp_path):
    folder = tmp_path / "projects" / "p1" / "released"
    history = FolderHistory(folder)
    first = apply_policy([by_sex(100, 95, 5)]).tables
    history.record("out-1", first)
    with pytest.raises(ConflictError, match="never change"):
        history.record("out-1", first)
    stored = json.loads((folder / "out-1" / "by_sex.json").read_text())
    assert [r["counts"]["n"] for r in stored["rows"]] == [100, None, None]  # masked values are not kept
    assert stored["margins"] == {"sex": "Both"}
    later = apply_policy([by_sex(98, 93, 5)], history=history).tables[0]
    assert counts(later) == [None, None, None]  # 98 is 2 below 100; then 100 - 93 would give Female
    (remembered,) = history.released("by_sex")
    assert remembered.output == "out-1" and remembered.keys == ("sex",)
    assert history.released("other") == []


def test_margins_must_be_key_columns():
    table = ResultTable(
        "t",
        pa.table({"age": ["0-9", "0-9"], "sex": ["Both", "Male"], "n": [20, 20]}),
        counts={"n": ()},
        structure=TableStructure(keys=("age",), margins={"sex": "Both"}),
    )
    with pytest.raises(ValueError, match="must be key columns"):
        apply_policy([table])
