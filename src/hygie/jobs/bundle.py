"""What a job carries in: the study file and the Circe cohort files it names, nothing else.

Jobs accept cohorts defined as Circe (ATLAS) JSON only. A ``python:`` cohort would run the researcher's own
code inside the hub, and a ``file:`` cohort would let a researcher bring person ids into a project that must
never handle them (probing who is in the data); both stay available for notebooks on synthetic data
(docs/decisions/0016-jobs-and-airlock.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hygie.errors import HygieError

if TYPE_CHECKING:
    from hygie.studies import Study


def bundle_files(study_file: Path) -> tuple[Study, list[Path]]:
    """The validated study and the cohort files to copy with it (below the study file's folder)."""
    from hygie.studies import load_study
    from hygie.studies.model import CirceCohort

    _refuse_code_before_loading(study_file)  # loading a study runs its python: cohorts
    study = load_study(study_file)
    base = study_file.resolve().parent
    files = []
    for name, entry in study.cohorts.items():
        if not isinstance(entry.source, CirceCohort):
            raise HygieError(
                f"{study_file.name}: cohort {name!r}: jobs accept Circe (ATLAS) cohort definitions only "
                f"({entry.label.split(':', 1)[0]} cohorts are for notebooks on synthetic data)"
            )
        path = (base / entry.source.circe).resolve()
        if not path.is_relative_to(base):
            raise HygieError(
                f"{study_file.name}: cohort {name!r}: {entry.source.circe} lies outside the study file's folder; "
                "keep a job's files in that folder or below it"
            )
        files.append(path)
    return study, files


def _refuse_code_before_loading(study_file: Path) -> None:
    """Refuse non-Circe cohorts from the raw YAML, before anything in the file is executed or read."""
    import yaml

    try:
        raw = yaml.safe_load(study_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return  # load_study reports it, with the line
    cohorts = raw.get("cohorts") if isinstance(raw, dict) else None
    if not isinstance(cohorts, dict):
        return
    for name, source in cohorts.items():
        kind = next(iter(source), None) if isinstance(source, dict) and len(source) >= 1 else None
        if kind in ("python", "file") or (isinstance(source, dict) and "python" in source):
            raise HygieError(
                f"{study_file.name}: cohort {name!r}: jobs accept Circe (ATLAS) cohort definitions only "
                f"({kind} cohorts are for notebooks on synthetic data)"
            )
