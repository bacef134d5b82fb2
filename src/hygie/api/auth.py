"""Who is calling: an API token (``Authorization: Bearer hyg_...``), a browser session cookie, or nobody.

Authentication is the governance ``Accounts`` service's (passwords, TOTP, tokens); this module only carries
its answer through a request. The principal behind a session or token is checked against the metadata store on
every request (its rows are read again whenever anything was committed since: ``governance.readcache``), so a
revoked role or token or a disabled account takes effect on the next click. Permission questions go to
``governance.permissions`` (``allow`` below is a thin call to ``require``), never to a rule written here.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from fastapi import Request
from starlette.responses import Response

from hygie.api import csrf, sessions
from hygie.api.context import hub, utcnow
from hygie.errors import HygieError

if TYPE_CHECKING:
    from hygie.governance.permissions import Action, Obj
    from hygie.governance.roles import Principal

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class LoginRequired(HygieError):
    """No (valid) session or token: pages redirect to the login form, the API answers 401."""


class CsrfFailed(HygieError):
    """A state-changing browser request without a valid CSRF token (403)."""


@dataclass(frozen=True)
class Caller:
    principal: Principal
    via: Literal["anonymous", "session", "token"]
    session_id: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.via != "anonymous"

    @property
    def username(self) -> str:
        return self.principal.name

    @property
    def roles(self) -> frozenset[str]:
        """Role names held (for navigation only: what a page shows is decided by ``decide``)."""
        return frozenset(g.role.value for g in self.principal.grants)


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def caller(request: Request) -> Caller:
    """The caller of this request (computed once per request)."""
    cached = getattr(request.state, "caller", None)
    if cached is not None:
        return cached
    from hygie.governance.roles import Principal

    h = hub(request)
    token = bearer_token(request)
    if token is not None:
        ip = client_ip(request)
        if h.limiter.ips.retry_after(f"token:{ip}"):
            raise LoginRequired("too many failed token attempts from this address: try again later")
        try:
            result = Caller(h.accounts.authenticate_token(token), "token")
        except HygieError:
            h.limiter.ips.hit(f"token:{ip}")
            raise LoginRequired("unknown, revoked or expired API token") from None
    else:
        session_id = request.cookies.get(sessions.COOKIE)
        session = h.sessions.get(session_id) if session_id else None  # no cookie: the store stays closed
        if session is None:
            result = Caller(Principal.anonymous(), "anonymous")
        else:
            result = Caller(session.principal, "session", session_id)
    request.state.caller = result
    return result


async def signed_in(request: Request) -> Caller:
    """Dependency of every non-public route (the busiest call it instead: FastAPI's resolution of a dependency
    costs more than the rest of their request). Async on purpose: resolving a session or a token is a read of the
    metadata store (usually spared: ``governance.readcache``), cheaper inline than a hop through the thread pool
    (which queues under load)."""
    c = caller(request)
    if not c.signed_in:
        raise LoginRequired("sign in first")
    return c


def allow(c: Caller, action: Action, obj: Obj = None, *, now: dt.datetime | None = None) -> None:
    """Raise ``PermissionDenied`` (403) unless governance allows ``action`` on ``obj``."""
    from hygie.governance.permissions import require

    require(c.principal, action, obj, now=now or utcnow())


def may(c: Caller, action: Action, obj: Obj = None, *, now: dt.datetime | None = None) -> bool:
    """Whether governance allows it: for showing or hiding a link, never as the only guard of an action."""
    from hygie.governance.permissions import decide

    return decide(c.principal, action, obj, now=now or utcnow()).allowed


def client_ip(request: Request) -> str:
    # The direct peer: behind a reverse proxy, run uvicorn with --proxy-headers so this is the real client.
    return request.client.host if request.client else "unknown"


async def check_csrf(request: Request) -> None:
    """Dependency of every state-changing browser route. Token-authenticated calls carry no ambient credential
    a third-party page could use, so they need no CSRF token."""
    if request.method not in UNSAFE_METHODS or bearer_token(request) is not None:
        return
    cookie = request.cookies.get(csrf.COOKIE)
    token = request.headers.get(csrf.HEADER)
    if token is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(csrf.FIELD)
        token = value if isinstance(value, str) else None
    if not csrf.valid(hub(request).config.secret, cookie, token):
        raise CsrfFailed("the form expired or did not come from this site: reload the page and try again")


def csrf_token(request: Request) -> str:
    """The token for this browser's forms; issues the CSRF cookie if the browser has none yet."""
    cookie = request.cookies.get(csrf.COOKIE) or getattr(request.state, "new_csrf_cookie", None)
    if cookie is None:
        cookie = csrf.new_cookie()
        request.state.new_csrf_cookie = cookie
    return csrf.token_for(hub(request).config.secret, cookie)


_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{1,256}")


def set_cookie(request: Request, response: Response, name: str, value: str, *, max_age: int | None = None) -> None:
    """Set one of the portal's cookies: HttpOnly, SameSite=Strict, whole site, Secure unless on plain loopback.
    The header is written directly (the standard library's cookie builder cost a tenth of a public page); the
    values are random ids in the URL-safe alphabet, which need no quoting."""
    if not _COOKIE_VALUE.fullmatch(value):
        raise ValueError(f"cookie {name} needs a URL-safe value")
    flags = f"{name}={value}; HttpOnly; Path=/; SameSite=strict"
    if max_age is not None:
        flags += f"; Max-Age={max_age}"
    if hub(request).config.secure_cookies:
        flags += "; Secure"
    response.raw_headers.append((b"set-cookie", flags.encode("latin-1")))


def finish(request: Request, response: Response) -> Response:
    """Attach the cookies a request decided to set (a new CSRF cookie)."""
    new = getattr(request.state, "new_csrf_cookie", None)
    if new is not None:
        set_cookie(request, response, csrf.COOKIE, new)
    return response
