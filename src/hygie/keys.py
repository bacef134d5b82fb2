"""Encryption keys for patient-level files (envelope encryption).

Each release, deposit and vocabulary has its own random 256-bit data key, used by DuckDB's Parquet modular
encryption (AES-GCM); cohort results stored for a release reuse the release's key. The data key is stored in
the manifest only *wrapped* by a master key that lives outside the data (associated data = ``<kind>:<name>``,
so a wrapped key cannot be moved to another release). Master keys come from a provider:
- ``file`` (default): a 256-bit key file, ``HYGIE_MASTER_KEY_FILE`` (default ``HYGIE_HOME/keys/master.key``),
  wrapping with AES-256-GCM;
- ``transit``: an OpenBao / Vault transit key (``HYGIE_KMS=transit``, see ``keys_transit``); the key never
  leaves the KMS.
The ``Keyring`` picks the provider that wraps new keys and finds, by key id, the one that unwraps an old key
(both master keys are usable while a rotation is under way, see ``keys_rotation``).
Without the master key a release is unreadable; deleting a wrapped key shreds its release.
See docs/encryption.md and docs/decisions/0002, 0014.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hygie.config import Settings
from hygie.durability import fsync_path
from hygie.errors import HygieError

KEY_BYTES = 32


class KeyError_(HygieError):
    """The master key is missing, unreadable or not the one that wrapped a data key."""


@dataclass(frozen=True)
class WrappedKey:
    key_id: str  # which master key wrapped it: a file key's fingerprint, or "transit:<mount>/<key>"
    blob: str  # file keys: base64(nonce || ciphertext); transit: "vault:v<N>:..."
    algorithm: str = "AES-256-GCM"

    def to_json(self) -> dict[str, str]:
        return {"algorithm": self.algorithm, "key_id": self.key_id, "blob": self.blob}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> WrappedKey:
        return cls(key_id=data["key_id"], blob=data["blob"], algorithm=data.get("algorithm", "AES-256-GCM"))

    @property
    def version(self) -> str:
        """The master key version named by the blob (transit: ``v3``), or the key id for file keys."""
        if self.blob.startswith("vault:"):
            return self.blob.split(":", 2)[1]
        return self.key_id


class MasterKey(Protocol):
    """A master key provider: wraps and unwraps data keys; never hands out the master key itself."""

    key_id: str

    def wrap(self, data_key: bytes, context: str) -> WrappedKey: ...

    def unwrap(self, wrapped: WrappedKey, context: str) -> bytes: ...


class FileMasterKey:
    """A 256-bit master key read from a file (mode 0600); wraps with AES-256-GCM."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise KeyError_(f"master key must be {KEY_BYTES} bytes, found {len(key)}")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"hygie-master-key-id" + key).hexdigest()[:16]

    @classmethod
    def create(cls, path: Path) -> FileMasterKey:
        """Write a new random key to ``path`` (which must not exist), fsync'ed, mode 0600."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(base64.b64encode(os.urandom(KEY_BYTES)) + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, path)  # a complete key appears at once, and never over an existing one
        finally:
            tmp.unlink()
        fsync_path(path.parent)
        return cls.load(path)

    @classmethod
    def load(cls, path: Path) -> FileMasterKey:
        try:
            raw = base64.b64decode(path.read_bytes().strip(), validate=True)
        except FileNotFoundError:
            raise KeyError_(f"{path}: master key file not found") from None
        except (OSError, ValueError) as e:
            raise KeyError_(f"{path}: cannot read the master key ({e.__class__.__name__})") from None
        return cls(raw)

    @classmethod
    def load_or_create(cls, path: Path) -> FileMasterKey:
        """Read the master key file; create it (mode 0600) when it does not exist yet."""
        if not path.exists():
            try:
                return cls.create(path)
            except FileExistsError:  # created by another process meanwhile
                pass
        return cls.load(path)

    def wrap(self, data_key: bytes, context: str) -> WrappedKey:
        nonce = os.urandom(12)
        ct = self._aead.encrypt(nonce, data_key, context.encode())
        return WrappedKey(self.key_id, base64.b64encode(nonce + ct).decode())

    def unwrap(self, wrapped: WrappedKey, context: str) -> bytes:
        if wrapped.key_id != self.key_id:
            raise KeyError_(
                f"'{context}' was encrypted under master key {wrapped.key_id}, "
                f"but the configured master key is {self.key_id}"
            )
        try:
            raw = base64.b64decode(wrapped.blob, validate=True)
            return self._aead.decrypt(raw[:12], raw[12:], context.encode())
        except (InvalidTag, ValueError):
            raise KeyError_(
                f"the data key of '{context}' does not verify under master key {self.key_id}: manifest or key tampered"
            ) from None


def pending_key_file(settings: Settings) -> Path:
    """Where a file-key rotation keeps the new master key until every data key is re-wrapped."""
    return settings.master_key_file.with_name(settings.master_key_file.name + ".new")


class Keyring:
    """The master keys of this hub: the one that wraps new data keys, and those that may unwrap old ones."""

    def __init__(self, settings: Settings, environ: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.env = dict(os.environ if environ is None else environ)
        self.kms = self.env.get("HYGIE_KMS", "file")
        if self.kms not in ("file", "transit"):
            raise KeyError_(f"HYGIE_KMS={self.kms!r}: use 'file' or 'transit'")
        self._transit: MasterKey | None = None

    def transit(self) -> MasterKey:
        if self._transit is None:
            from hygie.keys_transit import TransitMasterKey

            self._transit = TransitMasterKey.from_env(self.settings, self.env)
        return self._transit

    def wrapping_key(self) -> MasterKey:
        """The key new data keys are wrapped with (during a file-key rotation: the new one)."""
        if self.kms == "transit":
            return self.transit()
        pending = pending_key_file(self.settings)
        if pending.exists():
            return FileMasterKey.load(pending)
        return FileMasterKey.load_or_create(self.settings.master_key_file)

    def wrap(self, data_key: bytes, context: str) -> WrappedKey:
        return self.wrapping_key().wrap(data_key, context)

    def unwrap(self, wrapped: WrappedKey, context: str) -> bytes:
        return self.key_for(wrapped, context).unwrap(wrapped, context)

    def key_for(self, wrapped: WrappedKey, context: str) -> MasterKey:
        """The provider holding the master key that wrapped ``wrapped``."""
        if wrapped.key_id.startswith("transit:"):
            if self.kms != "transit":
                raise KeyError_(
                    f"'{context}' was encrypted under KMS key {wrapped.key_id}; set HYGIE_KMS=transit "
                    "(and HYGIE_KMS_ADDR, HYGIE_KMS_TOKEN_FILE) to read it"
                )
            return self.transit()
        files = [pending_key_file(self.settings), self.settings.master_key_file]
        found = [FileMasterKey.load(p) for p in files if p.exists()]
        for key in found:
            if key.key_id == wrapped.key_id:
                return key
        configured = ", ".join(k.key_id for k in found) or f"none ({self.settings.master_key_file} not found)"
        raise KeyError_(
            f"'{context}' was encrypted under master key {wrapped.key_id}, but the configured master key is "
            f"{configured}: wrong HYGIE_MASTER_KEY_FILE?"
        )


def new_data_key() -> bytes:
    return os.urandom(KEY_BYTES)
