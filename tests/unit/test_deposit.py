"""A site's extract becomes a pseudonymised, mapped, encrypted deposit; no identifier survives."""

from __future__ import annotations

import pytest

from hygie.engine.duckdb import DuckDBEngine, connect, parquet_source, register_key
from hygie.errors import InputError
from hygie.identity import nir_key
from hygie.ingest.deposit import ingest
from hygie.ingest.sites import SiteRegistry
from hygie.ingest.vocabulary import install_vocabulary
from tests.cdm_files import write_cdm
from tests.unit.test_vocabulary import CONCEPT, RELATIONSHIP

NIR = "1850578006084" + f"{nir_key('1850578006084'):02d}"
PERSON = """person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id,person_source_value
101,8532,1985,0,0,IPP-000101
102,8507,1950,0,0,IPP-000102
103,8507,1970,0,0,IPP-000103
"""
OBSERVATION_PERIOD = """\
observation_period_id,person_id,observation_period_start_date,observation_period_end_date,period_type_concept_id
1,101,2015-01-01,2024-12-31,32817
2,102,2015-01-01,2024-12-31,32817
3,103,2016-01-01,2024-12-31,32817
"""
CONDITIONS = """\
condition_occurrence_id,person_id,condition_concept_id,condition_start_date,condition_type_concept_id,condition_source_value
1,101,0,2019-05-04,32817,K92.2
2,102,0,2020-01-02,32817,K92.2
3,103,0,2021-03-04,32817,X00
4,103,192671,2021-03-05,32817,
"""
IDENTITIES = (
    "local_id,nir,family_name,given_name,birth_date,sex,postcode\n"
    f"101,{NIR},Dupont,Émilie,1985-03-07,F,69003\n"
    "102,,Martin,Jean,1950-12-01,M,54000\n"
)
IDENTIFIERS = (NIR, "Dupont", "DUPONT", "Martin", "MARTIN", "IPP-000101", "69003", "1985-03-07")


@pytest.fixture
def site_folder(tmp_path):
    folder = tmp_path / "site_d"
    write_cdm(
        folder / "cdm",
        {"person.csv": PERSON, "observation_period.csv": OBSERVATION_PERIOD, "condition_occurrence.csv": CONDITIONS},
    )
    (folder / "identities.csv").write_text(IDENTITIES, encoding="utf-8")
    return folder


@pytest.fixture
def site(settings, tmp_path):
    install_vocabulary(
        write_cdm(tmp_path / "athena", {"CONCEPT.csv": CONCEPT, "CONCEPT_RELATIONSHIP.csv": RELATIONSHIP}),
        "v1",
        settings,
    )
    return SiteRegistry(settings).add("site-d", "omop")


def _all_values(engine) -> str:
    text = []
    for table in engine.tables():
        text.append(str(engine.sql(f'SELECT * FROM "{table}"').fetchall()))
    return "\n".join(text)


def test_deposit_is_pseudonymised_mapped_and_idempotent(site, site_folder, settings):
    result = ingest(site, site_folder, settings, synthetic=True)
    assert result.created
    deposit = result.deposit
    assert deposit.manifest.tables["person"].rows == 3
    assert deposit.manifest.tables["identity_tokens"].rows == 2
    with DuckDBEngine(deposit, settings) as engine:
        ids = {r[0] for r in engine.sql("SELECT person_id FROM person").fetchall()}
        assert not ids & {101, 102, 103} and len(ids) == 3
        assert engine.sql("SELECT count(*) FROM person WHERE person_source_value IS NOT NULL").fetchone()[0] == 0
        mapped = engine.sql(
            "SELECT condition_concept_id, condition_source_concept_id, condition_source_value "
            "FROM condition_occurrence ORDER BY condition_occurrence_id"
        ).fetchall()
        assert mapped == [
            (192671, 2000000001, "K92.2"),
            (192671, 2000000001, "K92.2"),
            (0, 0, "X00"),
            (192671, 0, None),
        ]
        linked = engine.sql(
            "SELECT count(*) FROM identity_tokens t JOIN person p ON p.person_id = t.person_key"
        ).fetchone()[0]
        assert linked == 2
        everything = _all_values(engine)
    for identifier in IDENTIFIERS:
        assert identifier not in everything
    warnings = "\n".join(deposit.manifest.warnings)
    assert "1 row(s) with 1 ICD10 code(s) not mapped to a standard concept" in warnings and "X00" not in warnings
    unmapped = deposit.path / "unmapped_condition_occurrence.parquet"
    assert b"X00" not in unmapped.read_bytes()  # the codes are kept for the operator, encrypted
    con = connect(settings, allowed_dirs=[deposit.path])
    register_key(con, "k", deposit.data_key(settings))
    assert con.execute(f"SELECT code, rows FROM {parquet_source(str(unmapped), 'k')}").fetchall() == [("X00", 1)]
    con.close()
    assert "1 person(s) without an identity record" in warnings
    again = ingest(site, site_folder, settings, synthetic=True)
    assert not again.created and again.deposit.name == deposit.name
    assert len(SiteRegistry(settings).deposits(site).list()) == 1


def test_person_keys_are_stable_across_deposits(site, site_folder, settings):
    first = ingest(site, site_folder, settings, synthetic=True).deposit
    (site_folder / "cdm" / "condition_occurrence.csv").write_text(CONDITIONS + "5,101,0,2022-01-01,32817,K92.2\n")
    second = ingest(site, site_folder, settings, synthetic=True).deposit
    assert second.name != first.name
    keys = []
    for deposit in (first, second):
        with DuckDBEngine(deposit, settings) as engine:
            keys.append(sorted(r[0] for r in engine.sql("SELECT person_id FROM person").fetchall()))
    assert keys[0] == keys[1]


def test_bad_deposits(site, site_folder, settings, tmp_path):
    (site_folder / "identities.csv").rename(tmp_path / "ids.csv")
    with pytest.raises(InputError, match="no identity file"):
        ingest(site, site_folder, settings)
    (tmp_path / "ids.csv").write_text("local_id,nir,birth_date,sex\n101,,1985-03-07,F\n101,,1985-03-07,F\n")
    with pytest.raises(InputError, match=r"ids\.csv, row 2, column 'local_id': the same local_id appears twice"):
        ingest(site, site_folder, settings, identities=tmp_path / "ids.csv")
    (site_folder / "cdm" / "identities.csv").write_text(IDENTITIES)
    with pytest.raises(InputError, match="outside the clinical folder"):
        ingest(site, site_folder, settings, identities=site_folder / "cdm" / "identities.csv")
    assert SiteRegistry(settings).deposits(site).list() == []


def test_person_keys_from_tokens_are_those_of_hashing_the_local_id(tmp_path):
    """Person keys taken from the identity tokens equal keys hashed from the local id, spaces and all."""
    from hygie.ingest.deposit import _person_keys, person_key
    from hygie.ingest.pseudonymise import LinkageKey, TokenReport, tokenise

    key = LinkageKey.generate(tmp_path / "linkage.key")
    local_ids = ["42", "042", "P-7", " 9 ", "None", "x"]
    records = [{"local_id": i, "birth_date": "1980-01-02", "sex": "F"} for i in local_ids[:-2]]
    records += [{"local_id": None, "birth_date": "", "sex": ""}, {"local_id": "x", "birth_date": "", "sex": "M"}]
    tokens = list(tokenise(records, key, TokenReport()))
    keys = _person_keys(key, local_ids, tokens)
    assert keys == [person_key(key, i) for i in local_ids]
    assert len(set(keys)) == len(local_ids) and all(0 <= k < 2**63 for k in keys)
