"""The application's routers, one module per audience: public pages, sign-in, researcher, output checker,
operator, auditor. Each module holds its pages and the matching ``/api/v1`` endpoints."""

from __future__ import annotations

from hygie.api.routes import auditor, checker, operator, public, researcher, signin

# No path of one router overlaps another's, so the order decides nothing but speed: a request is matched
# against the routes in this order, the most read first.
ROUTERS = (public.router, signin.router, researcher.router, checker.router, operator.router, auditor.router)
