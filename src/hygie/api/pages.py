"""Rendering a page: the template, the caller, a CSRF token for its forms, and the navigation the caller's roles
open (links only: every page checks its own permission through governance)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse, Response

from hygie import __version__
from hygie.api.auth import caller, csrf_token, finish
from hygie.web import TEMPLATES

templates = Jinja2Templates(directory=str(TEMPLATES))  # autoescaping on for .html
templates.env.globals["hygie_version"] = __version__
templates.env.auto_reload = False  # templates ship with the package: no file check on every render

# (label, path, role that opens it); public links first.
NAV = (
    ("Projects", "/projects", "researcher"),
    ("Review queue", "/review", "output_checker"),
    ("Operations", "/operator", "operator"),
    ("Audit log", "/audit", "auditor"),
)


def render(request: Request, name: str, *, status_code: int = 200, **context: Any) -> Response:
    """The page ``name`` for this caller. Rendered with Jinja2 directly: no template reads ``request`` or
    ``url_for``, which is all Starlette's ``TemplateResponse`` would add, at a tenth of a page's cost."""
    c = caller(request)
    roles = c.roles
    nav = [(label, path) for label, path, role in NAV if role in roles]
    body = templates.env.get_template(name).render(caller=c, nav=nav, csrf_token=csrf_token(request), **context)
    return finish(request, HTMLResponse(body, status_code=status_code))
