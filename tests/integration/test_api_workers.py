"""``hygie serve --workers 2``: several processes share the sessions (metadata store) and the CSRF secret
(``HYGIE_HOME/keys/web-csrf.key``), so a browser stays signed in whichever process answers, and after a restart."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from hygie.api.config import WebConfig, csrf_secret
from hygie.governance.roles import Grant, Role
from tests.web_helpers import CSRF_META, add_account


def _serve(home: Path, log: Path, workers: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "hygie", "serve", "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(command, env={**os.environ, "HYGIE_HOME": str(home)}, stdout=log.open("w"),
                               stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 180  # each process imports the app (seconds of CPU): slow on a busy machine
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-2000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/registry", timeout=2).status_code == 200:
                return process, f"http://127.0.0.1:{port}"
        except httpx.HTTPError:
            time.sleep(0.3)
    _stop(process)  # SIGTERM: the supervisor stops its worker processes too (SIGKILL would orphan them)
    raise AssertionError(f"hygie serve did not start: {log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=30)


def test_two_workers_share_sessions_and_a_restart_signs_nobody_out(settings, tmp_path):
    ada = add_account(settings, "ada", Grant(Role.AUDITOR), totp=False)
    process, base = _serve(settings.home, tmp_path / "serve-1.log", workers=2)
    try:
        with httpx.Client(base_url=base) as c:
            token = CSRF_META.search(c.get("/login").text).group(1)
            form = {"csrf_token": token, "username": "ada", "password": ada.password, "next": "/"}
            assert c.post("/login", data=form).status_code == 303
            cookies = dict(c.cookies)
            page_token = CSRF_META.search(c.get("/").text).group(1)
        for _ in range(12):  # a new connection each time: the kernel hands them to either process
            me = httpx.get(f"{base}/api/v1/me", cookies=cookies)
            assert me.status_code == 200 and me.json()["username"] == "ada"
    finally:
        _stop(process)
    process, base = _serve(settings.home, tmp_path / "serve-2.log", workers=1)
    try:
        assert httpx.get(f"{base}/api/v1/me", cookies=cookies).json()["username"] == "ada"
        # A form rendered before the restart still passes CSRF: the secret is the hub's, not the process's.
        out = httpx.post(f"{base}/logout", data={"csrf_token": page_token}, cookies=cookies)
        assert out.status_code == 303
        assert httpx.get(f"{base}/api/v1/me", cookies=cookies).status_code == 401
    finally:
        _stop(process)
    key = settings.home / "keys" / "web-csrf.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and csrf_secret(settings) == key.read_bytes()


def test_login_limits_are_divided_among_workers():
    config = WebConfig(login_attempts_per_ip=30, login_failures_per_account=5)
    assert (config.per_worker(1).login_attempts_per_ip, config.per_worker(1).login_failures_per_account) == (30, 5)
    assert (config.per_worker(2).login_attempts_per_ip, config.per_worker(2).login_failures_per_account) == (15, 3)
    assert config.per_worker(64).login_failures_per_account == 1


def _listeners(port: int) -> list[str]:
    """Inodes of the sockets listening on ``port`` (state 0A in /proc/net/tcp)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return [f[9] for f in (line.split() for line in lines) if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port]


def test_each_worker_listens_on_its_own_socket_and_connections_reach_both(settings, tmp_path):
    process, base = _serve(settings.home, tmp_path / "serve.log", workers=2)
    try:
        port = int(base.rsplit(":", 1)[1])
        deadline = time.monotonic() + 120
        while len(_listeners(port)) < 2 and time.monotonic() < deadline:  # the second process may still start
            time.sleep(0.2)
        assert len(set(_listeners(port))) == 2
        # The kernel spreads new connections by a hash of their addresses: 40 of them reach both processes.
        owners = set()
        for _ in range(40):
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"GET /api/v1/registry HTTP/1.1\r\nHost: x\r\n\r\n")  # kept alive: still held
                assert s.recv(12).startswith(b"HTTP/1.1 200")
                owners.add(_peer_process(s.getsockname()[1], port))
        assert None not in owners and len(owners) == 2
    finally:
        _stop(process)


def _peer_process(client_port: int, port: int) -> int | None:
    """The process holding the server side of the connection from ``client_port`` (None once it closed)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    port_of = lambda address: int(address.rsplit(":", 1)[1], 16)  # noqa: E731
    inodes = {f[9] for f in (line.split() for line in lines) if port_of(f[1]) == port and port_of(f[2]) == client_port}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:
            continue
        if any(f"socket:[{i}]" in links for i in inodes):
            return int(pid)
    return None


def test_a_port_in_use_is_a_clear_error(settings, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "hygie", "serve", "--port", str(port), "--workers", "2"]
        result = subprocess.run(command, env={**os.environ, "HYGIE_HOME": str(settings.home)}, capture_output=True,
                                text=True, timeout=60)  # fmt: skip
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stdout + result.stderr
