"""GiBleed read from its query store (decision 0021) gives the same cohorts, row for row and statistic for
statistic, as GiBleed read from its encrypted Parquet files: every saved definition, and the ten typical
benchmark definitions (eras, censoring, measurements, "none" criteria)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from benchmarks.bench_cohorts import typical_definitions

from hygie.cohorts.service import CohortDefinition, CohortResult, DuckDBRunner, run_batch
from hygie.config import Settings
from hygie.engine import DuckDBEngine, query_store
from hygie.releases import Release

DATA = Path(__file__).parents[1] / "data" / "cohorts"


def _definitions() -> list[CohortDefinition]:
    saved = [CohortDefinition.from_file(f) for f in sorted(DATA.rglob("*.json"))]
    typical = [CohortDefinition(f"typical_{n}", c.to_circe()) for n, c in typical_definitions().items()]
    return saved + typical


def _generate(release: Release, settings: Settings, mode: str) -> tuple[str, dict[str, CohortResult]]:
    with DuckDBEngine(release, dataclasses.replace(settings, query_store=mode)) as engine:
        results = run_batch(DuckDBRunner(engine.con), _definitions())
        return engine.storage, {r.name: r for r in results}


@pytest.fixture(scope="module")
def both(gibleed: Release, gibleed_settings: Settings) -> tuple[dict[str, CohortResult], dict[str, CohortResult]]:
    parquet_storage, from_parquet = _generate(gibleed, gibleed_settings, "off")
    store_storage, from_store = _generate(gibleed, gibleed_settings, "always")
    assert (parquet_storage, store_storage) == ("parquet", "query store")
    assert query_store.store_path(gibleed, gibleed_settings).is_file()
    return from_parquet, from_store


def test_every_cohort_has_the_same_rows(both):
    from_parquet, from_store = both
    assert from_parquet.keys() == from_store.keys()
    for name, result in from_parquet.items():
        order = [("subject_id", "ascending"), ("cohort_start_date", "ascending"), ("cohort_end_date", "ascending")]
        assert result.rows.sort_by(order).equals(from_store[name].rows.sort_by(order)), name
    assert sum(r.records for r in from_parquet.values()) > 10_000  # not vacuous: GiBleed's cohorts are large


def test_every_cohort_has_the_same_statistics(both):
    from_parquet, from_store = both
    for name, result in from_parquet.items():
        assert result.summary() == from_store[name].summary(), name
