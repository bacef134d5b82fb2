"""Cohorts: run ATLAS/Circe cohort definitions (or cohorts built in Python) on a release.

In a notebook::

    from hygie import cohorts
    from hygie.cohorts import builder as cb

    results = cohorts.generate("gibleed", {"celecoxib": "celecoxib.json", "bleeds": cb.entry(...)})
    results["celecoxib"].to_pandas()      # subject_id, cohort_start_date, cohort_end_date
    results["celecoxib"].summary()        # counts and inclusion-rule attrition

Modules: ``circe`` (the model), ``plan`` (Circe attributes -> CDM columns), ``compile`` (SQL), ``concepts``
(concept sets), ``service`` (run and store), ``reference`` (the row-by-row oracle), ``builder`` (Python API),
``memory`` (an in-memory CDM for examples and tests).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hygie.cohorts.builder import Cohort
from hygie.cohorts.circe import CohortExpression, parse_expression, read_definition
from hygie.cohorts.service import CohortDefinition, CohortResult
from hygie.config import Settings

Definition = str | Path | Mapping[str, Any] | CohortExpression | Cohort

__all__ = ["CohortDefinition", "CohortExpression", "CohortResult", "Definition", "as_expression", "generate"]


def as_expression(definition: Definition, source: str = "python") -> CohortExpression:
    """Any accepted form of a definition (a Circe JSON file, decoded JSON, the model, a builder cohort)."""
    if isinstance(definition, CohortExpression):
        return definition
    if isinstance(definition, Cohort):
        return definition.to_circe()
    if isinstance(definition, str | Path):
        return read_definition(Path(definition))
    return parse_expression(json.loads(json.dumps(definition)), source)


def generate(
    release: str,
    definitions: Mapping[str, Definition],
    *,
    settings: Settings | None = None,
    engine: str = "duckdb",
    store: bool = True,
) -> dict[str, CohortResult]:
    """Generate named cohorts on a release (one batch: concept sets resolved once); returns them by name."""
    from hygie.cohorts.service import generate as run
    from hygie.releases import ReleaseStore

    config = settings or Settings.from_env()
    target = ReleaseStore(config).get(release)
    batch = [CohortDefinition(name, as_expression(d, name), name) for name, d in definitions.items()]
    return {r.name: r for r in run(target, batch, config, engine=engine, store=store)}
