"""Deposits store only the CDM columns their extract supplied, releases those their deposits store
(``cdm.narrow``); every reader sees all of them, and deposits written before (every column stored, or narrow
with a manifest that does not list its columns) still read and build the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from hygie.cdm.schema import cdm_schema
from hygie.config import Settings
from hygie.engine.duckdb import DuckDBEngine, connect, parquet_source, register_key
from hygie.ingest import deposit as deposit_module
from hygie.ingest.build import build_release
from hygie.ingest.deposit import ingest
from hygie.ingest.sites import SiteRegistry
from hygie.ingest.vocabulary import install_vocabulary
from hygie.releases import Release
from tests.cdm_files import write_cdm
from tests.unit.test_deposit import CONDITIONS, IDENTITIES, OBSERVATION_PERIOD, PERSON
from tests.unit.test_release_build import SITE_A_CONDITIONS, SITE_A_IDENTITIES, SITE_A_PERIODS, SITE_A_PERSON
from tests.unit.test_vocabulary import CONCEPT, RELATIONSHIP


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same linkage and pseudonym keys for every hub of a test, so that their releases can be compared."""
    monkeypatch.setenv("HYGIE_LINKAGE_KEY_FILE", str(tmp_path / "keys" / "linkage.key"))
    monkeypatch.setenv("HYGIE_PSEUDONYM_KEY_FILE", str(tmp_path / "keys" / "pseudonym.key"))


def _hub(root: Path, *, wide_sites: tuple[str, ...] = (), monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A hub with the deposits of sites a and d; ``wide_sites`` are deposited as before the change: every
    CDM column stored (the code path of that layout, kept behind ``narrow_tables``)."""
    settings = Settings.from_env({"HYGIE_HOME": str(root / "home")})
    install_vocabulary(
        write_cdm(root / "athena", {"CONCEPT.csv": CONCEPT, "CONCEPT_RELATIONSHIP.csv": RELATIONSHIP}), "v1", settings
    )
    registry = SiteRegistry(settings)
    # Site a's header names a column it leaves empty in every row: not stored either.
    conditions_a = "".join(
        line + ("," if i else ",stop_reason") + "\n" for i, line in enumerate(SITE_A_CONDITIONS.splitlines())
    )
    extracts = {
        "site-a": ({"person.csv": SITE_A_PERSON, "observation_period.csv": SITE_A_PERIODS,
                    "condition_occurrence.csv": conditions_a}, SITE_A_IDENTITIES),
        "site-d": ({"person.csv": PERSON, "observation_period.csv": OBSERVATION_PERIOD,
                    "condition_occurrence.csv": CONDITIONS}, IDENTITIES),
    }  # fmt: skip
    for name, (files, identities) in extracts.items():
        site = registry.add(name, "omop")
        folder = root / name
        write_cdm(folder / "cdm", files)
        (folder / "identities.csv").write_text(identities, encoding="utf-8")
        with monkeypatch.context() as m:
            m.setattr(deposit_module._DepositHooks, "narrow_tables", name not in wide_sites)
            ingest(site, folder, settings, synthetic=True)
    return settings


def _stored_columns(deposit: Release, settings: Settings, table: str) -> list[str]:
    con = connect(settings, allowed_dirs=[deposit.path])
    register_key(con, "k", deposit.data_key(settings))
    source = parquet_source(str(deposit.path / deposit.manifest.tables[table].file), "k")
    columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
    con.close()
    return columns


def _contents(release: Release, settings: Settings) -> dict[str, list[tuple]]:
    with DuckDBEngine(release, settings) as engine:
        return {
            t: sorted(engine.sql(f'SELECT * FROM "{t}"').fetchall(), key=repr)
            for t in engine.tables()
            if t != "cdm_source"
        }


def test_a_deposit_stores_the_columns_supplied_and_reads_as_the_whole_cdm(tmp_path, keys, monkeypatch):
    settings = _hub(tmp_path, monkeypatch=monkeypatch)
    deposit = SiteRegistry(settings).deposits(SiteRegistry(settings).get("site-d")).list()[-1]
    stored = _stored_columns(deposit, settings, "condition_occurrence")
    # The file's columns, plus the source concept that mapping its codes filled in; not the CDM's other ones.
    assert "condition_source_concept_id" in stored and "stop_reason" not in stored
    assert len(stored) < len(cdm_schema("5.4")["condition_occurrence"].columns)
    site_a = SiteRegistry(settings).deposits(SiteRegistry(settings).get("site-a")).list()[-1]
    assert "stop_reason" not in _stored_columns(site_a, settings, "condition_occurrence")  # named, never filled
    with DuckDBEngine(deposit, settings) as engine:
        described = engine.sql("DESCRIBE condition_occurrence").fetchall()
        assert [r[0] for r in described] == cdm_schema("5.4")["condition_occurrence"].column_names
        assert dict((r[0], r[1]) for r in described)["stop_reason"] == "VARCHAR"
        assert engine.sql("SELECT count(*), count(stop_reason) FROM condition_occurrence").fetchone() == (4, 0)


def test_deposits_written_with_every_column_still_build_the_same_release(tmp_path, keys, monkeypatch):
    old = _hub(tmp_path / "old", wide_sites=("site-a",), monkeypatch=monkeypatch)
    new = _hub(tmp_path / "new", monkeypatch=monkeypatch)
    registry = SiteRegistry(old)
    wide = registry.deposits(registry.get("site-a")).list()[-1]
    assert _stored_columns(wide, old, "condition_occurrence") == cdm_schema("5.4")["condition_occurrence"].column_names
    with DuckDBEngine(wide, old) as engine:  # the earlier layout reads as it always did
        assert engine.sql("SELECT count(*) FROM condition_occurrence").fetchone() == (1,)
    narrow = SiteRegistry(new).deposits(SiteRegistry(new).get("site-a")).list()[-1]
    assert wide.manifest.quality == narrow.manifest.quality  # the deposit's checks see the same columns
    assert _contents(wide, old) == _contents(narrow, new)
    releases = build_release("mixed", old), build_release("narrow", new)
    assert releases[0].manifest.linkage == releases[1].manifest.linkage
    assert releases[0].manifest.quality == releases[1].manifest.quality
    assert _contents(releases[0], old) == _contents(releases[1], new)


def test_a_release_stores_the_columns_of_its_deposits_and_reads_as_the_whole_cdm(tmp_path, keys, monkeypatch):
    from hygie.engine.spark import release_tables

    settings = _hub(tmp_path, monkeypatch=monkeypatch)
    release = build_release("r", settings)
    entry = release.manifest.tables["condition_occurrence"]
    stored = _stored_columns(release, settings, "condition_occurrence")
    assert entry.columns == stored and "stop_reason" not in stored  # no deposit stores it
    assert "condition_source_value" in stored and "condition_source_concept_id" in stored
    assert release.manifest.tables["cdm_source"].columns is None  # made by the build: whole
    every = cdm_schema("5.4")["condition_occurrence"].column_names
    with DuckDBEngine(release, settings) as engine:
        assert [r[0] for r in engine.sql("DESCRIBE condition_occurrence").fetchall()] == every
        assert engine.sql("SELECT count(*), count(stop_reason) FROM condition_occurrence").fetchone() == (5, 0)
    spark_side = release_tables(release, settings)["condition_occurrence"]  # what SparkEngine loads
    assert spark_side.column_names == every and spark_side.num_rows == 5


def test_a_narrow_deposit_whose_manifest_does_not_list_its_columns_reads_as_the_whole_cdm(tmp_path, keys, monkeypatch):
    """Deposits written by the first narrow version list no columns in their manifest: their files say."""
    import json

    from hygie.releases.manifest import MANIFEST_FILE

    settings = _hub(tmp_path, monkeypatch=monkeypatch)
    deposit = SiteRegistry(settings).deposits(SiteRegistry(settings).get("site-d")).list()[-1]
    path = deposit.path / MANIFEST_FILE
    data = json.loads(path.read_text())
    for table in data["tables"].values():
        table.pop("columns", None)
    path.chmod(0o640)
    path.write_text(json.dumps(data))
    older = SiteRegistry(settings).deposits(SiteRegistry(settings).get("site-d")).list()[-1]
    assert all(e.columns is None for e in older.manifest.tables.values())
    assert _contents(older, settings) == _contents(deposit, settings)
