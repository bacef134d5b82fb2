"""Comparative new-user study benchmark: cohorts (two drugs, GI bleeding, three negative controls), covariates,
propensity model (L1, 5-fold CV), 1:1 matching, Cox models and Kaplan-Meier curves, end to end, on a synthetic
release of ``HYGIE_BENCH_PATIENTS`` patients (default 20,000; EMC2 target: <= 60 s at 600,000 on 2 cores).

The release is site a of ``hygie synth`` (seed 1) loaded with its vocabulary (the tables the study reads). Each
measured run is a fresh process (peak RSS is its own). Reported: median and minimum wall time, peak RSS, the
phases (cohort generation, the analysis, and within it the propensity fit) and the propensity fit's share of the
whole; then one Spark local run for reference (``--no-spark`` to skip it).

Usage: ``python -m benchmarks.bench_comparative [--runs 3] [--no-spark]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from benchmarks.common import run_child

DEFINITIONS = Path(__file__).resolve().parent.parent / "tests" / "data" / "comparative"
TABLES = ("person", "observation_period", "condition_occurrence", "drug_exposure", "procedure_occurrence", "death",
          "cdm_source")  # fmt: skip

_STUDY = """
import json, time
from pathlib import Path
import pyarrow as pa
from hygie.analyses.base import COHORT_TABLE_COLUMNS, StudyCohort, StudyContext, StudyDefinitions
from hygie.analyses.comparative import ComparativeAnalysis, ComparativeSpec, analysis as module
from hygie.cohorts.service import CohortDefinition, open_runner, run_batch
from hygie.config import Settings
from hygie.releases import ReleaseStore

home = Path({home!r})
settings = Settings(home=home, master_key_file=home / "keys" / "master.key")
release = ReleaseStore(settings).get("bench-comparative")
fit_seconds = []
original = module.fit_propensity
def timed(*args, **kwargs):
    started = time.perf_counter()
    try:
        return original(*args, **kwargs)
    finally:
        fit_seconds.append(time.perf_counter() - started)
module.fit_propensity = timed
names = ["diclofenac_users", "celecoxib_users", "gi_bleed", "mi", "stroke", "aki"]
spec = ComparativeSpec.model_validate({{
    "target": "diclofenac_users", "comparator": "celecoxib_users", "outcomes": ["gi_bleed"],
    "negative_controls": ["mi", "stroke", "aki"], "time_at_risk": {{"start": 0, "end": 364}}}})
started = time.perf_counter()
runner, opened = open_runner(release, settings, {engine!r})
try:
    opened_s = time.perf_counter() - started
    results = run_batch(runner, [CohortDefinition.from_file(Path({definitions!r}) / f"{{n}}.json") for n in names])
    parts, cohorts = [], {{}}
    for i, (name, r) in enumerate(zip(names, results), 1):
        parts.append(r.rows.append_column("cohort_definition_id", pa.array([i] * r.rows.num_rows)).select(
            list(COHORT_TABLE_COLUMNS)))
        cohorts[name] = StudyCohort(name, i, "circe")
    runner.register("study_cohort", pa.concat_tables(parts))
    cohorts_s = time.perf_counter() - started - opened_s
    tables = ComparativeAnalysis().run(StudyContext(runner, cohorts), spec, StudyDefinitions())
finally:
    opened.close()
total = time.perf_counter() - started
est = {{t.name: t for t in tables}}["comparative_estimates"].rows.to_pylist()
adjusted = [r for r in est if r["outcome"] == "gi_bleed" and r["analysis"] == "adjusted"][0]
print(json.dumps({{"total_s": total, "open_s": opened_s, "cohorts_s": cohorts_s,
                  "analysis_s": total - opened_s - cohorts_s, "ps_fit_s": sum(fit_seconds),
                  "new_users": adjusted["target_subjects"] + adjusted["comparator_subjects"],
                  "hr": adjusted["hr"]}}))
"""


def prepare(patients: int, root: Path) -> Path:
    """Generate the population and load site a with the vocabulary into a fresh HYGIE_HOME; returns the home."""
    code = f"""
import shutil
from pathlib import Path
from hygie.config import Settings
from hygie.ingest.cdm_load import load_cdm
from hygie.synth.config import SynthConfig
from hygie.synth.generate import generate
root = Path({str(root)!r})
generate(SynthConfig(patients={patients}, seed=1), root / "synth", workers=2)
combined = root / "site_a"
combined.mkdir()
for table in {TABLES!r}:
    shutil.copy(root / "synth" / "site_a" / "cdm" / f"{{table}}.csv", combined)
for path in (root / "synth" / "vocabulary").glob("*.csv"):
    if path.name != "MANIFEST.csv":
        shutil.copy(path, combined)
home = root / "home"
load_cdm(combined, "bench-comparative", Settings(home=home, master_key_file=home / "keys" / "master.key"),
         synthetic=True)
shutil.rmtree(root / "synth")
shutil.rmtree(combined)
"""
    run_child(code)
    return root / "home"


def measure(home: Path, engine: str, runs: int) -> dict:
    code = _STUDY.format(home=str(home), engine=engine, definitions=str(DEFINITIONS))
    measured = [run_child(code) for _ in range(runs)]
    phases = [json.loads(r.stdout.strip().splitlines()[-1]) for r in measured]
    median = statistics.median(r.seconds for r in measured)
    ps_fit = statistics.median(p["ps_fit_s"] for p in phases)
    return {
        "engine": engine,
        "runs": runs,
        "process_wall_s_median": round(median, 2),
        "process_wall_s_min": round(min(r.seconds for r in measured), 2),
        "peak_rss_mb": round(max(r.peak_rss_mb for r in measured), 1),
        "study_s_median": round(statistics.median(p["total_s"] for p in phases), 2),
        "open_release_s_median": round(statistics.median(p["open_s"] for p in phases), 2),
        "cohorts_s_median": round(statistics.median(p["cohorts_s"] for p in phases), 2),
        "analysis_s_median": round(statistics.median(p["analysis_s"] for p in phases), 2),
        "ps_fit_s_median": round(ps_fit, 2),
        "ps_fit_share_of_study": round(ps_fit / statistics.median(p["total_s"] for p in phases), 3),
        "new_users_matched": phases[0]["new_users"],
        "adjusted_hr": round(phases[0]["hr"], 3) if phases[0]["hr"] else None,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-spark", action="store_true")
    args = parser.parse_args(argv or [])
    patients = int(os.environ.get("HYGIE_BENCH_PATIENTS", "20000"))
    root = Path(tempfile.mkdtemp(prefix="bench-comparative-"))
    try:
        home = prepare(patients, root)
        report = {
            "patients": patients,
            "target_seconds_at_600000": 60,
            "duckdb": measure(home, "duckdb", args.runs),
            "spark": None if args.no_spark else measure(home, "spark", 1),
            "machine": {"cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2)},
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
