"""Master key rotation: re-wrap every data key under a new master key, crash-safe at every instant.

Key holders are the manifests of releases, installed vocabularies and site deposits (cohort results are
encrypted with their release's data key, so they follow it), and the accounts' TOTP secrets in the metadata
store (re-wrapped in one transaction). Rotation never re-encrypts data: it re-wraps
data keys, one manifest at a time, each by an atomic rename of a complete, fsync'ed new manifest.

File master keys:
1. a new key is written to ``master.key.new`` (from then on new releases are wrapped with it);
2. every manifest still under the old key is re-wrapped (readers find either key by its id);
3. when none is left, ``master.key.new`` replaces ``master.key`` in one rename; the old key is destroyed
   (or first copied where ``keep_old`` says, for backups still under it).
A kill at any point leaves every manifest readable with one of the two keys; running the rotation again
resumes at the manifest it stopped at.

Transit (KMS) keys: the KMS adds a key version, every data key is re-wrapped under it (``vault:v<N>:``), then
older versions are retired (``min_decryption_version``), after which their ciphertexts are refused. A re-run
after a kill rotates once more and re-wraps everything under the newest version.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hygie.config import Settings
from hygie.durability import fsync_path
from hygie.errors import HygieError
from hygie.keys import FileMasterKey, KeyError_, Keyring, MasterKey, WrappedKey, pending_key_file
from hygie.releases.manifest import MANIFEST_FILE, Manifest

_TMP_PREFIX = ".manifest.rewrap."
_NOT_HOLDERS = ("staging", "trash", "tmp", "keys", "duckdb_extensions", "audit")


@dataclass(frozen=True)
class Holder:
    """One manifest holding a wrapped data key."""

    manifest: Path
    kind: str  # release, vocabulary, deposit
    name: str
    wrapped: WrappedKey

    @property
    def context(self) -> str:
        return f"{self.kind}:{self.name}"


def _stores(settings: Settings) -> Iterator[tuple[str, Path]]:
    """Every folder whose sub-folders are encrypted table sets, with the kind bound into their keys."""
    yield "release", settings.releases_dir
    yield "vocabulary", settings.vocabularies_dir
    if settings.sites_dir.is_dir():
        for site in sorted(settings.sites_dir.iterdir()):
            yield "deposit", site / "deposits"


def holders(settings: Settings) -> list[Holder]:
    found = []
    for kind, root in _stores(settings):
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            path = folder / MANIFEST_FILE
            if not path.is_file():
                continue
            encryption = json.loads(path.read_text()).get("encryption") or {}
            if "data_key" in encryption:
                found.append(Holder(path, kind, folder.name, WrappedKey.from_json(encryption["data_key"])))
    return found


def stray_holders(settings: Settings, known: list[Holder]) -> list[Path]:
    """Manifests with a wrapped key outside the known stores (a new store this module must learn about)."""
    known_paths = {h.manifest for h in known}
    strays = []
    for path in settings.home.rglob(MANIFEST_FILE):
        relative = path.relative_to(settings.home)
        if relative.parts[0] in _NOT_HOLDERS or path in known_paths:
            continue
        try:
            if "data_key" in (json.loads(path.read_text()).get("encryption") or {}):
                strays.append(path)
        except (ValueError, AttributeError):
            continue
    return strays


@dataclass
class KeyStatus:
    kms: str
    wrapping_key: str
    pending_rotation: bool
    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (kind, key_id, version) -> manifests
    strays: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "kms": self.kms,
            "wrapping_key": self.wrapping_key,
            "pending_rotation": self.pending_rotation,
            "data_keys": [
                {"kind": kind, "key_id": key_id, "version": version, "count": n}
                for (kind, key_id, version), n in sorted(self.counts.items())
            ],
            "unknown_holders": self.strays,
        }


def status(settings: Settings, keyring: Keyring | None = None) -> KeyStatus:
    keyring = keyring or Keyring(settings)
    found = holders(settings)
    wrapping = keyring.wrapping_key()
    result = KeyStatus(keyring.kms, wrapping.key_id, pending_key_file(settings).exists())
    for h in found:
        result.counts[(h.kind, h.wrapped.key_id, h.wrapped.version)] += 1
    for _, wrapped in totp_secrets(settings):
        result.counts[("totp", wrapped.key_id, wrapped.version)] += 1
    result.strays = [str(p.relative_to(settings.home)) for p in stray_holders(settings, found)]
    return result


@dataclass(frozen=True)
class RotationReport:
    old_key: str | None
    new_key: str
    rewrapped: int
    already: int  # manifests found already under the new key (a resumed rotation)


def rotate_master(
    settings: Settings,
    *,
    keep_old: Path | None = None,
    retire: bool = True,
    step: Callable[[str], None] = lambda _s: None,
) -> RotationReport:
    keyring = Keyring(settings)
    if keyring.kms == "transit":
        return _rotate_transit(settings, keyring, retire=retire, step=step)
    current = settings.master_key_file
    pending = pending_key_file(settings)
    if not current.exists() and not pending.exists():
        raise KeyError_(f"{current}: no master key yet, nothing to rotate")
    new = FileMasterKey.load(pending) if pending.exists() else FileMasterKey.create(pending)
    _refuse_while_building(settings)
    old_id = FileMasterKey.load(current).key_id if current.exists() else None
    step(f"re-wrapping data keys under master key {new.key_id}")
    rewrapped, already = _rewrap_all(settings, keyring, new, lambda w: w.key_id == new.key_id)
    if keep_old is not None and current.exists():
        _copy_key(current, keep_old)
    os.replace(pending, current)  # the new key becomes the master key; the old one is gone
    fsync_path(current.parent)
    return RotationReport(old_id, new.key_id, rewrapped, already)


def _rotate_transit(
    settings: Settings, keyring: Keyring, *, retire: bool, step: Callable[[str], None]
) -> RotationReport:
    from hygie.keys_transit import TransitMasterKey

    kms = keyring.transit()
    assert isinstance(kms, TransitMasterKey)
    old = kms.latest_version()
    latest = kms.rotate()  # first: a build starting from now on wraps with the new version
    _refuse_while_building(settings)  # a build that started before may still publish under the old one
    step(f"re-wrapping data keys under {kms.key_id} version {latest}")
    rewrapped, already = _rewrap_all(
        settings, keyring, kms, lambda w: w.key_id == kms.key_id and w.version == f"v{latest}"
    )
    if retire:
        kms.retire_versions_below(latest)
    return RotationReport(f"{kms.key_id} v{old}", f"{kms.key_id} v{latest}", rewrapped, already)


def _rewrap_all(
    settings: Settings, keyring: Keyring, new: MasterKey, done: Callable[[WrappedKey], bool]
) -> tuple[int, int]:
    rewrapped = already = 0
    found = holders(settings)
    for h in found:
        _sweep_temporaries(h.manifest.parent)
        if done(h.wrapped):
            already += 1
            continue
        data_key = keyring.unwrap(h.wrapped, h.context)
        _replace_wrapped_key(h.manifest, new.wrap(data_key, h.context))
        rewrapped += 1
    totp_done, totp_already = _rewrap_totp_secrets(settings, keyring, new, done)
    rewrapped, already = rewrapped + totp_done, already + totp_already
    strays = stray_holders(settings, found)
    if strays:
        raise HygieError(
            "data keys were found in manifests this rotation does not know; nothing was retired: "
            + ", ".join(str(p.relative_to(settings.home)) for p in strays)
        )
    return rewrapped, already


def _metadata_store_exists(settings: Settings) -> bool:
    from hygie.governance.store import database_url

    url = database_url(settings)
    return not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).exists()


def totp_secrets(settings: Settings) -> list[tuple[str, WrappedKey]]:
    """(username, wrapped TOTP secret) of every account with a second factor (governance store)."""
    if not _metadata_store_exists(settings):
        return []
    from sqlalchemy import select

    from hygie.governance.models import TotpSecret, User
    from hygie.governance.store import open_store

    with open_store(settings, upgrade=False) as store, store.session() as session:
        rows = session.execute(select(User.username, TotpSecret.key_id, TotpSecret.wrapped).join(TotpSecret))
        return [(username, WrappedKey(key_id, blob)) for username, key_id, blob in rows]


def _rewrap_totp_secrets(
    settings: Settings, keyring: Keyring, new: MasterKey, done: Callable[[WrappedKey], bool]
) -> tuple[int, int]:
    """Re-wrap the accounts' TOTP secrets, all in one transaction of the metadata store."""
    if not _metadata_store_exists(settings):
        return 0, 0
    from sqlalchemy import select

    from hygie.governance.models import TotpSecret, User
    from hygie.governance.store import open_store

    rewrapped = already = 0
    with open_store(settings, upgrade=False) as store, store.session(serialised=True) as session:
        for username, secret in session.execute(select(User.username, TotpSecret).join(TotpSecret)):
            wrapped = WrappedKey(secret.key_id, secret.wrapped)
            if done(wrapped):
                already += 1
                continue
            context = f"totp:{username}"
            fresh = new.wrap(keyring.unwrap(wrapped, context), context)
            secret.key_id, secret.wrapped = fresh.key_id, fresh.blob
            rewrapped += 1
    return rewrapped, already


def _replace_wrapped_key(manifest_path: Path, wrapped: WrappedKey) -> None:
    """Write the manifest with the new wrapped key next to it, fsync, then rename over the old one."""
    manifest = Manifest.from_json(json.loads(manifest_path.read_text()))
    assert manifest.encryption is not None
    manifest.encryption = {**manifest.encryption, "data_key": wrapped.to_json()}
    tmp = manifest_path.with_name(f"{_TMP_PREFIX}{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o440)
    with os.fdopen(fd, "w") as f:
        f.write(manifest.dumps())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, manifest_path)
    fsync_path(manifest_path.parent)


def _sweep_temporaries(folder: Path) -> None:
    for leftover in folder.glob(f"{_TMP_PREFIX}*"):
        leftover.unlink(missing_ok=True)


def _refuse_while_building(settings: Settings) -> None:
    """A build that loaded the old key before the rotation began would publish a manifest under it."""
    from hygie.releases.store import _alive

    staging = settings.staging_dir
    if not staging.is_dir():
        return
    for folder in staging.iterdir():
        try:
            pid = int((folder / ".owner").read_text())
        except (OSError, ValueError):
            continue
        if _alive(pid) and pid != os.getpid():
            raise HygieError(
                f"a build is running (process {pid}); run the rotation again when it ends "
                "(every release stays readable meanwhile)"
            )


def _copy_key(source: Path, target: Path) -> None:
    if target.exists():
        raise HygieError(f"{target} exists: choose where to keep the old master key")
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f, source.open("rb") as src:
        shutil.copyfileobj(src, f)
        f.flush()
        os.fsync(f.fileno())
