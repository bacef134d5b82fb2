"""The study ``hygie demo`` runs on its synthetic release: GI bleeding among NSAID users and in the population."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from hygie.config import Settings
from hygie.studies.runner import StudyRun, run_study

DEMO_STUDY = Path(str(resources.files("hygie.datasets").joinpath("demo_study", "study.yaml")))


def run_demo_study(settings: Settings, release_name: str, out_dir: Path) -> StudyRun:
    """Run the demo study on ``release_name`` into ``out_dir`` (replaced if it exists: the demo is re-runnable)."""
    return run_study(DEMO_STUDY, release_name, settings, out=out_dir, force=True)
