"""The analysis kinds a study file may name: the one place where a new analysis is plugged in."""

from __future__ import annotations

from hygie.analyses.base import Analysis
from hygie.analyses.characterisation import Characterisation
from hygie.analyses.cohort_counts import CohortCounts
from hygie.analyses.drug_utilisation import DrugUtilisation


def analyses() -> dict[str, Analysis]:
    """Study-file key -> analysis. Imported here, explicitly, so the list of what hygie can run is one read."""
    kinds: list[Analysis] = [
        CohortCounts(),
        Characterisation(),
        DrugUtilisation(),
    ]
    return {kind.key: kind for kind in kinds}
