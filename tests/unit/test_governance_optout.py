"""The opt-out register: NIRs pseudonymised on entry into the person_id releases give, never stored or shown."""

from __future__ import annotations

import datetime as dt

import pytest

from hygie.engine.duckdb import DuckDBEngine
from hygie.errors import InputError
from hygie.governance.events import MemorySink
from hygie.governance.optout import (
    OptOutRegister,
    Pseudonymiser,
    opted_out_person_ids,
    read_nir_file,
    register_version,
)
from hygie.governance.permissions import PermissionDenied
from hygie.governance.roles import Grant, Principal, Role
from hygie.identity import nir_key
from hygie.ingest.build import build_release
from hygie.ingest.deposit import ingest
from hygie.ingest.sites import SiteRegistry
from hygie.ingest.vocabulary import install_vocabulary
from tests.cdm_files import write_cdm
from tests.unit.test_deposit import CONDITIONS, IDENTITIES, NIR, OBSERVATION_PERIOD, PERSON
from tests.unit.test_release_build import SITE_A_CONDITIONS, SITE_A_IDENTITIES, SITE_A_PERIODS, SITE_A_PERSON
from tests.unit.test_vocabulary import CONCEPT, RELATIONSHIP

OPERATOR = Principal.console("root")
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def valid_nir(body: str) -> str:
    return body + f"{nir_key(body):02d}"


OTHER = valid_nir("2991275123456")  # nobody in the release
THIRD = valid_nir("1770569123045")


@pytest.fixture
def sink():
    return MemorySink()


@pytest.fixture
def register(store, sink):
    return OptOutRegister(store, events=sink)


def nir_file(tmp_path, *nirs: str, header: str = "nir"):
    path = tmp_path / "optout.csv"
    path.write_text(header + "\n" + "".join(f"{n}\n" for n in nirs), encoding="utf-8")
    return path


def test_entries_and_withdrawals_are_versioned(register, store, sink):
    change = register.add(OPERATOR, [NIR, OTHER, NIR], source="CNAM objections 2026-03", now=T0)
    assert (change.rows, change.changed, change.unchanged) == (3, 2, 1)
    assert register.status().opted_out == 2 and register_version(store) == change.version == 2
    again = register.add(OPERATOR, [NIR], source="site chu-a")
    assert again.changed == 0 and again.version == 2  # already opted out: nothing appended
    ids = opted_out_person_ids(store)
    pseudonymiser = Pseudonymiser(store.settings)
    assert ids == {pseudonymiser.person_id(NIR), pseudonymiser.person_id(OTHER)}
    removed = register.remove(OPERATOR, [f"{NIR[:5]} {NIR[5:]}"], source="patient withdrew the objection")
    assert removed.changed == 1 and removed.version == 3  # spaces in a NIR are tolerated
    assert opted_out_person_ids(store) == {pseudonymiser.person_id(OTHER)}
    assert register.add(OPERATOR, [NIR], source="objected again").version == 4
    status = register.status()
    assert (status.opted_out, status.events, status.version) == (2, 4, 4)
    assert [e.details["changed"] for e in sink.events] == [2, 0, 1, 1]


def test_the_nir_is_never_stored_logged_or_shown(register, store, settings, sink, tmp_path):
    register.add(OPERATOR, read_nir_file(nir_file(tmp_path, NIR, THIRD)), source="file")
    if store.engine.dialect.name == "sqlite":
        for f in settings.home.glob("metadata.db*"):
            data = f.read_bytes()
            assert NIR.encode() not in data and THIRD.encode() not in data
    assert NIR not in str([e.to_json() for e in sink.events])
    bad = tmp_path / "bad.csv"
    bad.write_text(f"nir\n{NIR}\n{NIR[:-2]}00\n\n{NIR[:-1]}\n", encoding="utf-8")
    with pytest.raises(InputError) as error:
        read_nir_file(bad)
    message = str(error.value)
    assert "bad.csv, row 2, column 'nir': not a valid NIR" in message
    assert "bad.csv, row 3, column 'nir': not a valid NIR" in message
    assert NIR[:10] not in message and "nothing was entered" in message


def test_bulk_files_are_all_or_nothing(register, store, tmp_path):
    with pytest.raises(InputError, match="no 'nir' column"):
        read_nir_file(nir_file(tmp_path, NIR, header="numero"))
    with pytest.raises(InputError, match=r"row 2, column 'nir': no NIR"):
        read_nir_file(nir_file(tmp_path, NIR, " ", THIRD))
    assert register.status().events == 0
    assert read_nir_file(nir_file(tmp_path, NIR, THIRD, header="NIR")) == [NIR, THIRD]
    many = tmp_path / "many.csv"
    many.write_text("nir\n" + "bad\n" * 30, encoding="utf-8")
    with pytest.raises(InputError, match=r"and 10 more problem"):
        read_nir_file(many)


def test_only_the_operator_manages_the_register(register, sink):
    checker = Principal("bob", frozenset({Grant(Role.OUTPUT_CHECKER)}), mfa=True)
    with pytest.raises(PermissionDenied, match=r"optout\.manage"):
        register.add(checker, [NIR], source="x")
    assert sink.events[-1].outcome == "denied" and register.status().events == 0


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_the_register_holds_the_person_id_a_release_gives_the_patient(register, store, settings, tmp_path):
    """Dupont (the NIR) is deposited by two sites, linked into one person; the register names that person."""
    install_vocabulary(
        write_cdm(tmp_path / "athena", {"CONCEPT.csv": CONCEPT, "CONCEPT_RELATIONSHIP.csv": RELATIONSHIP}),
        "v1",
        settings,
    )
    registry = SiteRegistry(settings)
    for site, files, identities in (
        ("site-a", (SITE_A_PERSON, SITE_A_PERIODS, SITE_A_CONDITIONS), SITE_A_IDENTITIES),
        ("site-d", (PERSON, OBSERVATION_PERIOD, CONDITIONS), IDENTITIES),
    ):
        folder = tmp_path / site
        names = ("person.csv", "observation_period.csv", "condition_occurrence.csv")
        write_cdm(folder / "cdm", dict(zip(names, files, strict=True)))
        (folder / "identities.csv").write_text(identities, encoding="utf-8")
        ingest(registry.add(site, "omop"), folder, settings, synthetic=True)
    release = build_release("linked", settings)
    register.add(OPERATOR, [NIR, OTHER], source="test")
    opted_out = opted_out_person_ids(store)
    with DuckDBEngine(release, settings) as engine:
        persons = {r[0] for r in engine.sql("SELECT person_id FROM person").fetchall()}
        # Dupont: born 1985, one GI bleed recorded at each site
        [(dupont,)] = engine.sql(
            "SELECT person_id FROM condition_occurrence WHERE condition_concept_id = 192671 "
            "GROUP BY person_id HAVING count(*) = 2"
        ).fetchall()
        born = engine.sql(f"SELECT year_of_birth FROM person WHERE person_id = {dupont}").fetchone()[0]
    assert born == 1985
    assert opted_out & persons == {dupont}  # the other NIR is nobody in this release
    assert len(opted_out) == 2
