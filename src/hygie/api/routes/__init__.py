"""The application's routers, one module per audience: public pages, sign-in, researcher, output checker,
operator, auditor. Each module holds its pages and the matching ``/api/v1`` endpoints."""

from __future__ import annotations

from hygie.api.routes import auditor, checker, operator, public, researcher, signin

ROUTERS = (public.router, signin.router, operator.router, researcher.router, checker.router, auditor.router)
