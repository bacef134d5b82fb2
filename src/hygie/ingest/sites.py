"""Data providers (hospital sites): who deposits, in which format, with which source vocabularies."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Literal

from hygie.config import Settings
from hygie.errors import ConflictError, HygieError, NotFoundError
from hygie.releases import ReleaseStore, validate_name

Format = Literal["omop", "fhir"]
FORMATS: tuple[str, ...] = ("omop", "fhir")

# Which vocabulary a site's source codes belong to, per table, unless the site says otherwise.
DEFAULT_SOURCE_VOCABULARIES = {
    "person": "Gender",
    "visit_occurrence": "Visit",
    "condition_occurrence": "ICD10",
    "drug_exposure": "ATC",
    "measurement": "LOINC",
    "observation": "LOINC",
    "procedure_occurrence": "CCAM",
}


@dataclass(frozen=True)
class Site:
    name: str
    format: str
    created_at: str
    source_vocabularies: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SOURCE_VOCABULARIES))


class SiteRegistry:
    """Sites live in ``HYGIE_HOME/sites/<name>/site.json``; their deposits beside it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def add(self, name: str, format: str, source_vocabularies: dict[str, str] | None = None) -> Site:
        validate_name(name)
        if format not in FORMATS:
            raise HygieError(f"unknown site format {format!r} (formats: {', '.join(FORMATS)})")
        folder = self.settings.sites_dir / name
        if (folder / "site.json").exists():
            raise ConflictError(f"site {name!r} already exists")
        site = Site(
            name,
            format,
            dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            {**DEFAULT_SOURCE_VOCABULARIES, **(source_vocabularies or {})},
        )
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / "site.json.partial"
        partial.write_text(json.dumps(asdict(site), indent=2) + "\n")
        os.replace(partial, folder / "site.json")
        return site

    def get(self, name: str) -> Site:
        path = self.settings.sites_dir / name / "site.json"
        if not path.is_file():
            known = ", ".join(s.name for s in self.list()) or "none"
            raise NotFoundError(f"no site named {name!r} (sites: {known}); add it with `hygie site add`")
        return Site(**json.loads(path.read_text()))

    def list(self) -> list[Site]:
        root = self.settings.sites_dir
        if not root.exists():
            return []
        return [self.get(p.name) for p in sorted(root.iterdir()) if (p / "site.json").is_file()]

    def deposits(self, site: Site) -> ReleaseStore:
        return ReleaseStore(self.settings, root=self.settings.sites_dir / site.name / "deposits", kind="deposit")
