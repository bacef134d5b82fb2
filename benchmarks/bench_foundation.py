"""Foundation benchmarks: loading GiBleed, loading a 10-million-row drug_exposure table, and the grouped
COUNT(DISTINCT) query on each DuckDB version considered (docs/decisions/0004-duckdb-version.md).

Baselines run in the same script: a bare DuckDB copy of the same input to encrypted Parquet (the least work
any loader must do) and, for the query, alternative formulations and versions.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import RESULTS, ratio, repeat, run_child

ROWS = 10_000_000
RUNS = 3
QUERY_RUNS = 5
OTHER_DUCKDB_VERSIONS = ["2.0.1"]

GENERATE = """
import duckdb
duckdb.execute('''COPY (SELECT range + 1 AS drug_exposure_id, (hash(range) % 600000)::BIGINT + 1 AS person_id,
  (1100000 + hash(range * 7) % 2000)::INTEGER AS drug_concept_id,
  DATE '2010-01-01' + (hash(range * 3) % 3650)::INTEGER AS drug_exposure_start_date,
  DATE '2010-01-01' + (hash(range * 3) % 3650)::INTEGER + (hash(range) % 90)::INTEGER AS drug_exposure_end_date,
  32838 AS drug_type_concept_id, (hash(range) % 90)::INTEGER AS days_supply,
  'ATC' || (hash(range * 7) % 2000) AS drug_source_value
  FROM range({rows})) TO '{out}' {options}''')
"""

LOAD = """
from pathlib import Path
from hygie.config import Settings
from hygie.ingest.cdm_load import load_cdm
settings = Settings.from_env({{"HYGIE_HOME": "{home}"}})
load_cdm(Path("{folder}"), "{name}", settings, synthetic=True, allow_duplicate_keys={allow})
"""

BARE_COPY = """
import os
from pathlib import Path
from hygie.config import Settings
from hygie.engine.duckdb import connect, register_key, parquet_copy_options
settings = Settings.from_env({{"HYGIE_HOME": "{home}"}})
con = connect(settings, writer=True, allowed_dirs=[Path("{folder}"), Path("{out}")])
register_key(con, "k", os.urandom(32))
for f in sorted(os.listdir("{folder}")):
    if f.endswith((".csv", ".parquet")) and f != "MANIFEST.csv":
        con.execute(f"COPY (SELECT * FROM '{folder}/{{f}}') TO '{out}/{{f}}.parquet' " + parquet_copy_options("k"))
"""

QUERY = """
import duckdb, statistics, time, json, sys
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
src = "read_parquet('{parquet}')"
queries = {{
    "count_distinct": f"SELECT drug_concept_id, count(DISTINCT person_id) FROM {{src}} GROUP BY 1",
    "distinct_then_count": f"SELECT drug_concept_id, count(*) FROM (SELECT DISTINCT drug_concept_id, person_id "
                           f"FROM {{src}}) GROUP BY 1",
    "count_star": f"SELECT drug_concept_id, count(*) FROM {{src}} GROUP BY 1",
}}
out = {{"duckdb": duckdb.__version__}}
for name, q in queries.items():
    times = []
    for _ in range({runs}):
        t = time.perf_counter(); con.execute(q).fetchall(); times.append(time.perf_counter() - t)
    out[name + "_median_s"] = round(statistics.median(times), 3)
print(json.dumps(out))
"""


def _duckdb_python(version: str, root: Path) -> str:
    """A throwaway venv with another DuckDB version (from PyPI), cached under bench-results/."""
    venv = root / f"duckdb-{version}"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run(["uv", "venv", "-q", str(venv)], check=True)
        subprocess.run(["uv", "pip", "install", "-q", "-p", str(python), f"duckdb=={version}"], check=True)
    return str(python)


def main() -> dict:
    from hygie import datasets

    data = RESULTS / "data"
    data.mkdir(parents=True, exist_ok=True)
    figures: dict = {}
    with tempfile.TemporaryDirectory(dir=RESULTS) as tmp:
        tmp_path = Path(tmp)

        def load(folder: Path, allow: bool) -> dict:
            # Each run loads into a new HYGIE_HOME: a release name can be used only once.
            return repeat(
                lambda i: LOAD.format(home=tmp_path / f"home-{folder.name}-{i}", folder=folder, name="r", allow=allow),
                RUNS,
            )

        def bare_copy(folder: Path) -> dict:
            out = tmp_path / f"bare-{folder.name}"
            out.mkdir()
            return repeat(BARE_COPY.format(home=tmp_path / "bare-home", folder=folder, out=out), RUNS)

        # 1. GiBleed (411,136 rows in 37 files)
        gibleed = datasets.get("gibleed").folder
        g, g_bare = load(gibleed, allow=True), bare_copy(gibleed)
        figures["gibleed_load"] = {**g, "baseline_bare_copy": g_bare, "ratio_vs_bare_copy": ratio(g, g_bare)}

        # 2. 10 million drug_exposure rows, as CSV
        csv_folder = data / "drug_exposure_10m"
        if not (csv_folder / "drug_exposure.csv").exists():
            csv_folder.mkdir(exist_ok=True)
            run_child(GENERATE.format(rows=ROWS, out=csv_folder / "drug_exposure.csv", options="(HEADER)"))
        d, d_bare = load(csv_folder, allow=False), bare_copy(csv_folder)
        figures["drug_exposure_10m_csv_load"] = {
            **d,
            "rows": ROWS,
            "rows_per_s": round(ROWS / d["median_s"]),
            "baseline_bare_copy": d_bare,
            "ratio_vs_bare_copy": ratio(d, d_bare),
        }

    # 3. Grouped COUNT(DISTINCT) on each DuckDB version, on the same plain Parquet file
    parquet = data / "drug_exposure_10m.parquet"
    if not parquet.exists():
        run_child(GENERATE.format(rows=ROWS, out=parquet, options="(FORMAT parquet)"))
    pythons = [("1.5.5 (project)", sys.executable)]
    pythons += [(v, _duckdb_python(v, RESULTS / "venvs")) for v in OTHER_DUCKDB_VERSIONS]
    versions = {}
    for label, python in pythons:
        r = run_child(QUERY.format(parquet=parquet, runs=QUERY_RUNS), python=python)
        versions[label] = {**json.loads(r.stdout), "peak_rss_mb": round(r.peak_rss_mb, 1)}
    figures["grouped_count_distinct_10m"] = versions
    return figures


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
