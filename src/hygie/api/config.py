"""How the web application is configured: cookie security, session lifetimes and login rate limits.

The defaults are the safe ones; ``hygie serve`` derives ``secure_cookies`` and ``tls`` from how it listens and
reads the CSRF secret from ``HYGIE_HOME/keys/web-csrf.key`` (``csrf_secret``), so every worker process signs
tokens alike and forms stay valid across a restart.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace

from hygie.config import Settings
from hygie.errors import HygieError


@dataclass(frozen=True)
class WebConfig:
    # Cookies carry the Secure flag unless the server only listens on loopback over plain HTTP (a browser would
    # not send a Secure cookie back over http://127.0.0.1 in every version; loopback never leaves the machine).
    secure_cookies: bool = True
    tls: bool = False  # HSTS is sent only when the site is reached over TLS
    session_idle_seconds: int = 30 * 60
    session_max_seconds: int = 12 * 3600
    # Login rate limits (in memory, per process: ``hygie serve --workers N`` divides them among its processes):
    # attempts per IP address and failures per account name.
    login_window_seconds: int = 15 * 60
    login_attempts_per_ip: int = 30
    login_failures_per_account: int = 5
    # Signs CSRF tokens. Random by default (tests, one-off apps); ``hygie serve`` passes ``csrf_secret(settings)``.
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def per_worker(self, workers: int) -> WebConfig:
        """The limits one of ``workers`` processes enforces, so that together they allow no more than one would."""
        share = lambda limit: max(1, -(-limit // workers))  # noqa: E731 (ceiling division)
        return replace(
            self,
            login_attempts_per_ip=share(self.login_attempts_per_ip),
            login_failures_per_account=share(self.login_failures_per_account),
        )


def csrf_secret(settings: Settings) -> bytes:
    """The hub's CSRF signing secret (32 random bytes, created on first use, mode 0600, beside the other keys)."""
    path = settings.home / "keys" / "web-csrf.key"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    secret = path.read_bytes()
    if len(secret) != 32:
        raise HygieError(f"{path} is not a 32-byte secret: delete it to make a new one (open forms then expire)")
    return secret
