"""Deposits of several sites become one release: the same patient is one person, ids stay unique."""

from __future__ import annotations

import pytest

from hygie.engine.duckdb import DuckDBEngine
from hygie.errors import HygieError
from hygie.ingest.build import build_release
from hygie.ingest.deposit import ingest
from hygie.ingest.sites import SiteRegistry
from hygie.ingest.vocabulary import install_vocabulary
from hygie.releases import ReleaseStore
from tests.cdm_files import write_cdm
from tests.unit.test_deposit import CONDITIONS, IDENTITIES, NIR, OBSERVATION_PERIOD, PERSON
from tests.unit.test_vocabulary import CONCEPT, RELATIONSHIP

# Site A sees Émilie Dupont (NIR, birth date typed with day and month swapped) and Jean Martin (no NIR,
# a typo in the family name); and Paul Bernard, seen nowhere else.
SITE_A_PERSON = """person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id
1,8532,1985,0,0
2,8507,1950,0,0
3,8507,1990,0,0
"""
SITE_A_PERIODS = """\
observation_period_id,person_id,observation_period_start_date,observation_period_end_date,period_type_concept_id
1,1,2010-01-01,2015-06-30,32817
2,2,2018-01-01,2019-01-01,32817
3,3,2012-01-01,2013-01-01,32817
"""
SITE_A_CONDITIONS = """\
condition_occurrence_id,person_id,condition_concept_id,condition_start_date,condition_type_concept_id
1,1,192671,2012-02-03,32817
"""
SITE_A_IDENTITIES = (
    "local_id,nir,family_name,given_name,birth_date,sex,postcode\n"
    f"1,{NIR},DUPONT,Emilie,1985-07-03,F,69003\n"
    "2,,Martine,Jean,1950-12-01,M,54000\n"
    "3,,Bernard,Paul,1990-05-05,M,75011\n"
)


@pytest.fixture
def hub(settings, tmp_path):
    install_vocabulary(
        write_cdm(tmp_path / "athena", {"CONCEPT.csv": CONCEPT, "CONCEPT_RELATIONSHIP.csv": RELATIONSHIP}),
        "v1",
        settings,
    )
    registry = SiteRegistry(settings)
    a, d = registry.add("site-a", "omop"), registry.add("site-d", "omop")
    folder_a = tmp_path / "a"
    write_cdm(
        folder_a / "cdm",
        {
            "person.csv": SITE_A_PERSON,
            "observation_period.csv": SITE_A_PERIODS,
            "condition_occurrence.csv": SITE_A_CONDITIONS,
        },
    )
    (folder_a / "identities.csv").write_text(SITE_A_IDENTITIES, encoding="utf-8")
    folder_d = tmp_path / "d"
    write_cdm(
        folder_d / "cdm",
        {"person.csv": PERSON, "observation_period.csv": OBSERVATION_PERIOD, "condition_occurrence.csv": CONDITIONS},
    )
    (folder_d / "identities.csv").write_text(IDENTITIES, encoding="utf-8")
    ingest(a, folder_a, settings, synthetic=True)
    ingest(d, folder_d, settings, synthetic=True)
    return {"d": (d, folder_d)}


def test_same_patient_at_two_sites_is_one_person(hub, settings):
    release = build_release("linked", settings)
    m = release.manifest
    assert m.linkage["records"] == 6
    assert m.linkage["persons"] == 4  # Dupont (NIR, swapped date) and Martin (names sound alike) are linked
    assert m.linkage["pairs_by_rule"]["nir"] == 1
    assert m.tables["person"].rows == 4
    with DuckDBEngine(release, settings) as engine:
        periods = engine.sql(
            "SELECT person_id, observation_period_start_date::VARCHAR, observation_period_end_date::VARCHAR "
            "FROM observation_period ORDER BY 2, 3"
        ).fetchall()
        dupont = [p for p in periods if p[1] == "2010-01-01"]
        assert [(s, e) for _, s, e in dupont] == [("2010-01-01", "2024-12-31")]  # 2010-2015 + 2015-2024, merged
        bleeds = engine.sql(
            "SELECT count(*) FROM condition_occurrence WHERE person_id = ? AND condition_concept_id = 192671",
            [dupont[0][0]],
        ).fetchone()[0]
        assert bleeds == 2  # one recorded at each site
        ids = engine.sql("SELECT count(*), count(DISTINCT condition_occurrence_id) FROM condition_occurrence")
        total, distinct = ids.fetchone()
        assert total == distinct == 5
        assert engine.sql("SELECT count(*) FROM concept").fetchone()[0] == 5
    origins = {(e.table, e.origin) for e in m.lineage if e.table == "person"}
    assert origins == {("person", "site site-a (deposit index 1)"), ("person", "site site-d (deposit index 2)")}


def test_new_deposit_gives_new_release_and_stable_person_ids(hub, settings):
    first = build_release("r1", settings)
    site, folder = hub["d"]
    (folder / "cdm" / "condition_occurrence.csv").write_text(CONDITIONS + "5,102,0,2022-01-01,32817,K92.2\n")
    ingest(site, folder, settings, synthetic=True)
    second = build_release("r2", settings)
    assert ReleaseStore(settings).get("r1").manifest == first.manifest
    ids = []
    for release in (first, second):
        with DuckDBEngine(release, settings) as engine:
            ids.append(sorted(r[0] for r in engine.sql("SELECT person_id FROM person").fetchall()))
    assert ids[0] == ids[1]
    assert second.manifest.tables["condition_occurrence"].rows == first.manifest.tables["condition_occurrence"].rows + 1


def test_build_needs_deposits(settings):
    with pytest.raises(HygieError, match="no deposit yet"):
        build_release("empty", settings)


def test_linkage_is_measured_against_a_ground_truth(hub, settings, tmp_path):
    from hygie.ingest.linkage_evaluation import evaluate

    release = build_release("linked", settings)
    truth = tmp_path / "linkage.csv"
    truth.write_text("site,local_id,person_key\na,1,p1\na,2,p2\na,3,p3\nd,101,p1\nd,102,p2\nd,103,p4\nc,9,p9\n")
    result = evaluate(release, settings, truth, {"a": "site-a", "d": "site-d"})
    assert (result["records"], result["true_pairs"], result["precision"], result["recall"]) == (6, 2, 1.0, 1.0)
    truth.write_text("site,local_id,person_key\na,1,p1\na,2,p2\na,3,p1\nd,101,p1\nd,102,p2\nd,103,p4\n")
    result = evaluate(release, settings, truth, {"a": "site-a", "d": "site-d"})
    assert result["recall"] == round(2 / 4, 4)  # p1 has three records: three true pairs, one found


def test_person_ids_do_not_depend_on_which_sites_deposit(hub, settings, tmp_path):
    """A new site whose name sorts first changes the deposits' order, not the persons' ids."""
    before = build_release("r1", settings)
    registry = SiteRegistry(settings)
    early = registry.add("aa-first", "omop")
    folder = tmp_path / "aa"
    write_cdm(
        folder / "cdm",
        {
            "person.csv": "person_id,gender_concept_id,year_of_birth,race_concept_id,"
            "ethnicity_concept_id\n7,8507,2001,0,0\n"
        },
    )
    (folder / "identities.csv").write_text("local_id,birth_date,sex\n7,2001-01-01,M\n")
    ingest(early, folder, settings, synthetic=True)
    after = build_release("r2", settings)
    ids = []
    for release in (before, after):
        with DuckDBEngine(release, settings) as engine:
            ids.append({r[0] for r in engine.sql("SELECT person_id FROM person").fetchall()})
    assert ids[0] < ids[1] and len(ids[1] - ids[0]) == 1
