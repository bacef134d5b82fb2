"""Demo accounts: one per role, passwords in 0600 files (never printed), TOTP shown once, idempotent."""

from __future__ import annotations

import stat

from hygie.api.demo import DEMO_PROJECT, create_demo_accounts
from hygie.ingest.cdm_load import load_cdm
from tests.cdm_files import write_cdm
from tests.web_helpers import Account, client, sign_in


def test_demo_accounts_sign_in_and_the_researcher_sees_the_demo_project(settings, tmp_path, capsys):
    load_cdm(write_cdm(tmp_path / "cdm"), "demo-gibleed", settings, synthetic=True)
    shown: dict[str, str] = {}
    accounts = create_demo_accounts(settings, show=lambda user, secret: shown.__setitem__(user, secret))
    assert [(u, r) for u, r, _ in accounts] == [
        ("demo-operator", "operator"), ("demo-researcher", "researcher"), ("demo-checker-1", "output_checker"),
        ("demo-checker-2", "output_checker"), ("demo-auditor", "auditor"),
    ]  # fmt: skip
    assert set(shown) == {"demo-operator", "demo-researcher", "demo-checker-1", "demo-checker-2"}
    passwords = {}
    for username, _, path in accounts:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.is_relative_to(settings.home)
        passwords[username] = path.read_text().strip()
    assert not any(p in capsys.readouterr().out for p in passwords.values())

    c = client(settings)
    researcher = Account("demo-researcher", passwords["demo-researcher"], shown["demo-researcher"], [])
    assert sign_in(c, researcher).status_code == 303
    assert [p["name"] for p in c.get("/api/v1/projects").json()] == [DEMO_PROJECT]

    again = create_demo_accounts(settings, show=lambda user, secret: shown.__setitem__(user + "!", secret))
    assert again == accounts and not any(k.endswith("!") for k in shown)  # nothing recreated, nothing re-shown
