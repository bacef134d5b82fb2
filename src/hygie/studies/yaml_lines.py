"""YAML read with the line of every key and value, so that a validation error can name its line.

PyYAML composes a node tree carrying start marks; we construct plain Python data from it ourselves and keep,
for every key path (``("analyses", 0, "incidence", "outcomes")``), the 1-based line where it is written.
Duplicate keys are errors (PyYAML would silently keep the last one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class StudyProblem:
    """One problem in a study file: the file, the line, the key path and the reason."""

    file: str
    reason: str
    line: int | None = None
    key: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f", line {self.line}"
        if self.key:
            where += f", {self.key}"
        return f"{where}: {self.reason}"


def key_path(path: Sequence[str | int]) -> str:
    """``("analyses", 0, "incidence", "outcomes")`` -> ``analyses[0].incidence.outcomes``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class Located:
    """The document as plain data, with the line of each key path; ``problems`` holds duplicate keys."""

    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    problems: list[StudyProblem] = field(default_factory=list)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path``, or of its nearest written ancestor (a missing key -> its parent mapping)."""
        parts = tuple(path)
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            parts = parts[:-1]
        return self.lines.get((), None)


class YamlSyntaxError(Exception):
    def __init__(self, problem: StudyProblem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def load(text: str, file: str) -> Located:
    """Parse ``text`` (the content of ``file``); raises ``YamlSyntaxError`` naming the line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        reason = f"invalid YAML: {e.problem or e.context}"
        raise YamlSyntaxError(StudyProblem(file, reason, mark.line + 1 if mark else None)) from None
    except yaml.YAMLError as e:
        raise YamlSyntaxError(StudyProblem(file, f"invalid YAML: {e}")) from None
    located = Located(data=None)
    if node is None:
        return located
    constructor = yaml.SafeLoader("")  # resolves scalars (dates, numbers, null) exactly as yaml.safe_load does
    located.data = _build(node, (), located, constructor, file)
    return located


def _build(node: yaml.Node, path: Path_, located: Located, constructor: yaml.SafeLoader, file: str) -> Any:
    located.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)  # merge keys (<<)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                located.problems.append(
                    StudyProblem(file, "a key must be a plain value", key_node.start_mark.line + 1, key_path(path))
                )
                continue
            child = (*path, key)
            if key in out:
                located.problems.append(
                    StudyProblem(file, f"duplicate key {key!r}", key_node.start_mark.line + 1, key_path(child))
                )
                continue
            located.lines[child] = key_node.start_mark.line + 1
            out[key] = _build(value_node, child, located, constructor, file)
            located.lines[child] = key_node.start_mark.line + 1  # the key's line, not its value's
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), located, constructor, file) for i, item in enumerate(node.value)]
    try:
        return constructor.construct_object(node, deep=True)
    except ValueError:  # a date-looking scalar that is no date (2010-13-01): the model reports it, at its line
        return node.value


def read(path: Path) -> Located:
    """Read and parse a study file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise YamlSyntaxError(StudyProblem(str(path), f"cannot be read ({e.strerror})")) from None
    return load(text, str(path))
