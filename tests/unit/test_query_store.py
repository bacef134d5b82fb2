"""The release query store (decision 0021): an encrypted DuckDB copy of a release that DuckDBEngine reads
instead of Parquet. Built atomically, bound to its release, holds no plaintext, refuses a wrong key, is
rebuilt or bypassed when missing, partial or damaged, and gives the same rows as the Parquet files."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from hygie import backup
from hygie.cli.main import app
from hygie.config import Settings
from hygie.engine import DuckDBEngine, query_store
from hygie.engine.duckdb import connect
from hygie.errors import HygieError
from hygie.ingest.cdm_load import load_cdm
from hygie.ingest.identifier_scan import scan
from hygie.releases import Release, ReleaseStore
from hygie.sql import literal
from tests.cdm_files import write_cdm
from tests.unit.test_deposit import NIR, site, site_folder  # noqa: F401 - fixtures
from tests.unit.test_identifier_scan import LEAKY_OBSERVATION

MARKER = "ZQXSTOREMARKER5521"
CONDITIONS = f"""\
condition_occurrence_id,person_id,condition_concept_id,condition_start_date,condition_type_concept_id,condition_source_value
1,1,192671,2010-03-04,32020,{MARKER}
2,2,192671,2012-07-08,32020,K92.2
3,3,192671,2015-01-02,32020,{MARKER}
"""


@pytest.fixture
def always(settings: Settings) -> Settings:
    return dataclasses.replace(settings, query_store="always")


def _load(tmp_path: Path, settings: Settings, name: str) -> Release:
    folder = write_cdm(tmp_path / name, condition_occurrence__csv=CONDITIONS)
    return load_cdm(folder, name, settings, synthetic=True)


@pytest.fixture
def release(tmp_path: Path, settings: Settings) -> Release:
    return _load(tmp_path, settings, "r1")


def _table_rows(engine: DuckDBEngine) -> dict[str, list[tuple]]:
    return {
        name: engine.sql(f'SELECT * FROM "{name}" ORDER BY ALL').fetchall() for name in engine.release.manifest.tables
    }


def test_the_engine_builds_the_store_and_reads_it(release: Release, always: Settings) -> None:
    path = query_store.store_path(release, always)
    assert not path.exists()
    with DuckDBEngine(release, always) as engine:
        assert engine.storage == "query store"
        views = dict(engine.sql("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall())
        assert f"{query_store.ALIAS}.condition_occurrence" in views["condition_occurrence"]
        assert "read_parquet" not in " ".join(views.values())
        from_store = _table_rows(engine)
    assert path.is_file() and path.parent == always.query_stores_dir / "r1"
    assert not path.stat().st_mode & 0o222  # published read-only, like release files
    with DuckDBEngine(release, dataclasses.replace(always, query_store="off")) as engine:
        assert engine.storage == "parquet"
        assert "read_parquet" in engine.sql("SELECT sql FROM duckdb_views() WHERE view_name = 'person'").fetchone()[0]
        from_parquet = _table_rows(engine)
    assert from_store == from_parquet
    assert sum(len(rows) for rows in from_store.values()) > 0


def test_auto_mode_keeps_small_releases_on_parquet(release: Release, settings: Settings) -> None:
    assert settings.query_store == "auto"
    with DuckDBEngine(release, settings) as engine:
        assert engine.storage == "parquet"
    assert not settings.query_stores_dir.exists()


def test_an_unknown_mode_is_an_error(release: Release, settings: Settings) -> None:
    with pytest.raises(HygieError, match="HYGIE_QUERY_STORE='fast'"):
        DuckDBEngine(release, dataclasses.replace(settings, query_store="fast"))


def test_the_store_holds_no_plaintext(release: Release, always: Settings) -> None:
    with DuckDBEngine(release, always) as engine:
        assert engine.storage == "query store"
        # Not vacuous: decrypted, the marker is in the store's rows.
        found = engine.sql(f"SELECT count(*) FROM condition_occurrence WHERE condition_source_value = '{MARKER}'")
        assert found.fetchone()[0] == 2
    files = [p for p in always.query_stores_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".duckdb" for p in files)
    for p in files:
        data = p.read_bytes()
        assert MARKER.encode() not in data and b"Gastrointestinal" not in data and b"person_id" not in data, p


def test_a_wrong_or_missing_key_is_refused(release: Release, always: Settings) -> None:
    path = query_store.build(release, always).path
    con = connect(always, allowed_dirs=[path.parent])
    try:
        with pytest.raises(duckdb.Error, match=r"(?i)wrong encryption key"):
            con.execute(f"ATTACH {literal(str(path))} AS s (READ_ONLY, ENCRYPTION_KEY 'not-the-key')")
        with pytest.raises(duckdb.Error, match=r"(?i)encrypted database .* without a key"):
            con.execute(f"ATTACH {literal(str(path))} AS s (READ_ONLY)")
    finally:
        con.close()


def test_a_store_of_another_release_is_refused_and_replaced(tmp_path: Path, release: Release, always: Settings) -> None:
    """Same content, another data key: the copied store does not open, is removed, and the release is read from
    Parquet; the next engine builds the right store."""
    other = _load(tmp_path, always, "r2")
    foreign = query_store.build(other, always).path
    target = query_store.store_path(release, always)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(foreign, target)
    with DuckDBEngine(release, always) as engine:
        assert engine.storage == "parquet"
    assert not target.exists()
    with DuckDBEngine(release, always) as engine:
        assert engine.storage == "query store"


def test_a_store_that_does_not_match_the_manifest_is_not_used(release: Release, always: Settings) -> None:
    """A store that opens with the right key but lacks rows the manifest counts is removed, never read."""
    path = query_store.build(release, always).path
    path.chmod(0o640)
    con = connect(always, allowed_dirs=[path.parent], writer=True)
    try:
        con.execute(f"ATTACH {literal(str(path))} AS s (ENCRYPTION_KEY {literal(query_store._key(release, always))})")
        con.execute("DELETE FROM s.condition_occurrence WHERE person_id = 3")
        con.execute("DETACH s")
    finally:
        con.close()
    with DuckDBEngine(release, always) as engine:
        assert engine.storage == "parquet"
        assert engine.sql("SELECT count(*) FROM condition_occurrence").fetchone()[0] == 3
    assert not path.exists()


def test_a_damaged_store_falls_back_to_parquet(release: Release, always: Settings) -> None:
    path = query_store.build(release, always).path
    path.chmod(0o640)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # truncated
    with DuckDBEngine(release, always) as engine:
        assert engine.storage == "parquet"
        assert engine.sql("SELECT count(*) FROM person").fetchone()[0] == 3
    assert not path.exists()


def test_a_partial_temporary_file_is_ignored_and_swept(release: Release, always: Settings) -> None:
    """What a builder killed before its rename leaves: a temporary file. No reader opens it; the next build
    removes it and publishes a whole store."""
    built = query_store.build(release, always).path
    temp = built.with_name(f"{built.name}.99999.deadbeef.tmp")
    temp.write_bytes(built.read_bytes()[:4096])
    built.unlink()
    with DuckDBEngine(release, dataclasses.replace(always, query_store="off")) as engine:
        assert engine.storage == "parquet"
    assert temp.exists()  # "off" neither reads nor builds
    with DuckDBEngine(release, always) as engine:
        assert engine.storage == "query store"
        assert engine.sql("SELECT count(*) FROM condition_occurrence").fetchone()[0] == 3
    assert not temp.exists()
    assert sorted(p.name for p in built.parent.iterdir() if not p.name.startswith(".")) == [built.name]


def test_a_reader_does_not_wait_for_a_build_under_way(release: Release, always: Settings) -> None:
    with query_store._build_lock(query_store.folder(release, always), wait=True), DuckDBEngine(release, always) as e:
        assert e.storage == "parquet"
    assert not query_store.store_path(release, always).exists()


def test_the_store_survives_a_master_key_rotation(release: Release, always: Settings) -> None:
    """The store is bound to the data key and the tables, not to how the data key is wrapped."""
    from hygie.keys_rotation import rotate_master

    path = query_store.build(release, always).path
    rotate_master(always)
    rotated = ReleaseStore(always).get("r1")
    assert rotated.manifest.encryption != release.manifest.encryption
    assert query_store.store_path(rotated, always) == path
    with DuckDBEngine(rotated, always) as engine:
        assert engine.storage == "query store"


def test_deleting_the_release_deletes_its_store_and_backups_leave_it_out(release: Release, always: Settings) -> None:
    path = query_store.build(release, always).path
    assert not any("query_stores" in p.parts for p in backup._home_files(always.home))
    ReleaseStore(always).delete("r1")
    assert not path.exists() and not path.parent.exists()


def test_cli_prepare_builds_the_store(release: Release, settings: Settings) -> None:
    result = CliRunner().invoke(app, ["release", "prepare", "r1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "query store of release r1" in result.output
    assert query_store.store_path(release, settings).is_file()
    missing = CliRunner().invoke(app, ["release", "prepare", "nope"], catch_exceptions=False)
    assert missing.exit_code != 0 and "no release named 'nope'" in missing.output


def test_what_a_build_killed_midway_leaves_holds_no_plaintext(release: Release, always: Settings) -> None:
    """A builder killed before its checkpoint leaves a temporary database and its WAL: both are encrypted."""
    target = query_store.store_path(release, always)
    target.parent.mkdir(parents=True)
    temp = target.with_name(f"{target.name}.1.cafe.tmp")
    con = connect(always, allowed_dirs=[target.parent], writer=True)
    try:
        con.execute(f"ATTACH {literal(str(temp))} AS s (ENCRYPTION_KEY {literal(query_store._key(release, always))})")
        con.execute("CREATE TABLE s.t (v VARCHAR)")
        con.execute(f"INSERT INTO s.t SELECT '{MARKER}' || i FROM range(500) r(i)")  # in the WAL, not checkpointed
        leftovers = sorted(p.name for p in target.parent.iterdir() if not p.name.startswith("."))
        assert leftovers == [temp.name, f"{temp.name}.wal"]
        assert (target.parent / f"{temp.name}.wal").stat().st_size > 1000  # the rows are there, encrypted
        assert all(MARKER.encode() not in (target.parent / name).read_bytes() for name in leftovers)
    finally:
        con.close()


def test_the_identifier_scan_reads_the_store_and_finds_nothing_in_clear(
    site,  # noqa: F811
    site_folder,  # noqa: F811
    always: Settings,
    tmp_path: Path,
) -> None:
    """A NIR left in a release value is found by the scan in the decrypted table, never in the store's bytes."""
    leaky = write_cdm(tmp_path / "leaky", observation__csv=LEAKY_OBSERVATION.format(nir=NIR))
    release = load_cdm(leaky, "leaky", always, synthetic=True)
    with DuckDBEngine(release, always) as engine:
        assert engine.storage == "query store"
        assert engine.sql(f"SELECT count(*) FROM observation WHERE value_as_string = '{NIR}'").fetchone()[0] == 1
    findings, searched = scan(always, [site_folder / "identities.csv"])
    assert ("observation.value_as_string", "nir", 1) in {(f.where, f.kind, f.count) for f in findings}
    assert not any(f.file.startswith("query_stores") for f in findings)
    assert searched > 0


def test_a_build_that_cannot_be_done_leaves_the_release_readable(release: Release, always: Settings) -> None:
    """Here the store's folder cannot be made (a file is in the way): the engine reads Parquet instead."""
    always.query_stores_dir.mkdir(parents=True)
    query_store.folder(release, always).write_text("not a folder")
    with DuckDBEngine(release, always) as engine:
        assert engine.storage == "parquet"
        assert engine.sql("SELECT count(*) FROM condition_occurrence").fetchone()[0] == 3
