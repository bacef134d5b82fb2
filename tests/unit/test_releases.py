"""Release files are encrypted, checkable, read-only, and unreadable without the right master key."""

from __future__ import annotations

import pytest

from hygie.config import Settings
from hygie.engine import DuckDBEngine
from hygie.errors import HygieError
from hygie.ingest.cdm_load import load_cdm
from hygie.keys import KeyError_
from hygie.releases import ReleaseStore
from tests.cdm_files import write_cdm


@pytest.fixture
def release(tmp_path, settings):
    return load_cdm(write_cdm(tmp_path / "cdm"), "tiny", settings, synthetic=True)


def test_files_hold_no_plaintext(release):
    for entry in release.manifest.tables.values():
        data = (release.path / entry.file).read_bytes()
        assert b"Gastrointestinal" not in data and b"person_id" not in data, entry.file
    assert "blob" in release.manifest.encryption["data_key"]


def test_published_files_are_read_only(release):
    assert all(not (p.stat().st_mode & 0o222) for p in release.path.iterdir())


def test_another_master_key_cannot_open_it(release, settings, tmp_path):
    other = Settings(home=settings.home, master_key_file=tmp_path / "other.key")
    with pytest.raises(KeyError_, match="encrypted under master key"):
        DuckDBEngine(release, other)


def test_tampering_is_detected(release, settings):
    target = release.path / "person.parquet"
    target.chmod(0o640)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    assert release.verify() == ["person.parquet: sha256 differs from the manifest"]
    with DuckDBEngine(release, settings) as engine, pytest.raises(Exception, match=r"(?i)decrypt|tag|corrupt|invalid"):
        engine.sql("SELECT * FROM person").fetchall()


def test_engine_cannot_reach_the_network_or_change_its_settings(release, settings):
    with DuckDBEngine(release, settings) as engine:
        with pytest.raises(Exception, match=r"disabled|requires the extension httpfs"):
            engine.sql("SELECT * FROM read_parquet('https://example.org/x.parquet')").fetchall()
        with pytest.raises(Exception, match="configuration"):
            engine.sql("SET disabled_filesystems = ''")
        for statement in ("INSTALL spatial", "SELECT * FROM read_csv('/etc/passwd')", "COPY person TO '/tmp/x.csv'"):
            with pytest.raises(Exception, match=r"disabled by configuration|Cannot access"):
                engine.sql(statement)


# httpfs (which brings OpenSSL) adds its settings; listing extensions would touch the disabled file system.
HTTPFS_LOADED = "SELECT count(*) FROM duckdb_settings() WHERE name = 's3_region'"


def test_large_releases_are_read_with_openssl_and_still_cannot_reach_the_network(release, settings, monkeypatch):
    import hygie.engine.duckdb as duck

    with DuckDBEngine(release, settings) as engine:
        small = engine.sql("SELECT * FROM person ORDER BY person_id").fetchall()
        assert not engine.sql(HTTPFS_LOADED).fetchone()[0]
    monkeypatch.setattr(duck, "OPENSSL_ABOVE_BYTES", 0)  # this tiny release now counts as large
    with DuckDBEngine(release, settings) as engine:
        assert engine.sql(HTTPFS_LOADED).fetchone()[0]
        assert engine.sql("SELECT * FROM person ORDER BY person_id").fetchall() == small
        with pytest.raises(Exception, match=r"disabled"):
            engine.sql("SELECT * FROM read_parquet('https://example.org/x.parquet')").fetchall()


def test_ibis_sees_every_cdm_table(release, settings):
    with DuckDBEngine(release, settings) as engine:
        person = engine.table("person")
        assert engine.ibis.execute(person.count()) == 3
        assert len(engine.tables()) == 39


def test_delete_removes_release_and_results(release, settings):
    store = ReleaseStore(settings)
    (settings.results_dir / "tiny").mkdir(parents=True)
    store.delete("tiny")
    assert not store.exists("tiny")
    assert not (settings.results_dir / "tiny").exists()
    with pytest.raises(HygieError, match="no release named"):
        store.get("tiny")
