"""Portal and API under load: 200 concurrent clients on read endpoints for 30 s, against a real ``hygie serve``
(uvicorn; ``HYGIE_BENCH_API_WORKERS`` processes, default 1) on loopback, on a hub with the GiBleed release,
20 projects and signed-in users.

Reads: the public registry (page and JSON), a researcher's project list (page and JSON, session cookie), and
``/api/v1/me`` with a session cookie and with a bearer token. Reported: requests, throughput, latency percentiles
overall and per endpoint, and errors (anything but 200, or no answer). Targets (issue 8): p99 < 200 ms, 0 errors.
The load generator (a minimal asyncio HTTP/1.1 client) runs in this process, on the same cores as the server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pyotp

from benchmarks.common import RESULTS

CLIENTS = int(os.environ.get("HYGIE_BENCH_API_CLIENTS", "200"))
SECONDS = float(os.environ.get("HYGIE_BENCH_API_SECONDS", "30"))
WORKERS = int(os.environ.get("HYGIE_BENCH_API_WORKERS", "1"))
PROJECTS = 20


def _prepare(home: Path) -> dict[str, str]:
    """A hub with GiBleed, an operator, a researcher on 5 of 20 active projects; returns credentials."""
    from hygie import datasets
    from hygie.config import Settings
    from hygie.governance.accounts import Accounts
    from hygie.governance.projects import Projects, Scope
    from hygie.governance.roles import Grant, Principal, Role
    from hygie.governance.store import open_store
    from hygie.ingest.cdm_load import load_cdm

    settings = Settings(home=home, master_key_file=home / "keys" / "master.key")
    d = datasets.get("gibleed")
    load_cdm(d.folder, "bench-gibleed", settings, synthetic=True, allow_duplicate_keys=d.allow_duplicate_keys)
    console = Principal.console("bench")
    with open_store(settings) as store:
        accounts, projects = Accounts(store), Projects(store)
        accounts.add_user(console, "olivia", "operator-password-long", full_name="Olivia")
        accounts.grant(console, "olivia", Grant(Role.OPERATOR))
        accounts.enrol_totp(console, "olivia")
        accounts.add_user(console, "rita", "researcher-password-long", full_name="Rita")
        rita_totp = accounts.enrol_totp(console, "rita").secret
        accounts.record_training(console, "rita", "Data protection", dt.datetime.now(dt.UTC).date())
        until = dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
        for i in range(PROJECTS):
            name = f"project-{i:02d}"
            projects.create(console, name, title=f"Project {i}", purpose="Benchmark project " * 5,
                            legal_basis="MR-004", valid_until=until)  # fmt: skip
            projects.set_scope(
                console, name, Scope(releases=("bench-gibleed",), tables=("person", "condition_occurrence"))
            )
            projects.approve(console, name)
            if i < 5:
                projects.add_member(console, name, "rita")
        _, token = accounts.create_token(console, "olivia", "bench")
    return {"rita_totp": rita_totp, "token": token}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(home: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HYGIE_HOME": str(home)}
    out = log.open("w")
    command = [sys.executable, "-m", "hygie", "serve", "--port", str(port), "--workers", str(WORKERS)]
    process = subprocess.Popen(command, env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"hygie serve did not start: {log.read_text()[-2000:]}")


def _sign_in(base: str, totp_secret: str) -> str:
    with httpx.Client(base_url=base) as c:
        token = re.search(r'name="csrf-token" content="([0-9a-f]+)"', c.get("/login").text).group(1)
        form = {"csrf_token": token, "username": "rita", "password": "researcher-password-long",
                "code": pyotp.TOTP(totp_secret).now(), "next": "/"}  # fmt: skip
        response = c.post("/login", data=form)
        assert response.status_code == 303, response.text[:500]
        return "; ".join(f"{name}={value}" for name, value in c.cookies.items())


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """One GET on a kept-alive connection; returns the status (the body is read and dropped)."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    if length is None:
        raise RuntimeError("response without Content-Length")
    await reader.readexactly(int(length.group(1)))
    return status


async def _load(port: int, cookie: str, token: str) -> dict[str, list[float] | int]:
    """``CLIENTS`` clients, each on its own kept-alive connection, cycling through the read endpoints.
    A minimal HTTP/1.1 client (asyncio streams): a general-purpose client would cost more CPU than the server."""
    endpoints = [
        ("GET / (registry page)", "/", ""),
        ("GET /api/v1/registry", "/api/v1/registry", ""),
        ("GET /projects (session)", "/projects", f"Cookie: {cookie}\r\n"),
        ("GET /api/v1/projects (session)", "/api/v1/projects", f"Cookie: {cookie}\r\n"),
        ("GET /api/v1/me (session)", "/api/v1/me", f"Cookie: {cookie}\r\n"),
        ("GET /api/v1/me (token)", "/api/v1/me", f"Authorization: Bearer {token}\r\n"),
    ]
    requests = [
        (name, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode())
        for name, path, extra in endpoints
    ]
    latencies: dict[str, list[float]] = {name: [] for name, _ in requests}
    errors: dict[str, int] = {name: 0 for name, _ in requests}
    stop_at = time.perf_counter() + SECONDS

    async def client(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        k = i
        try:
            while time.perf_counter() < stop_at:
                name, request = requests[k % len(requests)]
                k += 1
                started = time.perf_counter()
                try:
                    ok = await _get(reader, writer, request) == 200
                except (OSError, RuntimeError, asyncio.IncompleteReadError, ValueError):
                    ok = False
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                latencies[name].append(time.perf_counter() - started)
                if not ok:
                    errors[name] += 1
        finally:
            writer.close()

    await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    return {"latencies": latencies, "errors": errors}  # type: ignore[dict-item]


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50_ms": round(q[49] * 1000, 1), "p95_ms": round(q[94] * 1000, 1), "p99_ms": round(q[98] * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1)}  # fmt: skip


def main() -> dict:
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=RESULTS) as tmp:
        home = Path(tmp) / "home"
        secrets = _prepare(home)
        port = _free_port()
        server = _start(home, port, Path(tmp) / "serve.log")
        try:
            base = f"http://127.0.0.1:{port}"
            cookie = _sign_in(base, secrets["rita_totp"])
            started = time.perf_counter()
            measured = asyncio.run(_load(port, cookie, secrets["token"]))
            elapsed = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=20)
    latencies: dict[str, list[float]] = measured["latencies"]  # type: ignore[assignment]
    errors: dict[str, int] = measured["errors"]  # type: ignore[assignment]
    everything = [v for values in latencies.values() for v in values]
    return {
        "clients": CLIENTS,
        "workers": WORKERS,
        "seconds": round(elapsed, 1),
        "requests": len(everything),
        "requests_per_s": round(len(everything) / elapsed, 1),
        "errors": sum(errors.values()),
        **_percentiles(everything),
        "targets": {"p99_ms": 200, "errors": 0},
        "endpoints": {
            name: {"requests": len(v), "errors": errors[name], **_percentiles(v)} for name, v in latencies.items()
        },
    }


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
