"""Demo accounts for ``hygie demo``: one person per role, so the portal can be tried at once on the demo data.

``create_demo_accounts(settings)`` creates (once) an operator, a researcher, two output checkers and an auditor,
and a demo project on the demo releases with the researcher as member. Each password is random and written to
``HYGIE_HOME/demo-accounts/<username>.password`` (mode 0600): it is never printed or logged. The TOTP secret of
each account that needs one is handed once to ``show`` (the demo prints it, with the way to compute a code);
it is stored only wrapped by the master key. Running it again keeps the existing accounts and files.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from hygie.config import Settings

DEMO_PROJECT = "demo-project"
DEMO_RELEASES = ("demo-emc2", "demo-gibleed")
DEMO_TRAINING = "Demo: data protection on the hub (synthetic data)"
# (username, role); the researcher's role is on the demo project.
DEMO_ACCOUNTS = (
    ("demo-operator", "operator"),
    ("demo-researcher", "researcher"),
    ("demo-checker-1", "output_checker"),
    ("demo-checker-2", "output_checker"),
    ("demo-auditor", "auditor"),
)


def password_folder(settings: Settings) -> Path:
    return settings.home / "demo-accounts"


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def _default_show(username: str, secret: str) -> None:
    print(f"   {username}: TOTP secret {secret} (shown once; a code: python -c \"import pyotp; "
          f"print(pyotp.TOTP('{secret}').now())\")")  # fmt: skip


def create_demo_accounts(
    settings: Settings, *, show: Callable[[str, str], None] | None = _default_show
) -> list[tuple[str, str, Path]]:
    """Create the demo accounts (and the demo project when a demo release exists); returns
    ``(username, role, password_file)`` for each account, whether created now or by an earlier run."""
    from hygie.governance.accounts import Accounts
    from hygie.governance.projects import Projects, Scope
    from hygie.governance.roles import Grant, Principal, Role
    from hygie.governance.store import open_store
    from hygie.releases import ReleaseStore

    console = Principal.console("hygie-demo")
    existing_releases = [r for r in DEMO_RELEASES if ReleaseStore(settings).exists(r)]
    folder = password_folder(settings)
    out: list[tuple[str, str, Path]] = []
    with open_store(settings) as store:
        accounts, projects = Accounts(store), Projects(store)
        known = {u.username for u in accounts.list()}
        if existing_releases and DEMO_PROJECT not in {p.name for p in projects.list()}:
            projects.create(
                console, DEMO_PROJECT, title="Demo project",
                purpose="Try the portal: submit a study on the demo releases and follow it to its release.",
                legal_basis="synthetic data (demo)", valid_until=dt.datetime.now(dt.UTC) + dt.timedelta(days=365),
            )  # fmt: skip
            projects.set_scope(console, DEMO_PROJECT, Scope(releases=tuple(existing_releases)))
            projects.approve(console, DEMO_PROJECT)
        has_project = DEMO_PROJECT in {p.name for p in projects.list()}
        for username, role in DEMO_ACCOUNTS:
            password_file = folder / f"{username}.password"
            if username not in known:
                password = secrets.token_urlsafe(18)
                _write_secret(password_file, password)
                accounts.add_user(console, username, password, full_name=username.replace("-", " ").title())
                if role == "researcher":
                    # Researchers' grants count only with a valid training record (safe_people).
                    accounts.record_training(console, username, DEMO_TRAINING, dt.datetime.now(dt.UTC).date())
                    if has_project:
                        projects.add_member(console, DEMO_PROJECT, username)
                else:
                    accounts.grant(console, username, Grant(Role(role)))
                if Role(role) is not Role.AUDITOR:
                    enrolment = accounts.enrol_totp(console, username)
                    if show is not None:
                        show(username, enrolment.secret)
            elif role == "researcher" and has_project and username not in projects.get(DEMO_PROJECT).members:
                projects.add_member(console, DEMO_PROJECT, username)
            out.append((username, role, password_file))
    return out
