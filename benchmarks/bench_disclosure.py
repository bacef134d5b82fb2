"""Disclosure control benchmark: ``apply_policy`` on result tables shaped like a study's, with and without
secondary suppression and a release history (baseline: primary suppression only).

Run: ``uv run python benchmarks/bench_disclosure.py``. Tables (counts drawn with many small values, seeded):
- ``incidence_yearly``: 10 yearly intervals x 4 age groups x sex (Both, Male, Female), margin sex;
- ``incidence_monthly``: 120 monthly intervals x 4 age groups x sex, margin sex;
- ``two_margins``: 20 outcomes x sex (with Both) x 6 regions (with All): 2-D groups, solved by linear programming.
"""

from __future__ import annotations

import json
import statistics

from benchmarks.common import run_child

RUNS = 3
CHILD = """
import random, time, json
import pyarrow as pa
from hygie.analyses.base import ResultTable, TableStructure
from hygie.disclosure import DisclosurePolicy, ReleasedHistory, apply_policy
import scipy.linalg, scipy.optimize  # loaded lazily by the audit: once per process, not timed here

rng = random.Random(7)
def count():
    return rng.choice([0, rng.randint(1, 10), rng.randint(11, 40), rng.randint(41, 400)])

def incidence(intervals):
    rows = {{"interval": [], "age_group": [], "sex": [], "denominator_count": [], "outcome_count": [], "rate": []}}
    for m in range(intervals):
        for a in range(4):
            dm, df, om, of = 50 + count(), 50 + count(), count(), count()
            for sex, d, o in (("Both", dm + df, om + of), ("Male", dm, om), ("Female", df, of)):
                for k, v in (("interval", str(m)), ("age_group", str(a)), ("sex", sex), ("denominator_count", d),
                             ("outcome_count", o), ("rate", o / d)):
                    rows[k].append(v)
    return ResultTable("incidence", pa.table(rows), {{"denominator_count": (), "outcome_count": ("rate",)}},
                       structure=TableStructure(keys=("interval", "age_group", "sex"), margins={{"sex": "Both"}}))

def two_margins():
    rows = {{"outcome": [], "sex": [], "region": [], "n": []}}
    for o in range(20):
        base = {{(s, r): count() for s in ("M", "F") for r in range(6)}}
        for s in ("M", "F", "Both"):
            for r in [*map(str, range(6)), "All"]:
                n = sum(v for (bs, br), v in base.items() if s in (bs, "Both") and r in (str(br), "All"))
                for k, v in (("outcome", str(o)), ("sex", s), ("region", r), ("n", n)):
                    rows[k].append(v)
    return ResultTable("by_region", pa.table(rows), {{"n": ()}},
                       structure=TableStructure(margins={{"sex": "Both", "region": "All"}}))

table = {{"incidence_yearly": lambda: incidence(10), "incidence_monthly": lambda: incidence(120),
          "two_margins": two_margins}}["{table}"]()
policy = DisclosurePolicy(secondary={secondary}, differencing={secondary})
history = None
if {history}:
    history = ReleasedHistory().with_output("earlier", apply_policy([table], policy).tables)
started = time.perf_counter()
outcome = apply_policy([table], policy, history=history)
print(json.dumps({{"seconds": time.perf_counter() - started, "rows": table.rows.num_rows,
                   "masked": sum(f.cells for f in outcome.flags)}}))
"""


def main() -> dict:
    """Per table and configuration: median seconds of ``apply_policy`` alone (measured in the child, without
    interpreter start-up and scipy's import, paid once per process), the child's peak RSS, rows and masked
    cells."""
    figures: dict = {}
    for table in ("incidence_yearly", "incidence_monthly", "two_margins"):
        for label, secondary, history in (
            ("primary_only", False, False),
            ("full", True, False),
            ("full_with_history", True, True),
        ):
            runs = [run_child(CHILD.format(table=table, secondary=secondary, history=history)) for _ in range(RUNS)]
            inner = [json.loads(r.stdout) for r in runs]
            figures[f"{table}/{label}"] = {
                "runs": RUNS,
                "median_s": round(statistics.median(i["seconds"] for i in inner), 3),
                "peak_rss_mb": round(max(r.peak_rss_mb for r in runs), 1),
                "rows": inner[0]["rows"],
                "masked": inner[0]["masked"],
            }
    return figures


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
