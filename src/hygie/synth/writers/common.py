"""What every site writer shares: local patient ids, per-table record counters, the deposit manifest."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from hygie.checksums import sha256_file
from hygie.synth.clinical import Chunk, Records, take

_PRIME = 2_147_483_647  # 2^31 - 1: ids stay positive 32-bit integers


def local_ids(pid: np.ndarray, site: int, seed: int) -> np.ndarray:
    """Each site's own patient number: a bijection of the global number, different at every site, so that the
    same person has unrelated ids at two sites."""
    rng = np.random.default_rng([seed, 1_000_003, site])
    a = int(rng.integers(2, _PRIME - 1))
    b = int(rng.integers(0, _PRIME))
    # pid < 2^31 and a < 2^31: the product fits in int64.
    return (pid.astype(np.int64) * a + b) % _PRIME + 1


def site_records(chunk: Chunk, site: int) -> dict[str, Records]:
    """The chunk's records kept by ``site``."""
    out = {}
    for name in ("visits", "conditions", "drugs", "measurements", "procedures", "deaths", "periods"):
        table: Records = getattr(chunk, name)
        out[name] = take(table, table["site"] == site)
    return out


class Counters:
    """Next record id per table, carried across chunks so ids stay unique within a site."""

    def __init__(self) -> None:
        self.next: dict[str, int] = {}

    def take(self, table: str, n: int) -> np.ndarray:
        first = self.next.get(table, 1)
        self.next[table] = first + n
        return np.arange(first, first + n, dtype=np.int64)


def visit_ids(chunk_visits: Records, site: int, ids: np.ndarray) -> np.ndarray:
    """Map the chunk's visit positions to the site's visit ids (-1 where the visit is at another site)."""
    out = np.full(len(chunk_visits["site"]), -1, dtype=np.int64)
    out[chunk_visits["site"] == site] = ids
    return out


def write_manifest(folder: Path, rows: dict[str, int], files: dict[str, Path]) -> None:
    """MANIFEST.csv (table, rows, sha256): the depositor's list, which ``hygie cdm load`` verifies."""
    with (folder / "MANIFEST.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["table", "rows", "sha256"])
        for table in sorted(files):
            w.writerow([table, rows.get(table, 0), sha256_file(files[table])])
