"""The identifier scan finds identities wherever they would hide, and reports places, never values."""

from __future__ import annotations

from typer.testing import CliRunner

from hygie.cli.main import app
from hygie.ingest.cdm_load import load_cdm
from hygie.ingest.deposit import ingest
from hygie.ingest.identifier_scan import _names_in, scan
from tests.cdm_files import write_cdm
from tests.unit.test_deposit import NIR, site, site_folder  # noqa: F401 - fixtures

LEAKY_OBSERVATION = """\
observation_id,person_id,observation_concept_id,observation_date,observation_type_concept_id,value_as_string
1,1,0,2019-01-01,32817,{nir}
2,2,0,2019-01-01,32817,dupont
"""


def test_clean_hub_after_ingest(site, site_folder, settings):  # noqa: F811
    ingest(site, site_folder, settings, synthetic=True)
    findings, searched = scan(settings, [site_folder / "identities.csv"])
    assert findings == [] and searched > 10


def test_identifiers_in_values_and_files_are_found(site, site_folder, settings, tmp_path):  # noqa: F811
    leaky = write_cdm(
        tmp_path / "leaky",
        observation__csv=LEAKY_OBSERVATION.format(nir=NIR),
        person__csv="person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id,"
        "person_source_value\n1,8507,1950,0,0," + NIR + "\n2,8532,1960,0,0,x\n",
    )
    release = load_cdm(leaky, "leaky", settings, synthetic=True)
    assert any("person_source_value (2 value(s))" in w for w in release.manifest.warnings)  # scrubbed on load
    (settings.home / "notes.txt").write_text("call Mrs Dupont back")
    findings, _ = scan(settings, [site_folder / "identities.csv"])
    places = {(f.where, f.kind, f.count) for f in findings}
    assert ("observation.value_as_string", "nir", 1) in places
    assert ("observation.value_as_string", "name", 1) in places
    assert ("bytes", "name", 1) in places
    assert not any("person_source_value" in f.where for f in findings)
    result = CliRunner().invoke(app, ["audit", "scan-identifiers", "--identities", str(site_folder / "identities.csv")])
    assert result.exit_code == 1
    assert "observation.value_as_string" in result.stdout
    assert NIR not in result.stdout and "DUPONT" not in result.stdout.upper()


def test_names_count_as_whole_words_outside_hashes_and_key_blobs():
    names = {"DUPONT", "ROSE", "LE GOFF", "JEAN-PIERRE"}
    text = (
        '{"sha256": "9f0e2a", "blob": "MNwl/Dupont4Yg+WCaRoseQ==AbCdEf0123", "path": "/tmp/primrose/dupontel", '
        '"note": "seen by Dr Le Goff and jean-pierre"}'
    )
    assert _names_in(text, names) == {"LE GOFF", "JEAN-PIERRE"}
    assert _names_in("call Mrs Dupont back; rose,12", names) == {"DUPONT", "ROSE"}
