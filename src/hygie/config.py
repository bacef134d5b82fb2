"""Where hygie keeps its state: one folder, ``HYGIE_HOME`` (default ``./.hygie``).

Everything hygie writes lives below it, in folders named here once, unless an operator moves the master key
elsewhere with ``HYGIE_MASTER_KEY_FILE`` (recommended in production: keep keys off the data volume).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    master_key_file: Path
    memory_limit: str = "4GB"  # a study's DuckDB working memory; beyond it DuckDB spills to `tmp`
    threads: int | None = None  # None: DuckDB's default (all cores)
    query_store: str = "auto"  # DuckDB reads releases from a derived encrypted database: auto, always, off (0021)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("HYGIE_HOME", ".hygie")).expanduser().absolute()
        key_file = env.get("HYGIE_MASTER_KEY_FILE")
        threads = env.get("HYGIE_THREADS")
        return cls(
            home=home,
            master_key_file=Path(key_file).expanduser().absolute() if key_file else home / "keys" / "master.key",
            memory_limit=env.get("HYGIE_MEMORY_LIMIT", cls.memory_limit),
            threads=int(threads) if threads else None,
            query_store=env.get("HYGIE_QUERY_STORE", cls.query_store),
        )

    # One folder per kind of state. Releases are published by renaming a staging folder into `releases`,
    # so both must be on the same file system: they are siblings here.
    @property
    def releases_dir(self) -> Path:
        return self.home / "releases"

    @property
    def vocabularies_dir(self) -> Path:
        return self.home / "vocabularies"

    @property
    def sites_dir(self) -> Path:
        return self.home / "sites"

    @property
    def staging_dir(self) -> Path:
        return self.home / "staging"

    @property
    def trash_dir(self) -> Path:
        return self.home / "trash"

    @property
    def results_dir(self) -> Path:
        return self.home / "results"

    @property
    def query_stores_dir(self) -> Path:
        """Derived, encrypted DuckDB copies of releases (rebuilt on demand, so not backed up)."""
        return self.home / "query_stores"

    @property
    def tmp_dir(self) -> Path:
        return self.home / "tmp"

    @property
    def extension_dir(self) -> Path:
        return self.home / "duckdb_extensions"
