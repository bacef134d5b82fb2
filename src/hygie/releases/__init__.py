"""Immutable, versioned warehouse releases: encrypted Parquet files plus a manifest, published atomically."""

from hygie.releases.manifest import LineageEntry, Manifest, TableEntry
from hygie.releases.store import Release, ReleaseBuilder, ReleaseStore, read_rejects, validate_name

__all__ = [
    "LineageEntry",
    "Manifest",
    "Release",
    "ReleaseBuilder",
    "ReleaseStore",
    "TableEntry",
    "read_rejects",
    "validate_name",
]
