"""Proof of encryption at rest: a marker planted in a deposit is in no file under HYGIE_HOME after ingest,
release build and cohort generation (spill files included); wrong keys and flipped bytes are refused; master
key rotation survives being killed at any moment."""

from __future__ import annotations

import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hygie.cli.main import app
from hygie.config import Settings
from hygie.engine import DuckDBEngine
from hygie.engine.duckdb import connect
from hygie.ingest.cdm_load import load_cdm
from hygie.ingest.sites import SiteRegistry
from hygie.keys import FileMasterKey, KeyError_, Keyring, WrappedKey, pending_key_file
from hygie.keys_rotation import holders, status
from hygie.releases import ReleaseStore, read_rejects
from tests.cdm_files import write_cdm
from tests.unit.test_deposit import IDENTITIES, OBSERVATION_PERIOD, PERSON
from tests.unit.test_vocabulary import CONCEPT, RELATIONSHIP

MARKER = "ZQXMARKER7731"
CONDITIONS = f"""\
condition_occurrence_id,person_id,condition_concept_id,condition_start_date,condition_type_concept_id,condition_source_value
1,101,0,2019-05-04,32817,K92.2
2,102,0,2020-01-02,32817,{MARKER}
3,103,192671,2021-03-05,32817,{MARKER}
4,103,192671,1750-01-01,32817,{MARKER}
"""  # row 2: an unmapped source code; row 4: rejected (implausible date), kept for the provider
OBSERVATIONS = f"""\
observation_id,person_id,observation_concept_id,observation_date,observation_type_concept_id,value_as_string
1,101,4275495,2019-05-04,32817,{MARKER}
2,102,4275495,2019-05-04,32817,{MARKER}
"""
COHORT = Path(__file__).parents[1] / "data" / "cohorts" / "cdmconnector" / "GiBleed_all.json"

runner = CliRunner()


def hygie(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), catch_exceptions=False, env=env)


@pytest.fixture
def hub(tmp_path: Path, home: Path, settings: Settings) -> Settings:
    """A hub after vocabulary install, one OMOP deposit with the marker, a release build and a cohort."""
    athena = write_cdm(tmp_path / "athena", {"CONCEPT.csv": CONCEPT, "CONCEPT_RELATIONSHIP.csv": RELATIONSHIP})
    site = tmp_path / "site"
    write_cdm(
        site / "cdm",
        {
            "person.csv": PERSON,
            "observation_period.csv": OBSERVATION_PERIOD,
            "condition_occurrence.csv": CONDITIONS,
            "observation.csv": OBSERVATIONS,
        },
    )
    (site / "identities.csv").write_text(IDENTITIES)
    for args in (
        ("vocab", "load", str(athena), "--name", "v1"),
        ("site", "add", "site-a", "--format", "omop"),
        ("ingest", "site-a", str(site), "--synthetic"),
        ("release", "build", "r1"),
        ("cohort", "generate", str(COHORT), "--release", "r1"),
    ):
        result = hygie(*args)
        assert result.exit_code == 0, (args, result.output)
    return settings


def _files(home: Path) -> list[Path]:
    return sorted(p for p in home.rglob("*") if p.is_file())


def test_the_marker_is_in_no_file_under_hygie_home(hub):
    home = hub.home
    files = _files(home)
    leaks = [str(p.relative_to(home)) for p in files if MARKER.encode() in p.read_bytes()]
    assert leaks == []
    # Every Parquet file is encrypted (footer magic PARE, not PAR1), rejects and results included.
    parquet = [p for p in files if p.suffix == ".parquet"]
    assert parquet and all(p.read_bytes()[-4:] == b"PARE" for p in parquet)
    names = {str(p.relative_to(home)) for p in parquet}
    deposit = SiteRegistry(hub).deposits(SiteRegistry(hub).get("site-a")).list()[-1]
    assert f"sites/site-a/deposits/{deposit.name}/rejects.parquet" in names
    assert f"sites/site-a/deposits/{deposit.name}/unmapped_condition_occurrence.parquet" in names
    assert "results/r1/cohorts/GiBleed_all.parquet" in names
    # The test is not vacuous: decrypted, the marker is there (deposit values, rejected row, release values).
    with DuckDBEngine(deposit, hub) as engine:
        assert engine.sql(f"SELECT count(*) FROM observation WHERE value_as_string = '{MARKER}'").fetchone()[0] == 2
    assert any(MARKER in json.dumps(r, default=str) for r in read_rejects(deposit, hub))
    with DuckDBEngine(ReleaseStore(hub).get("r1"), hub) as engine:
        found = engine.sql(f"SELECT count(*) FROM condition_occurrence WHERE condition_source_value = '{MARKER}'")
        assert found.fetchone()[0] == 2
    # Nothing but keys, manifests, site records, cohort summaries and the audit log is left in clear.
    clear = {p.relative_to(home).parts[0] for p in files if p.suffix != ".parquet"}
    assert clear <= {"keys", "audit", "releases", "sites", "vocabularies", "results"}


def test_spill_files_of_writers_are_encrypted(settings):
    """A sort larger than memory spills to HYGIE_HOME/tmp; the spill files never hold the marker in clear."""
    small = Settings(home=settings.home, master_key_file=settings.master_key_file, memory_limit="64MB", threads=1)
    con = connect(small, allowed_dirs=[], writer=True)
    seen = {"files": 0, "leaks": 0}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for f in glob.glob(str(small.tmp_dir / "**"), recursive=True):
                try:
                    data = Path(f).read_bytes()
                except OSError:  # a directory, or a file DuckDB just removed
                    continue
                seen["files"] += 1
                seen["leaks"] += MARKER.encode() in data
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        con.execute(
            f"CREATE TEMP TABLE x AS SELECT '{MARKER}' || i::VARCHAR || repeat('y', 40) AS s, random() AS r "
            "FROM range(2000000) t(i)"
        )
        assert con.execute("SELECT count(*) FROM (SELECT * FROM x ORDER BY r)").fetchone()[0] == 2_000_000
    finally:
        done.set()
        watcher.join()
        con.close()
    assert seen["files"] > 0  # it did spill
    assert seen["leaks"] == 0


def test_a_wrong_master_key_is_refused(hub, tmp_path):
    other = tmp_path / "other.key"
    FileMasterKey.create(other)
    wrong = Settings(home=hub.home, master_key_file=other)
    with pytest.raises(KeyError_, match=r"'release:r1' was encrypted under master key \w+, but the configured"):
        DuckDBEngine(ReleaseStore(wrong).get("r1"), wrong)
    result = hygie("cdm", "summary", "--release", "r1", env={"HYGIE_MASTER_KEY_FILE": str(other)})
    assert result.exit_code == 1 and "encrypted under master key" in result.stderr


def test_a_flipped_byte_is_refused(hub):
    release = ReleaseStore(hub).get("r1")
    target = release.path / "observation.parquet"
    target.chmod(0o640)
    data = bytearray(target.read_bytes())
    data[16] ^= 0x01  # in the first column chunk (a narrow file's footer can reach its middle)
    target.write_bytes(bytes(data))
    with DuckDBEngine(release, hub) as engine, pytest.raises(Exception, match="AES tag"):
        engine.sql("SELECT * FROM observation").fetchall()
    verify = hygie("release", "verify", "r1")
    assert verify.exit_code == 1 and "observation.parquet: sha256 differs from the manifest" in verify.stderr
    person = release.path / "person.parquet"  # the encrypted footer, read by every query on the table
    person.chmod(0o640)
    data = bytearray(person.read_bytes())
    data[-30] ^= 0x01
    person.write_bytes(bytes(data))
    summary = hygie("cdm", "summary", "--release", "r1")
    assert summary.exit_code == 1 and "failed authentication (AES-GCM)" in summary.stderr


def test_a_flipped_byte_in_a_wrapped_key_is_refused(hub):
    manifest = ReleaseStore(hub).get("r1").path / "manifest.json"
    data = json.loads(manifest.read_text())
    blob = bytearray(data["encryption"]["data_key"]["blob"].encode())
    blob[20] = ord("A") if blob[20] != ord("A") else ord("B")
    data["encryption"]["data_key"]["blob"] = blob.decode()
    manifest.chmod(0o640)
    manifest.write_text(json.dumps(data))
    with pytest.raises(KeyError_, match=r"releases/r1/manifest\.json: the data key of 'release:r1' does not verify"):
        ReleaseStore(hub).get("r1").data_key(hub)
    result = hygie("cdm", "summary", "--release", "r1")
    assert result.exit_code == 1 and "manifest or key tampered" in result.stderr


# -- master key rotation, killed at random moments ----------------------------------------------------------------

COPIES = 40
KILLS = 10


def _clone_releases(settings: Settings, source: str, n: int) -> None:
    """Copies of a release under other names, each with its data key wrapped for its own name (fast fixtures)."""
    store = ReleaseStore(settings)
    original = store.get(source)
    data_key = original.data_key(settings)
    keyring = Keyring(settings)
    for i in range(n):
        name = f"copy-{i:03d}"
        target = settings.releases_dir / name
        shutil.copytree(original.path, target)
        manifest = json.loads((original.path / "manifest.json").read_text())
        manifest["name"] = name
        manifest["encryption"]["data_key"] = keyring.wrap(data_key, f"release:{name}").to_json()
        (target / "manifest.json").chmod(0o640)
        (target / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _rotate(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "hygie", "keys", "rotate-master"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _await_pending(proc: subprocess.Popen[bytes], settings: Settings) -> None:
    """Return once the rotation has created its new key (it re-wraps data keys from then on), or has exited."""
    while not pending_key_file(settings).exists() and proc.poll() is None:
        time.sleep(0.002)


def _rewrap_seconds(proc: subprocess.Popen[bytes], settings: Settings) -> float:
    """Let a rotation run to the end; return how long it spent after creating its new key."""
    _await_pending(proc, settings)
    started = time.monotonic()
    assert proc.wait() == 0
    return time.monotonic() - started


def _all_readable(settings: Settings) -> set[str]:
    """Unwrap every data key with a fresh keyring; return the master key ids in use."""
    keyring = Keyring(settings)
    found = holders(settings)
    assert len(found) == COPIES + 1
    for h in found:
        assert len(keyring.unwrap(h.wrapped, h.context)) == 32
    return {h.wrapped.key_id for h in found}


@pytest.mark.slow
def test_rotation_killed_at_any_moment_keeps_every_release_readable(tmp_path):
    env = dict(os.environ, HYGIE_HOME=str(tmp_path / "home"))
    env.pop("HYGIE_MASTER_KEY_FILE", None)
    settings = Settings.from_env(env)
    load_cdm(write_cdm(tmp_path / "cdm"), "base", settings, synthetic=True)
    _clone_releases(settings, "base", COPIES)
    before = json.loads((settings.releases_dir / "copy-000" / "manifest.json").read_text())["encryption"]["data_key"]

    rewrap = _rewrap_seconds(_rotate(env), settings)  # the first rotation, timed from its new key's appearance
    assert _all_readable(settings) == {FileMasterKey.load(settings.master_key_file).key_id}

    # Half the kills land at any moment of a run (start-up included), half while data keys are being re-wrapped:
    # the moment is found by watching for the pending key, so a loaded machine does not make every kill miss.
    rng = random.Random(20261128)
    mixed = 0
    for i in range(KILLS):
        proc = _rotate(env)
        if i % 2:
            _await_pending(proc, settings)
            time.sleep(rng.uniform(0, rewrap * 0.6))  # the run's end (audit, exit) is in the rest
        else:
            time.sleep(rng.uniform(0, 2 * rewrap))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        in_use = _all_readable(settings)  # whatever the moment, every data key unwraps
        mixed += len(in_use) == 2
        with DuckDBEngine(ReleaseStore(settings).get(f"copy-{rng.randrange(COPIES):03d}"), settings) as engine:
            assert engine.sql("SELECT count(*) FROM person").fetchone()[0] == 3
        assert _rotate(env).wait() == 0  # a re-run finishes (or performs) the rotation
        assert not pending_key_file(settings).exists()
        assert _all_readable(settings) == {FileMasterKey.load(settings.master_key_file).key_id}
        assert not list(settings.releases_dir.glob("*/.manifest.rewrap.*"))

    print(f"re-wrapping: {rewrap:.2f} s, {mixed} of {KILLS} kills mid-rotation")
    assert mixed > 0  # some kills did land in the middle of a rotation
    # The old master keys are gone: a manifest saved before the rotations cannot be opened any more.
    with pytest.raises(KeyError_, match="encrypted under master key"):
        Keyring(settings).unwrap(WrappedKey.from_json(before), "release:copy-000")
    report = status(settings)
    assert report.counts == {
        ("release", FileMasterKey.load(settings.master_key_file).key_id, report.wrapping_key): COPIES + 1
    }
    for name in ("base", "copy-000", f"copy-{COPIES - 1:03d}"):
        release = ReleaseStore(settings).get(name)
        assert release.verify() == []
        with DuckDBEngine(release, settings) as engine:
            assert engine.sql("SELECT count(*) FROM condition_occurrence").fetchone()[0] == 2
