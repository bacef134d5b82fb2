"""Rows read from the metadata store, kept for as long as the store is unchanged (decision 0020, third pass).

The portal reads the same few rows on almost every request: the session or token with its account and grants,
and the projects the caller may list. ``ReadCache.get`` returns what an earlier read returned only if no
connection, of this process or any other, has committed anything to the store since: SQLite's
``PRAGMA data_version``, asked on a connection of the cache's own that never writes, changes at every commit of
another connection (a read of the shared WAL index: microseconds, against tens to hundreds for the queries it
spares). So a revoked token, a disabled account, an ended session or a suspended project is seen at the very next
request, as without the cache. What is kept is rows, never a decision: callers still apply every rule that
depends on the time (session limits, expiry, yearly review, training) to the rows at each request.

Only a SQLite file store has such a counter: on PostgreSQL (or an in-memory SQLite) ``get`` always reads.
Misses are not kept (an unknown cookie or token costs a query, as before), and the cache holds at most
``max_entries`` rows sets, all dropped at the first change, so its size is bounded by what is valid right now.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import Engine

T = TypeVar("T")
_MISSING: Any = object()


class ReadCache:
    def __init__(self, engine: Engine, *, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: dict[Hashable, Any] = {}
        self._version: int | None = None  # the store's data version the entries were read at
        database = engine.url.database
        self._database = (
            database
            if engine.dialect.name == "sqlite" and database and database != ":memory:" and "mode=memory" not in database
            else None
        )
        self._watch: sqlite3.Connection | None = None  # opened at first use (many stores are opened for one read)
        self._pid = 0  # the process that opened ``_watch``

    @property
    def enabled(self) -> bool:
        return self._database is not None

    def _data_version(self) -> int:
        """Under ``_lock``. Autocommit (isolation_level None): each PRAGMA sees the newest commit. The connection
        never writes: its counter moves only for the commits of *other* connections, which is all of them. A
        process forked from the one that opened it opens its own (SQLite connections do not cross a fork)."""
        if self._watch is None or self._pid != os.getpid():
            assert self._database is not None
            self._watch = sqlite3.connect(self._database, isolation_level=None, check_same_thread=False, timeout=30)
            self._pid = os.getpid()
            self._entries.clear()
            self._version = None
        return self._watch.execute("PRAGMA data_version").fetchone()[0]

    def get(self, key: Hashable, load: Callable[[], T], *, keep: Callable[[T], bool] = bool) -> T:
        """What ``load()`` returns for ``key``, read again unless nothing was committed to the store since it
        was last read. ``keep`` says whether a result may be kept (default: a non-empty one)."""
        if self._database is None:
            return load()
        with self._lock:
            # Read before loading: a commit that lands during ``load`` moves the version, so what ``load`` read
            # (new or old) is kept under the older version and dropped at the next request.
            try:
                version: int | None = self._data_version()
            except sqlite3.Error:  # the counter cannot be read: read the store itself, keep nothing
                version = None
            if version is None or version != self._version:
                self._entries.clear()
                self._version = version
            hit = self._entries.get(key, _MISSING)
        if version is None:
            return load()
        if hit is not _MISSING:
            return hit
        value = load()
        if keep(value):
            with self._lock:
                if self._version == version and len(self._entries) < self.max_entries:
                    self._entries[key] = value
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def close(self) -> None:
        with self._lock:
            self._entries.clear()
            self._version = None
            if self._watch is not None:
                self._watch.close()
                self._watch = None
