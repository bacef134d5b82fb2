"""Portal and API under load: 200 concurrent clients on read endpoints for 30 s, against a real ``hygie serve``
(uvicorn, one process) on loopback, on a hub with the GiBleed release, 20 projects and signed-in users.

Reads: the public registry (page and JSON), a researcher's project list (page and JSON, session cookie), and
``/api/v1/me`` with a session cookie and with a bearer token. Reported: requests, throughput, latency percentiles
overall and per endpoint, and errors (anything but 200, or no answer). Targets (issue 8): p99 < 200 ms, 0 errors.
The load generator (httpx, asyncio) runs in this process and shares the machine's cores with the server.
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
    process = subprocess.Popen([sys.executable, "-m", "hygie", "serve", "--port", str(port)], env=env,
                               stdout=out, stderr=out)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"hygie serve did not start: {log.read_text()[-2000:]}")


def _sign_in(base: str, totp_secret: str) -> httpx.Cookies:
    with httpx.Client(base_url=base) as c:
        token = re.search(r'name="csrf-token" content="([0-9a-f]+)"', c.get("/login").text).group(1)
        form = {"csrf_token": token, "username": "rita", "password": "researcher-password-long",
                "code": pyotp.TOTP(totp_secret).now(), "next": "/"}  # fmt: skip
        response = c.post("/login", data=form)
        assert response.status_code == 303, response.text[:500]
        return c.cookies


async def _load(base: str, cookies: httpx.Cookies, token: str) -> dict[str, list[float] | int]:
    endpoints = [
        ("GET / (registry page)", "/", {}, False),
        ("GET /api/v1/registry", "/api/v1/registry", {}, False),
        ("GET /projects (session)", "/projects", {}, True),
        ("GET /api/v1/projects (session)", "/api/v1/projects", {}, True),
        ("GET /api/v1/me (session)", "/api/v1/me", {}, True),
        ("GET /api/v1/me (token)", "/api/v1/me", {"Authorization": f"Bearer {token}"}, False),
    ]
    latencies: dict[str, list[float]] = {name: [] for name, *_ in endpoints}
    errors: dict[str, int] = {name: 0 for name, *_ in endpoints}
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    stop_at = time.perf_counter() + SECONDS

    async with (
        httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as anonymous,
        httpx.AsyncClient(base_url=base, limits=limits, timeout=30, cookies=cookies) as signed,
    ):

        async def client(i: int) -> None:
            k = i
            while time.perf_counter() < stop_at:
                name, path, headers, session = endpoints[k % len(endpoints)]
                k += 1
                started = time.perf_counter()
                try:
                    response = await (signed if session else anonymous).get(path, headers=headers)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies[name].append(time.perf_counter() - started)
                if not ok:
                    errors[name] += 1

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
            cookies = _sign_in(base, secrets["rita_totp"])
            started = time.perf_counter()
            measured = asyncio.run(_load(base, cookies, secrets["token"]))
            elapsed = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=20)
    latencies: dict[str, list[float]] = measured["latencies"]  # type: ignore[assignment]
    errors: dict[str, int] = measured["errors"]  # type: ignore[assignment]
    everything = [v for values in latencies.values() for v in values]
    return {
        "clients": CLIENTS,
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
