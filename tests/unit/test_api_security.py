"""Security properties of every response: headers, cookies, no external asset, public vs signed-in routes."""

from __future__ import annotations

import datetime as dt
import re

from hygie.api import csrf
from hygie.api.security import CSP
from hygie.governance.projects import Projects, Scope
from hygie.governance.store import open_store
from tests.cdm_files import write_cdm
from tests.web_helpers import CONSOLE, client


def test_every_page_carries_the_security_headers(settings):
    c = client(settings)
    for path in ("/", "/optout", "/login", "/static/hygie.css", "/api/openapi.json", "/no-such-page"):
        headers = c.get(path).headers
        assert headers["content-security-policy"] == CSP, path
        assert "default-src 'self'" in CSP and "script-src 'self'" in CSP and "unsafe-inline" not in CSP
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"
        assert "strict-transport-security" not in headers  # plain HTTP on loopback


def test_hsts_and_secure_cookies_when_served_over_tls(settings):
    c = client(settings, tls=True)
    c.base_url = "https://testserver"
    response = c.get("https://testserver/login")
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")
    from fastapi.testclient import TestClient

    from hygie.api import create_app
    from hygie.api.config import WebConfig

    secure = TestClient(create_app(settings, WebConfig(secure_cookies=True, tls=True)), base_url="https://testserver")
    cookie = secure.get("/login").headers["set-cookie"]
    assert cookie.startswith(csrf.COOKIE + "=")
    assert all(flag in cookie for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"))


def test_pages_use_no_inline_script_and_no_external_asset(settings):
    c = client(settings)
    for path in ("/", "/optout", "/login"):
        html = c.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=\"/static/)", html), path
        assert " on" not in re.sub(r"\s+", " ", " ".join(re.findall(r"<[^>]+>", html))).replace(" one", ""), path
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), path
        assert "style=" not in html, path


def test_anonymous_callers_reach_only_public_routes(settings):
    c = client(settings)
    app = c.app
    public = {"/", "/optout", "/login", "/api/v1/registry", "/api/openapi.json"}
    for route in app.routes:
        path = getattr(route, "path", "")
        methods = getattr(route, "methods", None) or set()
        if "GET" not in methods or path in public or path.startswith("/static"):
            continue
        concrete = re.sub(r"\{[^}]+\}", "x1", path)
        response = c.get(concrete, follow_redirects=False)
        if path.startswith("/api/"):
            assert response.status_code == 401, path
        else:
            assert response.status_code == 303 and response.headers["location"].startswith("/login?next="), path


def test_public_registry_lists_approved_projects_not_drafts(settings, tmp_path):
    from hygie.ingest.cdm_load import load_cdm

    load_cdm(write_cdm(tmp_path / "cdm"), "r1", settings, synthetic=True)
    with open_store(settings) as store:
        projects = Projects(store)
        until = dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
        projects.create(
            CONSOLE, "flu", title="Flu incidence", purpose="Measure flu incidence", legal_basis="MR-004",
            valid_until=until,
        )  # fmt: skip
        projects.set_scope(CONSOLE, "flu", Scope(releases=("r1",), tables=("person", "condition_occurrence")))
        projects.approve(CONSOLE, "flu")
        projects.create(CONSOLE, "secret-draft", title="Not yet approved")
    c = client(settings)
    page = c.get("/").text
    assert "Flu incidence" in page and "MR-004" in page and "condition_occurrence" in page
    assert "Not yet approved" not in page
    api = c.get("/api/v1/registry").json()
    assert [e["name"] for e in api] == ["flu"]
    assert api[0]["releases"] == ["r1"] and api[0]["status"] == "active"


def test_optout_page_explains_how_to_object(settings):
    page = client(settings).get("/optout").text
    assert "How to object" in page and "never stored" in page


def test_oversized_bodies_are_refused_before_any_route_reads_them(settings):
    from hygie.api.security import MAX_BODY

    c = client(settings)
    response = c.post(
        "/login", content=b"x" * (MAX_BODY + 1), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 413 and response.headers["x-frame-options"] == "DENY"
