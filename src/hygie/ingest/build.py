"""``hygie release build NAME``: every site's latest deposit -> one linked, pseudonymised release.

1. open the latest deposit of each site (and the installed vocabulary) read-only;
2. link identity tokens across deposits into persons (``ingest.linkage``); each person gets a
   ``person_id`` keyed with the hub's pseudonym secret (``HYGIE_PSEUDONYM_KEY_FILE``, default
   ``HYGIE_HOME/keys/pseudonym.key``), which never enters the warehouse: rotating it re-pseudonymises;
3. write every CDM table: person ids replaced, record ids made unique across sites
   (``deposit index * 2**48 + the site's id``, so each row says which deposit it came from; the manifest's
   lineage lists the deposits in that order), one ``person`` and ``death`` row per person, observation
   periods merged across sites; vocabulary tables from the installed vocabulary;
4. publish atomically. Earlier releases are untouched.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa

from hygie.cdm.narrow import columns_of, pad_views
from hygie.cdm.schema import Table, cdm_schema
from hygie.config import Settings
from hygie.engine.duckdb import parquet_source, register_key
from hygie.errors import HygieError
from hygie.ingest.deposit import DEPOSIT_GROUPS
from hygie.ingest.linkage import DEFAULT_MATCH_THRESHOLD, link
from hygie.ingest.pseudonymise import TOKEN_COLUMNS, LinkageKey
from hygie.ingest.quality import ID_BITS, QualityConfig, check_before_publishing
from hygie.ingest.sites import SiteRegistry
from hygie.ingest.staging import CDM_V54_CONCEPT_ID, empty_row
from hygie.ingest.vocabulary import vocabulary_store
from hygie.releases import LineageEntry, Release, ReleaseBuilder, ReleaseStore
from hygie.sql import ident, literal


def pseudonym_key(settings: Settings) -> LinkageKey:
    path = Path(os.environ.get("HYGIE_PSEUDONYM_KEY_FILE", settings.home / "keys" / "pseudonym.key"))
    return LinkageKey.load(path) if path.exists() else LinkageKey.generate(path)


def build_release(
    name: str,
    settings: Settings,
    *,
    vocabulary: str | None = None,
    step: Callable[[str], None] = lambda _s: None,
    probabilistic: bool = True,
    match_threshold: float = DEFAULT_MATCH_THRESHOLD,
    quality: QualityConfig | None = None,
) -> Release:
    registry = SiteRegistry(settings)
    deposits = [(site, registry.deposits(site).list()) for site in registry.list()]
    latest = [(site.name, found[-1]) for site, found in deposits if found]
    if not latest:
        raise HygieError("no deposit yet: add a site (`hygie site add`) and ingest an extract (`hygie ingest`)")
    vocab_store = vocabulary_store(settings)
    vocab = vocab_store.get(vocabulary) if vocabulary else (vocab_store.list() or [None])[-1]
    synthetic = all(d.manifest.synthetic for _, d in latest)
    store = ReleaseStore(settings)
    store.check_new_name(name)
    sites = ", ".join(f"{site} ({d.name})" for site, d in latest)
    read_from = [d.path for _, d in latest] + ([vocab.path] if vocab else [])
    with store.build(name, synthetic=synthetic, description=f"built from {sites}", read_from=read_from) as builder:
        con = builder.con
        stored: dict[str, set[str]] = {}  # CDM table -> the columns at least one deposit stores
        for index, (_, deposit) in enumerate(latest, start=1):
            register_key(con, f"deposit_{index}", deposit.data_key(settings))
            for table, entry in deposit.manifest.tables.items():
                source = parquet_source(str(deposit.path / entry.file), f"deposit_{index}")
                con.execute(f'CREATE TEMP VIEW "d{index}_{table}" AS SELECT * FROM {source}')
                stored.setdefault(table, set()).update(columns_of(con, f'"d{index}_{table}"'))
            # Deposits store the columns their extract supplied; the build sees every CDM column.
            pad_views(con, {f"d{index}_{table}": table for table in deposit.manifest.tables})
        step("linking persons")
        key = pseudonym_key(settings)
        builder.linkage = _link_persons(con, [site for site, _ in latest], key, probabilistic, match_threshold)
        step("writing tables")
        for table in cdm_schema("5.4"):
            if table.group in DEPOSIT_GROUPS:
                if "person_id" in table.column_names:
                    _add_orphans(builder, table, [site for site, _ in latest], key)
                _write_clinical(builder, table, latest, stored.get(table.name, set()))
        # Which deposit's person key became which person: for opt-out and linkage audits, never for studies.
        deposit_names = " UNION ALL ".join(
            f"SELECT {i} AS deposit, {literal(d.name)} AS deposit_name, {literal(site)} AS site"
            for i, (site, d) in enumerate(latest, 1)
        )
        builder.linkage["person_map_file"] = builder.write_operator_file(
            "person_map.parquet",
            f"SELECT n.site, n.deposit_name, m.person_key, m.person_id FROM _person_map m "
            f"JOIN ({deposit_names}) n USING (deposit) ORDER BY 1, 3",
        )
        _write_vocabulary(builder, vocab, settings)
        for table in cdm_schema("5.4").in_group("results"):
            builder.write_table(table.name, _empty(table))
        if vocab is None:
            builder.warnings.append("no vocabulary installed: the release has empty vocabulary tables")
        step("checking data quality")
        builder.con.execute(  # the persons linkage found in several deposits: the only ones duplicates can have
            "CREATE TEMP TABLE _several_deposits AS SELECT person_id FROM _person_map GROUP BY 1 "
            "HAVING count(DISTINCT deposit) > 1"
        )
        check_before_publishing(builder, quality, narrow=True, several_deposits="_several_deposits")
        step("publishing")
        return builder.publish()


def _link_persons(
    con: duckdb.DuckDBPyConnection, sites: list[str], key: LinkageKey, probabilistic: bool, threshold: float
) -> dict[str, object]:
    """Link the deposits' persons and give each a ``person_id``: a keyed hash of its NIR token, or, without
    any NIR, of its first site's name and person key (site names, unlike deposit order, never change)."""
    tokens = ", ".join(TOKEN_COLUMNS)
    nulls = ", ".join(f"NULL AS {c}" for c in TOKEN_COLUMNS)
    parts = []
    for i, site in enumerate(sites, start=1):
        parts.append(f"SELECT {i} AS deposit, {literal(site)} AS site, person_key, {tokens} FROM d{i}_identity_tokens")
        parts.append(  # persons without an identity record are persons of their own
            f"SELECT {i}, {literal(site)}, person_id, {nulls} FROM d{i}_person "
            f"WHERE person_id NOT IN (SELECT person_key FROM d{i}_identity_tokens)"
        )
    con.execute(
        "CREATE TEMP TABLE _identities AS SELECT row_number() OVER (ORDER BY deposit, person_key) AS rid, * "
        f"FROM ({' UNION ALL '.join(parts)})"
    )
    report = link(con, "_identities", probabilistic=probabilistic, threshold=threshold)
    anchors = con.execute(
        "SELECT cluster, coalesce(min(nir_token), min(site || ':' || person_key)) FROM _identities "
        "JOIN _clusters USING (rid) GROUP BY cluster"
    ).fetchall()
    ids = pa.table(
        {
            "cluster": pa.array([c for c, _ in anchors], pa.int64()),
            "person_id": pa.array([_person_id(key, anchor) for _, anchor in anchors], pa.int64()),
        }
    )
    con.register("_cluster_person", ids)
    con.execute(
        "CREATE TEMP TABLE _person_map AS SELECT i.deposit, i.person_key, c.person_id FROM _identities i "
        "JOIN _clusters USING (rid) JOIN _cluster_person c USING (cluster)"
    )
    con.unregister("_cluster_person")
    return report


def _add_orphans(builder: ReleaseBuilder, table: Table, sites: list[str], key: LinkageKey) -> None:
    """Rows whose person is in no person table (flagged at deposit) keep a person id of their own."""
    con = builder.con
    found = con.execute(
        " UNION ".join(
            f'SELECT DISTINCT {i} AS deposit, person_id FROM "d{i}_{table.name}" WHERE person_id NOT IN '
            f"(SELECT person_key FROM _person_map WHERE deposit = {i})"
            for i in range(1, len(sites) + 1)
        )
    ).fetchall()
    if not found:
        return
    con.register(
        "_orphans",
        pa.table(
            {
                "deposit": pa.array([d for d, _ in found], pa.int64()),
                "person_key": pa.array([k for _, k in found], pa.int64()),
                "person_id": pa.array([_person_id(key, f"{sites[d - 1]}:{k}") for d, k in found], pa.int64()),
            }
        ),
    )
    con.execute("INSERT INTO _person_map SELECT * FROM _orphans")
    con.unregister("_orphans")
    builder.warnings.append(f"{table.name}: {len(found)} person key(s) with no person row (kept, not linked)")


def _person_id(key: LinkageKey, anchor: str) -> int:
    token = key.token("person", anchor)
    assert token is not None
    return int(token[:16], 16) >> 1


def _union(table: Table, deposits: int) -> str:
    """All deposits' rows of ``table``, person ids replaced, record ids made unique across deposits."""
    cols = []
    for c in table.columns:
        if c.name == "person_id":
            cols.append("pm.person_id AS person_id")
        elif c.base_type == "bigint":  # every other bigint of the CDM identifies a row (docs/cdm-schema.md)
            cols.append(f"CAST(t._deposit AS BIGINT) * {2**ID_BITS} + t.{ident(c.name)} AS {ident(c.name)}")
        else:
            cols.append(f"t.{ident(c.name)}")
    names = ", ".join(ident(c) for c in table.column_names)
    rows = " UNION ALL ".join(
        f'SELECT {i} AS _deposit, {names} FROM "d{i}_{table.name}"' for i in range(1, deposits + 1)
    )
    join = (
        " JOIN _person_map pm ON pm.deposit = t._deposit AND pm.person_key = t.person_id"
        if "person_id" in table.column_names
        else ""
    )
    return f"SELECT t._deposit, {', '.join(cols)} FROM ({rows}) t{join}"


def _write_clinical(builder: ReleaseBuilder, table: Table, latest: list[tuple[str, Release]], stored: set[str]) -> None:
    """Write ``table`` from every deposit. Like a deposit, the release stores only the columns that can have a
    value (``cdm.narrow``): those a deposit stores, and the required ones (observation periods and
    ``cdm_source``, which the build makes, whole)."""
    names = ", ".join(ident(c) for c in table.column_names)
    union = _union(table, len(latest))
    if table.name == "person":
        select = (
            f"SELECT {names} FROM ({union}) QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY _deposit) = 1"
        )
        conflicts = builder.con.execute(
            f"SELECT count(*) FROM (SELECT person_id FROM ({union}) GROUP BY 1 "
            "HAVING count(DISTINCT nullif(gender_concept_id, 0)) > 1 OR count(DISTINCT year_of_birth) > 1)"
        ).fetchone()[0]
        if conflicts:
            builder.warnings.append(
                f"person: {conflicts} linked person(s) with different sex or year of birth "
                "across sites (the first site's row is kept)"
            )
    elif table.name == "death":
        select = (
            f"SELECT {names} FROM ({union}) QUALIFY row_number() OVER (PARTITION BY person_id "
            "ORDER BY death_date, _deposit) = 1"
        )
    elif table.name == "observation_period":
        select = _merged_observation_periods(union)
    elif table.name == "cdm_source":
        select = _cdm_source(builder.name)
    else:
        select = f"SELECT {names} FROM ({union})"
    if table.name not in ("observation_period", "cdm_source"):  # (those two the build fills itself: whole)
        kept = ", ".join(ident(c.name) for c in table.columns if c.name in stored or c.required)
        select = f"SELECT {kept} FROM ({select})"
    builder.write_table(table.name, select)
    for index, (site, deposit) in enumerate(latest, start=1):
        if table.name in deposit.manifest.tables:
            builder.lineage.append(_lineage(table.name, deposit, "deposit", f"site {site} (deposit index {index})"))


def _merged_observation_periods(union: str) -> str:
    """One period per stretch of observation of a linked person, across sites (overlapping or adjacent
    periods merge; a gap of more than one day starts a new period)."""
    return f"""
        WITH p AS (
            SELECT person_id, observation_period_start_date AS s, observation_period_end_date AS e,
                   period_type_concept_id AS k FROM ({union})),
        o AS (
            SELECT *, max(e) OVER (PARTITION BY person_id ORDER BY s, e
                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach FROM p),
        g AS (
            SELECT *, sum(CASE WHEN reach IS NULL OR s > reach + 1 THEN 1 ELSE 0 END)
                      OVER (PARTITION BY person_id ORDER BY s, e ROWS UNBOUNDED PRECEDING) AS island FROM o)
        SELECT CAST(row_number() OVER (ORDER BY person_id, min(s)) AS BIGINT) AS observation_period_id,
               person_id, min(s) AS observation_period_start_date, max(e) AS observation_period_end_date,
               min(k) AS period_type_concept_id
        FROM g GROUP BY person_id, island
    """


def _cdm_source(name: str) -> str:
    return (
        f"SELECT {literal('hygie release ' + name)} AS cdm_source_name, {literal(name[:25])} AS "
        "cdm_source_abbreviation, 'hygie' AS cdm_holder, 'Linked, pseudonymised deposits of several sites' AS "
        "source_description, CAST(NULL AS VARCHAR) AS source_documentation_reference, "
        "CAST(NULL AS VARCHAR) AS cdm_etl_reference, current_date AS source_release_date, "
        "current_date AS cdm_release_date, '5.4' AS cdm_version, "
        f"{CDM_V54_CONCEPT_ID} AS cdm_version_concept_id, 'hygie' AS vocabulary_version"
    )


def _write_vocabulary(builder: ReleaseBuilder, vocab: Release | None, settings: Settings) -> None:
    if vocab is not None:
        register_key(builder.con, "vocabulary_key", vocab.data_key(settings))
    for table in cdm_schema("5.4").in_group("vocabulary"):
        if vocab is not None and table.name in vocab.manifest.tables:
            names = ", ".join(ident(c) for c in table.column_names)
            source = parquet_source(str(vocab.path / vocab.manifest.tables[table.name].file), "vocabulary_key")
            builder.write_table(table.name, f"SELECT {names} FROM {source}")
            builder.lineage.append(_lineage(table.name, vocab, "vocabulary", f"vocabulary {vocab.name}"))
        else:
            builder.write_table(table.name, _empty(table))


def _lineage(table: str, source: Release, kind: str, origin: str) -> LineageEntry:
    """Where a table of the release came from: a deposit or the installed vocabulary."""
    entry = source.manifest.tables[table]
    return LineageEntry(
        table=table,
        source=source.name,
        source_sha256=entry.sha256,
        source_format=kind,
        source_cdm_version="5.4",
        rows_read=entry.rows,
        origin=origin,
    )


def _empty(table: Table) -> str:
    return f"SELECT * FROM (SELECT {empty_row(table)}) WHERE false"
