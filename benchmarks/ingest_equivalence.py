"""Same outputs before and after a change of the ingestion code: fingerprints of four deposits and a release.

``python -m benchmarks.ingest_equivalence EXTRACTS KEYS OUT.json`` ingests the four synthetic sites of
``EXTRACTS`` (written by ``hygie synth``) into a fresh hub with the linkage and pseudonym keys of ``KEYS``
(created on first use: the same keys make runs comparable), builds a release, and writes per deposit and
release: per table its row count and an order-free hash of every column (ids included), and the manifest.
It also records CPU seconds per site and per step (the first word of each progress message), wall seconds per
step, the peak RSS, and the linkage's precision and recall against ``EXTRACTS/truth``. ``HYGIE_THREADS``
sets DuckDB's threads (1 makes CPU times steadier on a loaded machine). Compare two
outputs with ``python -m benchmarks.ingest_equivalence --compare A.json B.json``: what differs besides what
encryption makes random (data keys, file digests and sizes, times) is a change of output.

Run it with the code under test first on ``PYTHONPATH`` (e.g. ``git worktree`` of the previous commit).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Manifest fields that differ between two identical runs (random keys, encrypted bytes, clocks, paths).
VOLATILE = ("created", "sha256", "size", "key", "bytes", "seconds", "path", "built_at", "deposit_id", "blob")


# Top-level entries that are measurements, not outputs.
TIMING = ("hygie", "cpu", "steps", "step_walls", "peak_rss_mb")


def _run(extracts: Path, keys: Path, out: Path) -> None:
    keys.mkdir(parents=True, exist_ok=True)
    os.environ["HYGIE_LINKAGE_KEY_FILE"] = str(keys / "linkage.key")
    os.environ["HYGIE_PSEUDONYM_KEY_FILE"] = str(keys / "pseudonym.key")
    import hygie
    from hygie.config import Settings
    from hygie.engine.duckdb import DuckDBEngine
    from hygie.ingest.build import build_release
    from hygie.ingest.deposit import ingest
    from hygie.ingest.linkage_evaluation import evaluate
    from hygie.ingest.sites import SiteRegistry
    from hygie.ingest.vocabulary import install_vocabulary

    home = Path(tempfile.mkdtemp(prefix="hygie-eq-"))
    threads = {"HYGIE_THREADS": os.environ["HYGIE_THREADS"]} if os.environ.get("HYGIE_THREADS") else {}
    settings = Settings.from_env({"HYGIE_HOME": str(home), **threads})
    install_vocabulary(extracts / "vocabulary", "v", settings)
    steps: dict[str, float] = {}
    walls: dict[str, float] = {}
    mark: list[Any] = [None, time.process_time(), time.perf_counter()]

    def step(message: str) -> None:
        now, wall = time.process_time(), time.perf_counter()
        if mark[0]:
            steps[mark[0]] = round(steps.get(mark[0], 0) + now - mark[1], 3)
            walls[mark[0]] = round(walls.get(mark[0], 0) + wall - mark[2], 3)
        mark[0], mark[1], mark[2] = message.split()[0], now, wall

    registry = SiteRegistry(settings)
    cpu: dict[str, float] = {}
    made: dict[str, Any] = {}
    for code, format_ in (("a", "omop"), ("b", "omop"), ("c", "fhir"), ("d", "omop")):
        site = registry.add("s" + code, format_, {"visit_occurrence": "FR_VISIT"})
        started, mark[0] = time.process_time(), None
        made["deposit_" + code] = ingest(site, extracts / f"site_{code}", settings, synthetic=True, step=step).deposit
        step("end")
        cpu[code] = round(time.process_time() - started, 2)
    started, mark[0] = time.process_time(), None
    made["release"] = build_release("bench", settings, step=step)
    step("end")
    cpu["build"] = round(time.process_time() - started, 2)

    def tables(obj: Any) -> dict[str, Any]:
        found: dict[str, Any] = {}
        with DuckDBEngine(obj, settings) as engine:
            for table in sorted(engine.tables()):
                cols = [c for c, *_ in engine.con.execute(f'DESCRIBE "{table}"').fetchall()]
                n = engine.con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
                sums = engine.con.execute(
                    "SELECT " + ", ".join(f'sum(hash("{c}")::HUGEINT)::VARCHAR' for c in cols) + f' FROM "{table}"'
                ).fetchone()
                found[table] = {"rows": n, **dict(zip(cols, sums, strict=True))}
        return found

    truth = extracts / "truth" / "linkage.csv"
    linkage = evaluate(made["release"], settings, truth, {c: "s" + c for c in "abcd"}) if truth.is_file() else {}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    timing = {"cpu": cpu, "steps": steps, "step_walls": walls, "peak_rss_mb": usage.ru_maxrss // 1024}
    print(json.dumps({**timing, "linkage_quality": linkage}), flush=True)
    result: dict[str, Any] = {"hygie": hygie.__file__, **timing, "linkage_quality": linkage}
    for name, obj in made.items():
        manifest = json.loads(json.dumps(obj.manifest, default=lambda o: getattr(o, "__dict__", str(o))))
        result[name] = {"tables": tables(obj), "manifest": manifest}
    out.write_text(json.dumps(result, indent=1, default=str))
    shutil.rmtree(home, ignore_errors=True)


def _leaves(x: Any, path: str = "") -> dict[str, Any]:
    if isinstance(x, dict):
        return {k: v for key, value in x.items() for k, v in _leaves(value, f"{path}/{key}").items()}
    if isinstance(x, list):
        return {k: v for i, value in enumerate(x) for k, v in _leaves(value, f"{path}[{i}]").items()}
    return {path: x}


def compare(a: dict[str, Any], b: dict[str, Any]) -> tuple[int, list[tuple[str, Any, Any]]]:
    """Equal leaves, and the leaves that differ (paths that are random by design are left out)."""
    left = {k: v for name in a if name not in TIMING for k, v in _leaves(a[name], name).items()}
    right = {k: v for name in b if name not in TIMING for k, v in _leaves(b[name], name).items()}
    same, differ = 0, []
    for path in sorted(set(left) | set(right)):
        if any(word in path.rsplit("/", 1)[-1] for word in VOLATILE):
            continue
        if left.get(path) == right.get(path):
            same += 1
        else:
            differ.append((path, left.get(path), right.get(path)))
    return same, differ


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        same, differ = compare(json.loads(Path(sys.argv[2]).read_text()), json.loads(Path(sys.argv[3]).read_text()))
        print(f"equal leaves {same}, differing {len(differ)}")
        for path, x, y in differ:
            print(path, "|", str(x)[:100], "|", str(y)[:100])
    else:
        _run(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
