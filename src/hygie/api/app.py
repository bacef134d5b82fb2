"""The hub's web application: ``create_app(settings)`` builds the FastAPI app serving the portal's pages and
the REST API (``/api/v1``, OpenAPI at ``/api/openapi.json``). See docs/web.md, docs/api.md and decision 0015."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from hygie import __version__
from hygie.api.auth import CsrfFailed, LoginRequired
from hygie.api.config import WebConfig
from hygie.api.context import Hub
from hygie.api.pages import render
from hygie.api.security import BodyLimit, SecurityHeaders
from hygie.config import Settings
from hygie.errors import ConflictError, HygieError, InputError, NotFoundError
from hygie.web import STATIC

API_PREFIX = "/api/v1"

TITLES = {400: "Bad request", 401: "Sign in needed", 403: "Not allowed", 404: "Not found", 409: "Conflict",
          413: "Too large", 422: "Invalid request", 429: "Too many attempts"}  # fmt: skip


class ErrorOut(BaseModel):
    """Every API error: a sentence saying what is wrong (validation errors: the fields and why)."""

    detail: str | list[dict[str, object]]


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorOut, "description": TITLES[code]} for code in (400, 401, 403, 404, 409, 413, 422, 429)
}
PUBLIC_OPERATIONS = frozenset({"/api/v1/registry"})


def status_of(error: HygieError) -> int:
    from hygie.governance.accounts import AuthenticationError
    from hygie.governance.permissions import PermissionDenied

    match error:
        case LoginRequired() | AuthenticationError():
            return 401
        case PermissionDenied() | CsrfFailed():
            return 403
        case NotFoundError():
            return 404
        case ConflictError():
            return 409
        case InputError():
            return 422
    return 400


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def error_response(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    if is_api(request):
        return JSONResponse({"detail": message}, status_code=status, headers=headers)
    if status == 401 and request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    response = render(
        request, "error.html", status_code=status, title=TITLES.get(status, "Error"), message=message, status=status
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def create_app(settings: Settings, config: WebConfig | None = None) -> FastAPI:
    hub = Hub(settings, config or WebConfig())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        hub.warm_up()  # before the server listens: no client waits for it
        yield
        hub.close()

    app = FastAPI(
        title="hygie",
        version=__version__,
        description="REST API of a hygie health data hub. Authenticate with `Authorization: Bearer <API token>`.",
        openapi_url="/api/openapi.json",
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN: not on a hub (CSP 'self')
        redoc_url=None,
        lifespan=lifespan,
        # No OpenTelemetry: nothing leaves the hub, and checking for configured providers cost every request.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.hub = hub
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders, tls=hub.config.tls)  # added last: outermost, so the 413 carries headers

    @app.exception_handler(HygieError)
    async def _hygie_error(request: Request, error: HygieError) -> Response:
        return error_response(request, status_of(error), str(error))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
        return error_response(request, error.status_code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError) -> Response:
        if is_api(request):
            return JSONResponse({"detail": _plain(error.errors())}, status_code=422)
        fields = ", ".join(".".join(str(p) for p in e["loc"][1:]) or "request" for e in error.errors())
        return error_response(request, 422, f"invalid or missing field(s): {fields}")

    from hygie.api.routes import ROUTERS

    for router in ROUTERS:
        app.include_router(router, responses=ERROR_RESPONSES)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    _document_security(app)
    return app


def _document_security(app: FastAPI) -> None:
    """Declare bearer-token authentication in the OpenAPI document, on every operation but the public ones."""
    build = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {})
            components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "hyg_"}}
            for path, operations in schema.get("paths", {}).items():
                if path in PUBLIC_OPERATIONS:
                    continue
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _plain(errors: object) -> object:
    """Validation errors as JSON (the input echoed back is dropped: it may hold a password)."""
    if isinstance(errors, list | tuple):
        return [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors if isinstance(e, dict)]
    return str(errors)
