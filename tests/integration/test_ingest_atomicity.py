"""Deposits and releases built from them survive a kill at any moment: never partial, earlier ones intact."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hygie.config import Settings
from hygie.ingest.sites import SiteRegistry
from hygie.releases import ReleaseStore
from tests.cdm_files import write_cdm
from tests.unit.test_deposit import IDENTITIES, OBSERVATION_PERIOD, PERSON

KILLS = 6


def _hygie(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "hygie", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _extract(folder: Path, conditions: int) -> Path:
    rows = ["condition_occurrence_id,person_id,condition_concept_id,condition_start_date,condition_type_concept_id"]
    rows += [f"{i},{101 + i % 3},192671,2018-01-{1 + i % 28:02d},32817" for i in range(1, conditions + 1)]
    write_cdm(
        folder / "cdm",
        {
            "person.csv": PERSON,
            "observation_period.csv": OBSERVATION_PERIOD,
            "condition_occurrence.csv": "\n".join(rows) + "\n",
        },
    )
    (folder / "identities.csv").write_text(IDENTITIES, encoding="utf-8")
    return folder


def _killed_runs(env: dict[str, str], args_for: callable, duration: float, seed: int) -> None:
    rng = random.Random(seed)
    for i in range(KILLS):
        proc = _hygie(env, *args_for(i))
        time.sleep(rng.uniform(0.05, duration * 1.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_killed_ingests_and_builds_leave_nothing_partial(tmp_path):
    env = dict(os.environ, HYGIE_HOME=str(tmp_path / "home"))
    settings = Settings.from_env(env)
    assert _hygie(env, "site", "add", "site-d", "--format", "omop").wait() == 0
    assert _hygie(env, "ingest", "site-d", str(_extract(tmp_path / "first", 100))).wait() == 0
    started = time.monotonic()
    assert _hygie(env, "release", "build", "r0", "--deterministic-only").wait() == 0
    build_duration = time.monotonic() - started
    registry = SiteRegistry(settings)
    site = registry.get("site-d")
    first = registry.deposits(site).list()
    r0 = ReleaseStore(settings).get("r0").manifest

    second = _extract(tmp_path / "second", 20_000)
    started = time.monotonic()
    probe = _hygie(env, "ingest", "site-d", str(_extract(tmp_path / "probe", 20_001)))
    assert probe.wait() == 0
    ingest_duration = time.monotonic() - started

    _killed_runs(env, lambda i: ("ingest", "site-d", str(second)), ingest_duration, seed=1)
    deposits = registry.deposits(site).list()
    assert deposits[0].manifest == first[0].manifest
    assert all(d.verify() == [] for d in deposits)
    assert len(deposits) in (2, 3)  # the probe, and the second extract only if a run finished

    _killed_runs(env, lambda i: ("release", "build", f"r{i + 1}", "--deterministic-only"), build_duration, seed=2)
    store = ReleaseStore(settings)
    assert store.get("r0").manifest == r0
    for name in store.names():
        assert store.get(name).verify() == []
    assert not [p for p in (settings.releases_dir).iterdir() if not (p / "manifest.json").exists()]
