"""Browser sessions, kept in this process's memory.

The cookie holds a random 256-bit id; the store keys sessions by its SHA-256, so a memory dump or a log of the
store's keys does not reveal a usable cookie. A session is created only after every factor was checked (password
and, for the roles that need it, a TOTP code, in one step), so its id is always fresh (no fixation). Sessions end after
``session_idle_seconds`` without a request or ``session_max_seconds`` after login, at logout, or when the
process restarts (everyone logs in again: acceptable for a hub, and nothing to steal on disk).
The account behind a session is re-read on every request, so a suspended account loses its sessions at once.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE = "hygie_session"


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass
class Session:
    username: str
    created: float
    last_seen: float
    data: dict[str, str] = field(default_factory=dict)


class SessionStore:
    def __init__(
        self, *, idle_seconds: int, max_seconds: int, clock: Callable[[], float] = time.monotonic, limit: int = 100_000
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_seconds = max_seconds
        self.clock = clock
        self.limit = limit  # bounded memory: the oldest sessions go first
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, username: str) -> tuple[str, Session]:
        """A new session and the id for its cookie (returned once, never stored in clear)."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(username, now, now)
        with self._lock:
            if len(self._sessions) >= self.limit:
                oldest = min(self._sessions, key=lambda k: self._sessions[k].last_seen)
                del self._sessions[oldest]
            self._sessions[_digest(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        key = _digest(session_id)
        now = self.clock()
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            if now - session.last_seen > self.idle_seconds or now - session.created > self.max_seconds:
                del self._sessions[key]
                return None
            session.last_seen = now
            return session

    def delete(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            return self._sessions.pop(_digest(session_id), None)

    def delete_user(self, username: str) -> int:
        """End every session of one account (suspension, password change); how many ended."""
        with self._lock:
            keys = [k for k, s in self._sessions.items() if s.username == username]
            for k in keys:
                del self._sessions[k]
            return len(keys)

    def __len__(self) -> int:
        return len(self._sessions)
