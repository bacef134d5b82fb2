"""Login rate limiting, in this process's memory.

Two sliding windows: every login attempt counts against the client's IP address (stops one machine from
guessing many accounts), and every *failed* attempt counts against the account name (stops many machines from
guessing one account's password or TOTP code). When either is full, the attempt is refused with 429 before any
password is checked, and the answer says when to retry. Counters are per process and vanish at restart: enough
for one ``hygie serve``; behind several processes, put the limit in the reverse proxy as well.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class SlidingWindow:
    """At most ``limit`` events per key within the last ``seconds``."""

    def __init__(self, limit: int, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.seconds = seconds
        self.clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _trim(self, key: str, now: float) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            return deque()
        while events and now - events[0] >= self.seconds:
            events.popleft()
        if not events:
            del self._events[key]
        return events

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may try again; 0 when it may try now."""
        now = self.clock()
        with self._lock:
            events = self._trim(key, now)
            if len(events) < self.limit:
                return 0
            return max(1, int(self.seconds - (now - events[0])) + 1)

    def hit(self, key: str) -> None:
        now = self.clock()
        with self._lock:
            self._trim(key, now)
            self._events.setdefault(key, deque()).append(now)

    def clear(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)


class LoginLimiter:
    def __init__(
        self, *, per_ip: int, per_account: int, seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ips = SlidingWindow(per_ip, seconds, clock)
        self.accounts = SlidingWindow(per_account, seconds, clock)

    def retry_after(self, ip: str, account: str) -> int:
        return max(self.ips.retry_after(ip), self.accounts.retry_after(account.lower()))

    def attempt(self, ip: str) -> None:
        self.ips.hit(ip)

    def failed(self, account: str) -> None:
        self.accounts.hit(account.lower())

    def succeeded(self, account: str) -> None:
        self.accounts.clear(account.lower())
