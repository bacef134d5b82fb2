"""A private PostgreSQL server for tests: initdb in a temporary folder, started on a free loopback port.

The server programs come from Debian's postgresql package (``scripts/postgres.sh`` installs it; ``make test``
runs it first). As root, the server runs as the ``postgres`` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg


def server_bindir() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin, or the folder of ``initdb`` on PATH."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0
    )
    found = [p for p in candidates if (p / "initdb").exists()]
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL is not installed: run scripts/postgres.sh (as root)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_cluster() -> Iterator[str]:
    """Yield the SQLAlchemy URL of a fresh server's ``postgres`` database; stop and delete it afterwards."""
    bindir = server_bindir()
    as_root = os.geteuid() == 0
    # Not under pytest's tmp folder: it is private to root, and the postgres user must traverse every folder.
    folder = Path(tempfile.mkdtemp(prefix="hygie-pg-"))
    folder.chmod(0o755)
    run_as: list[str] = []
    if as_root:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    password = secrets.token_hex(16)
    pwfile = folder / "pwfile"
    pwfile.write_text(password + "\n")
    if as_root:
        os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
    data = folder / "data"
    port = _free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "check": True}
    try:
        subprocess.run(
            [*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "hub", f"--pwfile={pwfile}", "-A",
             "scram-sha-256", "--no-sync"],
            **quiet,
        )  # fmt: skip
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={folder} -c fsync=off"
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"],
            **quiet,
        )
        try:
            yield f"postgresql+psycopg://hub:{password}@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], **quiet)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server_url: str, name: str) -> Iterator[str]:
    """A new empty database on the server of ``server_url``; dropped afterwards."""
    plain = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(plain, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
