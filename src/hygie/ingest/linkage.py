"""Record linkage on linkage tokens: which person keys of which sites are the same person.

Two passes (docs/decisions/0006). Deterministic rules, each an equi-join on tokens plus a condition: NIR with
sex and birth date (or its day/month swap); birth date, sex and both names' sounds; birth date, sex, given
name and postcode (family names change). Then a Fellegi-Sunter model (Splink on DuckDB, trained by EM without
labels) scores the candidate pairs of bounded blocking rules (docs/decisions/0017). Two records with different
NIRs are never linked, not even through a third record. Linked pairs are grouped into persons (connected
components).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import duckdb

DEFAULT_MATCH_THRESHOLD = 0.95
MIN_RECORDS_TO_TRAIN = 1000  # below this, unsupervised training is unreliable: deterministic rules only
# Per EM session. At 600,000 patients 1M pairs give the same precision and recall as 5M (0.9913 / 0.9987)
# for 43% less linkage CPU (decision 0017, sixth pass); fewer pairs save nothing more (fixed costs).
MAX_TRAINING_PAIRS = 1_000_000

NIR_AGREES = "(a.nir_token IS NULL OR b.nir_token IS NULL OR a.nir_token = b.nir_token)"
SAME_BIRTH_DATE = (
    "(a.birth_date_token = b.birth_date_token OR a.birth_date_token = b.birth_date_swapped_token "
    "OR a.birth_date_swapped_token = b.birth_date_token)"
)


@dataclass(frozen=True)
class Rule:
    name: str
    join_on: tuple[str, ...]  # token columns that must be equal (and present): the blocking key
    condition: str  # further SQL condition on the pair (a, b)


RULES = (
    Rule("nir", ("nir_token", "sex"), SAME_BIRTH_DATE),
    Rule(
        "names_and_birth_date",
        ("birth_date_token", "sex", "family_name_soundex_token", "given_name_soundex_token"),
        NIR_AGREES,
    ),
    Rule(
        "given_name_postcode_and_birth_date",
        ("birth_date_token", "sex", "given_name_token", "postcode_token"),
        NIR_AGREES,
    ),
)


def link(
    con: duckdb.DuckDBPyConnection,
    identities: str,
    *,
    probabilistic: bool = True,
    threshold: float = DEFAULT_MATCH_THRESHOLD,
) -> dict[str, object]:
    """Create ``_clusters(rid, cluster)`` for the records of ``identities`` (a table with ``rid`` and the
    token columns); return a report of counts (never tokens)."""
    edges: list[tuple[int, int]] = []
    by_rule: dict[str, int] = {}
    for rule in RULES:
        on = " AND ".join(f"a.{c} = b.{c}" for c in rule.join_on)
        pairs = con.execute(
            f"SELECT a.rid, b.rid FROM {identities} a JOIN {identities} b ON {on} AND a.rid < b.rid "
            f"WHERE {rule.condition}"
        ).fetchall()
        by_rule[rule.name] = len(pairs)
        edges.extend(pairs)
    nodes = con.execute(f"SELECT rid, nir_token FROM {identities} ORDER BY rid").fetchall()
    probabilistic_report: dict[str, object] = {"used": False}
    if probabilistic and len(nodes) >= MIN_RECORDS_TO_TRAIN:
        scored = _splink_pairs(con, identities, threshold)
        edges.extend((a, b) for a, b, _ in scored)
        probabilistic_report = {
            "used": True,
            "threshold": threshold,
            "pairs": len(scored),
            "pairs_by_probability": dict(Counter(_bin(p) for _, _, p in scored)),
        }
    elif probabilistic:
        probabilistic_report["reason"] = f"fewer than {MIN_RECORDS_TO_TRAIN} records to train a model on"
    rids = [r for r, _ in nodes]
    cluster, refused = _components(rids, edges, {r: n for r, n in nodes if n is not None})
    import pyarrow as pa

    con.register(
        "_clusters_arrow",
        pa.table({"rid": pa.array(rids, pa.int64()), "cluster": pa.array([cluster[r] for r in rids], pa.int64())}),
    )
    con.execute("CREATE OR REPLACE TEMP TABLE _clusters AS SELECT * FROM _clusters_arrow")
    con.unregister("_clusters_arrow")
    sizes = Counter(Counter(cluster.values()).values())
    return {
        "records": len(rids),
        "persons": len(set(cluster.values())),
        "pairs_by_rule": by_rule,
        "pairs_refused_nir_conflict": refused,
        "probabilistic": probabilistic_report,
        "persons_by_records": {str(k): v for k, v in sorted(sizes.items())},
    }


def _bin(probability: float) -> str:
    for lower in (0.999, 0.99, 0.95, 0.9, 0.8):
        if probability >= lower:
            return f">={lower}"
    return "<0.8"


def _name(column: str):
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    return cl.CustomComparison(
        output_column_name=column,
        comparison_levels=[
            cll.NullLevel(f"{column}_token"),
            cll.ExactMatchLevel(f"{column}_token"),
            cll.ExactMatchLevel(f"{column}_soundex_token"),
            cll.ElseLevel(),
        ],
    )


def _splink_pairs(con: duckdb.DuckDBPyConnection, identities: str, threshold: float) -> list[tuple[int, int, float]]:
    """Pairs scored by a Fellegi-Sunter model trained on the records (EM, no labels), best first."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    swapped = "birth_date_token_l = birth_date_swapped_token_r OR birth_date_swapped_token_l = birth_date_token_r"
    settings = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="rid",
        comparisons=[
            cl.ExactMatch("nir_token"),
            cl.CustomComparison(
                output_column_name="birth_date",
                comparison_levels=[
                    cll.NullLevel("birth_date_token"),
                    cll.ExactMatchLevel("birth_date_token"),
                    cll.CustomLevel(swapped, label_for_charts="day and month swapped"),
                    cll.ExactMatchLevel("birth_year_token"),
                    cll.ElseLevel(),
                ],
            ),
            cl.ExactMatch("sex"),
            _name("family_name"),
            _name("given_name"),
            cl.ExactMatch("postcode_token"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("nir_token"),
            block_on("birth_date_token"),
            # Names that sound alike are common (MARTIN Jean): with the birth year the candidate pairs grow
            # with the population, not with its square (docs/decisions/0017).
            block_on("family_name_soundex_token", "given_name_soundex_token", "birth_year_token"),
            block_on("given_name_token", "postcode_token"),
        ],
    )
    linker = Linker(DuckDBAPI(connection=con).register(identities), settings, log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("nir_token", "birth_date_token")], recall=0.8
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6)
    # EM sees at most MAX_TRAINING_PAIRS pairs per session (Splink samples records by a hash beyond that):
    # training time stays bounded at any scale, and a sample of millions of pairs estimates the same m.
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("birth_date_token"), max_pairs=MAX_TRAINING_PAIRS
    )
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("family_name_soundex_token", "given_name_soundex_token"), max_pairs=MAX_TRAINING_PAIRS
    )
    predictions = linker.inference.predict(threshold_match_probability=threshold).as_duckdbpyrelation()
    return [
        (int(a), int(b), float(p))
        for a, b, p in predictions.order("match_probability DESC, rid_l, rid_r")
        .select("rid_l, rid_r, match_probability")
        .fetchall()
    ]


def _components(
    nodes: list[int], edges: list[tuple[int, int]], nir: dict[int, str] | None = None
) -> tuple[dict[int, int], int]:
    """Connected components (union-find), named by their smallest member, never joining two different NIRs.

    Edges come strongest rule first, so a record without NIR that resembles two persons with different
    NIRs joins the first and cannot bridge them. Returns the components and the number of refused edges.
    """
    parent = {n: n for n in nodes}
    nirs: dict[int, str | None] = {n: (nir or {}).get(n) for n in nodes}  # per root
    refused = 0

    def find(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        if nirs[ra] and nirs[rb] and nirs[ra] != nirs[rb]:
            refused += 1
            continue
        root, child = min(ra, rb), max(ra, rb)
        parent[child] = root
        nirs[root] = nirs[root] or nirs[child]
    return {n: find(n) for n in nodes}, refused
