"""Studies: a declarative study file (YAML) run on a release, with aggregate results, a manifest and a report.

In a notebook::

    from hygie.config import Settings
    from hygie.studies import load_study, run_study

    study = load_study("study.yaml")                   # validated; errors name file, line and key
    run = run_study(study, "gibleed", Settings.from_env(), out=Path("results/gi-bleed"))
    run.tables["cohort_counts"]                         # pyarrow
    run.to_pandas("cohort_counts")

Modules: ``yaml_lines`` (YAML with line numbers), ``model`` (the file's sections), ``references`` (names that
analyses refer to), ``load`` (validation), ``cohort_files`` (cohort rows from CSV/Parquet), ``cohorts`` (the
study cohort table), ``runner`` (a run), ``outputs`` (files, atomic publication), ``demo`` (the demo's study).
"""

from __future__ import annotations

from hygie.studies.demo import DEMO_STUDY, run_demo_study
from hygie.studies.load import StudyFileError, load_study
from hygie.studies.model import Study
from hygie.studies.runner import StudyRun, run_study

__all__ = ["DEMO_STUDY", "Study", "StudyFileError", "StudyRun", "load_study", "run_demo_study", "run_study"]
