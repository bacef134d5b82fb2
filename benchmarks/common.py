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


# The child reports its own high-water mark (VmHWM, per address space): getrusage/wait4 figures would
# include the parent's memory, which a forked child inherits in its maximum RSS.
_REPORT_PEAK = """
import atexit, sys
def _peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            print("__peak_kb__", line.split()[1], file=sys.stderr)
atexit.register(_peak)
"""


def run_child(code: str, *, python: str = sys.executable, env: dict[str, str] | None = None) -> Run:
    """Run ``code`` in a new Python process; its wall time and its own peak resident memory."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [python, "-c", _REPORT_PEAK + code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env or os.environ.copy(),
        text=True,
    )
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}):\n{err[-3000:]}")
    peaks = [int(line.split()[1]) for line in err.splitlines() if line.startswith("__peak_kb__")]
    return Run(seconds, (peaks[-1] if peaks else 0) / 1024, out)


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
