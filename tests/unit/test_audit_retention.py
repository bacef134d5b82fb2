"""Audit retention (TRE checklist #33): entries past the period lose their content, never their place; the log,
and every checkpoint signed before the purge, still verify; entries within the period are never touched."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from typer.testing import CliRunner

import hygie.governance.audit as audit_module
from hygie.cli.main import app
from hygie.config import Settings
from hygie.errors import HygieError
from hygie.governance.audit import AuditLog, canonical
from hygie.governance.audit_retention import MAX_DAYS, MIN_DAYS, purge, retention_days

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
EVERY = 5


@pytest.fixture
def aged_log(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AuditLog:
    """Six entries from 2025 (older than a year), six from this month; checkpoints every five."""
    old = [NOW - dt.timedelta(days=500 - i) for i in range(6)]
    recent = [NOW - dt.timedelta(days=20 - i) for i in range(6)]
    clock = [NOW]  # the time the log reads (entries and checkpoints)
    monkeypatch.setattr(audit_module, "utc_now", lambda: clock[0].strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    log = AuditLog(settings, checkpoint_every=EVERY)
    for i, when in enumerate(old + recent):
        clock[0] = when
        log.record(f"cli:user{i % 3}", "release.build", f"release-{i}", persons=i)
    monkeypatch.undo()
    return log


def test_old_entries_become_tombstones_and_everything_still_verifies(aged_log: AuditLog) -> None:
    signed_before = aged_log.checkpoints()
    assert [c.size for c in signed_before] == [5, 10]
    assert purge(aged_log, "console:root", days=MIN_DAYS, now=NOW - dt.timedelta(days=600)).entry is None

    done = purge(aged_log, "console:root", days=MIN_DAYS, now=NOW)
    assert (done.purged, done.up_to) == (6, 6) and done.entry is not None
    assert done.entry.seq == 13 and done.entry.action == "audit.purge"
    assert done.entry.details == {"up_to": 6, "purged": 6, "cutoff": done.cutoff, "retention_days": MIN_DAYS}

    lines = aged_log.log_file.read_bytes().splitlines()
    for line in lines[:6]:
        assert set(json.loads(line)) == {"seq", "time", "prev", "hash", "purged_by"}
        assert b"cli:user" not in line and b"release-" not in line
    assert [e.seq for e in aged_log.entries()] == list(range(7, 14))  # the content that is left

    verification = aged_log.verify(trusted=signed_before)  # checkpoints kept by an auditor before the purge
    assert verification.ok, verification.findings
    assert aged_log.checkpoints()[-1].size == 13  # a fresh checkpoint covers the purge

    again = purge(aged_log, "console:root", days=MIN_DAYS, now=NOW)
    assert (again.purged, again.up_to, again.entry) == (0, 6, None)
    for i in range(7):  # appending goes on; the next checkpoints are computed from the rewritten file
        aged_log.record("cli:user0", "release.build", f"later-{i}")
    assert aged_log.checkpoints()[-1].size == 18 and aged_log.verify(trusted=signed_before).ok


def test_entries_within_the_period_are_never_purged(aged_log: AuditLog) -> None:
    done = purge(aged_log, "console:root", days=MAX_DAYS, now=NOW)
    assert done.entry is None and len(list(aged_log.entries())) == 12
    with pytest.raises(HygieError, match="outside 365-1095 days"):
        purge(aged_log, "console:root", days=MIN_DAYS - 1, now=NOW)
    with pytest.raises(HygieError, match="outside"):
        retention_days({"HYGIE_AUDIT_RETENTION_DAYS": "4000"})
    with pytest.raises(HygieError, match="number of days"):
        retention_days({"HYGIE_AUDIT_RETENTION_DAYS": "a year"})
    assert retention_days({}) == 365


def _rewrite(log: AuditLog, seq: int, purged_by: int) -> None:
    lines = log.log_file.read_bytes().splitlines(keepends=True)
    data = json.loads(lines[seq - 1])
    lines[seq - 1] = canonical({k: data[k] for k in ("seq", "time", "prev", "hash")} | {"purged_by": purged_by}) + b"\n"
    log.log_file.write_bytes(b"".join(lines))


def test_content_removed_without_a_purge_or_out_of_order_is_caught(aged_log: AuditLog) -> None:
    _rewrite(aged_log, 1, purged_by=99)  # a tombstone that no purge entry covers
    result = aged_log.verify()
    assert not result.ok and result.first is not None
    assert (result.first.seq, result.first.kind) == (1, "modified") and "no audit.purge entry" in str(result.first)


def test_a_tombstone_after_kept_entries_is_caught(aged_log: AuditLog) -> None:
    purge(aged_log, "console:root", days=MIN_DAYS, now=NOW)
    _rewrite(aged_log, 9, purged_by=13)  # someone hides entry 9 behind the real purge entry
    result = aged_log.verify()
    assert result.first is not None and (result.first.seq, result.first.kind) == (9, "modified")


def test_cli_purge(home, settings) -> None:
    runner = CliRunner()
    AuditLog(settings).record("cli:alice", "release.build", "release-1")
    refused = runner.invoke(app, ["audit", "purge", "--retention-days", "30"])
    assert refused.exit_code != 0 and "outside 365-1095 days" in refused.output
    nothing = runner.invoke(app, ["audit", "purge"])
    assert nothing.exit_code == 0 and "nothing older than 365 days" in nothing.output
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
