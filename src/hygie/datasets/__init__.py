"""Example datasets shipped inside the package (no download): each a folder of CDM table files.

``gibleed``: OHDSI's Eunomia GiBleed sample (synthetic Synthea patients, CDM 5.3, Apache-2.0); see
``gibleed/PROVENANCE.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hygie.errors import NotFoundError


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    synthetic: bool
    allow_duplicate_keys: bool = False  # a known quirk of the dataset, documented in its PROVENANCE.md

    @property
    def folder(self) -> Path:
        return Path(str(resources.files("hygie.datasets").joinpath(self.name, "cdm")))


DATASETS = {
    "gibleed": Dataset(
        "gibleed",
        "OHDSI Eunomia GiBleed: 2,694 synthetic patients (Synthea), CDM 5.3, with a vocabulary subset",
        synthetic=True,
        allow_duplicate_keys=True,  # 4,384 drug_exposure, 2,183 measurement and 6 observation ids repeat
    ),
}


def get(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise NotFoundError(f"no dataset named {name!r} (available: {', '.join(DATASETS)})") from None
