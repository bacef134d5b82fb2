"""Anomaly rules over the audit log (TRE checklist #34; SNDS 2024 §7.3, monitoring and detection rules).

Each rule is a pure function of a stream of audit entries (oldest first) and the thresholds in ``AlertRules``;
``find_alerts`` runs them all. They read what the log already holds, so an alert can be recomputed by an
auditor from a verified copy of the log (``hygie audit alerts``):

- **bulk downloads**: one account downloading released outputs ``downloads`` times or more within
  ``downloads_window`` (a bulk export attempt, or a stolen session);
- **repeated rejections**: one researcher whose output requests were rejected by a checker or blocked by the
  automated checks ``rejections`` times or more within ``rejections_window`` (someone probing the airlock);
- **denials**: one actor refused ``denials`` times or more within ``denials_window`` (permission probing,
  password guessing: refused sign-ins count under the account they targeted);
- **off hours**: sign-ins, job submissions and downloads by accounts outside working hours (local time of the
  hub, ``timezone``; working days Monday-Friday).

An alert names the rule, the actor, how many events and when; never the content of an output.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from zoneinfo import ZoneInfo


class AuditRecord(Protocol):
    """What the rules read of an audit entry (``audit.Entry`` has it)."""

    @property
    def time(self) -> str: ...  # ISO 8601 UTC, "2026-11-28T09:00:00.000000Z"
    @property
    def actor(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def object(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def details(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class AlertRules:
    downloads: int = 20
    downloads_window: dt.timedelta = dt.timedelta(hours=1)
    rejections: int = 3
    rejections_window: dt.timedelta = dt.timedelta(days=30)
    denials: int = 10
    denials_window: dt.timedelta = dt.timedelta(hours=1)
    working_hours: tuple[int, int] = (7, 20)  # from 07:00 to 20:00, local time
    timezone: str = "Europe/Paris"


@dataclass(frozen=True)
class Alert:
    rule: str
    actor: str
    count: int
    first: dt.datetime
    last: dt.datetime
    summary: str


# Actions of people (never of the hub's own processes) that the off-hours rule watches.
OFF_HOURS_ACTIONS = frozenset({"auth.password", "auth.token", "job.submit", "output.download"})


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _densest(times: Sequence[dt.datetime], window: dt.timedelta) -> tuple[int, int]:
    """The (start, end) indexes of the largest run of ``times`` (sorted) that fits in ``window``."""
    best, start = (0, 0), 0
    for end, t in enumerate(times):
        while t - times[start] > window:
            start += 1
        if end - start > best[1] - best[0]:
            best = (start, end)
    return best


def _burst_alerts(
    rule: str, by_actor: dict[str, list[dt.datetime]], threshold: int, window: dt.timedelta, what: str
) -> list[Alert]:
    alerts = []
    for actor, times in sorted(by_actor.items()):
        times.sort()
        start, end = _densest(times, window)
        count = end - start + 1
        if count >= threshold:
            alerts.append(Alert(rule, actor, count, times[start], times[end], f"{count} {what} within {_span(window)}"))
    return alerts


def _span(window: dt.timedelta) -> str:
    if window % dt.timedelta(days=1) == dt.timedelta(0):
        return f"{window.days} day(s)"
    return f"{int(window.total_seconds() // 60)} minute(s)"


def bulk_downloads(entries: Iterable[AuditRecord], rules: AlertRules) -> list[Alert]:
    times: dict[str, list[dt.datetime]] = defaultdict(list)
    for e in entries:
        if e.action == "output.download":
            times[e.actor].append(parse_time(e.time))
    return _burst_alerts("bulk downloads", times, rules.downloads, rules.downloads_window, "downloads")


def repeated_rejections(entries: Iterable[AuditRecord], rules: AlertRules) -> list[Alert]:
    requester: dict[str, str] = {}
    times: dict[str, list[dt.datetime]] = defaultdict(list)
    for e in entries:
        if e.action == "output.request" and e.outcome == "ok":
            requester[e.object] = e.actor
            if e.details.get("status") == "blocked":
                times[e.actor].append(parse_time(e.time))
        elif e.action == "output.review" and e.outcome == "ok" and e.details.get("decision") == "reject":
            who = requester.get(e.object)  # None for a request made before ``since``: not attributable here
            if who is not None:
                times[who].append(parse_time(e.time))
    return _burst_alerts(
        "repeated rejections", times, rules.rejections, rules.rejections_window, "output requests rejected or blocked"
    )


def denials(entries: Iterable[AuditRecord], rules: AlertRules) -> list[Alert]:
    times: dict[str, list[dt.datetime]] = defaultdict(list)
    for e in entries:
        if e.outcome == "denied":
            # A refused sign-in is made by "anonymous": count it against the account it tried.
            who = e.object.removeprefix("user:") if e.actor == "anonymous" and e.object.startswith("user:") else e.actor
            times[who].append(parse_time(e.time))
    return _burst_alerts("denials", times, rules.denials, rules.denials_window, "refusals")


def off_hours(entries: Iterable[AuditRecord], rules: AlertRules) -> list[Alert]:
    zone = ZoneInfo(rules.timezone)
    opens, closes = rules.working_hours
    times: dict[str, list[dt.datetime]] = defaultdict(list)
    for e in entries:
        if e.action in OFF_HOURS_ACTIONS and e.outcome == "ok":
            at = parse_time(e.time)
            local = at.astimezone(zone)
            if local.weekday() >= 5 or not opens <= local.hour < closes:
                times[e.actor].append(at)
    what = f"sign-in(s), submission(s) or download(s) outside {opens:02d}:00-{closes:02d}:00 Monday-Friday"
    return [
        Alert("off hours", actor, len(ts), min(ts), max(ts), f"{len(ts)} {what} ({rules.timezone})")
        for actor, ts in sorted(times.items())
    ]


RULES = (bulk_downloads, repeated_rejections, denials, off_hours)


def find_alerts(entries: Iterable[AuditRecord], rules: AlertRules | None = None) -> list[Alert]:
    """Every alert the rules raise on ``entries``, by rule then actor."""
    listed = list(entries)
    rules = rules or AlertRules()
    return [alert for rule in RULES for alert in rule(listed, rules)]
