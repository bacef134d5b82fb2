"""How good was linkage? Pairwise precision and recall of a release against a synthetic ground truth.

The ground truth (``hygie synth`` writes ``truth/linkage.csv``: site, local_id, person_key) says which local
ids are the same person. It exists only for synthetic data and is never deposited.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from hygie.config import Settings
from hygie.engine.duckdb import connect, parquet_source, register_key
from hygie.errors import HygieError, InputError, Problem
from hygie.ingest.deposit import linkage_key, person_key
from hygie.releases import Release


def _pairs(counts: Counter) -> int:
    return sum(n * (n - 1) // 2 for n in counts.values())


def evaluate(release: Release, settings: Settings, truth: Path, sites: dict[str, str]) -> dict[str, float | int]:
    """``sites`` maps the truth file's site codes to hub site names; other sites' rows are left out."""
    if not release.manifest.synthetic:
        raise HygieError(f"release {release.name} is not synthetic: there is no ground truth for real patients")
    linkage = release.manifest.linkage or {}
    if "person_map_file" not in linkage:
        raise HygieError(f"release {release.name} was not built from deposits: nothing to evaluate")
    con = connect(settings, allowed_dirs=[release.path])
    register_key(con, "k", release.data_key(settings))
    source = parquet_source(str(release.path / linkage["person_map_file"]), "k")
    predicted = {
        (site, key): pid
        for site, key, pid in con.execute(f"SELECT site, person_key, person_id FROM {source}").fetchall()
    }
    con.close()
    key = linkage_key(settings)
    truth_of: dict[tuple[str, int], str] = {}
    with truth.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"site", "local_id", "person_key"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(Problem(truth.name, f"required column(s) missing: {', '.join(sorted(missing))}", row=0))
        for row in reader:
            if row["site"] in sites:
                truth_of[(sites[row["site"]], person_key(key, row["local_id"].strip()))] = row["person_key"]
    records = [r for r in truth_of if r in predicted]
    if not records:
        raise HygieError("no record of the ground truth is in this release: check the --site mapping")
    true_clusters = Counter(truth_of[r] for r in records)
    predicted_clusters = Counter(predicted[r] for r in records)
    both = Counter((truth_of[r], predicted[r]) for r in records)
    true_pairs, predicted_pairs, correct = _pairs(true_clusters), _pairs(predicted_clusters), _pairs(both)
    return {
        "records": len(records),
        "true_pairs": true_pairs,
        "predicted_pairs": predicted_pairs,
        "correct_pairs": correct,
        "precision": round(correct / predicted_pairs, 4) if predicted_pairs else 1.0,
        "recall": round(correct / true_pairs, 4) if true_pairs else 1.0,
    }
