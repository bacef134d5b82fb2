"""Backup benchmark: ``hygie backup`` create, verify and restore of a hub holding a generated release of
``HYGIE_BENCH_BACKUP_MB`` MB of Parquet (default 500), against a plain uncompressed tar of the same folder (the
least a backup must do), run in the same script. Median of several runs; each run is a child process (peak RSS).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from benchmarks.common import ratio, repeat, run_child

RUNS = int(os.environ.get("HYGIE_BENCH_RUNS", "3"))
MEGABYTES = int(os.environ.get("HYGIE_BENCH_BACKUP_MB", "500"))

MAKE_HUB = """
from pathlib import Path
import duckdb
from hygie.config import Settings
from hygie.ingest.cdm_load import load_cdm
folder = Path("{tmp}/cdm")
folder.mkdir()
rows = {rows}
duckdb.execute(f'''COPY (SELECT range + 1 AS drug_exposure_id, (hash(range) % 100000)::BIGINT + 1 AS person_id,
    (hash(range, 1) % 5000)::BIGINT + 1100000 AS drug_concept_id,
    DATE '2010-01-01' + CAST(hash(range, 2) % 3650 AS INTEGER) AS drug_exposure_start_date,
    DATE '2010-01-01' + CAST(hash(range, 2) % 3650 + hash(range, 3) % 90 AS INTEGER) AS drug_exposure_end_date,
    32838 AS drug_type_concept_id, hash(range, 4)::VARCHAR AS drug_source_value
    FROM range({{rows}})) TO '{tmp}/cdm/drug_exposure.parquet' (FORMAT parquet)''')
duckdb.execute(f'''COPY (SELECT range + 1 AS person_id, 8507 AS gender_concept_id, 1960 AS year_of_birth,
    0 AS race_concept_id, 0 AS ethnicity_concept_id FROM range(100000))
    TO '{tmp}/cdm/person.parquet' (FORMAT parquet)''')
load_cdm(folder, "bench", Settings.from_env({{"HYGIE_HOME": "{home}"}}), synthetic=True)
"""

CREATE = """
from pathlib import Path
from hygie.backup import create_backup
from hygie.config import Settings
out = Path("{tmp}/b{i}.hbk")
create_backup(Settings.from_env({{"HYGIE_HOME": "{home}"}}), out)
"""

VERIFY = """
from pathlib import Path
from hygie.backup import verify_backup
from hygie.config import Settings
verify_backup(Settings.from_env({{"HYGIE_HOME": "{home}"}}), Path("{tmp}/b0.hbk"))
"""

RESTORE = """
from pathlib import Path
from hygie.backup import restore_backup
from hygie.config import Settings
restore_backup(Settings.from_env({{"HYGIE_HOME": "{home}"}}), Path("{tmp}/b0.hbk"), Path("{tmp}/r{i}"))
"""

TAR = """
import tarfile
with tarfile.open("{tmp}/t{i}.tar", "w") as tar:
    tar.add("{home}", arcname=".")
"""


def main() -> dict[str, object]:
    tmp = tempfile.mkdtemp(prefix="hygie-bench-backup-")
    home = f"{tmp}/home"
    try:
        run_child(MAKE_HUB.format(tmp=tmp, home=home, rows=MEGABYTES * 20_000))
        size = sum(p.stat().st_size for p in Path(home).rglob("*") if p.is_file())
        fill = {"tmp": tmp, "home": home}
        create = repeat(lambda i: CREATE.format(i=i, **fill), RUNS)
        baseline = repeat(lambda i: TAR.format(i=i, **fill), RUNS)
        verify = repeat(VERIFY.format(i=0, **fill), RUNS)
        restore = repeat(lambda i: RESTORE.format(i=i, **fill), RUNS)
        mb = size / 1e6
        return {
            "hub_mb": round(mb, 1),
            "create": create | {"mb_per_s": round(mb / create["median_s"], 1)},
            "verify": verify | {"mb_per_s": round(mb / verify["median_s"], 1)},
            "restore": restore | {"mb_per_s": round(mb / restore["median_s"], 1)},
            "baseline_plain_tar": baseline,
            "ratio_create_vs_plain_tar": ratio(create, baseline),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
