"""The release manifest: what a release holds, where it came from, and how to check it.

A release folder is complete if and only if it holds ``manifest.json``; the manifest is written last,
inside the staging folder, before the one atomic rename that publishes the release.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = "hygie-release/1"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class TableEntry:
    name: str
    file: str  # relative to the release folder
    rows: int
    bytes: int
    sha256: str
    rejected_rows: int = 0  # rows put aside in the rejects file (not in `rows`)
    flagged_rows: int = 0  # rows kept but reported (e.g. orphans)
    # The columns the file stores when it leaves some of its CDM table's out (``cdm.narrow``); None: all of them
    # (or, in a deposit written before manifests listed them, whatever its file holds).
    columns: list[str] | None = None


@dataclass(frozen=True)
class LineageEntry:
    """One input that fed a table of the release."""

    table: str
    source: str  # file name as deposited (no folder: folders can name people or sites)
    source_sha256: str
    source_format: str  # csv, tsv, parquet, ...
    source_cdm_version: str
    rows_read: int
    origin: str  # how it arrived: "cdm load", "dataset gibleed", "deposit <id>"...


@dataclass(frozen=True)
class UnknownConcept:
    """Concept ids used by a table but absent from the release's vocabulary (a warning, never a reject)."""

    table: str
    column: str
    concept_id: int
    rows: int


@dataclass
class Manifest:
    name: str
    sequence: int
    created_at: str
    hygie_version: str
    cdm_version: str
    synthetic: bool
    tables: dict[str, TableEntry]
    lineage: list[LineageEntry]
    encryption: dict[str, Any] | None
    description: str = ""
    rejects_file: str | None = None
    unknown_concepts: list[UnknownConcept] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    linkage: dict[str, Any] | None = None  # releases built from deposits: how persons were linked
    quality: list[dict[str, Any]] = field(default_factory=list)  # data-quality check results (ingest.quality)
    format: str = FORMAT

    @property
    def rejected_rows(self) -> int:
        return sum(t.rejected_rows for t in self.tables.values())

    @property
    def flagged_rows(self) -> int:
        return sum(t.flagged_rows for t in self.tables.values())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["tables"] = {name: asdict(t) for name, t in self.tables.items()}
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown release format {data.get('format')!r}")
        return cls(
            name=data["name"],
            sequence=data["sequence"],
            created_at=data["created_at"],
            hygie_version=data["hygie_version"],
            cdm_version=data["cdm_version"],
            synthetic=data["synthetic"],
            tables={k: TableEntry(**v) for k, v in data["tables"].items()},
            lineage=[LineageEntry(**e) for e in data["lineage"]],
            encryption=data["encryption"],
            description=data.get("description", ""),
            rejects_file=data.get("rejects_file"),
            unknown_concepts=[UnknownConcept(**u) for u in data.get("unknown_concepts", [])],
            warnings=list(data.get("warnings", [])),
            linkage=data.get("linkage"),
            quality=list(data.get("quality", [])),
        )
