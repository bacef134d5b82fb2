"""Run a study on a release: cohorts, analyses, disclosure control, outputs (tables, manifest, report).

Order of a run: the output folder is checked first (no work is wasted on a refused target); the engine builds
the study cohort table; each analysis runs; result tables of the same name are stacked with an ``analysis_id``
column (1-based position in the file's ``analyses``); a check refuses person identifiers; disclosure control
masks small counts unless the release is synthetic; everything is written to a staging folder then renamed.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from hygie import __version__
from hygie.analyses.base import Analysis, ResultTable, StudyContext, StudyDefinitions
from hygie.analyses.registry import analyses
from hygie.checksums import sha256_file
from hygie.cohorts.service import open_runner
from hygie.config import Settings
from hygie.disclosure import DisclosurePolicy, Flag, apply_policy
from hygie.releases.manifest import MANIFEST_FILE as RELEASE_MANIFEST
from hygie.studies.cohorts import STUDY_COHORT_TABLE, CohortCount, build_cohort_table
from hygie.studies.load import load_study
from hygie.studies.model import Study
from hygie.studies.outputs import (
    MANIFEST_FILE,
    REPORT_FILE,
    check_aggregate,
    check_names,
    check_target,
    staged,
    write_json,
)
from hygie.studies.outputs import write_table as write_result

if TYPE_CHECKING:
    import pandas as pd

    from hygie.disclosure.history import ReleasedOutputs
    from hygie.engine.scope import DataScope
    from hygie.releases.store import Release

FORMAT = "hygie-study-run/1"
SYNTHETIC_EXEMPTION = "exempt: synthetic release"
COHORTS_TABLE = "study_cohorts"  # the cohort counts, masked like any result


@dataclass
class StudyRun:
    """A finished study run: its result tables (after disclosure control), manifest and report."""

    study: Study
    out: Path
    results: list[ResultTable]
    manifest: dict[str, Any]
    cohorts: ResultTable
    flags: list[Flag] = field(default_factory=list)

    @property
    def tables(self) -> dict[str, pa.Table]:
        return {t.name: t.rows for t in self.results}

    @property
    def report(self) -> Path:
        return self.out / REPORT_FILE

    def to_pandas(self, name: str) -> pd.DataFrame:
        try:
            return self.tables[name].to_pandas()
        except KeyError:
            raise KeyError(f"no result table {name!r} (tables: {', '.join(self.tables) or 'none'})") from None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def versions() -> dict[str, str | None]:
    import duckdb

    def installed(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "hygie": __version__,
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyspark": installed("pyspark"),
    }


def stack(per_analysis: Sequence[Sequence[ResultTable]]) -> list[ResultTable]:
    """Result tables of the same name across analyses, stacked with ``analysis_id`` first (1-based)."""
    named: dict[str, list[ResultTable]] = {}
    for analysis_id, tables in enumerate(per_analysis, start=1):
        for table in tables:
            ids = pa.array([analysis_id] * table.rows.num_rows, pa.int32())
            named.setdefault(table.name, []).append(replace(table, rows=table.rows.add_column(0, "analysis_id", ids)))
    stacked = []
    for name, parts in named.items():
        counts: dict[str, tuple[str, ...]] = {}
        for part in parts:
            for count, derived in part.counts.items():
                counts[count] = tuple(dict.fromkeys((*counts.get(count, ()), *derived)))
        rows = pa.concat_tables([p.rows for p in parts], promote_options="permissive")
        plot = next((p.plot for p in parts if p.plot), None)
        description = next((p.description for p in parts if p.description), "")
        stacked.append(ResultTable(name, rows, counts, plot, description))
    return stacked


def cohort_table(counts: Sequence[CohortCount]) -> ResultTable:
    rows = pa.table(
        {
            "cohort_definition_id": pa.array([c.cohort_definition_id for c in counts], pa.int64()),
            "cohort_name": pa.array([c.name for c in counts], pa.string()),
            "source": pa.array([c.source for c in counts], pa.string()),
            "number_subjects": pa.array([c.subjects for c in counts], pa.int64()),
            "number_records": pa.array([c.records for c in counts], pa.int64()),
        }
    )
    return ResultTable(COHORTS_TABLE, rows, {"number_subjects": (), "number_records": ()})


def run_study(
    study: Study | Path | str,
    release: Release | str,
    settings: Settings,
    *,
    engine: str = "duckdb",
    out: Path,
    force: bool = False,
    policy: DisclosurePolicy | None = None,
    step: Callable[[str], None] | None = None,
    kinds: Mapping[str, Analysis] | None = None,
    scope: DataScope | None = None,
    history: ReleasedOutputs | None = None,
) -> StudyRun:
    """Run ``study`` on ``release`` and write its outputs to ``out`` (see the module docstring).

    ``kinds`` (default: the registry) are the analysis kinds the study may use. ``scope`` narrows the release to
    what a project may see (the job runner passes the project's); ``history`` is what the project released
    before, so that disclosure control also stops differencing against earlier outputs."""
    from hygie.releases import ReleaseStore
    from hygie.reports.study import render_report

    announce = step or (lambda _message: None)
    kinds = analyses() if kinds is None else kinds
    study = study if isinstance(study, Study) else load_study(study, kinds=kinds)
    release = ReleaseStore(settings).get(release) if isinstance(release, str) else release
    out = Path(out).absolute()
    check_target(out, force=force)
    started = _now()
    announce(f"opening release {release.name} on {engine}")
    runner, opened = open_runner(release, settings, engine, scope)
    try:
        announce(f"building {len(study.cohorts)} study cohort(s)")
        cohorts, counts = build_cohort_table(runner, study)
        context = StudyContext(runner=runner, cohorts=cohorts, cohort_table=STUDY_COHORT_TABLE, engine=engine)
        definitions = StudyDefinitions(denominators=dict(study.denominators))
        per_analysis = []
        for i, entry in enumerate(study.analyses, start=1):
            announce(f"analysis {i}/{len(study.analyses)}: {entry.kind}")
            per_analysis.append(kinds[entry.kind].run(context, entry.spec, definitions))
        runner.drop(STUDY_COHORT_TABLE)
    finally:
        opened.close()
    results = stack(per_analysis)
    cohort_counts = cohort_table(counts)
    check_names(results)
    check_aggregate([*results, cohort_counts])
    synthetic = release.manifest.synthetic
    flags: list[Flag] = []
    if not synthetic:
        announce("disclosure control")
        policy = policy or DisclosurePolicy()
        outcome = apply_policy([*results, cohort_counts], policy, history=history)
        *results, cohort_counts = outcome.tables
        flags = outcome.flags
    announce(f"writing {len(results)} result table(s) to {out}")
    manifest = _manifest(study, release, engine, started, results, cohort_counts, counts, flags, policy)
    run = StudyRun(study, out, list(results), manifest, cohort_counts, flags)
    with staged(out, force=force) as folder:
        for table in results:
            manifest["tables"][table.name]["files"] = write_result(folder, table)
        manifest["finished_at"] = _now()
        write_json(folder / MANIFEST_FILE, manifest)
        (folder / REPORT_FILE).write_text(render_report(run), encoding="utf-8")
    return run


def _described(policy: DisclosurePolicy) -> dict[str, Any]:
    """The policy as the manifest records it (its own description when it offers one)."""
    describe = getattr(policy, "describe", None)
    return describe() if callable(describe) else asdict(policy)


def _manifest(
    study: Study,
    release: Release,
    engine: str,
    started: str,
    results: Sequence[ResultTable],
    cohort_counts: ResultTable,
    counts: Sequence[CohortCount],
    flags: Sequence[Flag],
    policy: DisclosurePolicy | None,
) -> dict[str, Any]:
    synthetic = release.manifest.synthetic
    masked = cohort_counts.rows.to_pylist()
    return {
        "format": FORMAT,
        "study": {
            "name": study.name,
            "description": study.description,
            "file": study.file.name,
            "sha256": study.sha256,
        },
        "release": {
            "name": release.name,
            "created_at": release.manifest.created_at,
            "manifest_sha256": sha256_file(release.path / RELEASE_MANIFEST),
            "synthetic": synthetic,
        },
        "engine": engine,
        "versions": versions(),
        "started_at": started,
        "finished_at": None,
        "disclosure": SYNTHETIC_EXEMPTION
        if synthetic
        else {"policy": _described(policy or DisclosurePolicy()), "flags": [asdict(f) for f in flags]},
        "cohorts": [
            {
                "name": c.name,
                "cohort_definition_id": c.cohort_definition_id,
                "source": c.source,
                "subjects": row["number_subjects"],  # None when masked
                "records": row["number_records"],
                "warnings": c.warnings,
            }
            for c, row in zip(counts, masked, strict=True)
        ],
        "analyses": [{"analysis_id": i, "kind": a.kind} for i, a in enumerate(study.analyses, start=1)],
        "tables": {
            t.name: {
                "rows": t.rows.num_rows,
                "columns": t.rows.column_names,
                "plot": t.plot,
                "description": t.description,
                "disclosure_flags": [asdict(f) for f in flags if f.table == t.name],
            }
            for t in results
        },
    }
