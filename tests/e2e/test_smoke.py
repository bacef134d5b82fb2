"""The portal in a real browser: public pages render without a script or CSP error; the rest needs a sign-in."""

from __future__ import annotations


def test_anonymous_visitor_reads_the_public_pages_and_is_sent_to_sign_in_elsewhere(server, new_page):
    page, console = new_page()
    page.goto(server.url + "/")
    assert page.locator("h1").inner_text() == "Project registry"
    page.click("text=Object (opt-out)")
    assert page.locator("h1").inner_text() == "Object to the use of your data"
    for path in ("/operator", "/audit", "/projects", "/review"):
        page.goto(server.url + path)
        assert page.url.startswith(server.url + "/login?next="), path
        assert page.locator("h1").inner_text() == "Sign in"
    response = page.goto(server.url + "/api/v1/users")
    assert response.status == 401
    assert console.errors == []


def test_a_wrong_password_is_refused_in_the_browser(server, new_page):
    page, console = new_page()
    page.goto(server.url + "/login")
    page.fill("input[name=username]", "nobody")
    page.fill("input[name=password]", "not-a-real-password")
    page.click("button[type=submit]")
    assert "authentication failed" in page.locator("p.error").inner_text()
    assert console.errors == []
