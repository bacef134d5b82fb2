"""Read and validate a study file: every problem found is reported at once, each with its file, line and key.

Validation goes section by section (see ``model``) and then reads each cohort (Circe file, cohort table
file, Python builder), so that ``hygie study validate`` catches everything ``run`` would before touching data.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from hygie.analyses.base import Analysis, Spec
from hygie.analyses.incidence_prevalence.spec import DenominatorSpec
from hygie.checksums import sha256_file
from hygie.cohorts.circe import CohortExpression, read_definition
from hygie.errors import HygieError
from hygie.studies.cohort_files import read_cohort_file
from hygie.studies.model import (
    COHORT_KINDS,
    NAME,
    NAME_RULE,
    AnalysisEntry,
    CirceCohort,
    CohortEntry,
    CohortSource,
    FileCohort,
    PythonCohort,
    Study,
    StudyHeader,
)
from hygie.studies.references import BUILT_IN_STRATA, STRATA_FIELD, references
from hygie.studies.yaml_lines import Located, StudyProblem, YamlSyntaxError, key_path, read

Loc = tuple[str | int, ...]


class StudyFileError(HygieError):
    """A study file is invalid; ``problems`` lists every problem found (file, line, key, reason)."""

    def __init__(self, problems: Sequence[StudyProblem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line is not None, p.line or 0))
        count = len(self.problems)
        head = f"the study file has {count} problem(s):" if count > 1 else ""
        super().__init__("\n".join(([head] if head else []) + [str(p) for p in self.problems]))


class _Checker:
    """Collects the problems of one study file."""

    def __init__(self, located: Located, file: Path) -> None:
        self.located, self.file = located, file
        self.problems: list[StudyProblem] = list(located.problems)

    def add(self, loc: Loc, reason: str) -> None:
        self.problems.append(StudyProblem(str(self.file), reason, self.located.line_of(loc), key_path(loc) or None))

    def validate(self, model: type[BaseModel], data: Any, loc: Loc) -> Any | None:
        """``model`` validated from ``data``; its errors are recorded at their key paths (None on error)."""
        try:
            return model.model_validate(data)
        except ValidationError as e:
            for error in e.errors():
                where = _in_data(data, [p for p in error["loc"] if not _internal(p)])
                self.add((*loc, *where), _reason(error, model, len(where), error["loc"]))
            return None

    def path(self, value: str, loc: Loc) -> Path | None:
        """A file named by the study, relative to the study file; None (and a problem) if it does not exist."""
        path = Path(value).expanduser()
        path = path if path.is_absolute() else (self.file.parent / path)
        if not path.is_file():
            self.add(loc, f"no such file: {path}")
            return None
        return path.resolve()


def _internal(part: str | int) -> bool:
    """Pydantic's own location parts (validator names, union members), not keys of the file."""
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _in_data(data: Any, parts: list[str | int]) -> Loc:
    """The error's location as keys of the file: parts naming no key (union members such as 'int') are dropped,
    except a last one, which names a missing or unknown key."""
    kept: list[str | int] = []
    node = data
    for i, part in enumerate(parts):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
        elif i == len(parts) - 1 and isinstance(node, dict):
            pass  # a missing or unknown key: keep its name
        else:
            continue
        kept.append(part)
    return tuple(kept)


def _reason(error: Any, model: type[BaseModel], depth: int, loc: tuple[str | int, ...]) -> str:
    kind, message = error["type"], str(error["msg"]).removeprefix("Value error, ")
    if kind == "missing" and loc and isinstance(loc[-1], int):
        return f"too few values (value {loc[-1] + 1} is missing)"
    if kind == "extra_forbidden":
        allowed = ", ".join(model.model_fields) if depth == 1 else ""
        return "unknown key" + (f" (allowed: {allowed})" if allowed else "")
    if kind == "missing":
        return "required key is missing"
    return message


def load_study(path: Path | str, *, kinds: Mapping[str, Analysis] | None = None) -> Study:
    """Read, validate and resolve a study file; raises ``StudyFileError`` listing every problem."""
    from hygie.analyses.registry import analyses

    file = Path(path).absolute()
    kinds = analyses() if kinds is None else kinds
    try:
        located = read(file)
    except YamlSyntaxError as e:
        raise StudyFileError([e.problem]) from None
    check = _Checker(located, file)
    if not isinstance(located.data, dict):
        check.add((), "a study file is a mapping with name, cohorts, denominators and analyses")
        raise StudyFileError(check.problems)
    header = check.validate(StudyHeader, located.data, ()) or _sections(located.data)
    cohorts = {name: entry for name, value in header.cohorts.items() if (entry := _cohort(check, name, value))}
    denominators: dict[str, DenominatorSpec] = {}
    for name, value in header.denominators.items():
        if not NAME.fullmatch(str(name)):
            check.add(("denominators", name), f"invalid denominator name: {NAME_RULE}")
        spec = check.validate(DenominatorSpec, value, ("denominators", name))
        if spec is not None:
            denominators[name] = spec
    entries = [entry for i, item in enumerate(header.analyses) if (entry := _analysis(check, i, item, kinds))]
    for name, spec in denominators.items():
        _check_references(check, spec, ("denominators", name), header.cohorts, header.denominators)
    for i, entry in enumerate(entries):
        _check_references(check, entry.spec, ("analyses", i, entry.kind), header.cohorts, header.denominators)
    if check.problems:
        raise StudyFileError(check.problems)
    return Study(
        name=header.name,
        description=header.description,
        cohorts=cohorts,
        denominators=denominators,
        analyses=entries,
        file=file,
        sha256=sha256_file(file),
    )


def _sections(data: dict[Any, Any]) -> StudyHeader:
    """The sections of an invalid header that can still be checked (their problems are reported too)."""

    def typed(key: str, kind: type) -> Any:
        return data[key] if isinstance(data.get(key), kind) else kind()

    return StudyHeader.model_construct(
        name="",
        cohorts=typed("cohorts", dict),
        denominators=typed("denominators", dict),
        analyses=typed("analyses", list),
    )


def _cohort(check: _Checker, name: Any, value: Any) -> CohortEntry | None:
    loc: Loc = ("cohorts", name)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        check.add(loc, f"invalid cohort name: {NAME_RULE}")
        return None
    present = [k for k in COHORT_KINDS if isinstance(value, dict) and k in value]
    if len(present) != 1:
        check.add(
            loc,
            "a cohort is one of {circe: file.json}, {file: rows.csv, cohort_definition_id: N} "
            "or {python: module.py:function}",
        )
        return None
    source: CohortSource | None = check.validate(COHORT_KINDS[present[0]], value, loc)
    if source is None:
        return None
    try:
        if isinstance(source, CirceCohort):
            path = check.path(source.circe, (*loc, "circe"))
            if path is not None:
                return CohortEntry(name, source, f"circe:{path.name}", expression=read_definition(path))
        elif isinstance(source, FileCohort):
            path = check.path(source.file, (*loc, "file"))
            if path is not None:
                rows = read_cohort_file(path, source.cohort_definition_id)
                return CohortEntry(name, source, f"file:{path.name}", rows=rows)
        elif isinstance(source, PythonCohort):
            module, _, function = source.python.rpartition(":")
            path = check.path(module, (*loc, "python"))
            if path is not None:
                expression = _python_cohort(path, function)
                return CohortEntry(name, source, f"python:{path.name}:{function}", expression=expression)
    except HygieError as e:
        check.add((*loc, present[0]), str(e))
    return None  # the problem is recorded


def _python_cohort(path: Path, function: str) -> CohortExpression:
    """Call ``function`` of the Python file ``path``: a builder cohort, a CohortDefinition or an expression."""
    from hygie.cohorts.builder import Cohort
    from hygie.cohorts.service import CohortDefinition

    module_name = f"_hygie_study_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise HygieError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        target = getattr(module, function, None)
        if not callable(target):
            raise HygieError(f"{path}: has no function {function!r}")
        made = target()
    except HygieError:
        raise
    except Exception as e:  # the researcher's code: report what it raised, where
        raise HygieError(f"{path}:{function} raised {type(e).__name__}: {e}") from None
    finally:
        sys.modules.pop(module_name, None)
    if isinstance(made, Cohort):
        return made.to_circe()
    if isinstance(made, CohortDefinition):
        return made.expression
    if isinstance(made, CohortExpression):
        return made
    raise HygieError(
        f"{path}:{function} returned {type(made).__name__}: expected a hygie.cohorts.builder cohort "
        "(cb.entry(...)) or a CohortDefinition"
    )


def _analysis(check: _Checker, index: int, item: Any, kinds: Mapping[str, Analysis]) -> AnalysisEntry | None:
    loc: Loc = ("analyses", index)
    if not isinstance(item, dict) or len(item) != 1:
        check.add(loc, "an analysis is a mapping with one key, its kind (e.g. '- incidence: {...}')")
        return None
    ((kind, section),) = item.items()
    if kind not in kinds:
        known = ", ".join(sorted(kinds)) or "none"
        check.add((*loc, kind), f"unknown analysis kind {kind!r} (known kinds: {known})")
        return None
    spec: Spec | None = check.validate(kinds[kind].spec, {} if section is None else section, (*loc, kind))
    return None if spec is None else AnalysisEntry(kind, spec)


def _check_references(
    check: _Checker, spec: BaseModel, loc: Loc, cohorts: Mapping[str, Any], denominators: Mapping[str, Any]
) -> None:
    for where, kind, name in references(spec):
        known = cohorts if kind == "cohort" else denominators
        if name not in known:
            listed = ", ".join(sorted(map(str, known))) or "none"
            if where and where[-3:-2] == (STRATA_FIELD,):  # a strata column: a study cohort or a built-in one
                built_in = ", ".join(sorted(BUILT_IN_STRATA))
                check.add(
                    (*loc, *where), f"unknown strata column {name!r} (use {built_in} or a study cohort: {listed})"
                )
                continue
            check.add((*loc, *where), f"unknown {kind} {name!r} (the study defines: {listed})")
