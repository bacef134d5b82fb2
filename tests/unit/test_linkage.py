"""Deterministic linkage rules on tokens."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from hygie.ingest.linkage import _components, link
from hygie.ingest.pseudonymise import TOKEN_COLUMNS


def _identities(*records: dict) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    rows = [{c: r.get(c) for c in TOKEN_COLUMNS} | {"rid": i} for i, r in enumerate(records, start=1)]
    schema = pa.schema([(c, pa.string()) for c in TOKEN_COLUMNS] + [("rid", pa.int64())])
    con.register("ids", pa.Table.from_pylist(rows, schema=schema))
    return con


BASE = {
    "birth_date_token": "d1",
    "sex": "F",
    "family_name_soundex_token": "f",
    "given_name_soundex_token": "g",
    "given_name_token": "G",
    "postcode_token": "p",
}


def test_different_nirs_are_never_linked():
    con = _identities({**BASE, "nir_token": "n1"}, {**BASE, "nir_token": "n2"}, {**BASE})
    report = link(con, "ids")
    clusters = dict(con.execute("SELECT rid, cluster FROM _clusters").fetchall())
    assert clusters[1] != clusters[2]
    assert clusters[3] in (clusters[1], clusters[2])  # no NIR: links to one of them by names and birth date
    assert report["records"] == 3
    assert report["pairs_refused_nir_conflict"] == 2  # record 3 resembles record 2 by two rules


def test_nir_needs_the_same_sex_and_birth_date_or_its_swap():
    con = _identities(
        {"nir_token": "n", "sex": "F", "birth_date_token": "d1", "birth_date_swapped_token": "d2"},
        {"nir_token": "n", "sex": "F", "birth_date_token": "d2"},
        {"nir_token": "n", "sex": "M", "birth_date_token": "d1"},
    )
    report = link(con, "ids")
    assert report["pairs_by_rule"]["nir"] == 1
    assert report["persons"] == 2


def test_components_join_chains():
    assert _components([1, 2, 3, 4, 5], [(1, 2), (3, 2), (4, 5)]) == ({1: 1, 2: 1, 3: 1, 4: 4, 5: 4}, 0)
    assert _components([1, 2, 3], [(1, 3), (2, 3)], {1: "a", 2: "b"}) == ({1: 1, 2: 2, 3: 1}, 1)


def _population(seed: int = 11, persons: int = 1500):
    """Token records of persons seen at two sites, with the noise linkage must survive: missing NIR,
    a typo in a name (same sound, other token), a changed family name, day/month swaps."""
    import random

    rng = random.Random(seed)
    records, truth = [], []
    for p in range(persons):
        dob = f"d{rng.randrange(20_000)}"
        person = {
            "nir_token": f"n{p}",
            "sex": rng.choice("MF"),
            "birth_date_token": dob,
            "birth_date_swapped_token": None,
            "birth_year_token": f"y{dob[:4]}",
            "family_name_token": f"f{rng.randrange(800)}",
            "given_name_token": f"g{rng.randrange(300)}",
            "postcode_token": f"p{rng.randrange(400)}",
        }
        person["family_name_soundex_token"] = "s" + person["family_name_token"]
        person["given_name_soundex_token"] = "s" + person["given_name_token"]
        copies = 2 if rng.random() < 0.15 else 1
        for _ in range(copies):
            r = dict(person)
            if rng.random() < 0.3:
                r["nir_token"] = None
            if rng.random() < 0.1:
                r["family_name_token"] += "x"  # typo: the sound is unchanged
            if rng.random() < 0.05:
                r["family_name_token"] = r["family_name_soundex_token"] = f"married{rng.randrange(10**6)}"
            records.append(r)
            truth.append(p)
    return records, truth


def test_probabilistic_pass_recovers_what_rules_miss():
    records, truth = _population()
    con = _identities(*records)
    report = link(con, "ids", threshold=0.95)
    assert report["probabilistic"]["used"] is True
    clusters = dict(con.execute("SELECT rid, cluster FROM _clusters").fetchall())
    from collections import Counter

    def pairs(labels):
        return sum(n * (n - 1) // 2 for n in Counter(labels).values())

    predicted = [clusters[i] for i in range(1, len(records) + 1)]
    correct = pairs(list(zip(truth, predicted, strict=True)))
    precision, recall = correct / pairs(predicted), correct / pairs(truth)
    assert precision >= 0.98 and recall >= 0.98, (precision, recall)
    deterministic_only = _identities(*records)
    link(deterministic_only, "ids", probabilistic=False)
    clusters = dict(deterministic_only.execute("SELECT rid, cluster FROM _clusters").fetchall())
    assert pairs([clusters[i] for i in range(1, len(records) + 1)]) <= pairs(predicted)
