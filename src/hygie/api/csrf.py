"""CSRF protection for the web pages: a signed double-submit token.

Every browser gets a random ``hygie_csrf`` cookie (HttpOnly, SameSite=Strict). Forms carry
``HMAC-SHA256(server secret, cookie)`` in a hidden ``csrf_token`` field (scripts send it in ``X-CSRF-Token``,
read from the page's ``<meta name=csrf-token>``). A state-changing request passes only if the token matches the
cookie it came with: another site can make the browser send the cookie (SameSite=Strict already stops that in
current browsers) but cannot read it or compute the HMAC. The token works before login (the login form is
protected too) and the cookie is replaced at login, so a token planted before login is useless after it.
"""

from __future__ import annotations

import hmac
import secrets

COOKIE = "hygie_csrf"
FIELD = "csrf_token"
HEADER = "x-csrf-token"


def new_cookie() -> str:
    return secrets.token_urlsafe(32)


def token_for(secret: bytes, cookie: str) -> str:
    return hmac.digest(secret, cookie.encode(), "sha256").hex()  # one call into OpenSSL, the same HMAC-SHA256


def valid(secret: bytes, cookie: str | None, token: str | None) -> bool:
    if not cookie or not token:
        return False
    return hmac.compare_digest(token_for(secret, cookie), token)
