"""Where the hub's data and keys may go: nowhere outside this machine unless the operator has listed the host as
located in the EU/EEA (TRE checklist #13; HDS 2024: hosting in the EEA; SNDS 2024 §3.2, territoriality).

Software cannot see where a server stands, so the operator attests it once, in configuration:
``HYGIE_EU_HOSTS`` is a comma-separated list of host names (``db.hds-provider.fr``), domain suffixes starting
with a dot (``.hds-provider.fr``) and IP networks (``10.20.0.0/16``) that are in the EU/EEA. Every endpoint the hub
connects to (the metadata store's PostgreSQL server, a remote KMS) is checked against it when it is configured,
before any connection: the hub fails closed, naming the endpoint and the variable. The loopback interface and
Unix sockets are always allowed. Backups are written to a path: a mounted remote file system is the operator's
to place (docs/operations.md).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping

from hygie.errors import HygieError

VARIABLE = "HYGIE_EU_HOSTS"


class JurisdictionError(HygieError):
    """An endpoint outside the hosts attested to be in the EU/EEA."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    env = os.environ if environ is None else environ
    entries = tuple(h.strip().lower() for h in env.get(VARIABLE, "").split(",") if h.strip())
    for entry in entries:
        if "/" in entry:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise JurisdictionError(f"{VARIABLE}: {entry!r} is not an IP network (e.g. 10.20.0.0/16)") from None
    return entries


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``host`` is loopback or matches an entry of ``allowed`` (name, .suffix or network)."""
    host = host.lower().strip("[]")
    if is_loopback(host):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in allowed:
        if "/" in entry:
            if address is not None and address in ipaddress.ip_network(entry, strict=False):
                return True
        elif entry.startswith("."):
            if host.endswith(entry) and address is None:
                return True
        elif host == entry:
            return True
    return False


def check_endpoint(what: str, host: str | None, environ: Mapping[str, str] | None = None) -> None:
    """Refuse ``host`` (of the endpoint described by ``what``) unless it is local or attested as EU/EEA."""
    if not host:
        return  # a Unix socket or a file: on this machine
    allowed = allowed_hosts(environ)
    if not host_allowed(host, allowed):
        listed = ", ".join(allowed) or "nothing yet"
        raise JurisdictionError(
            f"{what}: host {host!r} is not on this machine and not among the hosts attested to be in the EU/EEA "
            f"({VARIABLE}: {listed}); add it there only if it is hosted in the EU/EEA"
        )
