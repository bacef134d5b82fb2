"""Characterisation benchmark: Table 1 of two cohorts (new users of celecoxib and of diclofenac, with SMDs) on the
synthetic release, against hand-written DuckDB queries computing the same figures (per-concept counts in the
windows, age and prior observation with exact quartiles, age groups, sex, visit counts).

``HYGIE_BENCH_PATIENTS`` sets the population (default 20,000). Setup (not measured): ``hygie synth``, then site
A's OMOP folder and the vocabulary loaded as one release, and the two cohorts generated and stored. The measured
child opens the release, registers the cohorts, and runs the characterisation and the hand-written queries
``HYGIE_BENCH_RUNS`` times each (default 5); it reports their medians, and its own peak RSS. The hand-written
per-concept counts must equal hygie's.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, run_child

CELECOXIB, DICLOFENAC = 1118084, 1124300
COHORTS = {"celecoxib_new_users": CELECOXIB, "diclofenac_new_users": DICLOFENAC}
WINDOWS = [[-365, -1], [-30, -1]]
DOMAINS = ["condition", "drug", "procedure", "measurement"]

SETUP = """
import json, os
from pathlib import Path
from hygie.config import Settings
from hygie.ingest.cdm_load import load_cdm
from benchmarks.bench_characterisation import generate_cohorts
s = Settings.from_env({{"HYGIE_HOME": "{home}"}})
folder = Path("{combined}")
folder.mkdir()
for source in (Path("{extracts}") / "site_a" / "cdm", Path("{extracts}") / "vocabulary"):
    for f in source.iterdir():
        if f.name != "MANIFEST.csv":
            os.link(f, folder / f.name)  # a hard link: the loader reads only inside its folder
release = load_cdm(folder, "bench", s, synthetic=True)
print(json.dumps(generate_cohorts(release, s)))
"""

MEASURE = """
import json
from hygie.config import Settings
from benchmarks.bench_characterisation import measure
print(json.dumps(measure(Settings.from_env({{"HYGIE_HOME": "{home}"}}), {runs})))
"""


def generate_cohorts(release: Any, settings: Any) -> dict[str, int]:
    """New users of each drug (first exposure, 365 days of prior observation), stored with the release's results."""
    from hygie.cohorts import builder as cb
    from hygie.cohorts.service import CohortDefinition, generate

    definitions = [
        CohortDefinition(
            name,
            cb.entry(cb.drug(cb.concepts(name, concept, descendants=True))).with_observation(prior_days=365).to_circe(),
        )
        for name, concept in COHORTS.items()
    ]
    return {r.name: r.subjects for r in generate(release, definitions, settings)}


def hand_written_sql() -> str:
    """Entries per (cohort, domain, window, concept), written directly for DuckDB (drugs from drug_exposure, which
    is what the synthetic release has)."""
    windows = " UNION ALL ".join(f"SELECT {i} AS w, {lo} AS lo, {hi} AS hi" for i, (lo, hi) in enumerate(WINDOWS))
    return f"""
WITH w AS ({windows}),
ev AS (
  SELECT 'condition' AS domain, person_id, condition_concept_id AS concept_id, condition_start_date AS s,
    condition_start_date AS e FROM condition_occurrence WHERE condition_concept_id <> 0
  UNION ALL
  SELECT 'drug', person_id, drug_concept_id, drug_exposure_start_date, coalesce(drug_exposure_end_date,
    CASE WHEN days_supply >= 1 THEN drug_exposure_start_date + days_supply - 1 END, drug_exposure_start_date)
    FROM drug_exposure WHERE drug_concept_id <> 0
  UNION ALL
  SELECT 'procedure', person_id, procedure_concept_id, procedure_date, procedure_date FROM procedure_occurrence
    WHERE procedure_concept_id <> 0
  UNION ALL
  SELECT 'measurement', person_id, measurement_concept_id, measurement_date, measurement_date FROM measurement
    WHERE measurement_concept_id <> 0
)
SELECT c.cohort_definition_id, ev.domain, w.w, ev.concept_id,
  count(DISTINCT (c.subject_id, c.cohort_start_date)) AS n
FROM study_cohort c CROSS JOIN w JOIN ev ON ev.person_id = c.subject_id
 AND ev.s <= c.cohort_start_date + w.hi AND ev.e >= c.cohort_start_date + w.lo
GROUP BY ALL"""


# The rest of Table 1, written directly: age (with exact quartiles), age groups, sex, prior observation, visits.
HAND_WRITTEN_DEMOGRAPHICS = """
WITH b AS (
  SELECT c.cohort_definition_id, c.subject_id, c.cohort_start_date, p.gender_concept_id,
    date_sub('year', make_date(p.year_of_birth, coalesce(p.month_of_birth, 1), coalesce(p.day_of_birth, 1)),
      c.cohort_start_date) AS age,
    c.cohort_start_date - op.observation_period_start_date AS prior
  FROM study_cohort c JOIN person p ON p.person_id = c.subject_id
  LEFT JOIN observation_period op ON op.person_id = c.subject_id
   AND c.cohort_start_date BETWEEN op.observation_period_start_date AND op.observation_period_end_date)
SELECT cohort_definition_id, count(*), count(DISTINCT subject_id), avg(age), stddev_samp(age),
  quantile_cont(age, [0.25, 0.5, 0.75]), count(*) FILTER (age < 18), count(*) FILTER (age BETWEEN 18 AND 44),
  count(*) FILTER (age BETWEEN 45 AND 64), count(*) FILTER (age BETWEEN 65 AND 74),
  count(*) FILTER (age BETWEEN 75 AND 84), count(*) FILTER (age >= 85), count(*) FILTER (gender_concept_id = 8507),
  count(*) FILTER (gender_concept_id = 8532), avg(prior), stddev_samp(prior), quantile_cont(prior, [0.25, 0.5, 0.75])
FROM b GROUP BY ALL"""

HAND_WRITTEN_VISITS = """
SELECT cohort_definition_id, visit_concept_id, count(*), sum(n), sum(n * n) FROM (
  SELECT c.cohort_definition_id, c.subject_id, c.cohort_start_date, v.visit_concept_id, count(*) AS n
  FROM study_cohort c JOIN visit_occurrence v ON v.person_id = c.subject_id
   AND v.visit_start_date BETWEEN c.cohort_start_date - 365 AND c.cohort_start_date - 1
  GROUP BY ALL) GROUP BY ALL"""


def measure(settings: Any, runs: int) -> dict[str, Any]:
    """In the measuring child: median seconds of the characterisation and of the hand-written query."""
    import pyarrow as pa

    from hygie.analyses.base import StudyCohort, StudyContext
    from hygie.analyses.characterisation import Characterisation, CharacterisationSpec
    from hygie.cohorts.service import DuckDBRunner, read_stored
    from hygie.engine.duckdb import DuckDBEngine
    from hygie.releases import ReleaseStore

    release = ReleaseStore(settings).get("bench")
    spec = CharacterisationSpec.model_validate(
        {"cohorts": list(COHORTS), "compare": list(COHORTS), "windows": WINDOWS, "domains": DOMAINS}
    )
    with DuckDBEngine(release, settings) as engine:
        runner = DuckDBRunner(engine.con)
        rows = [
            read_stored(release, settings, name).add_column(
                0, "cohort_definition_id", pa.array([i] * read_stored(release, settings, name).num_rows, pa.int64())
            )
            for i, name in enumerate(COHORTS, start=1)
        ]
        runner.register("study_cohort", pa.concat_tables(rows))
        context = StudyContext(runner, {n: StudyCohort(n, i, "python") for i, n in enumerate(COHORTS, start=1)})
        hygie_s, hand_s = [], []
        for _ in range(runs):
            start = time.perf_counter()
            tables = Characterisation().run(context, spec, study=None)  # type: ignore[arg-type]
            hygie_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            hand = engine.con.execute(hand_written_sql()).fetchall()
            engine.con.execute(HAND_WRITTEN_DEMOGRAPHICS).fetchall()
            engine.con.execute(HAND_WRITTEN_VISITS).fetchall()
            hand_s.append(time.perf_counter() - start)
    table = tables[0].rows.to_pylist()
    windows = {f"{lo} to {hi}": i for i, (lo, hi) in enumerate(WINDOWS)}
    ids = {n: i for i, n in enumerate(COHORTS, start=1)}
    ours = {
        (ids[r["cohort_name"]], r["covariate_type"], windows[r["window"]], r["concept_id"]): r["count"]
        for r in table
        if r["covariate_type"] in DOMAINS
    }
    theirs = {(c, d, w, k): n for c, d, w, k, n in hand}
    return {
        "cohort_entries": {r["cohort_name"]: r["count"] for r in table if r["covariate_name"] == "records"},
        "result_rows": len(table),
        "smd_rows": tables[1].rows.num_rows,
        "hygie_median_s": round(statistics.median(hygie_s), 3),
        "hand_written_median_s": round(statistics.median(hand_s), 3),
        "ratio": round(statistics.median(hygie_s) / statistics.median(hand_s), 2),
        "same_counts_as_hand_written": ours == theirs,
    }


def main() -> dict[str, Any]:
    patients = int(os.environ.get("HYGIE_BENCH_PATIENTS", "20000"))
    runs = int(os.environ.get("HYGIE_BENCH_RUNS", "5"))
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=RESULTS) as tmp:
        root = Path(tmp)
        extracts, home = root / "extracts", root / "home"
        run_child(
            "from hygie.cli.main import run; import sys; "
            f"sys.argv = ['hygie', 'synth', '--patients', '{patients}', '--seed', '1', '--out', '{extracts}']; run()"
        )
        setup = run_child(SETUP.format(home=home, combined=root / "combined", extracts=extracts))
        measured = run_child(MEASURE.format(home=home, runs=runs))
        figures = {
            "patients": patients,
            "runs": runs,
            "cohort_subjects": json.loads(setup.stdout.strip().splitlines()[-1]),
            **json.loads(measured.stdout.strip().splitlines()[-1]),
            "child_wall_s": round(measured.seconds, 1),
            "peak_rss_mb": round(measured.peak_rss_mb),
        }
        shutil.rmtree(extracts)
    return figures


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
