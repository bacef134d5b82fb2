"""Query engines. Everything above this layer asks an ``Engine`` for tables; nothing else opens DuckDB.

``DuckDBEngine`` (default) runs embedded on one machine. A Spark engine will implement the same
``Engine`` protocol; portable code uses ``Engine.ibis`` expressions (docs/decisions/0003).
"""

from hygie.engine.base import Engine
from hygie.engine.duckdb import DuckDBEngine, connect

__all__ = ["DuckDBEngine", "Engine", "connect"]
