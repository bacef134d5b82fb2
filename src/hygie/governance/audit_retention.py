"""Audit retention: entries past their retention period lose their content but keep their place (TRE #33).

The period is configurable within bounds set by the rules: at least ``MIN_DAYS`` (EHDS Art 73: access logs kept
at least a year) and at most ``MAX_DAYS`` (CNIL 2021: 6-12 months normally, up to 3 years for internal control);
default ``DEFAULT_DAYS`` (``HYGIE_AUDIT_RETENTION_DAYS``).

A purge replaces each entry older than the period, from the start of the log, by a *tombstone*
``{seq, time, prev, hash, purged_by}``: who did what to which object is gone, its hash stays. The hash chain and
the Merkle tree are therefore unchanged, every checkpoint signed before the purge still verifies, and nothing is
re-signed. The purge itself is the next entry (``audit.purge``, with ``up_to``, the count and the cutoff), and a
fresh checkpoint covers it. ``AuditLog.verify`` accepts tombstones only as a prefix of the log covered by such an
entry.

The file is rewritten (the one operation that does) under the log's lock: written beside it, fsynced, renamed over
it, so a crash leaves either the old log or the new one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from typing import Any

from hygie.durability import fsync_path
from hygie.errors import HygieError
from hygie.governance.audit import PURGE_ACTION, AuditLog, Entry, canonical, entry_hash, utc_now

MIN_DAYS = 365
MAX_DAYS = 3 * 365
DEFAULT_DAYS = 365


@dataclass(frozen=True)
class Purge:
    purged: int  # entries whose content this purge removed
    up_to: int  # the last purged seq (0: none ever)
    cutoff: str
    entry: Entry | None  # the audit.purge entry (None when nothing was old enough)


def retention_days(environ: dict[str, str] | None = None) -> int:
    value = (environ if environ is not None else os.environ).get("HYGIE_AUDIT_RETENTION_DAYS", str(DEFAULT_DAYS))
    try:
        days = int(value)
    except ValueError:
        raise HygieError(f"HYGIE_AUDIT_RETENTION_DAYS must be a number of days, not {value!r}") from None
    return check_days(days)


def check_days(days: int) -> int:
    if not MIN_DAYS <= days <= MAX_DAYS:
        raise HygieError(
            f"audit retention of {days} days is outside {MIN_DAYS}-{MAX_DAYS} days (EHDS: access logs kept at least "
            "a year; CNIL: at most three years, for internal control)"
        )
    return days


def purge(log: AuditLog, actor: str, *, days: int, now: dt.datetime | None = None) -> Purge:
    """Remove the content of every entry older than ``days`` (a prefix of the log) and record the purge."""
    check_days(days)
    now = now or dt.datetime.now(dt.UTC)
    cutoff = (now - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with log.locked():
        if not log.log_file.exists():
            return Purge(0, 0, cutoff, None)
        lines = log.log_file.read_bytes().splitlines(keepends=True)
        if lines and not lines[-1].endswith(b"\n"):
            raise HygieError(f"{log.log_file}: the last line is incomplete; run `hygie audit verify` first")
        old: list[dict[str, Any]] = []  # the prefix past the period; the rest is kept as bytes, unparsed
        for line in lines:
            record = json.loads(line)
            if record["time"] >= cutoff:
                break
            old.append(record)
        fresh = sum("purged_by" not in r for r in old)
        if not fresh:
            return Purge(0, old[-1]["seq"] if old else 0, cutoff, None)
        last = json.loads(lines[-1])
        purge_seq = last["seq"] + 1
        tombstones = [
            r if "purged_by" in r else {k: r[k] for k in ("seq", "time", "prev", "hash")} | {"purged_by": purge_seq}
            for r in old
        ]
        up_to = old[-1]["seq"]
        body = {
            "seq": purge_seq,
            "time": utc_now(),
            "actor": actor,
            "action": PURGE_ACTION,
            "object": "audit-log",
            "outcome": "ok",
            "details": {"up_to": up_to, "purged": fresh, "cutoff": cutoff, "retention_days": days},
            "prev": last["hash"],
        }
        entry = Entry.from_json({**body, "hash": entry_hash(body)})
        kept = lines[len(old) :]
        rewritten = [canonical(r) + b"\n" for r in tombstones] + kept + [canonical(entry.to_json()) + b"\n"]
        partial = log.log_file.with_suffix(".purging")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"".join(rewritten))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, log.log_file)
        fsync_path(log.folder)
        log.checkpoint_while_locked(fresh=True)  # the byte offsets of the last hint moved
    return Purge(fresh, up_to, cutoff, entry)
