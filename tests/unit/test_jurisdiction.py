"""Endpoints outside this machine must be attested as EU/EEA-hosted (TRE checklist #13): the hub fails closed at
configuration, before any connection, for the metadata store and the KMS alike."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from hygie.cli.main import app
from hygie.governance.store import engine_for
from hygie.jurisdiction import JurisdictionError, allowed_hosts, check_endpoint, host_allowed

ALLOWED = ("db.hds-provider.fr", ".eu-cloud.example.de", "10.20.0.0/16", "2001:db8::/32")


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("db.hds-provider.fr", True),
        ("DB.HDS-Provider.FR", True),
        ("evil-db.hds-provider.fr", False),  # a name, not a suffix
        ("pg.eu-cloud.example.de", True),
        ("eu-cloud.example.de.attacker.com", False),
        ("attacker-eu-cloud.example.de", False),
        ("10.20.3.4", True),
        ("10.21.0.1", False),
        ("2001:db8::5", True),
        ("db.us-cloud.example.com", False),
        ("8.8.8.8", False),
    ],
)
def test_hosts(host: str, ok: bool) -> None:
    assert host_allowed(host, ALLOWED) is ok


@given(st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,8}){1,3}", fullmatch=True))
def test_nothing_outside_is_allowed_by_default(host: str) -> None:
    assert not host_allowed(host, allowed_hosts({}))


def test_messages_name_the_endpoint_and_the_variable() -> None:
    with pytest.raises(JurisdictionError, match=r"the KMS: host 'kms\.example\.com'.*HYGIE_EU_HOSTS: nothing yet"):
        check_endpoint("the KMS", "kms.example.com", {})
    with pytest.raises(JurisdictionError, match="not an IP network"):
        allowed_hosts({"HYGIE_EU_HOSTS": "10.0.0.0/99"})
    check_endpoint("a socket", None, {})


def test_the_metadata_store_refuses_an_unlisted_postgresql_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYGIE_EU_HOSTS", raising=False)
    with pytest.raises(JurisdictionError, match=r"HYGIE_DATABASE_URL \(the metadata store\): host 'pg\.example\.com'"):
        engine_for("postgresql+psycopg://hub:secret@pg.example.com:5432/hub")
    with pytest.raises(JurisdictionError, match=r"'replica\.example\.com'"):  # libpq's host list in the query string
        engine_for("postgresql+psycopg://hub:secret@/hub?host=/run/postgresql,replica.example.com")
    engine_for("postgresql+psycopg://hub:secret@/hub?host=/run/postgresql").dispose()  # a Unix socket
    monkeypatch.setenv("HYGIE_EU_HOSTS", "pg.example.com")
    engine_for("postgresql+psycopg://hub:secret@pg.example.com:5432/hub").dispose()  # listed: no connection yet


def test_cli_fails_closed_with_the_reason(home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYGIE_EU_HOSTS", raising=False)
    monkeypatch.setenv("HYGIE_DATABASE_URL", "postgresql+psycopg://hub:secret@pg.example.com:5432/hub")
    result = CliRunner().invoke(app, ["user", "list"])
    assert result.exit_code != 0 and "not among the hosts attested to be in the EU/EEA" in result.output
    assert "secret" not in result.output
