"""Jobs have no network (TRE checklist #10): after ``deny_network`` a process cannot connect to a service on the
host's loopback, cannot resolve names and cannot reach other machines; its own loopback still works (Spark's
Python-to-JVM gateway needs it). Each case runs in a fresh child process, as a job does."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from hygie.jobs.sandbox import SandboxError, deny_network

PROBE = """
import json, socket, sys
from hygie.jobs.sandbox import deny_network
how = deny_network(sys.argv[1])
port = int(sys.argv[2])
result = {"how": how}
def attempt(name, action):
    try:
        action()
        result[name] = "reached"
    except OSError as e:
        result[name] = "refused"
attempt("host_service", lambda: socket.create_connection(("127.0.0.1", port), timeout=2).close())
attempt("name_lookup", lambda: socket.getaddrinfo("example.org", 443))
attempt("other_machine", lambda: socket.create_connection(("10.255.255.1", 80), timeout=2).close())
attempt("udp_out", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("9.9.9.9", 53)))
server = socket.create_server(("127.0.0.1", 0))
attempt("own_loopback", lambda: socket.create_connection(server.getsockname(), timeout=2).close())
print(json.dumps(result))
"""


@pytest.fixture
def host_service() -> Iterator[int]:
    """A service listening on the host's loopback (like the metadata database or the portal)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def probe(mode: str, port: int) -> dict[str, str]:
    done = subprocess.run([sys.executable, "-c", PROBE, mode, str(port)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_job_in_its_own_network_namespace_reaches_nothing_but_its_own_loopback(host_service: int) -> None:
    assert probe("namespace", host_service) == {
        "how": "namespace",
        "host_service": "refused",
        "name_lookup": "refused",
        "other_machine": "refused",
        "udp_out": "refused",
        "own_loopback": "reached",
    }


def test_auto_prefers_the_namespace(host_service: int) -> None:
    assert probe("auto", host_service)["how"] == "namespace"


def test_the_fallback_hook_refuses_other_machines_and_name_lookups(host_service: int) -> None:
    result = probe("hook", host_service)
    assert result["how"] == "hook"
    assert result["name_lookup"] == result["other_machine"] == result["udp_out"] == "refused"
    assert result["own_loopback"] == "reached"  # the hook cannot tell the host's loopback from the job's


def test_an_unknown_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYGIE_JOB_NETWORK", "open")
    with pytest.raises(SandboxError, match="HYGIE_JOB_NETWORK='open'"):
        deny_network()
