"""Portal sign-in: password + TOTP through governance, sessions, CSRF, rate limits, sign-out, audit events."""

from __future__ import annotations

from hygie.api import csrf, sessions
from hygie.governance.roles import Grant, Role
from tests.web_helpers import add_account, client, csrf_of, operator, sign_in


def events(settings) -> list[dict]:
    """What the portal reported, as the auditor reads it in the audit log."""
    from hygie.governance.audit import AuditLog

    return [e.to_json() for e in AuditLog(settings).entries()]


def test_operator_signs_in_with_password_and_code_and_out_again(settings):
    olivia = operator(settings)
    c = client(settings)
    response = sign_in(c, olivia, next="/api/v1/me")
    assert response.status_code == 303
    assert response.headers["location"] == "/api/v1/me"
    cookie = response.headers.get_list("set-cookie")
    session_cookie = next(h for h in cookie if h.startswith(sessions.COOKIE + "="))
    assert "HttpOnly" in session_cookie and "SameSite=strict" in session_cookie
    me = c.get("/api/v1/me").json()
    assert me == {
        "username": "olivia", "roles": ["operator"], "grants": ["operator"], "second_factor": True, "via": "session"
    }  # fmt: skip

    token = csrf_of(c, "/")
    assert c.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert c.get("/api/v1/me").status_code == 401
    actions = [(e["actor"], e["action"], e["outcome"]) for e in events(settings)]
    assert ("olivia", "auth.password", "ok") in actions
    assert ("olivia", "auth.logout", "ok") in actions


def test_password_without_code_is_refused_for_a_role_that_needs_a_second_factor(settings):
    olivia = operator(settings)
    c = client(settings)
    response = sign_in(c, olivia, code="")
    assert response.status_code == 401
    assert "authentication failed" in response.text
    assert sessions.COOKIE not in c.cookies
    assert c.get("/api/v1/me").status_code == 401


def test_auditor_needs_no_second_factor(settings):
    ada = add_account(settings, "ada", Grant(Role.AUDITOR), totp=False)
    c = client(settings)
    assert sign_in(c, ada).status_code == 303
    assert c.get("/api/v1/me").json()["roles"] == ["auditor"]


def test_wrong_password_gives_one_message_whatever_the_account(settings):
    olivia = operator(settings)
    c = client(settings)
    wrong = sign_in(c, olivia.__class__(olivia.username, "not-the-password-at-all", olivia.totp_secret, []))
    unknown = sign_in(c, olivia.__class__("nobody", "not-the-password-at-all", None, []))
    assert wrong.status_code == unknown.status_code == 401
    assert "wrong username, password or code" in wrong.text and "wrong username, password or code" in unknown.text


def test_login_form_without_csrf_token_is_refused(settings):
    olivia = operator(settings)
    c = client(settings)
    c.get("/login")
    response = c.post(
        "/login", data={"username": olivia.username, "password": olivia.password, "code": olivia.code() or ""}
    )
    assert response.status_code == 403
    forged = c.post("/login", data={"username": "olivia", "password": "x" * 12, "csrf_token": "0" * 64})
    assert forged.status_code == 403
    # A token is bound to its browser's cookie: another browser's valid token does not work here.
    other = client(settings)
    token = csrf_of(other)
    assert c.post("/login", data={"username": "olivia", "password": "x" * 12, "csrf_token": token}).status_code == 403


def test_csrf_cookie_changes_at_login(settings):
    olivia = operator(settings)
    c = client(settings)
    before = csrf_of(c)
    cookie_before = c.cookies.get(csrf.COOKIE)
    assert sign_in(c, olivia).status_code == 303
    assert c.cookies.get(csrf.COOKIE) != cookie_before
    # The pre-login token no longer passes: logout with it is refused.
    assert c.post("/logout", data={"csrf_token": before}).status_code == 403


def test_failures_per_account_are_rate_limited_before_the_password_is_checked(settings):
    olivia = operator(settings)
    c = client(settings, login_failures_per_account=3)
    for _ in range(3):
        assert sign_in(c, olivia, code="000000").status_code == 401
    limited = sign_in(c, olivia)  # right password and code, but the account's window is full
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert any(e["action"] == "auth.rate_limited" for e in events(settings))


def test_attempts_per_address_are_rate_limited(settings):
    operator(settings)
    c = client(settings, login_attempts_per_ip=2)
    ghost = add_account(settings, "ghost", Grant(Role.AUDITOR), totp=False)
    for _ in range(2):
        sign_in(c, ghost.__class__("ghost", "wrong-password-here", None, []))
    assert sign_in(c, ghost).status_code == 429


def test_open_redirects_are_refused(settings):
    ada = add_account(settings, "ada", Grant(Role.AUDITOR), totp=False)
    c = client(settings)
    response = sign_in(c, ada, next="//evil.example/")
    assert response.headers["location"] == "/"


def test_session_ends_when_the_account_is_disabled_and_survives_a_restart(settings):
    from hygie.governance.accounts import Accounts
    from hygie.governance.store import open_store
    from tests.web_helpers import CONSOLE

    ada = add_account(settings, "ada", Grant(Role.AUDITOR), totp=False)
    c = client(settings)
    sign_in(c, ada)
    assert c.get("/api/v1/me").json()["roles"] == ["auditor"]
    restarted = client(settings)  # a new application (a restart, or another worker process) on the same hub
    restarted.cookies.update(c.cookies)
    assert restarted.get("/api/v1/me").json()["username"] == "ada"
    with open_store(settings) as store:
        Accounts(store).set_active(CONSOLE, "ada", False)
    assert c.get("/api/v1/me").status_code == 401  # the session ended with the account
    assert restarted.get("/api/v1/me").status_code == 401


def test_bearer_tokens_authenticate_the_api_and_bad_ones_are_refused(settings):
    from hygie.governance.accounts import Accounts
    from hygie.governance.store import open_store
    from tests.web_helpers import CONSOLE

    operator(settings)
    with open_store(settings) as store:
        _, secret = Accounts(store).create_token(CONSOLE, "olivia", "ci")
    c = client(settings)
    me = c.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200 and me.json()["via"] == "token"
    bad = c.get("/api/v1/me", headers={"Authorization": "Bearer hyg_not-a-token"})
    assert bad.status_code == 401 and bad.json() == {"detail": "unknown, revoked or expired API token"}


def test_a_revoked_token_or_role_is_refused_at_the_next_request(settings):
    """The token's rows are kept between requests while the store is unchanged (``governance.readcache``); a
    revocation committed by another process is seen at the very next request."""
    from hygie.governance.accounts import Accounts
    from hygie.governance.store import open_store
    from tests.web_helpers import CONSOLE

    operator(settings)
    with open_store(settings) as store:
        accounts = Accounts(store)
        accounts.grant(CONSOLE, "olivia", Grant(Role.AUDITOR))
        _, secret = accounts.create_token(CONSOLE, "olivia", "ci")
    c = client(settings)
    bearer = {"Authorization": f"Bearer {secret}"}
    for _ in range(3):
        assert c.get("/api/v1/me", headers=bearer).json()["roles"] == ["auditor", "operator"]
    with open_store(settings) as store:  # another process of the hub
        Accounts(store).revoke(CONSOLE, "olivia", Grant(Role.AUDITOR))
    assert c.get("/api/v1/me", headers=bearer).json()["roles"] == ["operator"]
    with open_store(settings) as store:
        Accounts(store).revoke_token(CONSOLE, "olivia", "ci")
    assert c.get("/api/v1/me", headers=bearer).status_code == 401
