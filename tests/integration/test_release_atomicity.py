"""A load killed at any moment never leaves a partial release and never harms an existing one."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hygie.checksums import sha256_file
from hygie.config import Settings
from hygie.engine import DuckDBEngine
from hygie.releases import ReleaseStore
from tests.cdm_files import VALID, write_cdm

KILLS = 16


def _bigger_cdm(folder: Path) -> Path:
    """The tiny CDM with a few thousand condition rows, so that a load lasts long enough to be cut."""
    rows = ["condition_occurrence_id,person_id,condition_concept_id,condition_start_date,condition_type_concept_id"]
    rows += [f"{i},{1 + i % 3},192671,2011-01-{1 + i % 28:02d},32020" for i in range(1, 20_001)]
    return write_cdm(folder, dict(VALID, **{"condition_occurrence.csv": "\n".join(rows) + "\n"}))


def _load(folder: Path, name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "hygie", "cdm", "load", str(folder), "--release", name],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _fingerprint(settings: Settings, name: str) -> dict[str, str]:
    path = settings.releases_dir / name
    return {p.name: sha256_file(p) for p in sorted(path.iterdir())}


@pytest.mark.slow
def test_killed_loads_never_publish_partial_releases(tmp_path):
    folder = _bigger_cdm(tmp_path / "cdm")
    env = dict(os.environ, HYGIE_HOME=str(tmp_path / "home"))
    settings = Settings.from_env(env)
    store = ReleaseStore(settings)

    started = time.monotonic()
    assert _load(folder, "baseline", env).wait() == 0
    duration = time.monotonic() - started
    baseline = _fingerprint(settings, "baseline")

    rng = random.Random(20261128)
    outcomes = {"published": 0, "absent": 0}
    for i in range(KILLS):
        proc = _load(folder, f"attempt-{i}", env)
        time.sleep(rng.uniform(0.05, duration * 1.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        name = f"attempt-{i}"
        if store.exists(name):
            outcomes["published"] += 1
            release = store.get(name)
            assert release.verify() == []
            with DuckDBEngine(release, settings) as engine:
                assert engine.sql("SELECT count(*) FROM condition_occurrence").fetchone()[0] == 20_000
        else:
            outcomes["absent"] += 1
            assert not (settings.releases_dir / name).exists()  # no folder without a manifest
        assert _fingerprint(settings, "baseline") == baseline
        assert json.loads((settings.releases_dir / "baseline" / "manifest.json").read_text())["name"] == "baseline"

    # The next build sweeps what the killed loads left in staging.
    assert _load(folder, "after", env).wait() == 0
    assert [p for p in settings.staging_dir.iterdir()] == []
    assert outcomes["absent"] > 0, outcomes  # the kills did land before publication
