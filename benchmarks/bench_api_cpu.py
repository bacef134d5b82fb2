"""CPU per request of the portal's read endpoints, in process: the six endpoints of ``bench_api`` called through
the ASGI application directly (no socket, no HTTP parsing), one after another, on a hub prepared like
``bench_api``'s. Reports, per endpoint, the median over rounds of the process CPU time per request (microseconds).

It isolates what the hub's code costs per request from the server's HTTP layer and the machine's load: CPU time
is what the process itself used, so it varies far less than latency on a shared machine. With
``HYGIE_BENCH_API_BASELINE`` (another checkout with its own ``.venv``, e.g. ``/work/main``), the same driver runs
under that checkout's code too, alternating rounds, on a copy of the same hub, and the ratios are reported.

Environment: ``HYGIE_BENCH_API_CPU_REQUESTS`` (per endpoint and round, default 400), ``HYGIE_BENCH_API_CPU_ROUNDS``
(default 5), ``HYGIE_BENCH_API_CPU_PROFILE`` (an endpoint index 0-5: print a cProfile of it instead).
Run: ``uv run python -m benchmarks.bench_api_cpu`` (a minute or two).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REQUESTS = int(os.environ.get("HYGIE_BENCH_API_CPU_REQUESTS", "400"))
ROUNDS = int(os.environ.get("HYGIE_BENCH_API_CPU_ROUNDS", "5"))
BASELINE = os.environ.get("HYGIE_BENCH_API_BASELINE")
PROFILE = os.environ.get("HYGIE_BENCH_API_CPU_PROFILE")

# The driver runs in a child process under the code measured (this checkout's or the baseline's): it uses only
# what both have (``create_app``, ``Settings``, the session store), reads a command per line on stdin and answers
# one JSON line per command.
DRIVER = r"""
import asyncio, json, sys, time
from pathlib import Path

from hygie.api.app import create_app
from hygie.config import Settings

home, token = Path(sys.argv[1]), sys.argv[2]
settings = Settings(home=home, master_key_file=home / "keys" / "master.key")
app = create_app(settings)
hub = app.state.hub


async def call(scope):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"]


def scope(path, headers):
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8000"), *headers], "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000), "state": {}}


async def main():
    async with app.router.lifespan_context(app):
        # A browser's cookies after signing in: the session and the CSRF cookie (pages sign their forms with it).
        cookie = f"hygie_session={hub.sessions.create('rita')}; hygie_csrf=bench-csrf-cookie".encode()
        endpoints = [
            ("/", []), ("/api/v1/registry", []), ("/projects", [(b"cookie", cookie)]),
            ("/api/v1/projects", [(b"cookie", cookie)]), ("/api/v1/me", [(b"cookie", cookie)]),
            ("/api/v1/me", [(b"authorization", ("Bearer " + token).encode())]),
        ]
        for path, headers in endpoints:  # warm: first calls compile statements, fill caches
            for _ in range(20):
                assert await call(scope(path, headers)) == 200, path
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            command = json.loads(line)
            if command.get("profile") is not None:
                import cProfile, pstats
                path, headers = endpoints[command["profile"]]
                profiler = cProfile.Profile()
                profiler.enable()
                for _ in range(command["n"]):
                    await call(scope(path, headers))
                profiler.disable()
                stats = pstats.Stats(profiler, stream=sys.stderr)
                stats.sort_stats("cumulative").print_stats(60)
                stats.sort_stats("tottime").print_stats(40)
                print(json.dumps({}), flush=True)
                continue
            out = []
            for path, headers in endpoints:
                started = time.process_time()
                for _ in range(command["n"]):
                    await call(scope(path, headers))
                out.append((time.process_time() - started) / command["n"])
            print(json.dumps({"cpu_s": out}), flush=True)


asyncio.run(main())
"""

NAMES = ("GET / (registry page)", "GET /api/v1/registry", "GET /projects (session)",
         "GET /api/v1/projects (session)", "GET /api/v1/me (session)", "GET /api/v1/me (token)")  # fmt: skip


class Driver:
    def __init__(self, python: str, home: Path, token: str) -> None:
        self.process = subprocess.Popen(
            [python, "-c", DRIVER, str(home), token], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.ask(None)  # waits for "ready"

    def ask(self, command: dict | None) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        if command is not None:
            self.process.stdin.write(json.dumps(command) + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the driver stopped")
        return json.loads(line)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)


def main() -> dict:
    from benchmarks.bench_api import _prepare
    from benchmarks.common import RESULTS

    RESULTS.mkdir(exist_ok=True)
    servers = {"this": sys.executable}
    if BASELINE:
        servers["baseline"] = str(Path(BASELINE) / ".venv" / "bin" / "python")
    with tempfile.TemporaryDirectory(dir=RESULTS) as tmp:
        secrets = _prepare(Path(tmp) / "this")
        if BASELINE:
            shutil.copytree(Path(tmp) / "this", Path(tmp) / "baseline", symlinks=True)
        drivers = {code: Driver(python, Path(tmp) / code, secrets["token"]) for code, python in servers.items()}
        try:
            if PROFILE is not None:
                drivers["this"].ask({"profile": int(PROFILE), "n": REQUESTS})
                return {}
            rounds: dict[str, list[list[float]]] = {code: [] for code in servers}
            for i in range(ROUNDS):
                for code, driver in drivers.items():  # alternating: both see the same machine
                    rounds[code].append(driver.ask({"n": REQUESTS})["cpu_s"])
                print(f"round {i + 1}/{ROUNDS}", file=sys.stderr, flush=True)
        finally:
            for driver in drivers.values():
                driver.close()
    us = {
        code: {name: round(1e6 * statistics.median(r[k] for r in runs), 1) for k, name in enumerate(NAMES)}
        for code, runs in rounds.items()
    }
    for code in us:
        us[code]["mean of the six"] = round(statistics.mean(us[code][n] for n in NAMES), 1)
    report: dict = {"requests_per_endpoint_and_round": REQUESTS, "rounds": ROUNDS, "cpu_us_per_request": us,
                    "load_average_1min": round(os.getloadavg()[0], 2)}  # fmt: skip
    if BASELINE:
        report["baseline"] = BASELINE
        report["ratios_this_over_baseline"] = {n: round(us["this"][n] / us["baseline"][n], 2) for n in us["this"]}
    return report


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
