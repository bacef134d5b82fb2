"""Encryption keys for patient-level files (envelope encryption).

Each release has its own random 256-bit data key, used by DuckDB's Parquet modular encryption (AES-GCM).
The data key is stored in the release manifest only *wrapped* (AES-256-GCM) by the operator's master key,
which lives outside the release (``HYGIE_MASTER_KEY_FILE``, default ``HYGIE_HOME/keys/master.key``).
Without the master key a release is unreadable; deleting a wrapped key shreds its release.
See docs/decisions/0002-warehouse-storage-and-encryption.md.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hygie.errors import HygieError

KEY_BYTES = 32


class KeyError_(HygieError):
    """The master key is missing, unreadable or not the one that wrapped a data key."""


@dataclass(frozen=True)
class WrappedKey:
    key_id: str  # fingerprint of the master key that wrapped it
    blob: str  # base64(nonce || ciphertext)

    def to_json(self) -> dict[str, str]:
        return {"algorithm": "AES-256-GCM", "key_id": self.key_id, "blob": self.blob}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> WrappedKey:
        return cls(key_id=data["key_id"], blob=data["blob"])


class MasterKey:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise KeyError_(f"master key must be {KEY_BYTES} bytes, found {len(key)}")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"hygie-master-key-id" + key).hexdigest()[:16]

    @classmethod
    def load_or_create(cls, path: Path) -> MasterKey:
        """Read the master key file; create it (mode 0600) when it does not exist yet."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(base64.b64encode(os.urandom(KEY_BYTES)) + b"\n")
        try:
            raw = base64.b64decode(path.read_bytes().strip(), validate=True)
        except (OSError, ValueError) as e:
            raise KeyError_(f"{path}: cannot read the master key ({e.__class__.__name__})") from None
        return cls(raw)

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
        raw = base64.b64decode(wrapped.blob)
        try:
            return self._aead.decrypt(raw[:12], raw[12:], context.encode())
        except InvalidTag:
            raise KeyError_(f"the data key of '{context}' does not verify: manifest or key tampered") from None


def new_data_key() -> bytes:
    return os.urandom(KEY_BYTES)
