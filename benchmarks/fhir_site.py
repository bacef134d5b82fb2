"""One FHIR site deposit, measured and fingerprinted without its record ids (docs/decisions/0024).

``python -m benchmarks.fhir_site SITE_FOLDER VOCABULARY KEYS OUT.json`` deposits ``SITE_FOLDER`` (e.g. the
``site_c`` of ``hygie synth``) into a fresh hub with the linkage key of ``KEYS`` (created on first use), and
writes: wall and CPU seconds, peak RSS, the peak size of DuckDB's temp folder, the progress marks (wall,
CPU), and per table its row count and an order-free hash of each column except record ids (a row's visit is
hashed by the visit's content, so that two numberings of the same visits compare equal). Compare two outputs
with ``python -m benchmarks.fhir_site --compare A.json B.json``. Run it with the code under test first on
``PYTHONPATH`` (or from that worktree's venv).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# Record ids (their numbering may change without the rows changing).
RECORD_IDS = {
    "visit_occurrence": "visit_occurrence_id",
    "condition_occurrence": "condition_occurrence_id",
    "procedure_occurrence": "procedure_occurrence_id",
    "drug_exposure": "drug_exposure_id",
    "measurement": "measurement_id",
    "observation": "observation_id",
    "observation_period": "observation_period_id",
}
VISIT = "hash(v.person_id, v.visit_start_date, v.visit_end_date, v.visit_concept_id, v.visit_source_value)"


def _run(site_folder: Path, vocabulary: Path, keys: Path, out: Path) -> None:
    keys.mkdir(parents=True, exist_ok=True)
    os.environ["HYGIE_LINKAGE_KEY_FILE"] = str(keys / "linkage.key")
    os.environ["HYGIE_PSEUDONYM_KEY_FILE"] = str(keys / "pseudonym.key")
    import hygie
    from hygie.config import Settings
    from hygie.engine.duckdb import DuckDBEngine
    from hygie.ingest.deposit import ingest
    from hygie.ingest.sites import SiteRegistry
    from hygie.ingest.vocabulary import install_vocabulary

    home = Path(tempfile.mkdtemp(prefix="hygie-fhir-"))
    settings = Settings.from_env({"HYGIE_HOME": str(home)})
    install_vocabulary(vocabulary, "v", settings)
    peak_tmp = [0]

    def poll() -> None:
        while True:
            total = sum(f.stat().st_size for f in Path(settings.tmp_dir).rglob("*") if f.is_file())
            peak_tmp[0] = max(peak_tmp[0], total)
            time.sleep(0.5)

    threading.Thread(target=poll, daemon=True).start()
    marks: list[tuple[float, float, str]] = []
    wall, cpu = time.perf_counter(), time.process_time()

    def step(message: str) -> None:
        marks.append((round(time.perf_counter() - wall, 1), round(time.process_time() - cpu, 1), message))

    site = SiteRegistry(settings).add("sc", "fhir", {"visit_occurrence": "FR_VISIT"})
    deposit = ingest(site, site_folder, settings, synthetic=True, step=step).deposit
    timing = {
        "hygie": hygie.__file__,
        "wall": round(time.perf_counter() - wall, 1),
        "cpu": round(time.process_time() - cpu, 1),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "peak_tmp_mb": peak_tmp[0] // 2**20,
        "marks": marks,
    }
    tables: dict[str, Any] = {}
    with DuckDBEngine(deposit, settings) as engine:
        for table in sorted(engine.tables()):
            columns = [c for c, *_ in engine.con.execute(f'DESCRIBE "{table}"').fetchall()]
            kept = [c for c in columns if c not in (RECORD_IDS.get(table), "visit_occurrence_id")]
            sums = [f'sum(hash(x."{c}"))::HUGEINT::VARCHAR' for c in kept]
            join = ""
            if "visit_occurrence_id" in columns and table != "visit_occurrence":
                join = " LEFT JOIN visit_occurrence v ON v.visit_occurrence_id = x.visit_occurrence_id"
                sums.append(f"sum({VISIT})::HUGEINT::VARCHAR")
                kept.append("visit")
            found = engine.con.execute(f'SELECT count(*), {", ".join(sums)} FROM "{table}" x{join}').fetchone()
            tables[table] = {"rows": found[0], **dict(zip(kept, found[1:], strict=True))}
    out.write_text(json.dumps({**timing, "tables": tables, "warnings": deposit.manifest.warnings}, indent=1))
    shutil.rmtree(home, ignore_errors=True)


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The tables' columns (and the warnings) that differ between two outputs."""
    differ = [
        f"{t}.{c}: {a['tables'].get(t, {}).get(c)} | {b['tables'].get(t, {}).get(c)}"
        for t in sorted(set(a["tables"]) | set(b["tables"]))
        for c in sorted(set(a["tables"].get(t, {})) | set(b["tables"].get(t, {})))
        if a["tables"].get(t, {}).get(c) != b["tables"].get(t, {}).get(c)
    ]
    return differ + (["warnings"] if a["warnings"] != b["warnings"] else [])


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        a, b = (json.loads(Path(p).read_text()) for p in sys.argv[2:4])
        for key in ("wall", "cpu", "rss_mb", "peak_tmp_mb"):
            print(f"{key}: {a[key]} -> {b[key]}" + (f" ({b[key] / a[key]:.2f}x)" if a[key] else ""))
        differ = compare(a, b)
        print(f"differences: {len(differ)}", *differ, sep="\n")
    else:
        _run(*map(Path, sys.argv[1:5]))
