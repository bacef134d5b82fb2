"""``make bench``: run every ``benchmarks/bench_*.py`` (or those named on the command line) and write
``bench-results/report.json`` plus a readable summary."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import platform
import sys
from pathlib import Path

from benchmarks.common import RESULTS


def main(argv: list[str]) -> None:
    names = argv or sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    RESULTS.mkdir(exist_ok=True)
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "benchmarks": {},
    }
    for name in names:
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        report["benchmarks"][name] = module.main()
        print(json.dumps(report["benchmarks"][name], indent=2), flush=True)
    (RESULTS / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {RESULTS / 'report.json'}")


if __name__ == "__main__":
    main(sys.argv[1:])
