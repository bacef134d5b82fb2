"""Helpers for the portal's tests: accounts with roles and TOTP, a test client, signing in through the form."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import pyotp
from fastapi.testclient import TestClient

from hygie.api import create_app
from hygie.api.config import WebConfig
from hygie.config import Settings
from hygie.governance.accounts import TOTP_STEP, Accounts
from hygie.governance.roles import Grant, Principal, Role
from hygie.governance.store import open_store

CONSOLE = Principal.console("test")


@dataclass(frozen=True)
class Account:
    username: str
    password: str
    totp_secret: str | None
    uses: list[int]  # TOTP steps already used (a code is accepted once)

    def code(self) -> str | None:
        """A fresh TOTP code: the current step, else the next one (one step of drift is accepted)."""
        if self.totp_secret is None:
            return None
        import time

        step = int(time.time()) // TOTP_STEP
        step = max(step, (self.uses[-1] + 1) if self.uses else step)
        self.uses.append(step)
        return pyotp.TOTP(self.totp_secret).at(step * TOTP_STEP)


def add_account(settings: Settings, username: str, *grants: Grant, totp: bool = True) -> Account:
    password = f"pw-{len(username)}-correct-horse-battery-staple"
    with open_store(settings) as store:
        accounts = Accounts(store)
        accounts.add_user(CONSOLE, username, password, full_name=username.title())
        accounts.record_training(CONSOLE, username, "Data protection", dt.datetime.now(dt.UTC).date())
        for grant in grants:
            accounts.grant(CONSOLE, username, grant)
        secret = accounts.enrol_totp(CONSOLE, username).secret if totp else None
    return Account(username, password, secret, [])


def operator(settings: Settings, username: str = "olivia") -> Account:
    return add_account(settings, username, Grant(Role.OPERATOR))


def client(settings: Settings, **config: object) -> TestClient:
    return TestClient(create_app(settings, WebConfig(secure_cookies=False, **config)))  # type: ignore[arg-type]


CSRF_META = re.compile(r'<meta name="csrf-token" content="([0-9a-f]+)">')


def csrf_of(c: TestClient, path: str = "/login") -> str:
    page = c.get(path)
    match = CSRF_META.search(page.text)
    assert match, page.text[:500]
    return match.group(1)


def sign_in(c: TestClient, account: Account, *, code: str | None = None, next: str = "/"):
    token = csrf_of(c)
    form = {"csrf_token": token, "username": account.username, "password": account.password, "next": next}
    value = code if code is not None else account.code()
    if value:
        form["code"] = value
    return c.post("/login", data=form, follow_redirects=False)
