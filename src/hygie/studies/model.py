"""The study file's model: cohorts, denominators and analyses (each section validated by its analysis kind).

A study file is validated in sections (header, each cohort, each denominator, each analysis by its kind's
``spec``) so that every error keeps the key path of the section it came from; ``schema_model`` assembles the
same models into one pydantic model, only to publish the JSON Schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from hygie.analyses.base import Analysis, Spec
from hygie.analyses.incidence_prevalence.spec import DenominatorSpec
from hygie.cohorts.circe import CohortExpression

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
NAME_RULE = "a name starts with a letter and holds letters, digits or '_' (at most 64)"


def _check_path(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a file path")
    return value


class CirceCohort(Spec):
    """A Circe (ATLAS) cohort definition in a JSON file."""

    circe: str = Field(description="Circe JSON file, relative to the study file")

    @field_validator("circe")
    @classmethod
    def _file(cls, value: str) -> str:
        return _check_path(value)


class FileCohort(Spec):
    """Cohort rows from a file with columns cohort_definition_id, subject_id, cohort_start_date, cohort_end_date.

    ``cohort_definition_id`` picks the rows of one cohort; without it the file must hold exactly one."""

    file: str = Field(description="CSV or Parquet file, relative to the study file")
    cohort_definition_id: int | None = None

    @field_validator("file")
    @classmethod
    def _file(cls, value: str) -> str:
        _check_path(value)
        if not value.lower().endswith((".csv", ".parquet")):
            raise ValueError("a cohort table file is a .csv or a .parquet file")
        return value


class PythonCohort(Spec):
    """A function of a Python file returning a ``hygie.cohorts.builder`` cohort or a ``CohortDefinition``."""

    python: str = Field(description='"path/to/module.py:function", the path relative to the study file')

    @field_validator("python")
    @classmethod
    def _target(cls, value: str) -> str:
        module, sep, function = value.rpartition(":")
        if not sep or not module.endswith(".py") or not function.isidentifier():
            raise ValueError('write "path/to/module.py:function"')
        return value


CohortSource = CirceCohort | FileCohort | PythonCohort
COHORT_KINDS: dict[str, type[Spec]] = {"circe": CirceCohort, "file": FileCohort, "python": PythonCohort}


class StudyHeader(Spec):
    """The top level of a study file; the sections are validated one entry at a time."""

    name: str = Field(description="the study's name")
    description: str = ""
    cohorts: dict[str, Any] = Field(min_length=1)
    denominators: dict[str, Any] = Field(default_factory=dict)
    analyses: list[Any] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", value):
            raise ValueError("use letters, digits, '.', '_' or '-' (at most 128), starting with a letter or digit")
        return value


@dataclass(frozen=True)
class AnalysisEntry:
    """One analysis of the study: its kind (a key of the registry) and its validated section."""

    kind: str
    spec: Spec


@dataclass(frozen=True)
class CohortEntry:
    """A study cohort as read at validation: a Circe expression (Circe file or Python builder) or rows."""

    name: str
    source: CohortSource
    label: str  # "circe:<file>", "file:<file>", "python:<file>:<function>" (StudyCohort.source)
    expression: CohortExpression | None = None
    rows: pa.Table | None = None  # subject_id, cohort_start_date, cohort_end_date (COHORT_SCHEMA)


@dataclass(frozen=True)
class Study:
    """A validated study file, its cohorts read (paths were relative to ``file``)."""

    name: str
    description: str
    cohorts: dict[str, CohortEntry]
    denominators: dict[str, DenominatorSpec]
    analyses: list[AnalysisEntry]
    file: Path
    sha256: str  # of the study file's bytes


def schema_model(kinds: Mapping[str, Analysis]) -> type[BaseModel]:
    """The whole study file as one pydantic model (for the JSON Schema): each analysis is a one-key mapping."""
    entries = []
    for key in sorted(kinds):
        entry = create_model(  # type: ignore[call-overload]
            f"Analysis_{key}",
            __config__=ConfigDict(extra="forbid"),
            __doc__=f"An analysis of kind {key!r}.",
            **{key: (kinds[key].spec, ...)},
        )
        entries.append(entry)
    item: Any = Union[tuple(entries)] if entries else dict[str, Any]  # noqa: UP007 - built from a tuple

    class StudyFile(Spec):
        """A hygie study file (YAML). Relative paths are relative to the study file."""

        name: str
        description: str = ""
        cohorts: dict[Annotated[str, Field(pattern=NAME.pattern)], CohortSource] = Field(min_length=1)
        denominators: dict[str, DenominatorSpec] = Field(default_factory=dict)
        analyses: list[item] = Field(min_length=1)  # type: ignore[valid-type]

    return StudyFile


def json_schema(kinds: Mapping[str, Analysis]) -> dict[str, Any]:
    schema = schema_model(kinds).model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hygie study file"
    return schema
