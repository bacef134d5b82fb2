"""What every analysis receives and returns: the contract between the study runner and the analyses.

An analysis is a pure computation over a running engine: it reads the CDM tables and the study's cohort table
through a ``SqlRunner`` (DuckDB or Spark, the same SQL text through a ``Dialect``), and returns tidy
``ResultTable``s. It decides nothing about files, disclosure or reports: the study runner writes the tables, the
disclosure step masks them (``counts`` says which columns are counts and what is computed from them), and the
report renders them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from hygie.cohorts.service import SqlRunner

COHORT_TABLE_COLUMNS = ("cohort_definition_id", "subject_id", "cohort_start_date", "cohort_end_date")


class Spec(BaseModel):
    """Base of every study-file section: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class StudyCohort:
    """A cohort of the study, by the name the study file gives it."""

    name: str
    cohort_definition_id: int  # its id in the study's cohort table
    source: str  # "circe:<file>", "file:<file>", "python"


@dataclass
class StudyContext:
    """A study being run on one release with one engine.

    ``cohort_table`` is a table in the runner holding every study cohort in the OMOP cohort shape
    (``COHORT_TABLE_COLUMNS``); the CDM tables are visible to the runner by their names.
    """

    runner: SqlRunner
    cohorts: Mapping[str, StudyCohort]
    cohort_table: str = "study_cohort"
    engine: str = "duckdb"
    _names: dict[str, int] = field(default_factory=dict, repr=False)

    def cohort(self, name: str) -> StudyCohort:
        try:
            return self.cohorts[name]
        except KeyError:
            known = ", ".join(sorted(self.cohorts)) or "none"
            raise KeyError(f"unknown cohort {name!r} (the study defines: {known})") from None

    def temp_name(self, stem: str) -> str:
        """A fresh temporary-table name, unique within the study run."""
        n = self._names.get(stem, 0) + 1
        self._names[stem] = n
        return f"_{stem}_{n}"


@dataclass(frozen=True)
class TableStructure:
    """How the rows of a result table relate to each other, for disclosure control (``docs/disclosure.md``).

    ``keys`` are the label columns that identify a row, i.e. one statistic (default: every column that is neither
    a count nor derived from one; name them when rows also carry measured values such as person-years).
    ``margins`` maps a key column to the label of its total level, and says that this level's counts are the sum
    of the other levels' counts in rows agreeing on every other key (sex -> "Both"). Declare only additive
    margins: an age group spanning the others is not their sum when persons move between groups over time.
    ``recompute``, when given, recomputes the derived columns from the counts as released (rounding changes
    counts, and a rate left computed from the exact count would give the exact count back); without it,
    derived columns of rounded counts are masked.
    """

    keys: tuple[str, ...] = ()
    margins: Mapping[str, str] = field(default_factory=dict)
    recompute: Callable[[pa.Table], pa.Table] | None = None


@dataclass(frozen=True)
class ResultTable:
    """One result table of an analysis (written as ``<name>.csv`` and ``<name>.parquet``).

    ``counts`` maps each column holding a count of persons or records to the columns computed from it (a rate,
    its confidence limits): disclosure control masks a count and everything derived from it together. Columns
    not named there are labels (strata, dates, settings) and never masked. ``plot`` names how the report
    should draw it, when it should ("incidence", "prevalence", "attrition", "km", "balance"). ``structure`` tells
    disclosure control which rows add up to which (margins), so masked cells cannot be recomputed from totals.
    """

    name: str
    rows: pa.Table
    counts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    plot: str | None = None
    description: str = ""
    structure: TableStructure = field(default_factory=TableStructure)


class Analysis(Protocol):
    """An analysis kind: its study-file key, the model of its section, and its computation."""

    key: ClassVar[str]  # the key in the study file's `analyses` list ("incidence", "characterisation", ...)
    spec: ClassVar[type[Spec]]

    def run(self, context: StudyContext, spec: Spec, study: StudyDefinitions) -> list[ResultTable]: ...


@dataclass(frozen=True)
class StudyDefinitions:
    """The shared sections of a study file that analyses refer to by name (denominators...)."""

    denominators: Mapping[str, Spec] = field(default_factory=dict)
