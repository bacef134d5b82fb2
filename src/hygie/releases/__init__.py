"""Immutable, versioned warehouse releases: encrypted Parquet files plus a manifest, published atomically."""

from hygie.releases.manifest import LineageEntry, Manifest, TableEntry
from hygie.releases.store import Release, ReleaseBuilder, ReleaseStore, validate_name

__all__ = [
    "LineageEntry",
    "Manifest",
    "Release",
    "ReleaseBuilder",
    "ReleaseStore",
    "TableEntry",
    "validate_name",
]
