"""The disclosure policy: every threshold and switch of disclosure control, defined once, per project.

A project's policy is read from its configuration (JSON or YAML, ``DisclosurePolicy.from_file``), starting from a
named profile and overriding keys; ``describe()`` is what release manifests record. Synthetic releases are exempt
(``exempt_reason``): the caller decides, this module only says why.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from hygie.errors import InputError, Problem

RULES_VERSION = "hygie-disclosure/1"  # bump when a rule changes meaning: manifests record it
Zeros = Literal["show", "mask"]
Rounding = Literal["none", "base5", "midpoint6"]
ROUNDINGS: tuple[str, ...] = ("none", "base5", "midpoint6")
ZEROS: tuple[str, ...] = ("show", "mask")
FILE_TYPES: tuple[str, ...] = ("csv", "parquet", "json", "html", "png", "svg", "txt", "md")
MIN_THRESHOLD = 5  # a project may not mask fewer than 1-4 (k >= 5): below that a policy protects nobody


@dataclass(frozen=True)
class DisclosurePolicy:
    """What may leave: counts from ``min_count`` to ``max_masked`` are masked, with everything computed from them.

    - ``zeros``: "show" releases zeros (the default: a zero is no person); "mask" treats zero as a small count.
    - ``rounding``: "none"; "base5" rounds every released count to the nearest multiple of 5 (half up);
      "midpoint6" maps 0 to 0 and n > 0 to the midpoint of its band of six (1-6 -> 3, 7-12 -> 9, ...).
      Rounding is applied after suppression, to every count of the table; derived columns are recomputed from
      the rounded counts when the table says how (``TableStructure.recompute``), and masked otherwise.
    - ``secondary``: complementary suppression over declared margins, so a masked cell cannot be recomputed.
    - ``differencing``: compare each count with the same statistic already released in the project.
    - ``overlapping``: label columns whose values name overlapping populations (cohort ids, codelist versions):
      statistics differing only in these columns are compared by the differencing rule.
    - ``max_file_bytes``, ``max_rows``, ``file_types``: airlock checks on output files (``checks``).
    """

    min_count: int = 1
    max_masked: int = 10
    zeros: Zeros = "show"
    rounding: Rounding = "none"
    secondary: bool = True
    differencing: bool = True
    overlapping: tuple[str, ...] = ()
    max_file_bytes: int = 20_000_000
    max_rows: int = 100_000
    file_types: tuple[str, ...] = FILE_TYPES
    profile: str = "french"

    def __post_init__(self) -> None:
        problems = _invalid(self)
        if problems:
            raise InputError([Problem("disclosure policy", p) for p in problems])

    @property
    def smallest_masked(self) -> int:
        """The smallest count masked by the threshold: 0 when zeros are treated as small."""
        return 0 if self.zeros == "mask" else self.min_count

    def is_small(self, value: int) -> bool:
        """True when the threshold masks ``value`` (primary suppression)."""
        return self.smallest_masked <= value <= self.max_masked

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "disclosure policy") -> DisclosurePolicy:
        """A policy from a configuration mapping: ``profile`` (default "french") then overrides of its keys.

        Errors name ``source`` and the offending key; unknown keys are errors, never ignored.
        """
        if not isinstance(data, Mapping):
            raise InputError(Problem(source, "the disclosure policy must be a mapping of keys to values"))
        problems: list[Problem] = []
        profile_name = data.get("profile", "french")
        if profile_name not in PROFILES:
            known = ", ".join(PROFILES)
            raise InputError(Problem(source, f"key 'profile': unknown profile {profile_name!r} ({known})"))
        base = PROFILES[profile_name]
        known_keys = {f.name for f in fields(cls)}
        changes: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known_keys:
                problems.append(Problem(source, f"key '{key}': unknown key (known: {', '.join(sorted(known_keys))})"))
                continue
            why = _bad_value(key, value)
            if why:
                problems.append(Problem(source, f"key '{key}': {why}"))
                continue
            changes[key] = tuple(value) if isinstance(value, list) else value
        problems += [Problem(source, p) for p in _invalid(replace_unchecked(base, changes))]
        if problems:
            raise InputError(problems)
        return replace(base, **changes)

    @classmethod
    def from_file(cls, path: Path) -> DisclosurePolicy:
        """A project's policy from a JSON or YAML file: the whole file, or its top-level ``disclosure`` section."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise InputError(Problem(path.name, f"cannot read: {e.strerror}")) from None
        try:
            data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            line = getattr(e, "lineno", None) or getattr(getattr(e, "problem_mark", None), "line", None)
            raise InputError(Problem(path.name, f"not valid {path.suffix.lstrip('.') or 'YAML'}", row=line)) from None
        if data is None:
            data = {}
        if isinstance(data, Mapping) and isinstance(data.get("disclosure"), Mapping):
            data = data["disclosure"]
        return cls.from_mapping(data, source=path.name)

    def describe(self) -> dict[str, Any]:
        """The policy as a manifest records it (plain JSON types, with the rules version)."""
        described = asdict(self)
        described["overlapping"] = list(self.overlapping)
        described["file_types"] = list(self.file_types)
        described["masked_range"] = [self.smallest_masked, self.max_masked]
        described["rules_version"] = RULES_VERSION
        return described


def replace_unchecked(policy: DisclosurePolicy, changes: Mapping[str, Any]) -> DisclosurePolicy:
    """A copy with ``changes`` applied but not validated (to list every problem at once)."""
    candidate = object.__new__(DisclosurePolicy)
    for f in fields(DisclosurePolicy):
        object.__setattr__(candidate, f.name, changes.get(f.name, getattr(policy, f.name)))
    return candidate


_TYPES: dict[str, tuple[type, ...]] = {
    "min_count": (int,),
    "max_masked": (int,),
    "zeros": (str,),
    "rounding": (str,),
    "secondary": (bool,),
    "differencing": (bool,),
    "overlapping": (list, tuple),
    "max_file_bytes": (int,),
    "max_rows": (int,),
    "file_types": (list, tuple),
    "profile": (str,),
}


def _bad_value(key: str, value: Any) -> str | None:
    expected = _TYPES[key]
    if isinstance(value, bool) and bool not in expected:
        return f"must be {_type_names(expected)}, not true/false"
    if not isinstance(value, expected):
        return f"must be {_type_names(expected)}, not {type(value).__name__}"
    if isinstance(value, list | tuple) and not all(isinstance(v, str) and v for v in value):
        return "must be a list of names"
    return None


def _type_names(types: tuple[type, ...]) -> str:
    names = {int: "a whole number", str: "a string", bool: "true or false", list: "a list", tuple: "a list"}
    return " or ".join(dict.fromkeys(names[t] for t in types))


def _invalid(p: DisclosurePolicy) -> list[str]:
    """What is wrong with a policy (empty when it is usable)."""
    problems = []
    if p.min_count != 1:
        problems.append("key 'min_count': must be 1 (counts from 1 up are masked; to mask zeros use zeros: mask)")
    if not isinstance(p.max_masked, int) or p.max_masked < MIN_THRESHOLD - 1:
        problems.append(f"key 'max_masked': must be at least {MIN_THRESHOLD - 1} (mask 1-4 at the very least)")
    if p.zeros not in ZEROS:
        problems.append(f"key 'zeros': must be one of {', '.join(ZEROS)}")
    if p.rounding not in ROUNDINGS:
        problems.append(f"key 'rounding': must be one of {', '.join(ROUNDINGS)}")
    if p.max_file_bytes <= 0:
        problems.append("key 'max_file_bytes': must be positive")
    if p.max_rows <= 0:
        problems.append("key 'max_rows': must be positive")
    unknown_types = sorted(set(p.file_types) - set(FILE_TYPES))
    if unknown_types:
        problems.append(f"key 'file_types': {', '.join(unknown_types)} not allowed (allowed: {', '.join(FILE_TYPES)})")
    return problems


PROFILES: dict[str, DisclosurePolicy] = {
    # CASD rule: no cell under 11; secondary suppression; differencing against the project's releases.
    "french": DisclosurePolicy(profile="french"),
    # The French rule plus rounding of every count to 5 (recurring reports).
    "strict": DisclosurePolicy(rounding="base5", profile="strict"),
    # OpenSAFELY's practice: redact 1-7, round to 5.
    "opensafely": DisclosurePolicy(max_masked=7, rounding="base5", profile="opensafely"),
}


def exempt_reason(release_manifest: Any) -> str | None:
    """Why outputs of this release need no disclosure control, or None when they do.

    Only synthetic releases are exempt. Accepts a release ``Manifest`` or its JSON mapping; anything that does not
    say ``synthetic: true`` is treated as real data.
    """
    if isinstance(release_manifest, Mapping):
        synthetic, name = release_manifest.get("synthetic"), release_manifest.get("name", "?")
    else:
        synthetic, name = getattr(release_manifest, "synthetic", None), getattr(release_manifest, "name", "?")
    if synthetic is True:
        return f"release {name!r} is synthetic: its outputs describe no real person"
    return None
