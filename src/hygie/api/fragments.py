"""Parts of responses rendered once for the same objects: the rows of a project list, a JSON body.

The portal's busiest responses are made of objects the metadata store's read cache returns unchanged while
nothing is committed (``governance.readcache``): the same project snapshots, the same principal. What is rendered
from them (HTML rows, JSON) is kept here keyed by the objects' identities, and the entry holds the objects, so an
identity cannot be reused by another object while its entry lives. New objects (after any change to the store)
make new entries; the oldest go first beyond ``size``. Only what depends on nothing but those objects is kept:
who may see which object is decided before, at every request.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Fragments:
    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._entries: dict[tuple[Any, ...], tuple[tuple[object, ...], Any]] = {}

    def get(self, kind: str, objects: tuple[object, ...], render: Callable[[], T]) -> T:
        """``render()``, or what it returned for the same ``kind`` and the same objects (by identity)."""
        key = (kind, *map(id, objects))
        hit = self._entries.get(key)
        if hit is not None and len(hit[0]) == len(objects) and all(map(operator.is_, hit[0], objects)):
            return hit[1]
        value = render()
        with self._lock:
            while len(self._entries) >= self.size:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = (objects, value)
        return value
