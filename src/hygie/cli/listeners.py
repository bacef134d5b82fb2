"""``hygie serve --workers N`` on Linux: each server process listens on a socket of its own (``SO_REUSEPORT``) and
the kernel spreads new connections among them (by a hash of their addresses: 94-106 of 200 each, measured).

With uvicorn's default, one listening socket shared by every process, whichever process is awake when
connections arrive takes them: a burst of connections ended up split unevenly (69/131 of 200), and the clients
of the fuller process waited about twice as long (decision 0020). With a socket per process, the kernel assigns
each connection to a process when it arrives, and each process only ever waits on its own share.

Only processes of the same user can join a port's group of ``SO_REUSEPORT`` sockets. The supervisor keeps a
socket bound to the port (not listening) for as long as it runs, so no other program can take the port
between two worker restarts. uvicorn's supervisor (restarts, signals, health checks) is used unchanged: only
the step that hands a worker its socket differs.
"""

from __future__ import annotations

import socket
import sys

from uvicorn import Config
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import multiprocess

from hygie.errors import HygieError


def per_process_available() -> bool:
    """Linux spreads connections among ``SO_REUSEPORT`` listeners (other systems may hand them all to one)."""
    return sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def bind(config: Config) -> socket.socket:
    """A TCP socket bound to the configured address with ``SO_REUSEPORT`` (listening is the server's job)."""
    family = socket.AF_INET6 if config.host and ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # IPPROTO_TCP: accepted sockets get NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class OwnSocketProcess(multiprocess.Process):
    """A uvicorn worker process that binds its own ``SO_REUSEPORT`` socket instead of the supervisor's."""

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # runs in the worker process
        try:
            own = bind(self.config)
        except OSError as e:
            print(f"cannot listen on {self.config.host}:{self.config.port}: {e}", file=sys.stderr)
            sys.exit(STARTUP_FAILURE)  # the supervisor stops instead of restarting the worker forever
        for inherited in sockets or ():
            inherited.close()
        super().target([own])


def run_workers(config: Config) -> None:
    """Run ``config.workers`` processes under uvicorn's supervisor, each listening on its own socket."""
    try:
        reserved = bind(config)  # also fails now, in the foreground, if the port is taken
    except OSError as e:
        raise HygieError(f"cannot listen on {config.host}:{config.port}: {e.strerror or e}") from None
    # The supervisor creates its workers through this module-level name; this process only supervises.
    multiprocess.Process = OwnSocketProcess  # type: ignore[misc]
    try:
        multiprocess.Multiprocess(config, sockets=[reserved]).run()
    finally:
        reserved.close()
