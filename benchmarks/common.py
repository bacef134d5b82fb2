"""Measuring helpers: each measured run is a fresh child process, so peak RSS is that run's own."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-results"


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_mb: float
    stdout: str


def run_child(code: str, *, python: str = sys.executable, env: dict[str, str] | None = None) -> Run:
    """Run ``code`` in a new Python process; wall time and its peak resident memory (from wait4)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [python, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or os.environ.copy(), text=True
    )
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}):\n{err[-3000:]}")
    return Run(seconds, usage.ru_maxrss / 1024, out)


def repeat(code: str | Callable[[int], str], times: int, *, python: str = sys.executable) -> dict[str, float]:
    """Median and minimum wall time and peak RSS over ``times`` child runs (``code(i)`` for the i-th run)."""
    runs = [run_child(code(i) if callable(code) else code, python=python) for i in range(times)]
    return {
        "runs": times,
        "median_s": round(statistics.median(r.seconds for r in runs), 3),
        "min_s": round(min(r.seconds for r in runs), 3),
        "peak_rss_mb": round(max(r.peak_rss_mb for r in runs), 1),
    }


def ratio(a: dict[str, float], b: dict[str, float]) -> float:
    return round(a["median_s"] / b["median_s"], 2)
