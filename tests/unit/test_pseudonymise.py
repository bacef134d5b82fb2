"""Identities become keyed tokens: stable under one key, tolerant of common errors, never readable."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from typer.testing import CliRunner

from hygie.cli.main import app
from hygie.errors import HygieError, InputError
from hygie.identity import nir_is_valid, nir_key, normalise_name, normalise_nir, soundex
from hygie.ingest.pseudonymise import LinkageKey, TokenReport, pseudonymise_file, tokenise

NIR = "1850578006084" + f"{nir_key('1850578006084'):02d}"
IDENTITIES = (
    "local_id,nir,family_name,given_name,birth_date,sex,postcode\n"
    f"A1,{NIR},Dupont,Émilie,1985-03-07,F,69003\n"
    "A2,,Martin,Jean,1950-12-01,M,54000\n"
)


@pytest.fixture
def key(tmp_path):
    return LinkageKey.generate(tmp_path / "linkage.key")


def test_nir_structure_and_key():
    assert nir_is_valid(NIR)
    assert not nir_is_valid(NIR[:-2] + f"{(int(NIR[-2:]) + 1) % 100:02d}")
    corsica = "2850520123456"
    assert nir_is_valid(corsica[:5] + "2A" + corsica[7:] + f"{nir_key(corsica[:5] + '2A' + corsica[7:]):02d}")
    assert normalise_nir(f" {NIR[:1]} {NIR[1:3]}.{NIR[3:]} ") == NIR
    assert normalise_nir("123") is None and normalise_nir(None) is None


def test_names_are_normalised_before_hashing():
    assert normalise_name(" d'Arc-Émilie ") == "DARCEMILIE"
    assert soundex("DUPONT") == soundex("DUPOND") == "D153"
    assert [soundex(n) for n in ("ROBERT", "TYMCZAK", "ASHCRAFT", "PFISTER")] == ["R163", "T522", "A261", "P236"]


def _tokens(key, **identity):
    base = {
        "local_id": "A1",
        "nir": NIR,
        "family_name": "Dupont",
        "given_name": "Emilie",
        "birth_date": "1985-03-07",
        "sex": "F",
        "postcode": "69003",
    }
    return next(tokenise([{**base, **identity}], key, TokenReport()))


def test_tokens_are_stable_and_keyed(key, tmp_path):
    assert _tokens(key) == _tokens(key, family_name="DUPONT ", given_name="émilie")
    other = LinkageKey.generate(tmp_path / "other.key")
    assert _tokens(key)["nir_token"] != _tokens(other)["nir_token"]
    assert len(_tokens(key)["nir_token"]) == 32


def test_tokens_tolerate_typos_and_day_month_swaps(key):
    original, typo = _tokens(key), _tokens(key, family_name="Dupond")
    assert typo["family_name_token"] != original["family_name_token"]
    assert typo["family_name_soundex_token"] == original["family_name_soundex_token"]
    swapped = _tokens(key, birth_date="1985-07-03")
    assert swapped["birth_date_swapped_token"] == original["birth_date_token"]
    assert _tokens(key, birth_date="1985-03-25")["birth_date_swapped_token"] is None  # 25 is not a month


def test_invalid_or_absent_values_are_counted_not_shown(key):
    report = TokenReport()
    records = [{"local_id": "A1", "nir": NIR[:-1] + "0", "birth_date": "1985-02-30", "sex": "X"}]
    [tokens] = list(tokenise(records, key, report))
    assert tokens["nir_token"] is None and tokens["birth_date_token"] is None and tokens["sex"] is None
    assert report.invalid_nir == 1
    assert report.missing["birth_date"] == 1 and report.missing["sex"] == 1


def test_token_file_holds_no_identifier(key, tmp_path):
    (tmp_path / "ids.csv").write_text(IDENTITIES, encoding="utf-8")
    report = pseudonymise_file(tmp_path / "ids.csv", tmp_path / "tokens.csv", key)
    assert report.records == 2 and report.missing["nir"] == 1
    text = (tmp_path / "tokens.csv").read_text()
    for identifier in (NIR, "Dupont", "DUPONT", "Martin", "1985-03-07", "69003", "54000", "A1,", "A2,"):
        assert identifier not in text
    assert text.splitlines()[0].startswith("local_id_token,nir_token,")


def test_bad_identity_files(key, tmp_path):
    bad = tmp_path / "ids.csv"
    bad.write_text("local_id,name\nA1,x\n")
    with pytest.raises(InputError, match=r"required column\(s\) missing: birth_date, sex") as info:
        pseudonymise_file(bad, tmp_path / "t.csv", key)
    assert "unknown column(s): name" in str(info.value)
    bad.write_text(IDENTITIES + "A3,,Durand\n")
    with pytest.raises(InputError, match=r"ids\.csv, row 3: wrong number of fields"):
        pseudonymise_file(bad, tmp_path / "t.csv", key)
    assert not (tmp_path / "t.csv").exists() and not (tmp_path / "t.csv.partial").exists()
    (tmp_path / "t.csv").write_text("keep me")
    with pytest.raises(HygieError, match="already exists"):
        pseudonymise_file(tmp_path / "ids.csv", tmp_path / "t.csv", key)
    assert (tmp_path / "t.csv").read_text() == "keep me"


def test_cli(tmp_path):
    runner = CliRunner()
    assert runner.invoke(app, ["keys", "new-linkage-key", str(tmp_path / "k")]).exit_code == 0
    again = runner.invoke(app, ["keys", "new-linkage-key", str(tmp_path / "k")])
    assert again.exit_code == 1 and "never overwritten" in again.stderr
    (tmp_path / "ids.csv").write_text(IDENTITIES, encoding="utf-8")
    result = runner.invoke(
        app, ["pseudonymise", str(tmp_path / "ids.csv"), "--key", str(tmp_path / "k"), "--out", str(tmp_path / "t")]
    )
    assert result.exit_code == 0, result.output
    assert "wrote 2 token record(s)" in result.stdout
    assert NIR not in result.stdout and "Dupont" not in result.stdout


def test_shared_values_give_the_same_tokens_as_direct_hashing(key, monkeypatch):
    """Dates, names and postcodes hashed once per run (a bounded memo) give exactly the tokens of direct hashing."""
    from hygie.ingest import pseudonymise

    records = [
        {
            "local_id": f"P{i}",
            "nir": NIR if i % 3 == 0 else "",
            "family_name": ["Dupont", "Dupond", " d'Arc ", "", None][i % 5],
            "given_name": ["Émilie", "Jean", "", None][i % 4],
            "birth_date": ["1985-03-07", "1985-07-03", "1985-13-40", "", None, "1990-05-05"][i % 6],
            "sex": "FM"[i % 2],
            "postcode": ["69003", " 54000 ", "", None][i % 4],
        }
        for i in range(60)
    ]

    def direct(r):
        name = {f: normalise_name(r[f]) for f in ("family_name", "given_name")}
        birth = None if not r["birth_date"] or r["birth_date"].startswith("1985-13") else r["birth_date"]
        swapped = f"{birth[:4]}-{birth[8:10]}-{birth[5:7]}" if birth and int(birth[8:10]) <= 12 else None
        return {
            "birth_date_token": key.token("birth_date", birth),
            "birth_date_swapped_token": key.token("birth_date", swapped if swapped != birth else None),
            "birth_year_token": key.token("birth_year", birth[:4] if birth else None),
            "family_name_token": key.token("family_name", name["family_name"]),
            "family_name_soundex_token": key.token("family_name_soundex", soundex(name["family_name"])),
            "given_name_token": key.token("given_name", name["given_name"]),
            "given_name_soundex_token": key.token("given_name_soundex", soundex(name["given_name"])),
            "postcode_token": key.token("postcode", (r["postcode"] or "").strip() or None),
        }

    expected = [direct(r) for r in records]
    remembered = [{k: t[k] for k in expected[0]} for t in tokenise(records, key, TokenReport())]
    monkeypatch.setattr(pseudonymise, "MEMO_LIMIT", 2)  # past the limit, values are hashed each time
    bounded = [{k: t[k] for k in expected[0]} for t in tokenise(records, key, TokenReport())]
    assert remembered == expected == bounded
    assert expected[0]["birth_date_swapped_token"] == expected[1]["birth_date_token"]


@pytest.mark.parametrize("raw", [bytes(range(32)), b"\xaa" * 64, b"\x01" * 131])
def test_tokens_are_hmac_sha256_of_field_and_value(raw):
    """Tokens are HMAC-SHA256 as the standard library computes it (keys shorter than, equal to and longer than
    the hash block), so that pseudonyms stay the same whatever computes them."""
    key = LinkageKey(raw)
    for field, value in [("nir", "185057800608436"), ("family_name", "ÉMILIE D'ARC"), ("birth_date", "1985-03-07")]:
        expected = hmac.new(raw, f"{field}|{value}".encode(), hashlib.sha256).hexdigest()[:32]
        assert key.token(field, value) == expected
    assert key.token("nir", None) is None
