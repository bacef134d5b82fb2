"""``hygie serve``: loopback by default; a network address needs --public (and TLS is the caller's duty)."""

from __future__ import annotations

from typer.testing import CliRunner

from hygie.cli.main import app
from hygie.cli.serve import is_loopback


def test_loopback_addresses():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.8.9.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("hub.example.org")


def test_a_network_address_is_refused_without_public(home):
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "8123"])
    assert result.exit_code == 1
    assert "not a loopback address" in result.output and "--public" in result.output


def test_tls_needs_both_certificate_and_key(home, tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("not used")
    result = CliRunner().invoke(app, ["serve", "--tls-cert", str(cert)])
    assert result.exit_code == 1 and "both --tls-cert and --tls-key" in result.output


def test_a_server_process_opens_the_store_and_compiles_templates_before_it_serves(settings):
    from fastapi.testclient import TestClient

    from hygie.api import create_app
    from hygie.api.pages import templates

    templates.env.cache.clear()
    application = create_app(settings)
    hub = application.state.hub
    assert "store" not in hub.__dict__  # nothing opened by building the app
    with TestClient(application):  # runs the lifespan, as uvicorn does before listening
        assert {"store", "sessions", "accounts"} <= hub.__dict__.keys()
        compiled = {template.name for template in templates.env.cache.values()}
        assert {"base.html", "registry.html", "login.html"} <= compiled
