"""Master keys held by an OpenBao / Vault transit engine: data keys are wrapped and unwrapped by the KMS.

The hub sends a data key (base64) with its context as AES-GCM associated data to
``POST <addr>/v1/<mount>/encrypt/<key>`` and stores the returned ``vault:v<N>:...`` ciphertext; reading sends it
back to ``/decrypt/``. The master key never leaves the KMS, and each ciphertext names its key version, so a
KMS-side ``rotate`` keeps every release readable until ``min_decryption_version`` is raised.

Configuration: ``HYGIE_KMS_ADDR`` (default ``http://127.0.0.1:8200``), ``HYGIE_KMS_MOUNT`` (``transit``),
``HYGIE_KMS_KEY`` (``hygie``), the token in ``HYGIE_KMS_TOKEN_FILE`` (preferred) or ``HYGIE_KMS_TOKEN``.
A KMS off the loopback interface must be reached over https and be on the hosts attested to be in the EU/EEA
(``hygie.jurisdiction``, ``HYGIE_EU_HOSTS``).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hygie.config import Settings
from hygie.jurisdiction import check_endpoint, is_loopback
from hygie.keys import KeyError_, WrappedKey

DEFAULT_ADDR = "http://127.0.0.1:8200"
TIMEOUT_SECONDS = 10.0


class TransitMasterKey:
    """A transit key of OpenBao or Vault, used through its HTTP API."""

    def __init__(
        self,
        addr: str,
        token: str,
        *,
        mount: str = "transit",
        key: str = "hygie",
        environ: Mapping[str, str] | None = None,
    ):
        parts = urlsplit(addr)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise KeyError_(f"HYGIE_KMS_ADDR={addr!r}: expected http(s)://host:port")
        if not is_loopback(parts.hostname):
            if parts.scheme != "https":
                raise KeyError_(f"HYGIE_KMS_ADDR={addr!r}: a remote KMS must be reached over https")
            check_endpoint("HYGIE_KMS_ADDR (the KMS)", parts.hostname, environ)
        if not token:
            raise KeyError_("no KMS token: set HYGIE_KMS_TOKEN_FILE (or HYGIE_KMS_TOKEN)")
        self.addr = addr.rstrip("/")
        self.mount = mount.strip("/")
        self.key = key
        self.key_id = f"transit:{self.mount}/{self.key}"
        self._token = token
        # No proxy from the environment may redirect key material: an opener without proxy handling.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @classmethod
    def from_env(cls, settings: Settings, env: dict[str, str]) -> TransitMasterKey:
        token = env.get("HYGIE_KMS_TOKEN", "")
        token_file = env.get("HYGIE_KMS_TOKEN_FILE")
        if token_file:
            try:
                token = Path(token_file).read_text().strip()
            except OSError as e:
                raise KeyError_(f"{token_file}: cannot read the KMS token ({e.__class__.__name__})") from None
        return cls(
            env.get("HYGIE_KMS_ADDR", DEFAULT_ADDR),
            token,
            mount=env.get("HYGIE_KMS_MOUNT", "transit"),
            key=env.get("HYGIE_KMS_KEY", "hygie"),
            environ=env,
        )

    def _request(self, method: str, path: str, payload: dict[str, Any] | None, what: str) -> dict[str, Any]:
        body = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(
            f"{self.addr}/v1/{self.mount}/{path}",
            data=body,
            method=method,
            headers={"X-Vault-Token": self._token, "Content-Type": "application/json"},
        )
        try:
            with self._opener.open(request, timeout=TIMEOUT_SECONDS) as response:
                content = response.read()
        except urllib.error.HTTPError as e:
            try:
                errors = "; ".join(json.loads(e.read()).get("errors", [])) or e.reason
            except ValueError:
                errors = e.reason
            raise KeyError_(f"KMS refused {what} with key {self.key_id} (HTTP {e.code}): {errors}") from None
        except (urllib.error.URLError, OSError) as e:
            raise KeyError_(f"KMS {self.addr} unreachable while {what} ({e.__class__.__name__})") from None
        if not content:
            return {}
        return json.loads(content).get("data") or {}

    def _post(self, path: str, payload: dict[str, Any] | None, what: str) -> dict[str, Any]:
        return self._request("POST", path, payload if payload is not None else {}, what)

    def wrap(self, data_key: bytes, context: str) -> WrappedKey:
        data = self._post(
            f"encrypt/{self.key}",
            {"plaintext": _b64(data_key), "associated_data": _b64(context.encode())},
            f"wrapping the data key of '{context}'",
        )
        return WrappedKey(self.key_id, data["ciphertext"], algorithm="transit")

    def unwrap(self, wrapped: WrappedKey, context: str) -> bytes:
        if wrapped.key_id != self.key_id:
            raise KeyError_(
                f"'{context}' was encrypted under {wrapped.key_id}, but the configured KMS key is {self.key_id}"
            )
        try:
            data = self._post(
                f"decrypt/{self.key}",
                {"ciphertext": wrapped.blob, "associated_data": _b64(context.encode())},
                f"unwrapping the data key of '{context}'",
            )
        except KeyError_ as e:
            if "authentication failed" in str(e):
                raise KeyError_(
                    f"the data key of '{context}' does not verify under {self.key_id}: manifest or key tampered"
                ) from None
            raise
        return base64.b64decode(data["plaintext"])

    # -- key versions (rotation) ----------------------------------------------------------------------------------
    def rotate(self) -> int:
        """Add a new key version in the KMS; new wraps use it. Returns the latest version."""
        self._post(f"keys/{self.key}/rotate", None, "rotating the key")
        return self.latest_version()

    def latest_version(self) -> int:
        return int(self._request("GET", f"keys/{self.key}", None, "reading the key")["latest_version"])

    def retire_versions_below(self, version: int) -> None:
        """Raise ``min_decryption_version``: ciphertexts of older versions can no longer be unwrapped."""
        self._post(f"keys/{self.key}/config", {"min_decryption_version": version}, "retiring old key versions")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
