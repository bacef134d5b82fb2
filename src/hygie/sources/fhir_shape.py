"""The JSON shape hygie reads from FHIR resources: DuckDB column types from JSON paths, and, when a line does
not fit them, which line and which field, found in Python (on failure only) so that the error names them.

A shape is a tree of ``Node``: an object's keys (matched as written), a list, text (any JSON scalar is read as
its text, an object or a list as its JSON text) or JSON kept as is. DuckDB's own messages quote the offending
value, which may be patient data; messages built here never do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from hygie.errors import Problem
from hygie.sources.omop_files import first_line
from hygie.sql import ident, literal


@dataclass
class Node:
    children: dict[str, Node] = field(default_factory=dict)  # an object's keys; none: text (or JSON)
    array: bool = False  # a list of such values
    json: bool = False  # kept as JSON text, whatever it holds

    def sql_type(self) -> str:
        if self.json:
            base = "JSON"
        elif self.children:
            base = "STRUCT(" + ", ".join(f"{ident(k)} {c.sql_type()}" for k, c in self.children.items()) + ")"
        else:
            base = "VARCHAR"
        return base + "[]" if self.array else base

    def item(self) -> Node:
        """What a list of this node holds."""
        return Node(self.children, array=False, json=self.json)


TEXT = Node()
CODINGS = Node({"system": TEXT, "code": TEXT}, array=True)
IDENTIFIERS = Node({"system": TEXT, "value": TEXT}, array=True)
JSON = Node(json=True)


@dataclass
class Shape:
    root: Node  # the resource object
    selects: dict[str, str]  # column -> SQL reading it from the typed row


_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[0\]")


def fhir_shape(fields: dict[str, str | tuple[str, Node]]) -> Shape:
    """The shape of ``fields`` (column -> JSON path, or (path, node) for a typed or JSON value); a path is
    ``$`` then ``.key`` steps, ``[0]`` for a list's first item."""
    root = Node()
    selects = {}
    for column, spec in fields.items():
        path, leaf = (spec, TEXT) if isinstance(spec, str) else spec
        steps = _steps(path)
        node, expr = root, ""
        for i, (key, indexed) in enumerate(steps):
            last = i == len(steps) - 1
            wanted = Node(dict(leaf.children), array=leaf.array or indexed, json=leaf.json) if last else None
            child = node.children.get(key)
            if child is None:
                child = node.children[key] = wanted or Node(array=indexed)
            elif (last and (child.json != leaf.json or bool(child.children) != bool(leaf.children))) or (
                child.array != (indexed or (last and leaf.array))
            ):
                raise ValueError(f"{path}: '{key}' is read with two different shapes")
            elif last:
                child.children.update(leaf.children)
            expr = ident(key) if not expr else f"{expr}[{literal(key)}]"
            if indexed:
                expr += "[1]"
            node = child
        selects[column] = expr
    return Shape(root, selects)


def _steps(path: str) -> list[tuple[str, bool]]:
    """``$.name[0].given[0]`` -> [("name", True), ("given", True)]: keys, and whether its first item is read."""
    if not path.startswith("$"):
        raise ValueError(f"{path}: a path starts with $")
    steps: list[tuple[str, bool]] = []
    position = 1
    for m in _STEP.finditer(path, 1):
        if m.start() != position:
            raise ValueError(f"{path}: cannot read this path")
        position = m.end()
        if m.group(1):
            steps.append((m.group(1), False))
        elif steps and not steps[-1][1]:
            steps[-1] = (steps[-1][0], True)
        else:
            raise ValueError(f"{path}: [0] must follow a key")
    if position != len(path) or not steps:
        raise ValueError(f"{path}: cannot read this path")
    return steps


def read_problem(error: duckdb.Error, files: list[Path], root: Node) -> Problem:
    """A ``Problem`` naming the file, line and field where DuckDB could not read the declared shape."""
    text = str(error)
    named = re.search(r'in file "(.*?)"', text)
    file = next((p for p in files if named and str(p) == named.group(1)), files[0])
    if "transform error" in text:
        record = re.search(r"in line (\d+)", text)
        found = locate_shape_error(file, root, int(record.group(1)) if record else None)
        if found:
            line, column, reason = found
            return Problem(file.name, reason, row=line, column=column)
        return Problem(file.name, "not valid NDJSON: a line does not have the shape of a FHIR resource")
    message = first_line(error)
    for p in files:
        message = message.replace(str(p), p.name)
    return Problem(file.name, f"not valid NDJSON: {message}")


class _Object(dict):
    """A JSON object that remembers the keys it repeats (json keeps only the last value)."""

    repeated: set[str]


def _object(pairs: list[tuple[str, object]]) -> _Object:
    obj = _Object(pairs)
    obj.repeated = {k for k in obj if sum(1 for key, _ in pairs if key == k) > 1} if len(obj) < len(pairs) else set()
    return obj


def locate_shape_error(path: Path, root: Node, record: int | None = None) -> tuple[int, str | None, str] | None:
    """The first line of ``path`` (1-based) that does not fit ``root``, its field and why; ``record`` (DuckDB's
    count of non-blank lines) is looked at first. None when every line fits."""
    if record is not None:
        with path.open(encoding="utf-8") as f:
            seen = 0
            for number, line in enumerate(f, start=1):
                if line.strip():
                    seen += 1
                    if seen == record:
                        found = _line_misfit(line, root)
                        if found:
                            return (number, *found)
                        break
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                found = _line_misfit(line, root)
                if found:
                    return (number, *found)
    return None


def _line_misfit(line: str, root: Node) -> tuple[str | None, str] | None:
    try:
        document = json.loads(line, object_pairs_hook=_object)
    except ValueError:
        return None, "not valid JSON"
    if document is None:
        return None
    if not isinstance(document, dict):
        return None, f"expected a JSON object (a FHIR resource), found {_kind(document)}"
    return _misfit(document, root, "")


def _misfit(value: object, node: Node, path: str) -> tuple[str, str] | None:
    if value is None or node.json:
        return None
    if node.array:
        if not isinstance(value, list):
            return path, f"expected a list, found {_kind(value)}"
        for item in value:
            found = _misfit(item, node.item(), path)
            if found:
                return found
        return None
    if not node.children:
        return None  # text: scalars are read as text, objects and lists as their JSON text
    if not isinstance(value, dict):
        return path, f"expected an object, found {_kind(value)}"
    repeated = getattr(value, "repeated", set())
    for key, child in node.children.items():
        where = f"{path}.{key}" if path else key
        if key in repeated:
            return where, "the key appears more than once in the object"
        found = _misfit(value.get(key), child, where)
        if found:
            return found
    return None


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "an object"
