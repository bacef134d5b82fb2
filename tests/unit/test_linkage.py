"""Deterministic linkage rules on tokens."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from hygie.ingest.linkage import _components, link
from hygie.ingest.pseudonymise import TOKEN_COLUMNS


def _identities(*records: dict) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    rows = [{c: r.get(c) for c in TOKEN_COLUMNS} | {"rid": i} for i, r in enumerate(records, start=1)]
    con.register("ids", pa.Table.from_pylist(rows))
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
