"""Benchmark of ``hygie synth``: wall time, rows per second and peak RSS by population size, with the
extrapolation to EMC2 scale (600,000 patients; target <= 10 minutes and <= 8 GB on 2 cores).

Each generation runs in a fresh process (as ``hygie synth`` does), and peak RSS is the sampled sum over that
process and its worker. Baseline, in the same script: writing the same number of rows as a plain 8-column CSV
with pyarrow (the I/O floor), so ``ratio_to_baseline`` says how far the generator is from pure writing.

Usage: ``python -m benchmarks.bench_synth [N ...]`` (default 20,000 x 3 runs and 100,000 x 1 run).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.csv as pacsv

EMC2_PATIENTS = 600_000
_RUN = (
    "import json, sys; from pathlib import Path; from hygie.synth.config import SynthConfig; "
    "from hygie.synth.generate import generate; "
    "s = generate(SynthConfig(patients=int(sys.argv[1]), seed=1), Path(sys.argv[2]), workers=int(sys.argv[3])); "
    "print(json.dumps({'clinical_rows': s['clinical_rows'], 'seconds': s['seconds']}))"
)


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a worker may exit between listing and reading
            total += p.memory_info().rss
    return total


def run_once(patients: int, workers: int) -> dict:
    out = Path(tempfile.mkdtemp(prefix="bench-synth-")) / "out"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUN, str(patients), str(out), str(workers)], stdout=subprocess.PIPE, text=True
    )
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(ps))
        time.sleep(0.1)
    wall = time.perf_counter() - started
    stdout = proc.stdout.read() if proc.stdout else ""
    shutil.rmtree(out.parent, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"generation of {patients} patients failed (exit {proc.returncode})")
    result = json.loads(stdout.strip().splitlines()[-1])
    return {
        "wall_s": wall,
        "generate_s": result["seconds"],
        "rows": result["clinical_rows"],
        "peak_rss_mb": peak / 2**20,
    }


def baseline_csv(rows: int) -> float:
    """Seconds to write ``rows`` rows of 8 integer/date columns as CSV with pyarrow (chunks of 1M rows)."""
    folder = Path(tempfile.mkdtemp(prefix="bench-synth-base-"))
    rng = np.random.default_rng(0)
    chunk = 1_000_000
    table = pa.table(
        {
            **{f"c{i}": rng.integers(0, 2**31, chunk) for i in range(6)},
            "d": pa.array(np.datetime64("2015-01-01") + rng.integers(0, 3650, chunk).astype("timedelta64[D]")),
            "v": rng.normal(80, 10, chunk).round(1),
        }
    )
    started = time.perf_counter()
    with pacsv.CSVWriter(folder / "t.csv", table.schema) as w:
        left = rows
        while left > 0:
            w.write_table(table.slice(0, min(chunk, left)))
            left -= chunk
    seconds = time.perf_counter() - started
    shutil.rmtree(folder, ignore_errors=True)
    return seconds


def measure(patients: int, runs: int, workers: int) -> dict:
    results = [run_once(patients, workers) for _ in range(runs)]
    wall = statistics.median(r["wall_s"] for r in results)
    rows = results[0]["rows"]
    base = baseline_csv(rows)
    return {
        "patients": patients,
        "workers": workers,
        "runs": runs,
        "clinical_rows": rows,
        "wall_s_median": round(wall, 2),
        "generate_s_median": round(statistics.median(r["generate_s"] for r in results), 2),
        "rows_per_s": round(rows / wall),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in results), 1),
        "baseline_csv_s": round(base, 2),
        "ratio_to_baseline": round(wall / base, 2),
    }


def main(sizes: list[int] | None = None) -> dict:
    sizes = sizes or [20_000, 100_000]
    workers = min(2, os.cpu_count() or 1)
    figures = [measure(n, 3 if n <= 20_000 else 1, workers) for n in sizes]
    largest = figures[-1]
    per_patient = largest["generate_s_median"] / largest["patients"]
    report = {
        "sizes": figures,
        "workers_1_vs_2_at_20000": None,
        "extrapolation_600000": {
            "from_patients": largest["patients"],
            "seconds": round(per_patient * EMC2_PATIENTS, 1),
            "clinical_rows": round(largest["clinical_rows"] / largest["patients"] * EMC2_PATIENTS),
            "target_seconds": 600,
            "peak_rss_note": "bounded by the chunk size (10,000 persons), not by the population",
        },
        "machine": {"cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2)},
    }
    if sizes[0] <= 20_000 and workers == 2:
        single = measure(sizes[0], 1, 1)
        report["workers_1_vs_2_at_20000"] = {
            "workers_1_wall_s": single["wall_s_median"],
            "workers_2_wall_s": figures[0]["wall_s_median"],
        }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or None)
