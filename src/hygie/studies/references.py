"""Which values of a study-file section name a cohort or a denominator, so that validation can check them.

The convention (docs/studies.md; analyses follow it): a field named ``denominator``/``denominators`` names
denominators; a field named ``cohort``, ``cohorts``, ``outcome(s)``, ``target(s)``, ``comparator(s)``,
``exposure(s)``, ``negative_controls``, ``censor_cohort`` or ending in ``_cohort``/``_cohorts`` names study
cohorts. Only text values (or lists of text) count; nested sections are walked. A field named ``strata`` holding
lists of lists of text (groups of strata columns) names study cohorts too, except the built-in columns
(``sex``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel

Reference = tuple[tuple[str | int, ...], Literal["cohort", "denominator"], str]

DENOMINATOR_FIELDS = frozenset({"denominator", "denominators"})
COHORT_FIELDS = frozenset(
    {
        "cohort",
        "cohorts",
        "outcome",
        "outcomes",
        "target",
        "targets",
        "comparator",
        "comparators",
        "exposure",
        "exposures",
        "negative_controls",
    }
)


STRATA_FIELD = "strata"
BUILT_IN_STRATA = frozenset({"sex"})  # strata columns every denominator row has (incidence, prevalence)


def _kind(field: str) -> Literal["cohort", "denominator"] | None:
    if field in DENOMINATOR_FIELDS:
        return "denominator"
    if field in COHORT_FIELDS or field.endswith(("_cohort", "_cohorts")):
        return "cohort"
    return None


def references(spec: BaseModel, path: tuple[str | int, ...] = ()) -> Iterator[Reference]:
    """Every (key path, kind, name) a section refers to."""
    for name in type(spec).model_fields:
        value = getattr(spec, name)
        here = (*path, name)
        kind = _kind(name)
        if name == STRATA_FIELD and _groups_of_names(value):
            for i, group in enumerate(value):
                for j, item in enumerate(group):
                    if item not in BUILT_IN_STRATA:
                        yield (*here, i, j), "cohort", item
        elif kind is not None and isinstance(value, str):
            yield here, kind, value
        elif kind is not None and isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            for i, item in enumerate(value):
                yield (*here, i), kind, item
        elif isinstance(value, BaseModel):
            yield from references(value, here)
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from references(item, (*here, i))


def _groups_of_names(value: object) -> bool:
    return isinstance(value, list | tuple) and all(
        isinstance(group, list | tuple) and all(isinstance(v, str) for v in group) for group in value
    )
