"""What the web application holds for its whole life: settings, the governance services it calls, the session
store (in the metadata store) and the login limiter. Routes reach it through ``hub(request)``; nothing here
decides a permission."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from fastapi import Request

from hygie.api.config import WebConfig
from hygie.api.fragments import Fragments
from hygie.api.ratelimit import LoginLimiter
from hygie.config import Settings

if TYPE_CHECKING:
    from hygie.api.sessions import SessionStore
    from hygie.governance.accounts import Accounts
    from hygie.governance.events import EventSink
    from hygie.governance.store import Store


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Hub:
    settings: Settings
    config: WebConfig
    limiter: LoginLimiter = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False)  # public data only
    fragments: Fragments = field(default_factory=Fragments, init=False, repr=False)  # rendered once per objects

    def __post_init__(self) -> None:
        c = self.config
        self.limiter = LoginLimiter(
            per_ip=c.login_attempts_per_ip, per_account=c.login_failures_per_account, seconds=c.login_window_seconds
        )

    # The metadata store opens on first use (and migrates then), so the public pages of an empty hub work.
    @cached_property
    def store(self) -> Store:
        from hygie.governance.store import open_store

        with self._lock:
            return open_store(self.settings)

    @cached_property
    def sessions(self) -> SessionStore:
        from hygie.api.sessions import SessionStore

        c = self.config
        return SessionStore(self.store, idle_seconds=c.session_idle_seconds, max_seconds=c.session_max_seconds)

    @cached_property
    def events(self) -> EventSink:
        from hygie.governance.events import default_sink

        return default_sink(self.settings)

    @cached_property
    def accounts(self) -> Accounts:
        from hygie.governance.accounts import Accounts

        return Accounts(self.store, events=self.events)

    def warm_up(self) -> None:
        """Do at startup what a process's first requests would otherwise do while clients wait: open (and check
        the schema of) the metadata store, import what the routes import lazily, compile the templates.

        Before this, the first requests a fresh process answered paid for it, and under load they held up every
        client of that process (seconds, on a busy machine). A store that cannot be opened now is opened on
        first use, as before, so the public pages of a hub whose database is down still answer."""
        import hygie.governance.permissions
        import hygie.governance.projects  # noqa: F401
        from hygie.api.pages import templates
        from hygie.errors import HygieError

        for name in templates.env.list_templates(extensions=["html"]):
            templates.env.get_template(name)
        try:
            self.sessions, self.accounts  # noqa: B018 (cached properties: opened here, once)
        except HygieError as e:
            logging.getLogger(__name__).warning("metadata store not opened at startup (retried on use): %s", e)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()


def hub(request: Request) -> Hub:
    return request.app.state.hub
