"""Signing in and out of the portal, and ``/api/v1/me``.

One form takes the username, the password and (for the roles that need it) the TOTP code: the governance
``Accounts.authenticate`` checks all factors at once, so no half-authenticated state exists. Attempts are
rate-limited per IP address and failures per account (``ratelimit``) before any password is checked.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel
from starlette.responses import Response

from hygie.api import csrf, sessions
from hygie.api.auth import Caller, caller, check_csrf, client_ip, set_cookie, signed_in
from hygie.api.context import hub, utcnow
from hygie.api.pages import render

router = APIRouter()


def record(request: Request, actor: str, action: str, obj: str, outcome: str, **details: str | int | bool) -> None:
    """One event to the audit log (through the governance event sink)."""
    from hygie.governance.events import Event

    hub(request).events.record(Event(actor, action, obj, outcome, utcnow(), details))  # type: ignore[arg-type]


def safe_next(target: str | None) -> str:
    """Only a path on this site: never ``//host`` or ``/\\host`` (open redirect)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or "\n" in target:
        return "/"
    return target


class Me(BaseModel):
    username: str
    roles: list[str]
    grants: list[str]
    second_factor: bool
    via: str


def me_json(request: Request, c: Caller) -> bytes:
    """The body of ``GET /api/v1/me``: serialised once per principal (the same object while the store is unchanged
    and no rule's moment passed: ``governance.accounts.AccountRows``) and way of signing in."""

    def render() -> bytes:
        me = Me(username=c.username, roles=sorted(c.roles), grants=sorted(str(g) for g in c.principal.grants),
                second_factor=c.principal.mfa, via=c.via)  # fmt: skip
        return me.model_dump_json().encode()

    return hub(request).fragments.get(f"me:{c.via}", (c.principal,), render)


# The hub's most frequent reads (this one, the registry, a researcher's projects) are async: they are short reads
# of the metadata store, cheaper on the event loop than through the thread pool, whose queue (two hops for a sync
# endpoint with a response model) made most of the latency under load. Slow work (password hashing, uploads,
# downloads, submissions, operator pages) stays in the thread pool. Defined first: routes are matched in order.
# The response model documents the body, which is serialised once (no validation of what was just built).
@router.get("/api/v1/me", response_model=Me, tags=["account"], summary="Who the token (or session) belongs to")
async def me(request: Request) -> Response:
    return Response(me_json(request, await signed_in(request)), media_type="application/json")


@router.get("/login", include_in_schema=False)
def login_form(request: Request, next: str = "/") -> Response:
    return render(request, "login.html", next=safe_next(next))


@router.post("/login", include_in_schema=False, dependencies=[Depends(check_csrf)])
def login(
    request: Request,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    code: Annotated[str, Form(max_length=16)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    from hygie.governance.accounts import AuthenticationError

    h = hub(request)
    ip = client_ip(request)
    wait = h.limiter.retry_after(ip, username)
    if wait:
        record(request, "anonymous", "auth.rate_limited", f"user:{username}", "denied", retry_after=wait)
        response = render(
            request, "login.html", status_code=429, next=safe_next(next), username=username,
            error=f"Too many sign-in attempts. Try again in {wait} seconds.",
        )  # fmt: skip
        response.headers["Retry-After"] = str(wait)
        return response
    h.limiter.attempt(ip)
    try:
        principal = h.accounts.authenticate(username, password, code.strip() or None)
    except AuthenticationError as e:
        h.limiter.failed(username)
        return render(request, "login.html", status_code=401, next=safe_next(next), username=username, error=str(e))
    h.limiter.succeeded(username)
    session_id = h.sessions.create(principal.name)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_cookie(request, response, sessions.COOKIE, session_id)
    set_cookie(request, response, csrf.COOKIE, csrf.new_cookie())  # a token from before login stops working
    return response


@router.post("/logout", include_in_schema=False, dependencies=[Depends(check_csrf)])
def logout(request: Request) -> Response:
    c = caller(request)
    h = hub(request)
    if c.via == "session" and h.sessions.delete(c.session_id):
        record(request, c.username, "auth.logout", f"user:{c.username}", "ok")
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/")
    response.delete_cookie(csrf.COOKIE, path="/")
    return response
