"""Incidence and prevalence benchmark: 2 sexes x 4 age groups, yearly intervals over 2010-2019, one outcome.

The population is generated directly as PERSON, OBSERVATION_PERIOD and an outcome cohort (hash-based SQL, no
synth pipeline), ``HYGIE_BENCH_PATIENTS`` persons (default 20,000; ``HYGIE_BENCH_LARGE`` adds one run at that
size, e.g. 600000, ``HYGIE_BENCH_LARGE_RUNS`` times, default 3; ``HYGIE_BENCH_RUNS``: runs, default 5). Each
measured run is a child process that loads the tables into an in-memory DuckDB and times the analysis alone
(denominator included, wall and CPU time); the figures are the median of several runs, the child's peak RSS, and
the ratio against one hand-written DuckDB query computing the same counts and person-days (the counts are
compared too), the two run alternately. Spark local mode is timed once at a small size. ``HYGIE_BENCH_SPARK=0``
skips Spark.

Run: ``uv run python -m benchmarks.bench_incidence_prevalence`` (or ``make bench``).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import run_child

RUNS = int(os.environ.get("HYGIE_BENCH_RUNS", "5"))
LARGE_RUNS = int(os.environ.get("HYGIE_BENCH_LARGE_RUNS", "3"))
SPARK_PATIENTS = 2000
AGE_GROUPS = [(0, 17), (18, 44), (45, 64), (65, 150)]
SEXES = [("Male", 8507), ("Female", 8532)]

GENERATE = """
import duckdb
con = duckdb.connect()
n = {patients}
con.execute(f'''COPY (SELECT range + 1 AS person_id,
    CASE WHEN hash(range, 1) % 2 = 0 THEN 8507 ELSE 8532 END AS gender_concept_id,
    CAST(1930 + hash(range, 2) % 85 AS BIGINT) AS year_of_birth,
    CAST(1 + hash(range, 3) % 12 AS BIGINT) AS month_of_birth,
    CAST(1 + hash(range, 4) % 28 AS BIGINT) AS day_of_birth
    FROM range({{n}})) TO '{folder}/person.parquet' (FORMAT parquet)''')
con.execute(f'''COPY (SELECT range + 1 AS observation_period_id, range + 1 AS person_id,
    s AS observation_period_start_date,
    least(s + CAST(365 + hash(range, 6) % 5000 AS INTEGER), DATE '2022-12-31') AS observation_period_end_date
    FROM (SELECT range, DATE '2005-01-01' + CAST(hash(range, 5) % 3650 AS INTEGER) AS s FROM range({{n}})))
    TO '{folder}/observation_period.parquet' (FORMAT parquet)''')
con.execute(f'''COPY (SELECT CAST(1 AS BIGINT) AS cohort_definition_id,
    CAST(1 + hash(range, 7) % {{n}} AS BIGINT) AS subject_id,
    s AS cohort_start_date, s + CAST(hash(range, 9) % 30 AS INTEGER) AS cohort_end_date
    FROM (SELECT range, DATE '2005-01-01' + CAST(hash(range, 8) % 6570 AS INTEGER) AS s FROM range({{n}} * 3 // 10)))
    TO '{folder}/study_cohort.parquet' (FORMAT parquet)''')
"""

LOAD = """
import json, time, duckdb
import pyarrow.parquet as pq
from hygie.cohorts.service import DuckDBRunner
con = duckdb.connect(":memory:")
for name in ("person", "observation_period"):
    con.execute(f"CREATE TABLE {{name}} AS SELECT * FROM read_parquet('{folder}/{{name}}.parquet')")
# As in a study run, the study cohort table arrives through the runner (an Arrow registration): the first one
# pays one-time costs (DuckDB imports pandas and its Arrow scanner, about 0.1 s) before the analyses start.
DuckDBRunner(con).register("study_cohort", pq.read_table("{folder}/study_cohort.parquet"))
"""

HYGIE = (
    LOAD
    + """
import datetime as dt
from hygie.analyses.base import StudyCohort, StudyContext, StudyDefinitions
from hygie.analyses.incidence_prevalence import IncidenceAnalysis, PrevalenceAnalysis
from hygie.analyses.incidence_prevalence.spec import DenominatorSpec, IncidenceSpec, PrevalenceSpec
study = StudyDefinitions(denominators={{"d": DenominatorSpec(
    cohort_date_range=(dt.date(2010, 1, 1), dt.date(2019, 12, 31)), age_groups={ages}, sex=["Male", "Female"])}})
if "{kind}" == "incidence":
    analysis, spec = IncidenceAnalysis(), IncidenceSpec(denominator="d", outcomes=["outcome"], interval="years")
else:
    analysis, spec = PrevalenceAnalysis(), PrevalenceSpec(denominator="d", outcomes=["outcome"], type="period",
                                                          interval="years")
context = StudyContext(runner=DuckDBRunner(con), cohorts={{"outcome": StudyCohort("outcome", 1, "bench")}})
start, cpu = time.perf_counter(), time.process_time()
(table, *_) = analysis.run(context, spec, study)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
rows = [[r["denominator_cohort_id"], str(r["{kind}_start_date"]), r["denominator_count"], r["outcome_count"],
         r.get("person_days")] for r in table.rows.to_pylist() if r["strata_name"] == "overall"]
print(json.dumps({{"seconds": seconds, "cpu_s": cpu, "rows": rows}}))
"""
)

SPARK = HYGIE.replace(
    "from hygie.cohorts.service import DuckDBRunner", "from hygie.cohorts.service import DuckDBRunner, SparkRunner"
).replace(
    "context = StudyContext(runner=DuckDBRunner(con)",
    "from hygie.config import Settings\n"
    "from hygie.engine.spark import local_session\n"
    "import tempfile, pathlib\n"
    "home = pathlib.Path(tempfile.mkdtemp())\n"
    "session = local_session(Settings(home=home, master_key_file=home / 'k' / 'm.key'), cores=2)\n"
    "tables = {{n: con.execute(f'SELECT * FROM {{n}}').to_arrow_table() for n in "
    "('person', 'observation_period', 'study_cohort')}}\n"
    "context = StudyContext(runner=SparkRunner(session, tables)",
)


def _grid_sql() -> str:
    rows = []
    cohort_id = 0
    for low, high in AGE_GROUPS:
        for _, gender in SEXES:
            cohort_id += 1
            rows.append(f"({cohort_id}, {low}, {high}, {gender})")
    return ", ".join(rows)


DENOMINATOR_SQL = f"""
g(id, lo, hi, gender) AS (VALUES {_grid_sql()}),
p AS (SELECT person_id, gender_concept_id AS gender,
        make_date(CAST(year_of_birth AS INT), CAST(coalesce(month_of_birth, 1) AS INT),
                  CAST(coalesce(day_of_birth, 1) AS INT)) AS dob
      FROM person WHERE year_of_birth IS NOT NULL AND gender_concept_id IN (8507, 8532)),
den AS (SELECT * FROM (
  SELECT g.id, p.person_id,
    greatest(CAST(p.dob + to_years(g.lo) AS DATE), op.observation_period_start_date, DATE '2010-01-01') AS cs,
    least(CAST(p.dob + to_years(g.hi + 1) AS DATE) - 1, op.observation_period_end_date, DATE '2019-12-31') AS ce
  FROM p JOIN observation_period op USING (person_id) JOIN g ON g.gender = p.gender) WHERE cs <= ce),
years AS (SELECT make_date(CAST(y AS INT), 1, 1) AS s, make_date(CAST(y AS INT), 12, 31) AS e
          FROM range(2010, 2020) t(y))
"""

HAND_WRITTEN = {
    "incidence": f"""
WITH {DENOMINATOR_SQL},
o AS (SELECT subject_id AS person_id, cohort_start_date AS os FROM study_cohort WHERE cohort_definition_id = 1),
firsts AS (
  SELECT d.id, d.person_id, d.cs, d.ce, min(o.os) FILTER (WHERE o.os >= d.cs) AS ev,
         coalesce(bool_or(o.os < d.cs), FALSE) AS prior
  FROM den d LEFT JOIN o ON o.person_id = d.person_id AND o.os <= d.ce GROUP BY d.id, d.person_id, d.cs, d.ce),
fu AS (SELECT id, person_id, cs, coalesce(ev, ce) AS ce, ev FROM firsts WHERE NOT prior)
SELECT id, CAST(s AS VARCHAR), count(DISTINCT person_id), count(ev) FILTER (WHERE ev BETWEEN s AND e),
       sum(least(ce, e) - greatest(cs, s) + 1)
FROM fu JOIN years ON ce >= s AND cs <= e GROUP BY id, s ORDER BY id, s""",
    "prevalence": f"""
WITH {DENOMINATOR_SQL},
o AS (SELECT subject_id AS person_id, cohort_start_date AS os, cohort_end_date AS oe FROM study_cohort
      WHERE cohort_definition_id = 1),
clipped AS (SELECT d.id, d.person_id, y.s, greatest(d.cs, y.s) AS a, least(d.ce, y.e) AS b
            FROM den d JOIN years y ON d.ce >= y.s AND d.cs <= y.e),
cases AS (SELECT DISTINCT c.id, c.person_id, c.s FROM clipped c JOIN o ON o.person_id = c.person_id
          AND o.os <= c.b AND o.oe >= c.a)
SELECT c.id, CAST(c.s AS VARCHAR), count(DISTINCT c.person_id), count(DISTINCT k.person_id), NULL
FROM clipped c LEFT JOIN cases k ON k.id = c.id AND k.person_id = c.person_id AND k.s = c.s
GROUP BY c.id, c.s ORDER BY c.id, c.s""",
}

HAND = (
    LOAD
    + """
start, cpu = time.perf_counter(), time.process_time()
rows = con.execute('''{sql}''').fetchall()
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({{"seconds": seconds, "cpu_s": cpu, "rows": [list(r) for r in rows]}}))
"""
)


def _summary(results: list[Any]) -> dict[str, Any]:
    outputs = [json.loads(r.stdout.strip().splitlines()[-1]) for r in results]
    return {
        "median_s": round(statistics.median(o["seconds"] for o in outputs), 3),
        "min_s": round(min(o["seconds"] for o in outputs), 3),
        "median_cpu_s": round(statistics.median(o["cpu_s"] for o in outputs), 3),
        "peak_rss_mb": round(max(r.peak_rss_mb for r in results), 1),
        "seconds": [o["seconds"] for o in outputs],
        "rows": outputs[0]["rows"],
    }


def _measure(code: str, runs: int) -> dict[str, Any]:
    return _summary([run_child(code) for _ in range(runs)])


def measure(folder: Path, kind: str, runs: int) -> dict[str, Any]:
    """hygie and the hand-written query, run alternately (the machine is shared: alternating exposes both to
    the same load), each in a fresh process; medians, and the median of the per-pair ratios."""
    ages = repr(AGE_GROUPS)
    codes = (
        HYGIE.format(folder=folder, kind=kind, ages=ages),
        HAND.format(folder=folder, sql=HAND_WRITTEN[kind].replace("'", "\\'")),
    )
    pairs = [(run_child(codes[0]), run_child(codes[1])) for _ in range(runs)]
    hygie, hand = _summary([a for a, _ in pairs]), _summary([b for _, b in pairs])
    return {
        "hygie_median_s": hygie["median_s"],
        "hygie_min_s": hygie["min_s"],
        "hygie_median_cpu_s": hygie["median_cpu_s"],
        "hygie_peak_rss_mb": hygie["peak_rss_mb"],
        "hand_written_median_s": hand["median_s"],
        "hand_written_median_cpu_s": hand["median_cpu_s"],
        "hand_written_peak_rss_mb": hand["peak_rss_mb"],
        "ratio": round(hygie["median_s"] / hand["median_s"], 2),
        "ratio_of_pairs_median": round(
            statistics.median(a / b for a, b in zip(hygie["seconds"], hand["seconds"], strict=True)), 2
        ),
        "cpu_ratio": round(hygie["median_cpu_s"] / hand["median_cpu_s"], 2),
        "result_rows": len(hygie["rows"]),
        "same_counts_as_hand_written": hygie["rows"] == hand["rows"],
    }


def population(folder: Path, patients: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    run_child(GENERATE.format(folder=folder, patients=patients))


def main() -> dict[str, Any]:
    patients = int(os.environ.get("HYGIE_BENCH_PATIENTS", "20000"))
    large = int(os.environ.get("HYGIE_BENCH_LARGE", "0"))
    figures: dict[str, Any] = {"patients": patients, "runs": RUNS, "engine": "duckdb (in-memory, all cores)"}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "main"
        population(folder, patients)
        for kind in ("incidence", "prevalence"):
            figures[kind] = measure(folder, kind, RUNS)
        if large:
            big = Path(scratch) / "large"
            population(big, large)
            figures[f"at_{large}_patients"] = {
                kind: measure(big, kind, LARGE_RUNS) for kind in ("incidence", "prevalence")
            }
        if os.environ.get("HYGIE_BENCH_SPARK", "1") == "0":
            print(json.dumps(figures, indent=2))
            return figures
        small = Path(scratch) / "spark"
        population(small, SPARK_PATIENTS)
        figures["spark_local"] = {"patients": SPARK_PATIENTS}
        for kind in ("incidence", "prevalence"):
            spark = _measure(SPARK.format(folder=small, kind=kind, ages=repr(AGE_GROUPS)), 1)
            duck = _measure(HYGIE.format(folder=small, kind=kind, ages=repr(AGE_GROUPS)), 1)
            figures["spark_local"][kind] = {
                "seconds": spark["median_s"],
                "peak_rss_mb_python": spark["peak_rss_mb"],
                "same_rows_as_duckdb": spark["rows"] == duck["rows"],
            }
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
