"""Browser sessions of the portal, kept in the metadata store (table ``web_sessions``).

The cookie holds a random 256-bit id; the store keeps only its SHA-256, so a copy of the database (or a log of
its rows) does not reveal a usable cookie. A session is created only after every factor was checked (password
and, for the roles that need it, a TOTP code, in one step), so its id is always fresh (no fixation). Sessions end
after ``idle_seconds`` without a request or ``max_seconds`` after login, at logout, when the account is disabled
or its password set (``Accounts``), never at a restart: every process of ``hygie serve --workers N`` reads the
same table. ``last_seen_at`` is written at most once per ``TOUCH_SECONDS`` (a write per request would queue every
reader behind SQLite's single writer), so a session may end up to that much *before* its idle limit, never after.
The account behind a session and its grants are read with the session, in one query, at every request unless
nothing was committed to the store since the last read (``governance.readcache``), so a revoked role takes
effect on the next click; the session's limits are checked against the clock at every request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, bindparam, delete, func, insert, or_, select, update

from hygie.governance.accounts import AccountRows, principal_columns, principal_joins
from hygie.governance.models import User, WebSession
from hygie.governance.roles import Principal
from hygie.governance.store import Store

COOKIE = "hygie_session"
TOUCH_SECONDS = 60


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Session:
    principal: Principal  # the account as it stands at this request (grants re-read every time)
    created: dt.datetime
    last_seen: dt.datetime

    @property
    def username(self) -> str:
        return self.principal.name


_W, _U = WebSession.__table__, User.__table__
# One query per signed-in request: the session, its account and the account's grants. Built once (SQLAlchemy
# memoises the compiled form and cache key on the statement).
_GET = (
    select(_W.c.created_at, _W.c.last_seen_at, *principal_columns())
    .select_from(principal_joins(_W.join(_U, _U.c.id == _W.c.user_id)))
    .where(_W.c.id_hash == bindparam("key"))
)
_TOUCH = update(_W).where(_W.c.id_hash == bindparam("key")).values(last_seen_at=bindparam("now"))


class SessionStore:
    def __init__(
        self, store: Store, *, idle_seconds: int, max_seconds: int, clock: Callable[[], dt.datetime] = _utcnow
    ) -> None:
        self.store = store
        self.idle = dt.timedelta(seconds=idle_seconds)
        self.max = dt.timedelta(seconds=max_seconds)
        self.touch = dt.timedelta(seconds=min(TOUCH_SECONDS, idle_seconds // 2))
        self.clock = clock

    def create(self, username: str) -> str:
        """A new session; the id for its cookie (returned once, never stored in clear). Sessions that
        ended are swept here: logins are rare, requests are not."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        w = WebSession.__table__
        with self.store.session() as s:
            user_id = s.scalar(select(User.id).where(User.username == username))
            if user_id is None:
                raise ValueError(f"no user named {username!r}")
            s.execute(delete(w).where(or_(w.c.last_seen_at <= now - self.idle, w.c.created_at <= now - self.max)))
            s.execute(insert(w).values(id_hash=_digest(session_id), user_id=user_id, created_at=now, last_seen_at=now))
        return session_id

    def get(self, session_id: str | None) -> Session | None:
        """The live session of this cookie, or None (unknown, ended, idle or too old: then it is deleted)."""
        if not session_id:
            return None
        key = _digest(session_id)
        now = self.clock()
        account = self.store.reads.get(("session", key), lambda: AccountRows(self._read(key)))
        if not account:
            return None
        row = account.rows[0]
        if now - row.last_seen_at >= self.idle or now - row.created_at >= self.max:
            self._delete(key)
            return None
        if now - row.last_seen_at >= self.touch:
            with self.store.session() as s:
                s.execute(_TOUCH, {"key": key, "now": now})
        return Session(account.principal(now), row.created_at, now)

    def _read(self, key: str) -> list[Row[Any]]:
        with self.store.engine.connect() as connection:
            return connection.execute(_GET, {"key": key}).all()

    def delete(self, session_id: str | None) -> bool:
        """End one session (logout); whether it existed."""
        return bool(session_id) and self._delete(_digest(session_id or ""))

    def _delete(self, key: str) -> bool:
        with self.store.session() as s:
            return s.execute(delete(WebSession.__table__).where(WebSession.__table__.c.id_hash == key)).rowcount > 0

    def delete_user(self, username: str) -> int:
        """End every session of one account; how many ended."""
        w = WebSession.__table__
        with self.store.session() as s:
            user_ids = select(User.id).where(User.username == username).scalar_subquery()
            return s.execute(delete(w).where(w.c.user_id == user_ids)).rowcount

    def __len__(self) -> int:
        with self.store.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(WebSession.__table__)).scalar_one()
