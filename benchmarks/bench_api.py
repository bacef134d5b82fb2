"""Portal and API under load: 200 concurrent clients on read endpoints for 30 s, against a real ``hygie serve``
(uvicorn; ``HYGIE_BENCH_API_WORKERS`` processes, default one per core, as docs/web.md deploys it) on loopback,
on a hub with the GiBleed release, 20 projects and signed-in users.

Reads: the public registry (page and JSON), a researcher's project list (page and JSON, session cookie), and
``/api/v1/me`` with a session cookie and with a bearer token. Each client keeps one connection. First every
client connects and waits for its first answer (the connect phase: reported as the time until all 200 had one,
and the percentiles of those first answers); then all of them send requests back to back for 30 s (the measured
phase). Reported for the measured phase: requests, throughput, latency percentiles overall, per endpoint and per
server process, errors (anything but 200, or no answer), the CPU the server processes and the load generator
used per request, and how many of the clients' connections each server process holds; and the load average
when the run started. Targets (issue 8): p99 < 200 ms, 0 errors.

The load generator (a minimal HTTP/1.1 client on asyncio streams, run on uvloop) runs in this process, on the
same cores as the server. Environment:

- ``HYGIE_BENCH_API_WORKERS``: server processes, one figure or a list (``1,2``); each is measured. Default: one
  per core (``hygie serve --workers N``, docs/web.md).
- ``HYGIE_BENCH_API_RUNS``: runs of each setting (default 1); the medians are reported.
- ``HYGIE_BENCH_API_BASELINE``: another checkout of hygie with its own ``.venv`` (e.g. ``/work/main``): its
  ``hygie serve`` is measured in alternation with this one's, on a copy of the same hub, and the ratios reported.
- ``HYGIE_BENCH_API_CLIENTS`` (200) and ``HYGIE_BENCH_API_SECONDS`` (30).

Rerun on a quiet machine: ``HYGIE_BENCH_API_WORKERS=1,2 HYGIE_BENCH_API_RUNS=3 HYGIE_BENCH_API_BASELINE=/work/main
uv run python -m benchmarks.bench_api`` (about 9 minutes; progress on stderr, the report on stdout).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import resource
import shutil
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
WORKERS = [int(w) for w in os.environ.get("HYGIE_BENCH_API_WORKERS", str(os.cpu_count() or 1)).split(",")]
RUNS = int(os.environ.get("HYGIE_BENCH_API_RUNS", "1"))
BASELINE = os.environ.get("HYGIE_BENCH_API_BASELINE")
PROJECTS = 20
TICKS = os.sysconf("SC_CLK_TCK")


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


def _start(python: str, home: Path, port: int, workers: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HYGIE_HOME": str(home)}
    out = log.open("w")
    command = [python, "-m", "hygie", "serve", "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(command, env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 240  # importing the app takes seconds of CPU per process: minutes on a busy machine
    while time.monotonic() < deadline:
        try:
            with httpx.Client() as c:
                if c.get(f"http://127.0.0.1:{port}/optout").status_code == 200:
                    # Every process answers once its sockets listen; give the last ones time to start.
                    time.sleep(1.0 + 0.5 * workers)
                    return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.terminate()  # not kill: uvicorn's supervisor stops its worker processes on SIGTERM
    process.wait(timeout=30)
    raise RuntimeError(f"hygie serve did not start: {log.read_text()[-2000:]}")


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (uvicorn's workers, and what multiprocessing starts)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(parents.get(p, []))
    return found


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU time of each process."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


def _connections(pids: list[int], port: int) -> dict[int, int]:
    """Client port -> the server process holding that established connection (from /proc/net/tcp)."""
    inode_pid: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inode_pid[target[8:-1]] = pid
        except OSError:
            continue
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port and inode in inode_pid:
                out[int(remote.rsplit(":", 1)[1], 16)] = inode_pid[inode]
    return out


def _sign_in(base: str, totp_secret: str) -> str:
    with httpx.Client(base_url=base) as c:
        token = re.search(r'name="csrf-token" content="([0-9a-f]+)"', c.get("/login").text).group(1)
        form = {"csrf_token": token, "username": "rita", "password": "researcher-password-long",
                "code": pyotp.TOTP(totp_secret).now(), "next": "/"}  # fmt: skip
        response = c.post("/login", data=form)
        assert response.status_code == 303, response.text[:500]
        return "; ".join(f"{name}={value}" for name, value in c.cookies.items())


_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """One GET on a kept-alive connection; returns the status (the body is read and dropped)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = _LENGTH.search(head)
    if length is None:
        raise RuntimeError("response without Content-Length")
    await reader.readexactly(int(length.group(1)))
    return int(head[9:12])


async def _load(port: int, cookie: str, token: str, server: int) -> dict:
    """``CLIENTS`` clients, each on its own kept-alive connection, cycling through the read endpoints.

    Two phases: every client connects and waits for its first answer (all at once: the burst of new connections
    a server sees at the start); then, once all have one, every client sends requests back to back for
    ``SECONDS`` (the measured phase; server and generator CPU are read at its start and end). A minimal
    HTTP/1.1 client (asyncio streams): a general-purpose client would cost more CPU than the server."""
    endpoints = [
        ("GET / (registry page)", "/", ""),
        ("GET /api/v1/registry", "/api/v1/registry", ""),
        ("GET /projects (session)", "/projects", f"Cookie: {cookie}\r\n"),
        ("GET /api/v1/projects (session)", "/api/v1/projects", f"Cookie: {cookie}\r\n"),
        ("GET /api/v1/me (session)", "/api/v1/me", f"Cookie: {cookie}\r\n"),
        ("GET /api/v1/me (token)", "/api/v1/me", f"Authorization: Bearer {token}\r\n"),
    ]
    requests = [
        (e, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode())
        for e, (_, path, extra) in enumerate(endpoints)
    ]
    # Per client: (endpoint index, seconds) of each measured request; its local ports (one per connection).
    samples: list[list[tuple[int, float]]] = [[] for _ in range(CLIENTS)]
    first: list[float] = []  # per client: connecting and the first answer
    errors = [0] * len(endpoints)
    ports: list[list[int]] = [[] for _ in range(CLIENTS)]
    everyone_ready = asyncio.Event()
    stop_at = [float("inf")]

    async def connect(i: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ports[i].append(writer.get_extra_info("sockname")[1])
        return reader, writer

    async def client(i: int) -> None:
        began = time.perf_counter()
        reader, writer = await connect(i)
        first_status = await _get(reader, writer, requests[i % len(requests)][1])
        first.append(time.perf_counter() - began)
        if first_status != 200:
            errors[i % len(requests)] += 1
        if len(first) == CLIENTS:
            everyone_ready.set()
        await everyone_ready.wait()
        k = i + 1
        mine = samples[i]
        try:
            while time.perf_counter() < stop_at[0]:
                e, request = requests[k % len(requests)]
                k += 1
                started = time.perf_counter()
                try:
                    ok = await _get(reader, writer, request) == 200
                except (OSError, RuntimeError, asyncio.IncompleteReadError, ValueError):
                    ok = False
                    writer.close()
                    reader, writer = await connect(i)
                mine.append((e, time.perf_counter() - started))
                if not ok:
                    errors[e] += 1
        finally:
            writer.close()

    async def conduct() -> dict:
        """Start the measured phase once every client has its first answer; read CPU and who holds which
        connection (a connection still in the listening socket's queue belongs to no process)."""
        began = time.perf_counter()
        await everyone_ready.wait()
        ready_s = time.perf_counter() - began
        pids = _descendants(server)
        owners = _connections(pids, port)
        cpu_before, own_before = _cpu_seconds(pids), resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        stop_at[0] = started + SECONDS
        await asyncio.sleep(SECONDS)
        elapsed = time.perf_counter() - started
        cpu_after, own_after = _cpu_seconds(pids), resource.getrusage(resource.RUSAGE_SELF)
        own = (own_after.ru_utime + own_after.ru_stime) - (own_before.ru_utime + own_before.ru_stime)
        server_cpu = {pid: cpu_after[pid] - cpu_before[pid] for pid in cpu_after if pid in cpu_before}
        return {"ready_s": ready_s, "owners": owners, "elapsed": elapsed, "server_cpu": server_cpu, "own_cpu": own}

    phases, _ = await asyncio.gather(conduct(), asyncio.gather(*(client(i) for i in range(CLIENTS))))
    return {**phases, "samples": samples, "first": first, "errors": errors, "ports": ports,
            "names": [n for n, *_ in endpoints]}  # fmt: skip


def _percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {}
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50_ms": round(q[49] * 1000, 1), "p95_ms": round(q[94] * 1000, 1), "p99_ms": round(q[98] * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1)}  # fmt: skip


def _run_loop(coroutine: object) -> object:
    try:
        import uvloop

        return uvloop.run(coroutine)  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coroutine)  # type: ignore[arg-type]


def measure(python: str, home: Path, secrets: dict[str, str], workers: int, log: Path) -> dict:
    """One run: start ``hygie serve`` with ``python``, sign in, load it, stop it."""
    port = _free_port()
    started_utc = dt.datetime.now(dt.UTC).strftime("%H:%M:%S")
    load_average = round(os.getloadavg()[0], 2)
    server = _start(python, home, port, workers, log)
    try:
        cookie = _sign_in(f"http://127.0.0.1:{port}", secrets["rita_totp"])
        measured: dict = _run_loop(_load(port, cookie, secrets["token"], server.pid))  # type: ignore[assignment]
    finally:
        server.terminate()
        server.wait(timeout=30)
    samples: list[list[tuple[int, float]]] = measured["samples"]
    names: list[str] = measured["names"]
    everything = [s for client in samples for _, s in client]
    n, elapsed = len(everything), measured["elapsed"]
    server_cpu: dict[int, float] = measured["server_cpu"]
    # Which process served each client: the owner of its (first) connection.
    per_process: dict[int, list[float]] = {}
    connections: dict[int, int] = {}
    for i, client in enumerate(samples):
        owner = next((measured["owners"][p] for p in measured["ports"][i] if p in measured["owners"]), None)
        if owner is not None:
            connections[owner] = connections.get(owner, 0) + 1
            per_process.setdefault(owner, []).extend(s for _, s in client)
    return {
        "workers": workers,
        "started_utc": started_utc,
        "load_average_1min": load_average,
        "connect_phase": {"all_answered_s": round(measured["ready_s"], 2), **_percentiles(measured["first"])},
        "seconds": round(elapsed, 1),
        "requests": n,
        "requests_per_s": round(n / elapsed, 1),
        "errors": sum(measured["errors"]),
        **_percentiles(everything),
        "server_cpu_s": round(sum(server_cpu.values()), 1),
        "server_cpu_ms_per_request": round(1000 * sum(server_cpu.values()) / max(n, 1), 2),
        "generator_cpu_ms_per_request": round(1000 * measured["own_cpu"] / max(n, 1), 2),
        "processes": [_process(pid, connections[pid], server_cpu, per_process[pid]) for pid in sorted(connections)],
        "endpoints": {
            name: {
                "requests": sum(1 for c in samples for e, _ in c if e == k),
                "errors": measured["errors"][k],
                **_percentiles([s for c in samples for e, s in c if e == k]),
            }
            for k, name in enumerate(names)
        },
    }


def _process(pid: int, connections: int, cpu: dict[int, float], latencies: list[float]) -> dict[str, float]:
    """One server process: the clients' connections it held, its CPU, what its clients saw."""
    return {"connections": connections, "cpu_s": round(cpu.get(pid, 0.0), 1), "requests": len(latencies),
            **_percentiles(latencies)}  # fmt: skip


SUMMARY = ("requests_per_s", "errors", "p50_ms", "p95_ms", "p99_ms", "server_cpu_ms_per_request",
           "generator_cpu_ms_per_request", "load_average_1min", "connect_all_answered_s")  # fmt: skip


def _median(runs: list[dict]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in runs), 2) for k in SUMMARY if all(k in r for r in runs)}


def main() -> dict:
    RESULTS.mkdir(exist_ok=True)
    servers = {"this": sys.executable}
    if BASELINE:
        servers["baseline"] = str(Path(BASELINE) / ".venv" / "bin" / "python")
    runs: dict[str, list[dict]] = {f"{code}/{w}": [] for w in WORKERS for code in servers}
    with tempfile.TemporaryDirectory(dir=RESULTS) as tmp:
        secrets = _prepare(Path(tmp) / "this")
        if BASELINE:  # its own copy: a baseline with a newer metadata schema migrates only its copy
            shutil.copytree(Path(tmp) / "this", Path(tmp) / "baseline", symlinks=True)
        for i in range(RUNS):
            for workers in WORKERS:
                for code, python in servers.items():  # alternating: both see the same machine
                    log = Path(tmp) / f"serve-{code}-{workers}-{i}.log"
                    run = measure(python, Path(tmp) / code, secrets, workers, log)
                    run["connect_all_answered_s"] = run["connect_phase"]["all_answered_s"]
                    short = {k: run[k] for k in SUMMARY}
                    print(f"run {i + 1}/{RUNS} {code} workers={workers}: {short}", file=sys.stderr, flush=True)
                    runs[f"{code}/{workers}"].append(run)
    medians = {key: _median(values) for key, values in runs.items()}
    report: dict = {
        "clients": CLIENTS,
        "seconds": SECONDS,
        "runs_each": RUNS,
        "targets": {"p99_ms": 200, "errors": 0},
        "medians": medians,
        "runs": runs,
    }
    if BASELINE:
        report["baseline"] = BASELINE
        report["ratios_this_over_baseline"] = {
            w: {
                k: round(medians[f"this/{w}"][k] / medians[f"baseline/{w}"][k], 2)
                for k in ("requests_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_request")
                if medians[f"baseline/{w}"].get(k)
            }
            for w in WORKERS
        }
    return report


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
