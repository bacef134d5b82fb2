"""What governance services report: one ``Event`` per action that matters, handed to an ``EventSink``.

Services take a sink (``events=``); ``default_sink(settings)`` is the one place that says where events go by
default. The tamper-evident audit log (``governance/audit.py``) implements ``EventSink``. Events name people and
objects (usernames, project names, counts), never a patient: no NIR, no person id.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from hygie.config import Settings

Outcome = Literal["ok", "denied", "failed"]
Detail = str | int | float | bool | None


@dataclass(frozen=True)
class Event:
    actor: str  # a username, "console:<os user>" for the CLI, or "anonymous"
    action: str  # a permissions.Action value, or an authentication step such as "auth.password"
    object: str  # "user:alice", "project:p1", "optout-register", ...
    outcome: Outcome
    at: dt.datetime
    details: Mapping[str, Detail] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        data["details"] = dict(self.details)
        return data


class EventSink(Protocol):
    def record(self, event: Event) -> None: ...


class MemorySink:
    """Keeps events in a list: for tests, and for callers that forward events themselves."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def record(self, event: Event) -> None:
        self.events.append(event)


class EventFile:
    """Appends each event as one JSON line to a file, flushed to disk before the call returns."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, event: Event) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(event.to_json(), sort_keys=True, default=str) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)


def default_sink(settings: Settings) -> EventSink:
    """Where services send events unless told otherwise: ``HYGIE_HOME/events.jsonl`` until the audit log
    (governance/audit.py) takes over here."""
    return EventFile(settings.home / "events.jsonl")
