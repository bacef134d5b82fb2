"""Apache Spark (local mode here, a cluster in production) for the study engine.

A release's Parquet files are encrypted with DuckDB's Parquet modular encryption; Spark can read that format
only through a JVM-side key management client, which hygie does not ship yet. Until then ``release_tables``
decrypts through DuckDB and hands Arrow tables to Spark: right for tests and one machine, not for national
scale (see docs/decisions/0005).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from hygie.config import Settings

if TYPE_CHECKING:
    import ibis.expr.types as ir
    from pyspark.sql import SparkSession

    from hygie.engine.scope import DataScope
    from hygie.releases.store import Release


def local_session(settings: Settings, *, cores: int = 1) -> SparkSession:
    """A local Spark session that downloads nothing and writes only below HYGIE_HOME."""
    from pyspark.sql import SparkSession

    local_dir = settings.tmp_dir / "spark"
    local_dir.mkdir(parents=True, exist_ok=True)
    session = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("hygie")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")  # local mode listens on loopback only
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(max(cores, 1)))
        .config("spark.default.parallelism", str(max(cores, 1)))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.local.dir", str(local_dir))
        # Shuffle, spill and broadcast files hold patient rows: encrypted (AES, a key per application, in memory).
        .config("spark.io.encryption.enabled", "true")
        .config("spark.io.encryption.keySizeBits", "256")
        .config("spark.sql.warehouse.dir", str(local_dir / "warehouse"))
        .config("spark.driver.memory", "1g")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # Local mode runs small data: skip adaptive re-planning and whole-stage code generation, which cost more
        # than they save below millions of rows (measured: about 1.5x faster per cohort on GiBleed-sized data).
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.sql.codegen.wholeStage", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def release_tables(release: Release, settings: Settings, scope: DataScope | None = None) -> dict[str, pa.Table]:
    """Every CDM table of a release (within ``scope``) as Arrow, decrypted in memory through DuckDB."""
    from hygie.engine.duckdb import DuckDBEngine

    with DuckDBEngine(release, settings, scope=scope) as engine:
        return {name: engine.con.execute(f'SELECT * FROM "{name}"').to_arrow_table() for name in engine.tables()}


class SparkEngine:
    """A release on Spark: the ``Engine`` interface (Ibis tables) and a cohort runner over the same session.

    CDM tables become Spark temporary views when first used."""

    name = "spark"

    def __init__(
        self,
        release: Release,
        settings: Settings,
        session: SparkSession | None = None,
        scope: DataScope | None = None,
    ) -> None:
        from hygie.cohorts.service import SparkRunner

        self.release = release
        self.session = session or local_session(settings)
        tables = release_tables(release, settings, scope)
        self.table_names = list(tables)
        self.runner = SparkRunner(self.session, tables)

    def tables(self) -> list[str]:
        return list(self.table_names)

    @property
    def ibis(self):  # noqa: ANN201 - ibis.backends.pyspark.Backend
        import ibis

        return ibis.pyspark.connect(self.session)

    def table(self, name: str) -> ir.Table:
        self.runner.ensure_views([name])
        return self.ibis.table(name)

    def to_arrow(self, expr: ir.Expr) -> pa.Table:
        return self.ibis.to_pyarrow(expr)

    def close(self) -> None:
        self.runner.close()

    def __enter__(self) -> SparkEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
