"""The cell rules other than secondary suppression: threshold, rounding, differencing. Pure functions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from hygie.disclosure.history import Label, ReleasedTable
from hygie.disclosure.policy import DisclosurePolicy
from hygie.disclosure.secondary import DIFFERENCING, MISSING, PRIMARY, CountColumn


def primary(values: Sequence[int | None], policy: DisclosurePolicy) -> list[str | None]:
    """Why each cell is masked by the threshold: "primary" for a small count, "missing" for none, else None."""
    return [MISSING if v is None else PRIMARY if policy.is_small(v) else None for v in values]


def rounded(value: int, rounding: str) -> int:
    """The count as released under ``rounding`` ("none", "base5": nearest 5, "midpoint6": 1-6 -> 3, 7-12 -> 9)."""
    if rounding == "base5":
        return 5 * ((value + 2) // 5)  # counts are whole: no exact half to break
    if rounding == "midpoint6":
        return 0 if value == 0 else 6 * ((value + 5) // 6) - 3
    return value


def comparable(label: Label, policy: DisclosurePolicy, aliases: Mapping[str, Mapping[str, str]]) -> Label:
    """The identity under which statistics are compared for differencing.

    Columns the policy declares overlapping lose their value (every level compares with every other); aliases
    map a value to the one whose population it overlaps (a cohort to its one-person-smaller twin).
    """
    return tuple((k, "*" if k in policy.overlapping else aliases.get(k, {}).get(v, v)) for k, v in label)


def differencing(
    column: CountColumn,
    count: str,
    earlier: Iterable[ReleasedTable],
    policy: DisclosurePolicy,
    aliases: Mapping[str, Mapping[str, str]],
) -> None:
    """Mask (reason "differencing") each visible count within 1..max_masked of the same statistic released before.

    "The same statistic": a released table of the same name (the caller selects them), the count column
    ``count``, and the same key labels once made ``comparable``; and earlier rows of this table that compare
    equal (declared overlaps). Values are compared as released (rounded when the policy rounds).
    """
    seen: dict[Label, list[int]] = {}
    for table in earlier:
        for labels, counts in table.rows:
            value = counts.get(count)
            if value is not None:
                seen.setdefault(comparable(labels, policy, aliases), []).append(value)
    for i, label in enumerate(column.labels):
        value = column.values[i]
        if column.reasons[i] is not None or value is None:
            continue
        released = rounded(value, policy.rounding)
        key = comparable(label, policy, aliases)
        if any(1 <= abs(released - other) <= policy.max_masked for other in seen.get(key, ())):
            column.reasons[i] = DIFFERENCING
        else:
            seen.setdefault(key, []).append(released)  # later rows of this table compare with it


__all__ = ["MISSING", "comparable", "differencing", "primary", "rounded"]
