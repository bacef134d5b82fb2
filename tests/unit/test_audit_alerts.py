"""Anomaly rules over the audit log (TRE checklist #34): each rule fires on a synthetic stream made to trip it and
stays quiet on the stream just below its threshold."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from hygie.cli.main import app
from hygie.governance.alerts import (
    AlertRules,
    _densest,
    bulk_downloads,
    denials,
    find_alerts,
    off_hours,
    repeated_rejections,
)
from hygie.governance.audit import AuditLog

# Tuesday 2026-11-24, 10:00 in Paris (UTC+1).
WORKDAY = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class E:
    at: dt.datetime
    actor: str
    action: str
    object: str = "x"
    outcome: str = "ok"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def time(self) -> str:
        return self.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def downloads(n: int, every: dt.timedelta, actor: str = "rita") -> list[E]:
    return [E(WORKDAY + i * every, actor, "output.download", f"output:{i}") for i in range(n)]


def test_bulk_downloads_fire_at_the_threshold_within_the_window() -> None:
    rules = AlertRules()
    assert bulk_downloads(downloads(19, MINUTE), rules) == []
    [alert] = bulk_downloads(downloads(20, MINUTE) + downloads(3, MINUTE, "sam"), rules)
    assert (alert.rule, alert.actor, alert.count) == ("bulk downloads", "rita", 20)
    assert (alert.first, alert.last) == (WORKDAY, WORKDAY + 19 * MINUTE)
    assert bulk_downloads(downloads(40, 4 * MINUTE), rules) == []  # 40 in 156 minutes: at most 16 per hour


def test_rejected_and_blocked_requests_count_against_the_requester() -> None:
    day = dt.timedelta(days=1)
    stream = [
        E(WORKDAY, "rita", "output.request", "output:1", details={"status": "pending"}),
        E(WORKDAY + day, "chloe", "output.review", "output:1", details={"decision": "reject"}),
        E(WORKDAY + 2 * day, "rita", "output.request", "output:2", details={"status": "blocked"}),
        E(WORKDAY + 3 * day, "rita", "output.request", "output:3", details={"status": "pending"}),
        E(WORKDAY + 4 * day, "carl", "output.review", "output:3", details={"decision": "approve"}),
        E(WORKDAY + 5 * day, "sam", "output.request", "output:4", details={"status": "pending"}),
        E(WORKDAY + 6 * day, "chloe", "output.review", "output:4", details={"decision": "reject"}),
    ]
    assert repeated_rejections(stream, AlertRules()) == []  # rita: 2 (one rejected, one blocked)
    third = [
        E(WORKDAY + 7 * day, "rita", "output.request", "output:5", details={"status": "pending"}),
        E(WORKDAY + 8 * day, "carl", "output.review", "output:5", details={"decision": "reject"}),
    ]
    [alert] = repeated_rejections(stream + third, AlertRules())
    assert (alert.actor, alert.count, alert.last) == ("rita", 3, WORKDAY + 8 * day)
    assert repeated_rejections(stream + third, AlertRules(rejections_window=dt.timedelta(days=5))) == []


def test_refusals_count_against_the_account_they_targeted() -> None:
    guesses = [E(WORKDAY + i * MINUTE, "anonymous", "auth.password", "user:olga", "denied") for i in range(10)]
    probes = [E(WORKDAY + i * MINUTE, "rita", "job.view", f"job:{i}", "denied") for i in range(9)]
    alerts = denials(guesses + probes, AlertRules())
    assert [(a.actor, a.count) for a in alerts] == [("olga", 10)]


def test_off_hours_in_the_hubs_local_time() -> None:
    paris_evening = dt.datetime(2026, 11, 24, 19, 30, tzinfo=dt.UTC)  # 20:30 in Paris: closed
    paris_morning = dt.datetime(2026, 11, 24, 6, 0, tzinfo=dt.UTC)  # 07:00 in Paris: open
    saturday = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.UTC)
    stream = [
        E(paris_morning, "rita", "auth.password", "user:rita"),
        E(paris_evening, "rita", "output.download", "output:1"),
        E(saturday, "sam", "job.submit", "project:p"),
        E(saturday, "sam", "auth.password", "user:sam", "denied"),  # refused: the denials rule's business
        E(paris_evening, "airlock", "output.release", "output:1"),  # the hub's own process
    ]
    alerts = off_hours(stream, AlertRules())
    assert [(a.actor, a.count) for a in alerts] == [("rita", 1), ("sam", 1)]
    assert off_hours(stream, AlertRules(timezone="UTC", working_hours=(6, 20)))[0].actor == "sam"
    assert find_alerts(stream[:1]) == []


@given(st.lists(st.integers(min_value=0, max_value=500), max_size=40), st.integers(min_value=0, max_value=60))
def test_densest_window_is_the_largest_run_that_fits(offsets: list[int], width: int) -> None:
    times = sorted(WORKDAY + o * MINUTE for o in offsets)
    window = width * MINUTE
    if not times:
        return
    start, end = _densest(times, window)
    assert times[end] - times[start] <= window
    best = max(sum(1 for u in times if t <= u <= t + window) for t in times)
    assert end - start + 1 == best


def test_cli_runs_the_rules_on_the_log_and_exits_1_on_an_alert(home, settings) -> None:
    runner = CliRunner()
    quiet = runner.invoke(app, ["audit", "alerts"])
    assert quiet.exit_code == 0 and "no alert" in quiet.output
    log = AuditLog(settings)
    for _ in range(10):
        log.record("anonymous", "auth.password", "user:olga", "denied")
    raised = runner.invoke(app, ["audit", "alerts", "--json"])
    assert raised.exit_code == 1, raised.output
    [alert] = [json.loads(line) for line in raised.output.splitlines()]
    assert (alert["rule"], alert["actor"], alert["count"]) == ("denials", "olga", 10)
    bad = runner.invoke(app, ["audit", "alerts", "--timezone", "Mars/Olympus"])
    assert bad.exit_code != 0 and "unknown time zone" in bad.output
    assert [e.details["alerts"] for e in log.entries(action="audit.alerts") if e.outcome != "refused"] == [0, 1]
