"""Cohort benchmark: ten typical definitions, each against one hand-written DuckDB query, and a batch of
small definitions (per-definition overhead).

Run: ``uv run python -m benchmarks.bench_cohorts [--patients 600000 | --release NAME] [--runs 5] [--small 1000]
[--storage both|parquet|store] [--spark] [--profile]``. ``--patients`` (or ``HYGIE_BENCH_PATIENTS``) runs the
ten on a generated CDM of that many persons (``benchmarks/cohort_cdm.py``: about 177 patient rows per person,
built once and kept under ``bench-results/data/``); otherwise on ``--release`` or the bundled GiBleed. The
batch of small definitions (on each storage measured) and Spark always use GiBleed. ``main()`` returns the
figures (and prints them as JSON): median wall and CPU seconds of several runs, per definition the ratio of
hygie's time to the hand-written query's (both fetch Arrow; their row counts are compared too; each run times
one then the other, and the median of the runs' CPU ratios is reported too), the batch of ten, the process's
peak RSS, the load average, and with ``--profile`` the seconds of each step of each definition.

Each storage a release can be read from (decision 0021) is measured in its own child process, hygie and the
hand-written queries on the same connection, so on the same storage: ``parquet`` (the release's encrypted
Parquet files) and ``store`` (its encrypted DuckDB query store, built first if missing: the build is timed).
Per storage the first batch of ten in a fresh engine is reported apart ("cold": nothing cached but the OS's
file cache), then the medians of the warm runs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.cohort_cdm import (
    ASPIRIN,
    BRONCHITIS,
    CELECOXIB,
    CELSIUS,
    DICLOFENAC,
    GI_BLEED,
    ORAL_TEMPERATURE,
    OSTEOARTHRITIS,
    OTITIS,
    PHARYNGITIS,
    SINUSITIS,
)
from hygie.cohorts import builder as cb
from hygie.cohorts.service import CohortDefinition, DuckDBRunner, run_batch
from hygie.config import Settings
from hygie.engine import query_store
from hygie.engine.duckdb import DuckDBEngine
from hygie.releases import Release, ReleaseStore

FEVER_CELSIUS = 38.0


def typical_definitions() -> dict[str, cb.Cohort]:
    def cs(name: str, concept: int) -> cb.ConceptSet:
        return cb.concepts(name, concept, descendants=True)

    bleed, celecoxib = cs("GI bleed", GI_BLEED), cs("celecoxib", CELECOXIB)
    aspirin = cs("aspirin", ASPIRIN)
    return {
        "first_gi_bleed": cb.entry(cb.condition(bleed)),
        "celecoxib_new_users": cb.entry(cb.drug(celecoxib)).with_observation(prior_days=365),
        "diclofenac_era_washout": cb.entry(cb.drug_era(cs("diclofenac", DICLOFENAC)))
        .with_observation(prior_days=365)
        .exit_after(days=0, from_end=True),
        "osteoarthritis_men_40": cb.entry(cb.condition(cs("osteoarthritis", OSTEOARTHRITIS)))
        .require("40 or older", cb.age() >= 40)
        .require("male", cb.gender(cb.MALE)),
        "sinusitis_after_pharyngitis": cb.entry(cb.condition(cs("sinusitis", SINUSITIS))).require(
            "pharyngitis in the year before",
            cb.condition(cs("pharyngitis", PHARYNGITIS)).at_least(1, within=cb.days(-365, -1)),
        ),
        "bronchitis_episodes": cb.entry(cb.condition(cs("bronchitis", BRONCHITIS)))
        .all_events()
        .require("no sinusitis in 30 days", cb.condition(cs("sinusitis", SINUSITIS)).none(within=cb.days(-30, 0)))
        .exit_after(days=7),
        "fever_measured": cb.entry(
            cb.measurement(cs("oral temperature", ORAL_TEMPERATURE)).where(
                value_as_number=cb.value("gt", FEVER_CELSIUS), unit=[cb.c.Concept(CONCEPT_ID=CELSIUS)]
            )
        ).exit_after(days=1),
        "celecoxib_censored_by_bleed": cb.entry(cb.drug(celecoxib)).censor_on(cb.condition(bleed)),
        "aspirin_exposure_eras": cb.entry(cb.drug(aspirin)).all_events().exit_when_exposure_ends(aspirin, gap_days=30),
        "otitis_2000s": cb.entry(cb.condition(cs("otitis", OTITIS))).between("2000-01-01", "2009-12-31"),
    }


def _descendants(concept: int) -> str:
    return f"(SELECT descendant_concept_id FROM concept_ancestor WHERE ancestor_concept_id = {concept})"


def _first_in_observation(
    table: str, concept_col: str, start: str, concept: int, prior: int = 0, where: str = "TRUE"
) -> str:
    """Each person's first record (that satisfies ``where``) inside an observation period (with ``prior`` days
    before), and its period."""
    return f"""
SELECT person_id, start_date, op_end FROM (
  SELECT t.person_id, t.{start} AS start_date, op.observation_period_end_date AS op_end,
         row_number() OVER (PARTITION BY t.person_id ORDER BY t.{start}) AS n
  FROM {table} t JOIN observation_period op ON op.person_id = t.person_id
   AND t.{start} BETWEEN op.observation_period_start_date + {prior} AND op.observation_period_end_date
  WHERE t.{concept_col} IN {_descendants(concept)} AND {where}) WHERE n = 1"""


def _merged(source: str, name: str) -> str:
    """CTEs ``<name>_m`` and ``<name>``: intervals (s, e) of ``source`` numbered by merged group ``grp``."""
    return f"""{name}_m AS (SELECT *, CASE WHEN s <= max(e) OVER (PARTITION BY person_id ORDER BY s, e
      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) THEN 0 ELSE 1 END AS is_start FROM {source}),
{name} AS (SELECT *, sum(is_start) OVER (PARTITION BY person_id ORDER BY s, e ROWS UNBOUNDED PRECEDING) AS grp
      FROM {name}_m)"""


def hand_written() -> dict[str, str]:
    """One plain DuckDB query per typical definition, written directly from its meaning."""
    cond = ("condition_occurrence", "condition_concept_id", "condition_start_date")
    first_bleed = _first_in_observation(*cond, GI_BLEED)
    return {
        "first_gi_bleed": f"SELECT person_id, start_date, op_end FROM ({first_bleed})",
        "celecoxib_new_users": _first_in_observation(
            "drug_exposure", "drug_concept_id", "drug_exposure_start_date", CELECOXIB, 365
        ),
        "diclofenac_era_washout": f"""
SELECT person_id, start_date, least(e.drug_era_end_date, op_end) FROM (
  SELECT de.person_id, de.drug_era_start_date AS start_date, de.drug_era_end_date, op.observation_period_end_date
         AS op_end, row_number() OVER (PARTITION BY de.person_id ORDER BY de.drug_era_start_date) AS n
  FROM drug_era de JOIN observation_period op ON op.person_id = de.person_id
   AND de.drug_era_start_date BETWEEN op.observation_period_start_date + 365 AND op.observation_period_end_date
  WHERE de.drug_concept_id IN {_descendants(DICLOFENAC)}) e WHERE n = 1""",
        "osteoarthritis_men_40": f"""
SELECT f.* FROM ({_first_in_observation(*cond, OSTEOARTHRITIS)}) f JOIN person p USING (person_id)
WHERE year(f.start_date) - p.year_of_birth >= 40 AND p.gender_concept_id = 8507""",
        "sinusitis_after_pharyngitis": f"""
SELECT f.* FROM ({_first_in_observation(*cond, SINUSITIS)}) f
WHERE EXISTS (SELECT 1 FROM condition_occurrence c JOIN observation_period op ON op.person_id = c.person_id
  AND c.condition_start_date BETWEEN op.observation_period_start_date AND op.observation_period_end_date
  AND f.start_date BETWEEN op.observation_period_start_date AND op.observation_period_end_date
  WHERE c.person_id = f.person_id AND c.condition_concept_id IN {_descendants(PHARYNGITIS)}
  AND c.condition_start_date BETWEEN f.start_date - 365 AND f.start_date - 1)""",
        "bronchitis_episodes": f"""
WITH ev AS (
  SELECT c.person_id, c.condition_start_date AS s,
    least(c.condition_start_date + 7, op.observation_period_end_date) AS e
  FROM condition_occurrence c JOIN observation_period op ON op.person_id = c.person_id
   AND c.condition_start_date BETWEEN op.observation_period_start_date AND op.observation_period_end_date
  WHERE c.condition_concept_id IN {_descendants(BRONCHITIS)}
  AND NOT EXISTS (SELECT 1 FROM condition_occurrence x WHERE x.person_id = c.person_id
    AND x.condition_concept_id IN {_descendants(SINUSITIS)}
    AND x.condition_start_date BETWEEN greatest(c.condition_start_date - 30, op.observation_period_start_date)
        AND c.condition_start_date)),
{_merged("ev", "g")}
SELECT person_id, min(s), max(e) FROM g GROUP BY person_id, grp""",
        "fever_measured": f"""
SELECT person_id, start_date, least(start_date + 1, op_end) FROM (
  {
            _first_in_observation(
                "measurement",
                "measurement_concept_id",
                "measurement_date",
                ORAL_TEMPERATURE,
                where=f"t.value_as_number > {FEVER_CELSIUS} AND t.unit_concept_id = {CELSIUS}",
            )
        })""",
        "celecoxib_censored_by_bleed": f"""
SELECT f.person_id, f.start_date, least(f.op_end, coalesce((SELECT min(c.condition_start_date)
  FROM condition_occurrence c WHERE c.person_id = f.person_id AND c.condition_concept_id IN {_descendants(GI_BLEED)}
  AND c.condition_start_date BETWEEN f.start_date AND f.op_end), f.op_end))
FROM ({_first_in_observation("drug_exposure", "drug_concept_id", "drug_exposure_start_date", CELECOXIB)}) f""",
        "aspirin_exposure_eras": f"""
WITH x AS (
  SELECT person_id, drug_exposure_start_date AS s,
    coalesce(drug_exposure_end_date, drug_exposure_start_date + days_supply, drug_exposure_start_date + 1) + 30 AS e
  FROM drug_exposure WHERE drug_concept_id IN {_descendants(ASPIRIN)}),
{_merged("x", "g")},
eras AS (SELECT person_id, min(s) AS s, max(e) - 30 AS e FROM g GROUP BY person_id, grp),
idx AS (SELECT x.person_id, x.s, least(eras.e, op.observation_period_end_date) AS e FROM x
  JOIN observation_period op ON op.person_id = x.person_id
   AND x.s BETWEEN op.observation_period_start_date AND op.observation_period_end_date
  JOIN eras ON eras.person_id = x.person_id AND x.s BETWEEN eras.s AND eras.e),
{_merged("idx", "g2")}
SELECT person_id, min(s), max(e) FROM g2 GROUP BY person_id, grp""",
        "otitis_2000s": f"""
SELECT person_id, greatest(start_date, DATE '2000-01-01'), least(op_end, DATE '2009-12-31')
FROM ({_first_in_observation(*cond, OTITIS)})
WHERE greatest(start_date, DATE '2000-01-01') <= least(op_end, DATE '2009-12-31')""",
    }


def small_definitions(n: int) -> list[CohortDefinition]:
    """``n`` small phenotype-like definitions over GiBleed's condition concepts (first event, one rule)."""
    concepts = [GI_BLEED, OSTEOARTHRITIS, SINUSITIS, PHARYNGITIS, BRONCHITIS, OTITIS]
    out = []
    for i in range(n):
        cs = cb.concepts(f"c{i}", concepts[i % len(concepts)], descendants=True)
        cohort = cb.entry(cb.condition(cs)).require("age", cb.age() >= i % 60)
        out.append(CohortDefinition(f"small_{i}", cohort.to_circe()))
    return out


def _median_seconds(action: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _median_wall_and_cpu(action: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """Median wall and CPU seconds (this process, all DuckDB threads): CPU time is less sensitive to other jobs
    on a shared machine."""
    walls, cpus, result = [], [], None
    for _ in range(runs):
        cpu, wall = time.process_time(), time.perf_counter()
        result = action()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


@dataclasses.dataclass
class _Timings:
    walls: list[float]
    cpus: list[float]
    result: Any = None

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpus)


def _alternating(first: Callable[[], Any], second: Callable[[], Any], runs: int) -> tuple[_Timings, _Timings]:
    """Wall and CPU seconds of ``runs`` runs of each action, run in turn (first, second, first, ...)."""
    timings = (_Timings([], []), _Timings([], []))
    for _ in range(runs):
        for action, t in zip((first, second), timings, strict=True):
            cpu, wall = time.process_time(), time.perf_counter()
            t.result = action()
            t.walls.append(time.perf_counter() - wall)
            t.cpus.append(time.process_time() - cpu)
    return timings


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


STORAGES = {"parquet": "off", "store": "always"}  # --storage name -> Settings.query_store


class TimingRunner:
    """A DuckDB runner that adds up the time of each kind of call (the profile of one cohort's generation)."""

    def __init__(self, runner: DuckDBRunner) -> None:
        self.runner = runner
        self.dialect = runner.dialect
        self.seconds: dict[str, float] = {}

    def _timed(self, kind: str, action: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return action()
        finally:
            self.seconds[kind] = self.seconds.get(kind, 0.0) + time.perf_counter() - start

    @staticmethod
    def _kind(name: str) -> str:
        return name.rsplit("_", 1)[-1]

    def register(self, name: str, table: Any) -> None:
        self._timed("register " + self._kind(name), lambda: self.runner.register(name, table))

    def materialize(self, name: str, sql: str) -> None:
        self._timed("materialize " + self._kind(name), lambda: self.runner.materialize(name, sql))

    def query(self, sql: str) -> Any:
        if " AS part," in sql:  # a cohort's inclusion statistics
            kind = "query statistics"
        elif "SELECT CAST(person_id AS BIGINT) AS person_id" in sql:  # a cohort's rows
            kind = "query rows"
        else:
            kind = "query " + (sql.split("FROM ", 1)[1].split()[0].rsplit("_", 1)[-1] if "FROM " in sql else "?")
        return self._timed(kind, lambda: self.runner.query(sql))

    def drop(self, name: str) -> None:
        self._timed("drop", lambda: self.runner.drop(name))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.runner, name)


def _release(settings: Settings, name: str) -> Release:
    return ReleaseStore(settings).get(name)


def _gibleed(settings: Settings) -> Release:
    from hygie import datasets
    from hygie.ingest.cdm_load import load_cdm

    store = ReleaseStore(settings)
    if store.exists("gibleed"):
        return store.get("gibleed")
    dataset = datasets.get("gibleed")
    return load_cdm(dataset.folder, "gibleed", settings, synthetic=True, allow_duplicate_keys=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--release", help="an existing release (in HYGIE_HOME) for the ten typical definitions")
    parser.add_argument(
        "--patients",
        type=int,
        default=int(os.environ.get("HYGIE_BENCH_PATIENTS", "0")),
        help="the ten typical definitions on a generated CDM of this many persons (HYGIE_BENCH_PATIENTS; built "
        "once under bench-results/data/); 0: GiBleed",
    )
    parser.add_argument("--runs", type=int, default=int(os.environ.get("HYGIE_BENCH_RUNS", "5")))
    parser.add_argument("--small", type=int, default=1000, help="size of the batch of small definitions (GiBleed)")
    parser.add_argument("--spark", action="store_true", help="also time the batches on Spark local mode (GiBleed)")
    parser.add_argument("--spark-small", type=int, default=50, help="size of the small batch on Spark")
    parser.add_argument("--profile", action="store_true", help="time each step of each typical definition")
    parser.add_argument(
        "--storage", choices=["both", *STORAGES], default="both", help="what the release is read from (0021)"
    )
    args = parser.parse_args(argv if argv is not None else [])
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch)
        gibleed_settings = Settings(home=home, master_key_file=home / "keys" / "master.key")
        gibleed = _gibleed(gibleed_settings)
        if args.patients:
            from benchmarks.cohort_cdm import patient_rows, release_for

            release, settings = release_for(args.patients)
            figures["patients"], figures["patient_rows"] = args.patients, patient_rows(release)
        elif args.release:
            settings = Settings.from_env()
            release = _release(settings, args.release)
        else:
            release, settings = gibleed, gibleed_settings
        storages = list(STORAGES) if args.storage == "both" else [args.storage]
        figures["typical"] = {s: run_in_child(release, settings, runs=args.runs, profile=args.profile, storage=s)
                              for s in storages}  # fmt: skip
        if len(storages) == 2:
            typical = figures["typical"]
            typical["store_vs_parquet"] = _compare(typical["parquet"], typical["store"])
        if args.small:
            figures["small"] = {s: run_small(gibleed, gibleed_settings, args.small, s) for s in storages}
        if args.spark:
            figures["spark"] = run_spark(gibleed, gibleed_settings, small=args.spark_small)
    print(json.dumps(figures, indent=2))
    return figures


def run_in_child(release: Release, settings: Settings, **options: Any) -> dict[str, Any]:
    """``run`` in a fresh process: its peak RSS and caches are its own."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(run, release, settings, **options).result()


def _compare(parquet: dict[str, Any], store: dict[str, Any]) -> dict[str, Any]:
    """How much less the query store costs than Parquet, hygie and hand-written alike (CPU: steadier)."""
    keys = ("sum_hygie_cpu_s", "sum_hand_written_cpu_s", "sum_hygie_s", "sum_hand_written_s", "cold_batch_of_ten_s")
    return {f"parquet_over_store_{k}": round(parquet[k] / store[k], 2) for k in keys if store.get(k)}


def run(release: Release, settings: Settings, *, runs: int, profile: bool = False, storage: str = "parquet") -> dict:
    """The ten typical definitions, one at a time and in one batch, against the hand-written queries (whose
    result is fetched as Arrow too, as hygie's is), both reading the release from ``storage``."""
    settings = dataclasses.replace(settings, query_store=STORAGES[storage])
    figures: dict[str, Any] = {"storage": storage}
    load_before = round(os.getloadavg()[0], 2)
    if storage == "store" and not query_store.store_path(release, settings).is_file():
        cpu, wall = time.process_time(), time.perf_counter()
        built = query_store.build(release, settings)
        figures["store_build"] = {
            "wall_s": round(time.perf_counter() - wall, 1),
            "cpu_s_this_process": round(time.process_time() - cpu, 1),
            "store_mb": round(built.bytes / 1e6, 1),
        }
    if storage == "store":
        figures["store_mb"] = round(query_store.store_path(release, settings).stat().st_size / 1e6, 1)
    figures["parquet_mb"] = round(sum(e.bytes for e in release.manifest.tables.values()) / 1e6, 1)
    definitions = [CohortDefinition(n, c.to_circe()) for n, c in typical_definitions().items()]
    DuckDBEngine(release, settings).close()  # one-off imports (ibis) are not what "cold" measures
    # Cold: a fresh engine and the batch of ten (also the warm-up of what follows).
    cpu, wall = time.process_time(), time.perf_counter()
    engine = DuckDBEngine(release, settings)
    runner = DuckDBRunner(engine.con)
    run_batch(runner, definitions)
    figures["cold_batch_of_ten_s"] = round(time.perf_counter() - wall, 3)
    figures["cold_batch_of_ten_cpu_s"] = round(time.process_time() - cpu, 2)
    try:
        assert engine.storage == {"parquet": "parquet", "store": "query store"}[storage], engine.storage
        queries = hand_written()
        per_definition: dict[str, Any] = {}
        for definition in definitions:
            hand, hygie = _alternating(
                lambda q=queries[definition.name]: engine.con.execute(q).to_arrow_table(),
                lambda d=definition: run_batch(runner, [d]),
                runs,
            )
            hand_rows, (result,) = hand.result, hygie.result
            per_definition[definition.name] = {
                "hygie_s": round(hygie.wall, 4),
                "hand_written_s": round(hand.wall, 4),
                "ratio": round(hygie.wall / hand.wall, 2),
                "hygie_cpu_s": round(hygie.cpu, 3),
                "hand_written_cpu_s": round(hand.cpu, 3),
                "cpu_ratio": round(hygie.cpu / hand.cpu, 2),
                # Each run times the hand-written query then hygie, back to back: the median of the runs' own
                # ratios is less moved by load that changes between runs than the ratio of the medians.
                "paired_cpu_ratio": round(
                    statistics.median(a / b for a, b in zip(hygie.cpus, hand.cpus, strict=True)), 2
                ),
                "rows": result.records,
                "hand_written_rows": hand_rows.num_rows,
            }
            if profile:
                timing = TimingRunner(runner)
                run_batch(timing, [definition])
                per_definition[definition.name]["profile_s"] = {k: round(v, 4) for k, v in timing.seconds.items()}
        # The floor for the batch: the ten hand-written queries one after the other, in turn with hygie's batch.
        hand_batch, batch = _alternating(
            lambda: [engine.con.execute(queries[d.name]).to_arrow_table() for d in definitions],
            lambda: run_batch(runner, definitions),
            runs,
        )
    finally:
        engine.close()
    hygie_total = sum(d["hygie_s"] for d in per_definition.values())
    hand_total = sum(d["hand_written_s"] for d in per_definition.values())
    hygie_cpu_total = sum(d["hygie_cpu_s"] for d in per_definition.values())
    hand_cpu_total = sum(d["hand_written_cpu_s"] for d in per_definition.values())
    return {
        "release": release.name,
        "engine": "duckdb",
        **figures,
        "threads": settings.threads or os.cpu_count(),
        "runs": runs,
        "definitions": per_definition,
        "sum_hygie_s": round(hygie_total, 3),
        "sum_hand_written_s": round(hand_total, 3),
        "ratio_of_sums": round(hygie_total / hand_total, 2),
        "sum_hygie_cpu_s": round(hygie_cpu_total, 2),
        "sum_hand_written_cpu_s": round(hand_cpu_total, 2),
        "cpu_ratio_of_sums": round(hygie_cpu_total / hand_cpu_total, 2),
        "max_cpu_ratio": max(d["cpu_ratio"] for d in per_definition.values()),
        "max_paired_cpu_ratio": max(d["paired_cpu_ratio"] for d in per_definition.values()),
        "load_average_1min": [load_before, round(os.getloadavg()[0], 2)],  # at the start and at the end
        "batch_of_ten_s": round(batch.wall, 3),
        "batch_of_ten_cpu_s": round(batch.cpu, 2),
        "hand_written_batch_of_ten_s": round(hand_batch.wall, 3),
        "hand_written_batch_of_ten_cpu_s": round(hand_batch.cpu, 2),
        "same_rows_as_hand_written": all(d["rows"] == d["hand_written_rows"] for d in per_definition.values()),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }


def run_small(release: Release, settings: Settings, small: int, storage: str = "parquet") -> dict[str, Any]:
    """One batch of ``small`` small definitions (the per-definition overhead), the release read from ``storage``
    (GiBleed's query store is built first if missing; ``auto`` would keep Parquet for a release this small)."""
    settings = dataclasses.replace(settings, query_store=STORAGES[storage])
    batch = small_definitions(small)
    with DuckDBEngine(release, settings) as engine:
        run_batch(DuckDBRunner(engine.con), batch[:10])  # warm-up (and the store's build)
        seconds, cpu, _ = _median_wall_and_cpu(lambda: run_batch(DuckDBRunner(engine.con), batch), 1)
    return {
        "release": release.name,
        "storage": storage,
        "definitions": small,
        "batch_s": round(seconds, 2),
        "batch_cpu_s": round(cpu, 2),
        "per_definition_ms": round(1000 * seconds / max(small, 1), 1),
        "per_definition_cpu_ms": round(1000 * cpu / max(small, 1), 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def run_spark(release: Release, settings: Settings, *, small: int) -> dict[str, Any]:
    """The ten typical definitions and a batch of ``small`` small ones on Spark local mode (for reference: Spark
    is for clusters), checked against DuckDB's rows."""
    from hygie.cohorts.service import SparkRunner
    from hygie.engine.spark import local_session, release_tables

    definitions = [CohortDefinition(n, c.to_circe()) for n, c in typical_definitions().items()]
    batch = small_definitions(small)
    start = time.perf_counter()
    session = local_session(settings, cores=os.cpu_count() or 1)
    started = time.perf_counter() - start
    runner = SparkRunner(session, release_tables(release, settings))
    try:
        cold_s, on_spark = _median_seconds(lambda: run_batch(runner, definitions), 1)
        warm_s, _ = _median_seconds(lambda: run_batch(runner, definitions), 1)
        small_s, _ = _median_seconds(lambda: run_batch(runner, batch), 1)
    finally:
        runner.close()
        session.stop()
    with DuckDBEngine(release, settings) as engine:
        on_duckdb = run_batch(DuckDBRunner(engine.con), definitions)
    return {
        "release": release.name,
        "session_start_s": round(started, 1),
        "typical_batch_first_s": round(cold_s, 1),
        "typical_batch_warm_s": round(warm_s, 1),
        "small_definitions": small,
        "small_batch_s": round(small_s, 1),
        "small_per_definition_s": round(small_s / max(small, 1), 2),
        "same_rows_as_duckdb": all(a.rows.equals(b.rows) for a, b in zip(on_spark, on_duckdb, strict=True)),
    }


if __name__ == "__main__":
    main(sys.argv[1:])
