"""The tamper-evident audit log: who did what to which object, when, and how it ended.

Storage (``HYGIE_HOME/audit/``):
- ``log.jsonl``: one entry per line, ``{seq, time, actor, action, object, outcome, details, prev, hash}``.
  ``hash`` is the RFC 6962 leaf hash, SHA-256(0x00 || canonical JSON of the entry without ``hash``), and
  ``prev`` is the previous entry's ``hash`` (64 zeros for the first): a hash chain that locates the first bad
  line, and the leaves of a Merkle tree whose heads are signed.
- ``checkpoints.jsonl``: signed tree heads ``{origin, size, root, time, key_id, signature}`` written every
  ``HYGIE_AUDIT_CHECKPOINT_EVERY`` entries (default 100) and on demand. The signature (Ed25519) covers the
  checkpoint text of the C2SP tlog-checkpoint format (origin, size, base64 root, then a ``time`` line), so an
  external witness could co-sign it. ``hint`` fields (compact range, byte offset) only speed up the next
  checkpoint; verification never trusts them.
- ``signing-key.pub``: the public key auditors copy and pin. The private key is ``HYGIE_AUDIT_KEY_FILE``,
  default ``HYGIE_HOME/keys/audit-signing.key`` (mode 0600), separate from the master key.

Appending takes an exclusive ``flock`` on ``audit/lock`` and fsyncs, so CLI, worker and web server processes
can append concurrently. Nothing ever rewrites a line. See docs/audit.md and docs/decisions/0014.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hygie.config import Settings
from hygie.errors import HygieError
from hygie.governance.audit_details import AuditDataError, check_entry_fields
from hygie.governance.audit_merkle import CompactRange, compact_range_from_json, compact_range_to_json

GENESIS = "0" * 64
DEFAULT_CHECKPOINT_EVERY = 100
ENTRY_FIELDS = ("seq", "time", "actor", "action", "object", "outcome", "details", "prev", "hash")
# What is left of an entry past its retention period (``audit_retention``): its place in the chain and the tree,
# not its content; ``purged_by`` is the seq of the ``audit.purge`` entry that removed the content.
TOMBSTONE_FIELDS = ("seq", "time", "prev", "hash", "purged_by")
PURGE_ACTION = "audit.purge"
CHECKPOINT_FIELDS = ("origin", "size", "root", "time", "key_id", "signature")


class AuditError(HygieError):
    """The audit log cannot be written or read."""


def canonical(data: Mapping[str, Any]) -> bytes:
    """Canonical JSON (sorted keys, no spaces, UTF-8): RFC 8785 for the values the validator admits."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(body: Mapping[str, Any]) -> str:
    """The leaf hash of an entry's fields other than ``hash``."""
    return hashlib.sha256(b"\x00" + canonical(body)).hexdigest()


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Entry:
    seq: int
    time: str
    actor: str
    action: str
    object: str
    outcome: str
    details: dict[str, Any]
    prev: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in ENTRY_FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Entry:
        return cls(**{f: data[f] for f in ENTRY_FIELDS})


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: str  # hex
    time: str
    key_id: str
    signature: str  # base64 Ed25519 signature of ``text()``

    def text(self) -> str:
        """The signed body, in the C2SP tlog-checkpoint layout with one extension line."""
        return f"{self.origin}\n{self.size}\n{base64.b64encode(bytes.fromhex(self.root)).decode()}\ntime {self.time}\n"

    def signed_note(self) -> str:
        """The checkpoint as a signed note, for publication outside the hub."""
        return f"{self.text()}\n\u2014 {self.origin} {self.key_id}:{self.signature}\n"

    def to_json(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in CHECKPOINT_FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Checkpoint:
        cp = cls(**{f: data[f] for f in CHECKPOINT_FIELDS})
        if not isinstance(cp.size, int) or cp.size < 1 or len(cp.root) != 64:
            raise ValueError("malformed checkpoint")
        bytes.fromhex(cp.root)
        return cp

    @classmethod
    def from_note(cls, text: str) -> Checkpoint:
        """Parse ``signed_note()`` output (what an auditor keeps)."""
        body, _, sig = text.partition("\n\n")
        lines = body.split("\n")
        if len(lines) < 4 or not lines[3].startswith("time "):
            raise ValueError("not a hygie audit checkpoint")
        sig_line = sig.strip()
        if not sig_line.startswith("\u2014 "):
            raise ValueError("checkpoint without a signature line")
        key_id, _, signature = sig_line.rsplit(" ", 1)[1].partition(":")
        return cls(
            origin=lines[0],
            size=int(lines[1]),
            root=base64.b64decode(lines[2]).hex(),
            time=lines[3][5:],
            key_id=key_id,
            signature=signature,
        )


# -- signing key ------------------------------------------------------------------------------------------------


def _key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes_raw()
    return hashlib.sha256(b"hygie-audit-key" + raw).hexdigest()[:16]


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(path.read_text().split()[-1], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (OSError, ValueError, IndexError) as e:
        raise AuditError(f"{path}: not an audit public key ({e.__class__.__name__})") from None


@dataclass
class Signer:
    private: Ed25519PrivateKey
    public: Ed25519PublicKey = field(init=False)
    key_id: str = field(init=False)

    def __post_init__(self) -> None:
        self.public = self.private.public_key()
        self.key_id = _key_id(self.public)

    @classmethod
    def load_or_create(cls, path: Path) -> Signer:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process created it meanwhile
                pass
            else:
                with os.fdopen(fd, "wb") as f:
                    f.write(base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()) + b"\n")
                    f.flush()
                    os.fsync(f.fileno())
        try:
            raw = base64.b64decode(path.read_bytes().strip(), validate=True)
            return cls(Ed25519PrivateKey.from_private_bytes(raw))
        except (OSError, ValueError) as e:
            raise AuditError(f"{path}: cannot read the audit signing key ({e.__class__.__name__})") from None


def signing_key_file(settings: Settings) -> Path:
    env = os.environ.get("HYGIE_AUDIT_KEY_FILE")
    return Path(env).expanduser().absolute() if env else settings.home / "keys" / "audit-signing.key"


# -- verification results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """The first sign of tampering: at which entry, what kind, and a sentence for the auditor."""

    seq: int
    kind: str  # modified, deleted, inserted-or-reordered, unreadable, torn, truncated, rewritten, forged-checkpoint...
    message: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.kind}: {self.message}"


@dataclass(frozen=True)
class Verification:
    entries: int
    checkpoints: int
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first(self) -> Finding | None:
        return min(self.findings, key=lambda f: f.seq) if self.findings else None


# -- the log ----------------------------------------------------------------------------------------------------


class AuditLog:
    """Append entries, write signed checkpoints, read and verify the log."""

    def __init__(self, settings: Settings, *, checkpoint_every: int | None = None) -> None:
        self.settings = settings
        self.folder = settings.home / "audit"
        self.log_file = self.folder / "log.jsonl"
        self.checkpoint_file = self.folder / "checkpoints.jsonl"
        self.public_key_file = self.folder / "signing-key.pub"
        every = checkpoint_every or int(os.environ.get("HYGIE_AUDIT_CHECKPOINT_EVERY", DEFAULT_CHECKPOINT_EVERY))
        if every < 1:
            raise AuditError("HYGIE_AUDIT_CHECKPOINT_EVERY must be at least 1")
        self.checkpoint_every = every

    # -- writing ------------------------------------------------------------------------------------------------
    def record(self, actor: str, action: str, object: str, outcome: str = "ok", **details: Any) -> Entry:
        """Append one entry (refused, with nothing written, when a field looks like patient data)."""
        check_entry_fields(actor, action, object, outcome, details)
        with self._locked():
            last = self._last_entry()
            seq = last.seq + 1 if last else 1
            body = {
                "seq": seq,
                "time": utc_now(),
                "actor": actor,
                "action": action,
                "object": object,
                "outcome": outcome,
                "details": details,
                "prev": last.hash if last else GENESIS,
            }
            entry = Entry.from_json({**body, "hash": entry_hash(body)})
            _append_line(self.log_file, canonical(entry.to_json()))
            latest = self._last_checkpoint()
            if seq - (latest.size if latest else 0) >= self.checkpoint_every:
                self.checkpoint_while_locked()
        return entry

    def checkpoint(self) -> Checkpoint | None:
        """Sign a checkpoint of the whole log now (None when the log is empty)."""
        with self._locked():
            return self.checkpoint_while_locked()

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the log's lock (no entry or checkpoint is written meanwhile): for consistent copies."""
        return self._locked()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def signer(self) -> Signer:
        signer = Signer.load_or_create(signing_key_file(self.settings))
        published = f"hygie-audit-ed25519 {base64.b64encode(signer.public.public_bytes_raw()).decode()}\n"
        if not self.public_key_file.exists() or self.public_key_file.read_text() != published:
            tmp = self.public_key_file.with_suffix(".tmp")
            tmp.write_text(published)
            os.replace(tmp, self.public_key_file)
        return signer

    def origin(self, signer: Signer) -> str:
        return f"hygie-audit/{signer.key_id}"

    def checkpoint_while_locked(self, *, fresh: bool = False) -> Checkpoint | None:
        """Sign the tree of the whole log if it grew; the caller holds ``locked()``. ``fresh``: ignore the last
        checkpoint's hint (its byte offset is stale once a purge rewrote the file)."""
        latest = self._last_checkpoint_record()
        tree, offset = CompactRange(), 0
        if latest is not None and not fresh:
            with contextlib.suppress(KeyError, ValueError, TypeError):
                hint = latest["hint"]
                candidate = compact_range_from_json(hint["range"])
                if candidate.size == latest["size"] and candidate.root().hex() == latest["root"]:
                    tree, offset = candidate, int(hint["offset"])
        with self.log_file.open("rb") if self.log_file.exists() else contextlib.nullcontext(None) as f:
            if f is None:
                return None
            f.seek(offset)
            for line in f:
                if not line.endswith(b"\n"):
                    break  # a torn last line is not covered; verify reports it
                tree.append(bytes.fromhex(json.loads(line)["hash"]))
                offset += len(line)
        if tree.size == 0 or (latest is not None and tree.size == latest["size"]):
            return Checkpoint.from_json(latest) if latest is not None else None
        signer = self.signer()
        unsigned = Checkpoint(self.origin(signer), tree.size, tree.root().hex(), utc_now(), signer.key_id, "")
        signature = base64.b64encode(signer.private.sign(unsigned.text().encode())).decode()
        cp = Checkpoint(**{**unsigned.to_json(), "signature": signature})
        record = {**cp.to_json(), "hint": {"range": compact_range_to_json(tree), "offset": offset}}
        _append_line(self.checkpoint_file, canonical(record))
        return cp

    def _last_entry(self) -> Entry | None:
        line = _last_line(self.log_file)
        if line is None:
            return None
        try:
            return Entry.from_json(json.loads(line))
        except (ValueError, KeyError, TypeError):
            raise AuditError(
                f"{self.log_file}: the last entry is unreadable; nothing can be appended until an auditor has "
                "examined it (`hygie audit verify`)"
            ) from None

    def _last_checkpoint_record(self) -> dict[str, Any] | None:
        line = _last_line(self.checkpoint_file)
        if line is None:
            return None
        try:
            return json.loads(line)
        except ValueError:
            return None

    def _last_checkpoint(self) -> Checkpoint | None:
        record = self._last_checkpoint_record()
        try:
            return Checkpoint.from_json(record) if record else None
        except (KeyError, ValueError, TypeError):
            return None

    # -- reading ------------------------------------------------------------------------------------------------
    def entries(
        self, *, since: str | None = None, actor: str | None = None, action: str | None = None
    ) -> Iterator[Entry]:
        """Entries in order; ``since`` is an ISO date or time (UTC), ``action`` matches a prefix (``release``)."""
        if not self.log_file.exists():
            return
        with self.log_file.open("rb") as f:
            for line in f:
                try:
                    data = json.loads(line)
                    if "purged_by" in data:
                        continue  # past its retention period: only its hash is left
                    entry = Entry.from_json(data)
                except (ValueError, KeyError, TypeError):
                    raise AuditError(f"{self.log_file}: unreadable entry; run `hygie audit verify`") from None
                if since and entry.time < since:
                    continue
                if actor and entry.actor != actor:
                    continue
                if action and not (entry.action == action or entry.action.startswith(action + ".")):
                    continue
                yield entry

    def checkpoints(self) -> list[Checkpoint]:
        if not self.checkpoint_file.exists():
            return []
        return [Checkpoint.from_json(json.loads(line)) for line in self.checkpoint_file.read_text().splitlines()]

    # -- verifying ----------------------------------------------------------------------------------------------
    def verify(self, *, public_key: Ed25519PublicKey | None = None, trusted: Sequence[Checkpoint] = ()) -> Verification:
        """Recompute every hash, the chain and the Merkle roots; check every checkpoint's signature.

        ``public_key``: the key the auditor pinned (default: the published ``signing-key.pub``).
        ``trusted``: checkpoints the auditor kept from earlier visits; the log must still extend each of them.
        """
        findings: list[Finding] = []
        key = public_key
        if key is None and self.public_key_file.exists():
            key = load_public_key(self.public_key_file)
        stored, cp_findings = self._read_checkpoints(key)
        findings += cp_findings
        checked = [(cp, "") for cp in stored] + [(cp, " (kept by the auditor)") for cp in trusted]
        sizes = {cp.size for cp, _ in checked}
        roots: dict[int, str] = {}
        tree = CompactRange()
        stop: int | None = None  # the first bad line: checkpoints from there on cannot be compared
        if self.log_file.exists():
            for finding in self._walk(tree, sizes, roots):
                findings.append(finding)
                stop = finding.seq
                break
        n = tree.size
        if key is None and checked:
            findings.append(Finding(1, "unverifiable", "no public key to check the checkpoints' signatures"))
        for cp, origin in checked:
            if stop is not None and cp.size >= stop:
                continue
            if origin and key is not None and not _signature_ok(cp, key):
                message = f"checkpoint of size {cp.size}{origin}: bad signature"
                findings.append(Finding(cp.size, "forged-checkpoint", message))
            if cp.size > n:
                findings.append(
                    Finding(
                        n + 1,
                        "truncated",
                        f"checkpoint of size {cp.size}{origin} was signed, but the log now ends at entry {n}: "
                        f"entries {n + 1}..{cp.size} were removed",
                    )
                )
            elif roots.get(cp.size) != cp.root:
                good = [c.size for c, _ in checked if c.size < cp.size and roots.get(c.size) == c.root]
                before = max(good, default=0)
                findings.append(
                    Finding(
                        before + 1,
                        "rewritten",
                        f"the entries do not match checkpoint of size {cp.size}{origin}: an entry between {before + 1} "
                        f"and {cp.size} was changed, inserted or removed and the chain recomputed",
                    )
                )
        gaps = [b - a for a, b in zip([0, *sorted(sizes)], [*sorted(sizes), n], strict=True)]
        if n and max(gaps) > 2 * self.checkpoint_every and not findings:
            findings.append(
                Finding(
                    n,
                    "missing-checkpoints",
                    f"a stretch of {max(gaps)} entries has no checkpoint although one is signed every "
                    f"{self.checkpoint_every}: checkpoints were deleted",
                )
            )
        return Verification(n, len(stored), findings)

    def _walk(self, tree: CompactRange, sizes: set[int], roots: dict[int, str]) -> Iterator[Finding]:
        """Check each line in order (the tree grows with the recomputed hashes); yield the first problem.

        Purged entries (tombstones) are accepted only as a prefix of the log, each naming an ``audit.purge``
        entry that comes later and covers it; their hashes are taken as stored (their content is gone), so the
        chain and the Merkle roots still check, and checkpoints signed before the purge still verify."""
        prev = GENESIS
        tombstones: dict[int, int] = {}  # seq of a purged entry -> seq of the purge entry it names
        purges: dict[int, int] = {}  # seq of an audit.purge entry -> the last seq it purged
        with self.log_file.open("rb") as f:
            for expected, line in enumerate(f, start=1):
                if not line.endswith(b"\n"):
                    yield Finding(expected, "torn", "the last line is incomplete (a write was cut)")
                    return
                try:
                    data = json.loads(line)
                    if not isinstance(data, dict) or set(data) not in (set(ENTRY_FIELDS), set(TOMBSTONE_FIELDS)):
                        raise ValueError
                except ValueError:
                    yield Finding(expected, "unreadable", "the line is not a well-formed audit entry")
                    return
                purged = "purged_by" in data
                if purged and len(tombstones) != expected - 1:
                    yield Finding(expected, "modified", "a purged entry after entries that were kept: content removed")
                    return
                if purged:
                    tombstones[expected] = data["purged_by"]
                elif data["action"] == PURGE_ACTION and isinstance(data["details"].get("up_to"), int):
                    purges[expected] = data["details"]["up_to"]
                body = {k: v for k, v in data.items() if k != "hash"}
                recomputed = data["hash"] if purged else entry_hash(body)
                if data["seq"] != expected:
                    if isinstance(data["seq"], int) and data["seq"] > expected:
                        later = any(_seq_of(rest) == expected for rest in f)
                        kind = "inserted-or-reordered" if later else "deleted"
                        where = "comes later in the file" if later else "is missing"
                        message = f"entry {expected} {where} (line {expected} holds entry {data['seq']})"
                    else:
                        kind = "inserted-or-reordered"
                        message = f"line {expected} holds entry {data['seq']}"
                    yield Finding(expected, kind, message)
                    return
                if recomputed != data["hash"]:
                    yield Finding(expected, "modified", "its content does not match its hash")
                    return
                if data["prev"] != prev:
                    yield Finding(
                        expected,
                        "inserted-or-reordered",
                        "its 'prev' hash is not the hash of the entry before it (the chain is broken here)",
                    )
                    return
                prev = data["hash"]
                tree.append(bytes.fromhex(recomputed))
                if tree.size in sizes:
                    roots[tree.size] = tree.root().hex()
        for seq, purge in tombstones.items():
            if purges.get(purge, 0) < seq:
                message = f"its content was removed, but no {PURGE_ACTION} entry {purge} covers it"
                yield Finding(seq, "modified", message)
                return

    def _read_checkpoints(self, key: Ed25519PublicKey | None) -> tuple[list[Checkpoint], list[Finding]]:
        if not self.checkpoint_file.exists():
            return [], []
        stored: list[Checkpoint] = []
        findings: list[Finding] = []
        last_size = 0
        for number, line in enumerate(self.checkpoint_file.read_bytes().split(b"\n")[:-1], start=1):
            try:
                cp = Checkpoint.from_json(json.loads(line))
            except (ValueError, KeyError, TypeError):
                findings.append(Finding(last_size + 1, "forged-checkpoint", f"checkpoint line {number} is unreadable"))
                continue
            if key is not None and not _signature_ok(cp, key):
                findings.append(
                    Finding(cp.size, "forged-checkpoint", f"checkpoint line {number} (size {cp.size}): bad signature")
                )
                continue
            if cp.size < last_size:
                findings.append(
                    Finding(cp.size, "forged-checkpoint", f"checkpoint line {number} goes back to size {cp.size}")
                )
            last_size = max(last_size, cp.size)
            stored.append(cp)
        return stored, findings


def _seq_of(line: bytes) -> object:
    try:
        return json.loads(line).get("seq")
    except (ValueError, AttributeError):
        return None


def _signature_ok(cp: Checkpoint, key: Ed25519PublicKey) -> bool:
    if cp.key_id != _key_id(key) or cp.origin != f"hygie-audit/{cp.key_id}":
        return False
    try:
        key.verify(base64.b64decode(cp.signature, validate=True), cp.text().encode())
    except (InvalidSignature, ValueError):
        return False
    return True


def _append_line(path: Path, data: bytes) -> None:
    """One write of one whole line with O_APPEND, then fsync (the caller holds the log's lock)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_line(path: Path) -> bytes | None:
    """The last complete line of a file (read backwards from the end), None when the file is empty."""
    if not path.exists():
        return None
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        if end == 0:
            return None
        block, data = 4096, b""
        pos = end
        while pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
            if data.count(b"\n") >= 2 or pos == 0:
                break
    if not data.endswith(b"\n"):
        raise AuditError(f"{path}: the last line is incomplete (a write was cut); run `hygie audit verify`")
    return data[:-1].rsplit(b"\n", 1)[-1]


# -- adapters ---------------------------------------------------------------------------------------------------


class AuditEvent(Protocol):
    """What the governance layer's events carry (``hygie.governance.events.Event`` has these attributes)."""

    actor: str
    action: str
    object: str
    outcome: str
    details: Mapping[str, Any] | None


class AuditSink:
    """An ``EventSink`` (``hygie.governance.events``): each event becomes one audit entry.

    Floats in details are recorded as text (the log's canonical JSON has no floats). A detail the validator
    refuses (a date, free text, an identity-named field...) is withheld, and the entry says which: services call
    the sink after their action is done, so the action is always recorded, never lost to a refused detail.
    """

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    def record(self, event: AuditEvent) -> None:
        details = {k: repr(v) if isinstance(v, float) else v for k, v in dict(event.details or {}).items()}
        try:
            self.log.record(event.actor, event.action, event.object, event.outcome, **details)
        except AuditDataError:
            kept, withheld = {}, []
            for key, value in details.items():
                try:
                    check_entry_fields(event.actor, event.action, event.object, event.outcome, {key: value})
                    kept[key] = value
                except AuditDataError:
                    withheld.append(key)
            self.log.record(event.actor, event.action, event.object, event.outcome, **kept, withheld=sorted(withheld))

    emit = record  # the name used in the governance brief
