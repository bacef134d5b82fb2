"""Generate cohorts on a release: compile a batch, resolve its concept sets once, run, count, store.

I/O lives here: the compiler and the plan are pure. Patient-level cohort rows are written to the release's
results area (``HYGIE_HOME/results/<release>/cohorts/``), encrypted with the release's data key; the release
itself is never touched.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hygie.cohorts.circe import CohortExpression, DefinitionError, read_definition
from hygie.cohorts.compile import (
    BEST_MASK_PART,
    MASK_PART,
    RULE_PART,
    CohortScript,
    Dialect,
    SparkDialect,
    compile_cohort,
)
from hygie.cohorts.concepts import (
    concept_set_items,
    concepts_sql,
    descendants_sql,
    expand,
    id_filter,
    ids_table,
    maps_to_sql,
    needs_table,
    resolve,
    unknown_concepts,
    unknown_rows,
)
from hygie.config import Settings
from hygie.errors import HygieError

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    from pyspark.sql import SparkSession

    from hygie.engine.scope import DataScope
    from hygie.releases.store import Release

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_batches = itertools.count(1)

COHORT_SCHEMA = pa.schema(
    [("subject_id", pa.int64()), ("cohort_start_date", pa.date32()), ("cohort_end_date", pa.date32())]
)


@dataclass(frozen=True)
class CohortDefinition:
    """A named Circe expression; ``source`` is where it came from (a file, or "python")."""

    name: str
    expression: CohortExpression
    source: str = "python"

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise HygieError(
                f"{self.source}: invalid cohort name {self.name!r}: use letters, digits, '.', '_' or '-' "
                "(at most 128), starting with a letter or digit"
            )

    @classmethod
    def from_file(cls, path: Path) -> CohortDefinition:
        """A definition file; its name is the file name without ``.json``."""
        return cls(path.name.removesuffix(".json"), read_definition(path), str(path))


@dataclass(frozen=True)
class RuleStats:
    """One inclusion rule: ``subjects`` remain after it and the rules before it (applied in order)."""

    name: str
    subjects: int
    events_passing: int  # qualified events that satisfy this rule alone (Circe's person_count, mode 0)
    gain: int  # events that fail only this rule (Circe's gain_count)


@dataclass
class CohortResult:
    name: str
    rows: pa.Table  # subject_id, cohort_start_date, cohort_end_date
    qualified_events: int
    qualified_subjects: int
    inclusion_rules: list[RuleStats]
    mask_counts: dict[int, int]  # inclusion-rule mask -> qualified events (Circe's cohort_inclusion_result, mode 0)
    best_mask_counts: dict[int, int]  # mask -> persons, each by their best event (Circe's mode 1)
    censor_window_lost: int  # persons removed by the censor window
    warnings: list[str] = field(default_factory=list)

    @property
    def records(self) -> int:
        return self.rows.num_rows

    @property
    def subjects(self) -> int:
        if not self.rows.num_rows:
            return 0
        return int(pc.count_distinct(self.rows["subject_id"]).as_py())

    def to_arrow(self) -> pa.Table:
        return self.rows

    def to_pandas(self) -> pd.DataFrame:
        return self.rows.to_pandas()

    def summary(self) -> dict[str, Any]:
        """What ``hygie cohort generate --json`` prints: counts only, no row-level data."""
        return {
            "name": self.name,
            "subjects": self.subjects,
            "records": self.records,
            "qualified_events": self.qualified_events,
            "qualified_subjects": self.qualified_subjects,
            "inclusion_rules": [
                {"name": r.name, "subjects": r.subjects, "events_passing": r.events_passing, "gain": r.gain}
                for r in self.inclusion_rules
            ],
            "inclusion_rule_masks": {str(k): v for k, v in sorted(self.mask_counts.items())},
            "inclusion_rule_masks_best_event": {str(k): v for k, v in sorted(self.best_mask_counts.items())},
            "censor_window_lost": self.censor_window_lost,
            "warnings": self.warnings,
        }


class SqlRunner(Protocol):
    """What cohort generation needs from an engine: temporary tables and queries in its SQL dialect."""

    dialect: Dialect

    def register(self, name: str, table: pa.Table) -> None: ...

    def materialize(self, name: str, sql: str) -> None: ...

    def query(self, sql: str) -> pa.Table: ...

    def drop(self, name: str) -> None: ...


class DuckDBRunner:
    """Runs cohort SQL on a DuckDB connection where the CDM tables are visible (temporary tables live in its
    in-memory catalog)."""

    dialect = Dialect()

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def register(self, name: str, table: pa.Table) -> None:
        self.con.register(f"{name}_arrow", table)
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")
        self.con.unregister(f"{name}_arrow")

    def materialize(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")

    def query(self, sql: str) -> pa.Table:
        return self.con.execute(sql).to_arrow_table()

    def drop(self, name: str) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {name}")


class SparkRunner:
    """Runs cohort SQL on a Spark session: CDM tables and steps are temporary views; each step is checkpointed
    (materialised, lineage cut) so that later steps do not recompute it."""

    dialect = SparkDialect()

    def __init__(self, spark: SparkSession, tables: dict[str, pa.Table]) -> None:
        self.spark = spark
        self.pending = dict(tables)  # CDM tables become views when a statement first names them
        self.cdm_views: list[str] = []

    def _views_for(self, sql: str) -> None:
        self.ensure_views([n for n in self.pending if re.search(rf"\b{n}\b", sql)])

    def ensure_views(self, names: list[str]) -> None:
        """Make these CDM tables Spark views (once)."""
        for name in names:
            if name in self.pending:
                self.register(name, self.pending.pop(name))
                self.cdm_views.append(name)

    def register(self, name: str, table: pa.Table) -> None:
        frame = self.spark.createDataFrame(table) if table.num_rows else self._empty(table.schema)
        frame.createOrReplaceTempView(name)

    def _empty(self, schema: pa.Schema) -> Any:
        # Spark infers nothing from an empty Arrow table with all-null types; give it one null row to drop.
        frame = self.spark.createDataFrame(pa.Table.from_pylist([{}], schema=schema))
        return frame.limit(0)

    def materialize(self, name: str, sql: str) -> None:
        # Computed now, and its lineage cut: later steps read the result instead of re-planning the CTEs.
        self._views_for(sql)
        self.spark.sql(sql).localCheckpoint(eager=True).createOrReplaceTempView(name)

    def query(self, sql: str) -> pa.Table:
        self._views_for(sql)
        return self.spark.sql(sql).toArrow()

    def drop(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)

    def close(self) -> None:
        for name in self.cdm_views:
            self.drop(name)


def compile_batch(
    definitions: Sequence[CohortDefinition],
    prefix: str,
    codesets_table: str,
    dialect: Dialect,
    resolved: Mapping[int, Mapping[int, Sequence[int]]] | None = None,
) -> list[CohortScript]:
    """Compile every definition before running any, so that a bad file fails fast, naming itself.
    ``resolved``: the resolved concept sets by cohort key, then codeset id (see ``compile_cohort``)."""
    scripts = []
    for key, definition in enumerate(definitions):
        try:
            scripts.append(
                compile_cohort(
                    definition.expression,
                    key=key,
                    codesets_table=codesets_table,
                    prefix=f"{prefix}_{key}",
                    dialect=dialect,
                    resolved=(resolved or {}).get(key),
                )
            )
        except DefinitionError as e:
            raise e.at(definition.source) from None
    return scripts


def run_batch(runner: SqlRunner, definitions: Sequence[CohortDefinition]) -> list[CohortResult]:
    """Generate each cohort of the batch; the engine's temporary tables are dropped afterwards."""
    names = [d.name for d in definitions]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise HygieError(f"two definitions share the name(s) {', '.join(duplicates)}: cohort names must be unique")
    prefix = f"_hygie_cohort_{next(_batches)}"
    codesets = f"{prefix}_codesets"
    scripts = compile_batch(definitions, prefix, codesets, runner.dialect)
    created: list[str] = []
    try:
        resolved, unknown = resolve_concept_sets(runner, [d.expression for d in definitions], prefix, created)
        by_key: dict[int, dict[int, list[int]]] = {}
        for row in resolved.to_pylist():
            by_key.setdefault(row["cohort_key"], {}).setdefault(row["codeset_id"], []).append(row["concept_id"])
        scripts = compile_batch(definitions, prefix, codesets, runner.dialect, by_key)
        if any(codesets in sql for script in scripts for sql in script.sql()):  # else every set is inlined
            runner.register(codesets, resolved)
            created.append(codesets)
        # One cohort at a time: each query already keeps the cores busy (two side by side on two DuckDB cursors
        # took more CPU and no less wall time for the benchmark's ten, decision 0019).
        tables = [_run_script(runner, script) for script in scripts]
        results = []
        for key, (definition, script, table) in enumerate(zip(definitions, scripts, tables, strict=True)):
            rows = [(codeset, concept) for k, codeset, concept in unknown if k == key]
            warnings = [u.message() for u in unknown_concepts(definition.expression, rows)]
            results.append(_result(definition, script, table, warnings))
        return results
    finally:
        for name in created:
            runner.drop(name)


def _run_script(runner: SqlRunner, script: CohortScript) -> tuple[pa.Table, pa.Table | None]:
    """The script's steps, then its rows and its statistics (if a query of their own); the steps are dropped
    afterwards."""
    try:
        for name, sql in script.steps:
            runner.materialize(name, sql)
        rows = runner.query(script.rows_query)
        return rows, (runner.query(script.stats_query) if script.stats_query is not None else None)
    finally:
        for name, _ in script.steps:
            runner.drop(name)


def resolve_concept_sets(
    runner: SqlRunner, expressions: Sequence[CohortExpression], prefix: str, created: list[str]
) -> tuple[pa.Table, list[tuple[int, int, int]]]:
    """Resolve every concept set of the batch: returns the rows of the codesets table (``cohort_key, codeset_id,
    concept_id``; registered as ``<prefix>_codesets`` by the caller if a script reads it) and the listed concept
    ids absent from the vocabulary (``cohort_key, codeset_id, concept_id``). Temporary tables made for the
    lookups are appended to ``created``.

    At most three lookups, each filtered by the ids it needs: descendants, then the concepts (existence and
    validity), then 'Maps to' codes if an item asks for them.
    """
    items = concept_set_items(expressions)

    def lookup(sql_of: Callable[[str], str], column: str, ids: list[int], name: str) -> list[dict[str, Any]]:
        table = None
        if needs_table(ids):  # too many ids to write into the SQL
            table = f"{prefix}_{name}"
            runner.register(table, ids_table(ids))
            created.append(table)
        return runner.query(sql_of(id_filter(column, ids, table))).to_pylist()

    descendants: dict[int, set[int]] = {}
    ancestors = [i.concept_id for i in items if i.include_descendants]
    if ancestors:
        for row in lookup(descendants_sql, "ancestor_concept_id", ancestors, "ancestors"):
            descendants.setdefault(row["ancestor"], set()).add(row["descendant"])
    candidates = [i.concept_id for i in items] + [d for ds in descendants.values() for d in ds]
    concepts = {r["concept_id"]: bool(r["valid"]) for r in lookup(concepts_sql, "concept_id", candidates, "concepts")}
    mapped: dict[int, set[int]] = {}
    targets = sorted({c for i in items if i.include_mapped for c in expand(i, descendants, concepts)})
    if targets:
        for row in lookup(maps_to_sql, "concept_id_2", targets, "targets"):
            mapped.setdefault(row["target"], set()).add(row["source"])
    return resolve(items, descendants, concepts, mapped), unknown_rows(items, concepts)


def _result(
    definition: CohortDefinition, script: CohortScript, tables: tuple[pa.Table, pa.Table | None], warnings: list[str]
) -> CohortResult:
    """The cohort from its script's results: the rows (censor window applied, sorted) and the statistics (or,
    without a statistics query, the qualified events, from which both are derived)."""
    periods, statistics = tables
    n_rules = len(script.rule_names)
    counts: dict[int, dict[int, int]] = {MASK_PART: {}, BEST_MASK_PART: {}, RULE_PART: {}}
    if statistics is None:
        counts[MASK_PART], periods = _qualified_masks(periods, n_rules)
    else:
        for row in statistics.to_pylist():
            counts[row["part"]][int(row["key"])] = int(row["n"] or 0)
    rows = pa.table([periods["person_id"], periods["start_date"], periods["end_date"]], names=COHORT_SCHEMA.names).cast(
        COHORT_SCHEMA
    )
    # Sorted here rather than by the engine: same order on every engine, and cheaper than a sort in the query.
    rows = sort_rows(rows)
    lost = 0
    if script.has_censor_window:
        before = _persons(rows)
        rows = rows.filter(pc.less_equal(rows["cohort_start_date"], rows["cohort_end_date"]))
        lost = before - _persons(rows)
    if script.one_event_per_person:  # persons are events: the counts per mask say everything
        counts[BEST_MASK_PART] = dict(counts[MASK_PART])
        counts[RULE_PART] = {i: _events_with(counts[MASK_PART], 2 ** (i + 1) - 1) for i in range(n_rules)}
    stats = inclusion_stats(counts[MASK_PART], counts[BEST_MASK_PART], counts[RULE_PART], n_rules)
    rules = [
        RuleStats(name=name, subjects=subjects, events_passing=passing, gain=gain)
        for name, subjects, passing, gain in zip(
            script.rule_names, stats.rule_subjects, stats.events_passing, stats.gains, strict=True
        )
    ]
    return CohortResult(
        name=definition.name,
        rows=rows,
        qualified_events=stats.events,
        qualified_subjects=stats.subjects,
        inclusion_rules=rules,
        mask_counts=stats.mask_counts,
        best_mask_counts=stats.best_mask_counts,
        censor_window_lost=lost,
        warnings=warnings,
    )


def sort_rows(rows: pa.Table) -> pa.Table:
    """Cohort rows ordered by subject, then start date. A cohort has at most one period per subject and start
    (periods are merged, or one per person), so the order is total. One sort of a 64-bit key (subject in the
    high half, start day in the low half) when the subjects fit in 31 bits: about twice as fast as a sort on two
    columns for a million rows."""
    subjects, starts = rows["subject_id"], rows["cohort_start_date"]
    ids = subjects.to_numpy() if rows.num_rows and not subjects.null_count and not starts.null_count else None
    if ids is None or ids.min() < 0 or ids.max() >= 2**31:
        return rows.sort_by([("subject_id", "ascending"), ("cohort_start_date", "ascending")])
    days = starts.cast(pa.int32()).to_numpy().astype(np.int64) + 2**31  # non-negative, below 2**32
    return rows.take(np.argsort((ids.astype(np.int64) << 32) | days))


def _qualified_masks(qualified: pa.Table, n_rules: int) -> tuple[dict[int, int], pa.Table]:
    """Qualified events per inclusion-rule mask, and the events passing every rule that have an exit."""
    full = 2**n_rules - 1
    if "inclusion_rule_mask" in qualified.column_names:
        masks = qualified["inclusion_rule_mask"]
        counted = pc.value_counts(masks).to_pylist()
        by_mask = {int(c["values"]): int(c["counts"]) for c in counted}
        passing = pc.equal(masks, full)
        qualified = qualified.filter(pc.and_(passing, pc.is_valid(qualified["end_date"])))
    else:  # no rules: every event has mask 0
        by_mask = {0: qualified.num_rows} if qualified.num_rows else {}
        qualified = qualified.filter(pc.is_valid(qualified["end_date"]))
    return by_mask, qualified


def _persons(rows: pa.Table) -> int:
    """Distinct subjects of rows sorted by subject."""
    ids = rows["subject_id"].to_numpy()
    return int(np.count_nonzero(ids[1:] != ids[:-1])) + 1 if len(ids) else 0


def _events_with(mask_counts: dict[int, int], bits: int) -> int:
    """Events whose mask has all of ``bits``."""
    return sum(n for mask, n in mask_counts.items() if mask & bits == bits)


@dataclass(frozen=True)
class InclusionStats:
    events: int
    subjects: int
    mask_counts: dict[int, int]
    best_mask_counts: dict[int, int]
    rule_subjects: list[int]  # persons remaining after rules 0..i
    events_passing: list[int]  # events passing rule i
    gains: list[int]  # events failing only rule i


def inclusion_stats(
    mask_counts: dict[int, int], best_mask_counts: dict[int, int], rule_subjects: dict[int, int], n_rules: int
) -> InclusionStats:
    """Circe's inclusion statistics (mode 0, all events) from the qualified events per mask, the persons per best
    mask (Circe's "best" event of a person has the highest mask: rule i weighs 2^i) and the persons passing
    rules 0..i."""
    full = 2**n_rules - 1
    return InclusionStats(
        events=sum(mask_counts.values()),
        subjects=sum(best_mask_counts.values()),
        mask_counts=dict(mask_counts),
        best_mask_counts=dict(best_mask_counts),
        rule_subjects=[rule_subjects.get(i, 0) for i in range(n_rules)],
        events_passing=[_events_with(mask_counts, 2**i) for i in range(n_rules)],
        gains=[mask_counts.get(full & ~(2**i), 0) for i in range(n_rules)],
    )


# -- release-level entry points ---------------------------------------------------------------------------------


def open_runner(
    release: Release, settings: Settings, engine: str, scope: DataScope | None = None
) -> tuple[SqlRunner, Any]:
    """A runner for ``engine`` over the release (only what ``scope`` lets through), and the engine object to
    close afterwards."""
    if engine == "duckdb":
        from hygie.engine.duckdb import DuckDBEngine

        opened = DuckDBEngine(release, settings, scope=scope)
        return DuckDBRunner(opened.con), opened
    if engine == "spark":
        from hygie.engine.spark import SparkEngine

        spark_engine = SparkEngine(release, settings, scope=scope)
        return spark_engine.runner, spark_engine
    raise HygieError(f"unknown engine {engine!r}: use duckdb or spark")


def generate(
    release: Release,
    definitions: Sequence[CohortDefinition],
    settings: Settings,
    *,
    engine: str = "duckdb",
    store: bool = True,
) -> list[CohortResult]:
    """Generate a batch of cohorts on a release; with ``store``, keep them in the release's results area."""
    runner, opened = open_runner(release, settings, engine)
    try:
        results = run_batch(runner, definitions)
    finally:
        opened.close()
    if store:
        for result in results:
            store_result(release, settings, result)
    return results


def results_folder(release: Release, settings: Settings) -> Path:
    return settings.results_dir / release.name / "cohorts"


def store_result(release: Release, settings: Settings, result: CohortResult) -> Path:
    """Write the cohort rows (encrypted Parquet, the release's key) and its summary next to them."""
    from hygie.engine.duckdb import connect, parquet_copy_options, register_key

    folder = results_folder(release, settings)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{result.name}.parquet"
    key_name = None
    con = connect(settings, writer=True, allowed_dirs=[folder])
    try:
        if release.manifest.encryption is not None:
            key_name = "results_key"
            register_key(con, key_name, release.data_key(settings))
        con.register("cohort_rows", result.rows)
        escaped = str(target).replace("'", "''")
        con.execute(f"COPY (SELECT * FROM cohort_rows) TO '{escaped}' {parquet_copy_options(key_name)}")
    finally:
        con.close()
    (folder / f"{result.name}.json").write_text(json.dumps(result.summary(), indent=2) + "\n")
    return target


def read_stored(release: Release, settings: Settings, name: str) -> pa.Table:
    """A stored cohort's rows (decrypted)."""
    from hygie.engine.duckdb import connect, parquet_source, register_key

    path = results_folder(release, settings) / f"{name}.parquet"
    if not path.is_file():
        raise HygieError(f"no stored cohort named {name!r} for release {release.name}")
    con = connect(settings, allowed_dirs=[path.parent])
    try:
        key_name = None
        if release.manifest.encryption is not None:
            key_name = "results_key"
            register_key(con, key_name, release.data_key(settings))
        return con.execute(f"SELECT * FROM {parquet_source(str(path), key_name)}").to_arrow_table()
    finally:
        con.close()
