"""Audit log and key benchmarks: appending entries (flock + fsync each, a signed checkpoint every 100),
verifying a large log, and re-wrapping data keys in a master key rotation.

Baselines in the same script: appending the same lines to a file with fsync and no lock, hashing or signing
(the least any durable log must do), and reading the log without checking it.
"""

from __future__ import annotations

import tempfile

from benchmarks.common import repeat

RUNS = 3
APPENDS = 2_000
VERIFY_ENTRIES = 200_000
MANIFESTS = 200

APPEND = """
import tempfile
from pathlib import Path
from hygie.config import Settings
from hygie.governance.audit import AuditLog
home = Path(tempfile.mkdtemp(dir="{tmp}"))
log = AuditLog(Settings(home=home, master_key_file=home / "keys" / "master.key"))
for i in range({n}):
    log.record("cli:bench", "release.build", f"release:r{{i}}", persons=i, deposits=3)
"""

APPEND_BASELINE = """
import os, json, tempfile
path = os.path.join(tempfile.mkdtemp(dir="{tmp}"), "log.jsonl")
for i in range({n}):
    line = json.dumps({{"actor": "cli:bench", "action": "release.build", "object": f"release:r{{i}}"}}) + "\\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, line.encode()); os.fsync(fd); os.close(fd)
"""

MAKE_LOG = """
import os
from pathlib import Path
from hygie.config import Settings
from hygie.governance.audit import GENESIS, AuditLog, canonical, entry_hash
home = Path("{home}")
log = AuditLog(Settings(home=home, master_key_file=home / "keys" / "master.key"))
log.folder.mkdir(parents=True)
prev, lines = GENESIS, []
for seq in range(1, {n} + 1):
    body = {{"seq": seq, "time": "2026-11-28T10:00:00.000000Z", "actor": "cli:bench", "action": "release.build",
            "object": f"release:r{{seq}}", "outcome": "ok", "details": {{"persons": seq}}, "prev": prev}}
    prev = entry_hash(body)
    lines.append(canonical({{**body, "hash": prev}}))
    if seq % 1000 == 0 or seq == {n}:
        with log.log_file.open("ab") as f:
            f.write(b"\\n".join(lines) + b"\\n")
        lines = []
        if seq % 10_000 == 0:
            log.checkpoint()
log.checkpoint()
"""

VERIFY = """
from pathlib import Path
from hygie.config import Settings
from hygie.governance.audit import AuditLog
home = Path("{home}")
settings = Settings(home=home, master_key_file=home / "keys" / "master.key")
result = AuditLog(settings, checkpoint_every=10_000).verify()  # the checkpoint spacing MAKE_LOG used
assert result.ok and result.entries == {n}, result.findings
"""

READ_BASELINE = """
import json
n = sum(1 for line in open("{home}/audit/log.jsonl", "rb") if json.loads(line))
assert n == {n}
"""

MAKE_RELEASES = """
import json, shutil
from pathlib import Path
from hygie.config import Settings
from hygie.ingest.cdm_load import load_cdm
from hygie.keys import Keyring
from tests.cdm_files import write_cdm
home = Path("{home}")
settings = Settings(home=home, master_key_file=home / "keys" / "master.key")
base = load_cdm(write_cdm(home.parent / "cdm"), "base", settings, synthetic=True)
key = base.data_key(settings)
for i in range({n} - 1):
    target = settings.releases_dir / f"copy-{{i}}"
    shutil.copytree(base.path, target)
    manifest = json.loads((base.path / "manifest.json").read_text())
    manifest["name"] = target.name
    manifest["encryption"]["data_key"] = Keyring(settings).wrap(key, f"release:{{target.name}}").to_json()
    (target / "manifest.json").chmod(0o640)
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\\n")
"""

ROTATE = """
from pathlib import Path
from hygie.config import Settings
from hygie.keys_rotation import rotate_master
home = Path("{home}")
report = rotate_master(Settings(home=home, master_key_file=home / "keys" / "master.key"))
assert report.rewrapped == {n}, report
"""


def main() -> dict[str, object]:
    from benchmarks.common import run_child

    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        append = repeat(APPEND.format(tmp=tmp, n=APPENDS), RUNS)
        baseline = repeat(APPEND_BASELINE.format(tmp=tmp, n=APPENDS), RUNS)
        results["append"] = {
            "entries": APPENDS,
            **append,
            "entries_per_s": round(APPENDS / append["median_s"]),
            "baseline_fsync_only": baseline,
        }

        home = f"{tmp}/verify/home"
        run_child(MAKE_LOG.format(home=home, n=VERIFY_ENTRIES))
        verify = repeat(VERIFY.format(home=home, n=VERIFY_ENTRIES), RUNS)
        results["verify"] = {
            "entries": VERIFY_ENTRIES,
            **verify,
            "entries_per_s": round(VERIFY_ENTRIES / verify["median_s"]),
            "baseline_read_json": repeat(READ_BASELINE.format(home=home, n=VERIFY_ENTRIES), RUNS),
        }

        rotations = []
        for i in range(RUNS):
            home = f"{tmp}/rotate{i}/home"
            run_child(MAKE_RELEASES.format(home=home, n=MANIFESTS))
            rotations.append(run_child(ROTATE.format(home=home, n=MANIFESTS)).seconds)
        results["rotate_master"] = {
            "manifests": MANIFESTS,
            "median_s": round(sorted(rotations)[len(rotations) // 2], 3),
            "min_s": round(min(rotations), 3),
        }
    return results


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
