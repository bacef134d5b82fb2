"""Ingestion benchmark (issue 4): synthetic hospital extracts -> 4 deposits -> one linked release.

``HYGIE_BENCH_PATIENTS`` sets the population (default 20,000; the EMC2 target is 600,000 in <= 5 min and
<= 6 GB). Each stage runs in its own process (peak RSS per stage); the baseline is a bare DuckDB copy of the
same OMOP extracts to encrypted Parquet (the least work any ingestion must do), run in the same script.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from benchmarks.common import RESULTS, run_child

SITES = (("a", "omop"), ("b", "omop"), ("c", "fhir"), ("d", "omop"))

INGEST = """
from pathlib import Path
from hygie.config import Settings
from hygie.ingest.deposit import ingest
from hygie.ingest.sites import SiteRegistry
s = Settings.from_env({{"HYGIE_HOME": "{home}"}})
r = SiteRegistry(s)
site = r.get("{name}") if "{name}" in {{x.name for x in r.list()}} else r.add("{name}", "{format}",
    {{"visit_occurrence": "FR_VISIT"}})
d = ingest(site, Path("{folder}"), s, synthetic=True).deposit
print(sum(t.rows for n, t in d.manifest.tables.items() if n != "identity_tokens"))
"""

SETUP = """
from pathlib import Path
from hygie.config import Settings
from hygie.ingest.vocabulary import install_vocabulary
install_vocabulary(Path("{folder}"), "v", Settings.from_env({{"HYGIE_HOME": "{home}"}}))
"""

BUILD = """
import json
from pathlib import Path
from hygie.config import Settings
from hygie.ingest.build import build_release
from hygie.ingest.linkage_evaluation import evaluate
s = Settings.from_env({{"HYGIE_HOME": "{home}"}})
r = build_release("bench", s)
sites = {{c: "s" + c for c in "abcd"}}
print(json.dumps({{"persons": r.manifest.tables["person"].rows, **evaluate(r, s, Path("{truth}"), sites)}}))
"""

BARE = """
import os
from pathlib import Path
from hygie.config import Settings
from hygie.engine.duckdb import connect, register_key, parquet_copy_options
settings = Settings.from_env({{"HYGIE_HOME": "{home}"}})
con = connect(settings, writer=True, allowed_dirs=[Path("{root}"), Path("{out}")])
register_key(con, "k", os.urandom(32))
for site in "abd":
    folder = "{root}/site_" + site + "/cdm"
    for f in sorted(os.listdir(folder)):
        if f.endswith((".csv", ".parquet")) and f != "MANIFEST.csv":
            con.execute(f"COPY (SELECT * FROM '{{folder}}/{{f}}') TO '{out}/{{site}}_{{f}}.parquet' "
                        + parquet_copy_options("k"))
"""


def main() -> dict:
    patients = int(os.environ.get("HYGIE_BENCH_PATIENTS", "20000"))
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=RESULTS) as tmp:
        root = Path(tmp)
        extracts, home = root / "extracts", root / "home"
        synth = run_child(
            "from hygie.cli.main import run; import sys; "
            f"sys.argv = ['hygie', 'synth', '--patients', '{patients}', '--seed', '1', '--out', '{extracts}']; run()"
        )
        figures: dict = {"patients": patients, "synth_s": round(synth.seconds, 1)}
        run_child(SETUP.format(folder=extracts / "vocabulary", home=home))
        total_rows, total_s, peak = 0, 0.0, 0.0
        for code, format_ in SITES:
            r = run_child(INGEST.format(home=home, name=f"s{code}", format=format_, folder=extracts / f"site_{code}"))
            rows = int(r.stdout.strip().splitlines()[-1])
            figures[f"ingest_site_{code}"] = {
                "format": format_,
                "rows": rows,
                "seconds": round(r.seconds, 1),
                "rows_per_s": round(rows / r.seconds),
                "peak_rss_mb": round(r.peak_rss_mb),
            }
            total_rows, total_s, peak = total_rows + rows, total_s + r.seconds, max(peak, r.peak_rss_mb)
        b = run_child(BUILD.format(home=home, truth=extracts / "truth" / "linkage.csv"))
        figures["build_release"] = {
            "seconds": round(b.seconds, 1),
            "peak_rss_mb": round(b.peak_rss_mb),
            **json.loads(b.stdout.strip().splitlines()[-1]),
        }
        deposit_to_release = total_s + b.seconds
        out = root / "bare"
        out.mkdir()
        bare = run_child(BARE.format(home=root / "bare_home", root=extracts, out=out))
        figures["total"] = {
            "rows": total_rows,
            "deposit_to_release_s": round(deposit_to_release, 1),
            "rows_per_s": round(total_rows / deposit_to_release),
            "peak_rss_mb": round(max(peak, b.peak_rss_mb)),
            "extrapolated_600k_s": round(deposit_to_release * 600_000 / patients),
            "baseline_bare_copy_of_omop_sites_s": round(bare.seconds, 1),
        }
        shutil.rmtree(extracts)
    return figures


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
