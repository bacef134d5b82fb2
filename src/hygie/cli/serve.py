"""``hygie serve``: the web portal and REST API (uvicorn), on loopback unless told otherwise."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from hygie.cli import listeners
from hygie.cli.output import console, fail, handle_errors, settings

if TYPE_CHECKING:
    from fastapi import FastAPI

_WORKER_CONFIG = "HYGIE_SERVE_CONFIG"  # how the parent tells worker processes what it decided (not secrets)


def register(root: typer.Typer) -> None:
    root.command("serve")(serve)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@handle_errors
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
    public: bool = typer.Option(False, "--public", help="Allow listening on a non-loopback address."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", exists=True, dir_okay=False, help="PEM certificate."),
    tls_key: Path | None = typer.Option(None, "--tls-key", exists=True, dir_okay=False, help="PEM private key."),
    workers: int = typer.Option(
        1, "--workers", min=1, max=64, help="Server processes (sessions live in the metadata store: all share them)."
    ),
) -> None:
    """Serve the portal (pages for every role) and the REST API (OpenAPI at /api/openapi.json).

    On a non-loopback address the hub must be reached over TLS: give --tls-cert/--tls-key, or put a reverse
    proxy that terminates TLS in front (then cookies are marked Secure and HSTS is sent). With --workers N,
    N processes answer (one per core helps under load); login rate limits are divided among them.
    """
    import uvicorn

    from hygie.api.config import csrf_secret

    if (tls_cert is None) != (tls_key is None):
        fail("give both --tls-cert and --tls-key, or neither")
    loopback = is_loopback(host)
    if not loopback and not public:
        fail(
            f"{host} is not a loopback address: the portal would be reachable from the network. "
            "Add --public to confirm, and serve it over TLS (--tls-cert/--tls-key, or a TLS reverse proxy)."
        )
    tls = tls_cert is not None
    if not loopback and not tls:
        console.print(
            "[yellow]warning:[/] listening on the network without TLS here: put a reverse proxy that terminates "
            "TLS in front of it. Cookies are marked Secure, so browsers only send them over HTTPS."
        )
    hub_settings = settings()
    os.environ[_WORKER_CONFIG] = json.dumps({"secure": tls or not loopback, "workers": workers})
    csrf_secret(hub_settings)  # created once here, before any worker reads it
    scheme = "https" if tls else "http"
    console.print(f"hygie portal on {scheme}://{host}:{port}/  (API: {scheme}://{host}:{port}/api/openapi.json)")
    options = {
        "host": host,
        "port": port,
        "ssl_certfile": str(tls_cert) if tls_cert else None,
        "ssl_keyfile": str(tls_key) if tls_key else None,
        "log_level": "warning",
        "access_log": False,  # access lines carry URLs and addresses; the audit log records what matters
        "server_header": False,
        # asyncio's loop accepts every waiting connection when the socket is ready; uvloop accepted one per loop
        # turn, so under load new connections waited seconds in the queue (decision 0020). Same CPU per request.
        "loop": "asyncio",
        # uvicorn's httptools protocol writing each response in one piece, not head then body (decision 0020).
        "http": "hygie.cli.protocol:OneWriteHttpToolsProtocol",
    }
    if workers == 1:
        uvicorn.run(worker_app(), **options)
    elif listeners.per_process_available():
        listeners.run_workers(uvicorn.Config("hygie.cli.serve:worker_app", factory=True, workers=workers, **options))
    else:  # one listening socket shared by the processes (uvicorn's own way)
        uvicorn.run("hygie.cli.serve:worker_app", factory=True, workers=workers, **options)


def worker_app() -> FastAPI:
    """The application one server process runs, as ``serve`` configured it (through the environment)."""
    from hygie.api import create_app
    from hygie.api.config import WebConfig, csrf_secret

    decided = json.loads(os.environ[_WORKER_CONFIG])
    hub_settings = settings()
    config = WebConfig(secure_cookies=decided["secure"], tls=decided["secure"], secret=csrf_secret(hub_settings))
    return create_app(hub_settings, config.per_worker(decided["workers"]))
