"""The disclosure policy: defaults, profiles, per-project files, errors that name the key, the synthetic exemption."""

from __future__ import annotations

import json

import pytest

from hygie.disclosure import PROFILES, DisclosurePolicy, exempt_reason
from hygie.errors import InputError
from hygie.ingest.cdm_load import load_cdm
from tests.cdm_files import write_cdm


def test_defaults_are_the_french_rule():
    p = DisclosurePolicy()
    assert (p.min_count, p.max_masked, p.zeros, p.rounding) == (1, 10, "show", "none")
    assert p.secondary and p.differencing
    assert [v for v in range(13) if p.is_small(v)] == list(range(1, 11))
    assert [v for v in range(13) if DisclosurePolicy(zeros="mask").is_small(v)] == list(range(0, 11))


def test_profiles_and_overrides():
    assert DisclosurePolicy.from_mapping({}) == PROFILES["french"]
    opensafely = DisclosurePolicy.from_mapping({"profile": "opensafely"})
    assert (opensafely.max_masked, opensafely.rounding) == (7, "base5")
    mine = DisclosurePolicy.from_mapping({"profile": "strict", "zeros": "mask", "overlapping": ["cohort"]})
    assert (mine.rounding, mine.zeros, mine.overlapping, mine.profile) == ("base5", "mask", ("cohort",), "strict")


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"max_maskd": 10}, "key 'max_maskd': unknown key"),
        ({"max_masked": "ten"}, "key 'max_masked': must be a whole number, not str"),
        ({"max_masked": True}, "key 'max_masked': must be a whole number, not true/false"),
        ({"max_masked": 3}, "key 'max_masked': must be at least 4"),
        ({"min_count": 2}, "key 'min_count': must be 1"),
        ({"rounding": "base10"}, "key 'rounding': must be one of none, base5, midpoint6"),
        ({"zeros": "hide"}, "key 'zeros': must be one of show, mask"),
        ({"secondary": "yes"}, "key 'secondary': must be true or false"),
        ({"overlapping": [""]}, "key 'overlapping': must be a list of names"),
        ({"file_types": ["csv", "xlsx"]}, "key 'file_types': xlsx not allowed"),
        ({"profile": "lenient"}, "key 'profile': unknown profile 'lenient'"),
    ],
)
def test_bad_values_name_the_source_and_key(mapping, message):
    with pytest.raises(InputError) as info:
        DisclosurePolicy.from_mapping(mapping, source="project.yaml")
    assert message in str(info.value) and str(info.value).startswith("project.yaml: ")


def test_every_problem_is_reported_at_once():
    with pytest.raises(InputError) as info:
        DisclosurePolicy.from_mapping({"max_masked": 2, "rounding": "x", "colour": "red"}, source="p.json")
    assert len(info.value.problems) == 3


def test_direct_construction_is_validated_too():
    with pytest.raises(InputError, match="max_masked"):
        DisclosurePolicy(max_masked=1)


def test_from_files(tmp_path):
    project = tmp_path / "project.yaml"
    project.write_text("name: p1\ndisclosure:\n  profile: opensafely\n  zeros: mask\n")
    assert DisclosurePolicy.from_file(project).zeros == "mask"
    plain = tmp_path / "policy.json"
    plain.write_text(json.dumps({"rounding": "midpoint6"}))
    assert DisclosurePolicy.from_file(plain).rounding == "midpoint6"
    broken = tmp_path / "broken.yaml"
    broken.write_text("disclosure: [unclosed\n")
    with pytest.raises(InputError, match=r"broken\.yaml"):
        DisclosurePolicy.from_file(broken)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("disclosure:\n  max_masked: 2\n")
    with pytest.raises(InputError, match=r"wrong.yaml: key 'max_masked'"):
        DisclosurePolicy.from_file(wrong)
    with pytest.raises(InputError, match="cannot read"):
        DisclosurePolicy.from_file(tmp_path / "absent.yaml")


def test_describe_is_what_a_manifest_records():
    described = DisclosurePolicy.from_mapping({"profile": "opensafely"}).describe()
    assert json.loads(json.dumps(described)) == described
    assert described["masked_range"] == [1, 7] and described["rounding"] == "base5"
    assert described["rules_version"].startswith("hygie-disclosure/")


def test_only_synthetic_releases_are_exempt(tmp_path, settings):
    synthetic = load_cdm(write_cdm(tmp_path / "a"), "synthetic-one", settings, synthetic=True)
    real = load_cdm(write_cdm(tmp_path / "b"), "real-one", settings, synthetic=False)
    assert "synthetic" in (exempt_reason(synthetic.manifest) or "")
    assert exempt_reason(real.manifest) is None
    assert exempt_reason(synthetic.manifest.to_json()) is not None
    assert exempt_reason({"name": "x", "synthetic": "yes"}) is None  # only a true boolean exempts
