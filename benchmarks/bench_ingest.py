"""Ingestion benchmark (issue 4): synthetic hospital extracts -> 4 deposits -> one linked release.

``HYGIE_BENCH_PATIENTS`` sets the population (default 20,000; the EMC2 target is 600,000 in <= 5 min and
<= 6 GB); ``HYGIE_BENCH_EXTRACTS`` reuses extracts written by ``hygie synth --patients N --seed 1``
(synthesising 600,000 patients takes about 3 minutes), with ``HYGIE_BENCH_PATIENTS`` set to their N. Each stage
runs in its own process (peak RSS per stage); the baseline is a bare DuckDB copy of the same OMOP extracts to
encrypted Parquet (the least work any ingestion must do), run in the same script.

Besides wall time, each process reports its CPU time (all threads): on a shared machine wall time grows with
the load, CPU time much less, and CPU time / 2 bounds the wall time on two idle cores. Steps are timed by
kind (``STEP_KINDS``): read (parse and type the files, FHIR conversion), pseudonymise (identity tokens,
person keys), check (row checks, data quality), write (encrypted Parquet), link. Mapping source codes and
person keys is not a step of its own: it is part of the views that checks and writes read.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from benchmarks.common import RESULTS, run_child
from hygie.cdm.schema import cdm_schema

SITES = (("a", "omop"), ("b", "omop"), ("c", "fhir"), ("d", "omop"))

# Which kind of work a progress step starts (its message's first word); the time until the next step is its.
STEP_KINDS = {
    "reading": "read",
    "converting": "read",
    "tokenising": "pseudonymise",
    "keying": "pseudonymise",
    "staging": "write",
    "checking": "check",
    "writing": "write",
    "publishing": "write",
    "linking": "link",
}

TIMED = """
import json, resource, time
_marks = [("start", time.perf_counter())]
def step(message):
    _marks.append((message, time.perf_counter()))
def report(**figures):
    _marks.append(("end", time.perf_counter()))
    kinds = {{}}
    for (message, t), (_, t_next) in zip(_marks, _marks[1:]):
        kind = {kinds}.get(message.split()[0], "other")
        kinds[kind] = round(kinds.get(kind, 0) + t_next - t, 2)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({{**figures, "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "steps_s": kinds}}))
"""

INGEST = """
from pathlib import Path
from hygie.config import Settings
from hygie.ingest.deposit import ingest
from hygie.ingest.sites import SiteRegistry
s = Settings.from_env({{"HYGIE_HOME": "{home}"}})
r = SiteRegistry(s)
site = r.get("{name}") if "{name}" in {{x.name for x in r.list()}} else r.add("{name}", "{format}",
    {{"visit_occurrence": "FR_VISIT"}})
d = ingest(site, Path("{folder}"), s, synthetic=True, step=step).deposit
report(rows=sum(t.rows for n, t in d.manifest.tables.items() if n != "identity_tokens"),
       identities=d.manifest.tables["identity_tokens"].rows)
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
r = build_release("bench", s, step=step)
sites = {{c: "s" + c for c in "abcd"}}
quality = evaluate(r, s, Path("{truth}"), sites)
report(persons=r.manifest.tables["person"].rows, release_rows=sum(t.rows for t in r.manifest.tables.values()
       if t.name not in {vocabulary}), **quality)
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


# An installed hygie has its modules compiled once; PYTHONDONTWRITEBYTECODE (set in some shells) would make
# every child compile them again (about 2.5 CPU s each, pandas and Splink included): children keep bytecode
# in bench-results/pycache, compiled by a warm-up child before anything is measured.
WARM_UP = "import hygie.cli.main, hygie.ingest.build, hygie.ingest.deposit, splink, pandas, pyarrow"


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(RESULTS / "pycache")
    return env


def _timed(code: str) -> str:
    return TIMED.format(kinds=repr(STEP_KINDS)) + code


def _rates(steps: dict[str, float], rows: dict[str, int]) -> dict[str, int]:
    """Rows per second of each kind of step (rows: the rows that kind of step handles)."""
    return {kind: round(rows[kind] / seconds) for kind, seconds in steps.items() if kind in rows and seconds > 0}


def main() -> dict:
    patients = int(os.environ.get("HYGIE_BENCH_PATIENTS", "20000"))
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=RESULTS) as tmp:
        root = Path(tmp)
        reused = os.environ.get("HYGIE_BENCH_EXTRACTS")  # extracts of `hygie synth --patients N --seed 1`
        extracts, home = Path(reused) if reused else root / "extracts", root / "home"
        run_child(WARM_UP, env=_child_env())
        figures: dict = {"patients": patients}
        if reused:
            figures["extracts_reused"] = True
        else:
            synth = run_child(
                "from hygie.cli.main import run; import sys; sys.argv = ['hygie', 'synth', '--patients', "
                f"'{patients}', '--seed', '1', '--out', '{extracts}']; run()",
                env=_child_env(),
            )
            figures["synth_s"] = round(synth.seconds, 1)
        run_child(SETUP.format(folder=extracts / "vocabulary", home=home), env=_child_env())
        total_rows, total_s, total_cpu, peak = 0, 0.0, 0.0, 0.0
        for code, format_ in SITES:
            r = run_child(
                _timed(INGEST.format(home=home, name=f"s{code}", format=format_, folder=extracts / f"site_{code}")),
                env=_child_env(),
            )
            out = json.loads(r.stdout.strip().splitlines()[-1])
            rows = out["rows"]
            per_kind = {"read": rows, "check": rows, "write": rows, "pseudonymise": out["identities"]}
            figures[f"ingest_site_{code}"] = {
                "format": format_,
                "rows": rows,
                "seconds": round(r.seconds, 1),
                "cpu_s": out["cpu_s"],
                "rows_per_s": round(rows / r.seconds),
                "peak_rss_mb": round(r.peak_rss_mb),
                "steps_s": out["steps_s"],
                "rows_per_s_by_step": _rates(out["steps_s"], per_kind),
            }
            total_rows, total_s, peak = total_rows + rows, total_s + r.seconds, max(peak, r.peak_rss_mb)
            total_cpu += out["cpu_s"]
        vocabulary = {t.name for t in cdm_schema("5.4").in_group("vocabulary")}
        b = run_child(
            _timed(BUILD.format(home=home, truth=extracts / "truth" / "linkage.csv", vocabulary=repr(vocabulary))),
            env=_child_env(),
        )
        out = json.loads(b.stdout.strip().splitlines()[-1])
        per_kind = {"write": out["release_rows"], "check": out["release_rows"], "link": out["records"]}
        figures["build_release"] = {
            "seconds": round(b.seconds, 1),
            "peak_rss_mb": round(b.peak_rss_mb),
            **out,
            "rows_per_s_by_step": _rates(out["steps_s"], per_kind),
        }
        total_cpu += out["cpu_s"]
        deposit_to_release = total_s + b.seconds
        out = root / "bare"
        out.mkdir()
        bare = run_child(
            _timed(BARE.format(home=root / "bare_home", root=extracts, out=out) + "report()"), env=_child_env()
        )
        figures["total"] = {
            "rows": total_rows,
            "deposit_to_release_s": round(deposit_to_release, 1),
            "rows_per_s": round(total_rows / deposit_to_release),
            "peak_rss_mb": round(max(peak, b.peak_rss_mb)),
            "extrapolated_600k_s": round(deposit_to_release * 600_000 / patients),
            "cpu_s": round(total_cpu, 1),
            # CPU time over two cores: the wall time two idle cores would need, if every step kept both busy.
            "extrapolated_600k_two_idle_cores_s": round(total_cpu / 2 * 600_000 / patients),
            "baseline_bare_copy_of_omop_sites_s": round(bare.seconds, 1),
            "baseline_bare_copy_cpu_s": json.loads(bare.stdout.strip().splitlines()[-1])["cpu_s"],
        }
        if not reused:
            shutil.rmtree(extracts)
    return figures


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
