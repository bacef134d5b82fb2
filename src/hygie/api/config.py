"""How the web application is configured: cookie security, session lifetimes and login rate limits.

The defaults are the safe ones; ``hygie serve`` derives ``secure_cookies`` and ``tls`` from how it listens.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


@dataclass(frozen=True)
class WebConfig:
    # Cookies carry the Secure flag unless the server only listens on loopback over plain HTTP (a browser would
    # not send a Secure cookie back over http://127.0.0.1 in every version; loopback never leaves the machine).
    secure_cookies: bool = True
    tls: bool = False  # HSTS is sent only when the site is reached over TLS
    session_idle_seconds: int = 30 * 60
    session_max_seconds: int = 12 * 3600
    # Login rate limits (in memory, per process): attempts per IP address and failures per account name.
    login_window_seconds: int = 15 * 60
    login_attempts_per_ip: int = 30
    login_failures_per_account: int = 5
    # Signs CSRF tokens; random per process, because sessions live in this process's memory too.
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
