"""No network for jobs (TRE checklist #10): a job's child process cannot reach any other machine or service.

The child moves itself into a new, empty Linux network namespace before it touches data (``unshare``, with a
user namespace when it is not root). Inside, the only interface is a fresh loopback, which it brings up: local
plumbing such as Spark's Python-to-JVM gateway keeps working, while the host's own services (the metadata
database, the web portal, a KMS) and every other machine are out of reach. Name resolution fails too.

Where the kernel refuses new namespaces (some container runtimes), the child falls back to a Python audit hook
that refuses connections and name lookups for anything but its own loopback. It is weaker (native code could
bypass it; hygie's own native libraries are configured never to fetch anything), so the operator can require
the namespace with ``HYGIE_JOB_NETWORK=namespace``: the job then fails rather than run with the fallback.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import ipaddress
import os
import socket
import struct
import sys
from typing import Any

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
MODES = ("auto", "namespace", "hook")


class SandboxError(RuntimeError):
    """The required isolation could not be set up; the job must not run."""


def deny_network(mode: str | None = None) -> str:
    """Cut this process (and its future children) off the network; returns how ("namespace" or "hook")."""
    mode = mode or os.environ.get("HYGIE_JOB_NETWORK", "auto")
    if mode not in MODES:
        raise SandboxError(f"HYGIE_JOB_NETWORK={mode!r}: expected one of {', '.join(MODES)}")
    if mode != "hook":
        failure = _enter_network_namespace()
        if failure is None:
            return "namespace"
        if mode == "namespace":
            raise SandboxError(f"cannot isolate the job's network: {failure} (HYGIE_JOB_NETWORK=namespace)")
    sys.addaudithook(_refuse_remote)
    return "hook"


def _enter_network_namespace() -> str | None:
    """Enter a new network namespace with loopback up; None on success, else why not."""
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNET if uid == 0 else CLONE_NEWUSER | CLONE_NEWNET
    if libc.unshare(flags) != 0:
        return f"unshare: {os.strerror(ctypes.get_errno())}"
    if uid != 0:  # keep our own uid/gid inside the user namespace (file ownership checks stay the same)
        try:
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        except OSError as e:
            return f"user namespace maps: {e.strerror}"
    try:
        _loopback_up()
    except OSError as e:
        return f"loopback: {e.strerror}"
    return None


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sh22x", b"lo", 0)
        (current,) = struct.unpack("16xh22x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, request))
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", current | _IFF_UP))


def _is_loopback(host: Any) -> bool:
    if host in (None, "localhost", "", b"localhost"):
        return True
    try:
        return ipaddress.ip_address(host.decode() if isinstance(host, bytes) else str(host)).is_loopback
    except ValueError:
        return False


def _refuse_remote(event: str, args: tuple[Any, ...]) -> None:
    """Audit hook: refuse connections, datagrams and name lookups that leave this machine's loopback."""
    if event in ("socket.connect", "socket.sendto"):
        sock, address = args[0], args[1]
        if sock.family == socket.AF_UNIX:
            return
        if isinstance(address, tuple) and _is_loopback(address[0]):
            return
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
        if args and _is_loopback(args[0]):
            return
    else:
        return
    raise OSError(errno.ENETUNREACH, "network access is disabled for jobs")
