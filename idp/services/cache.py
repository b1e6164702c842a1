"""A small time-bounded cache for hot-path lookups (clients, API keys).

Entries live ``ttl`` seconds, so a change made on any node (a revoked key, an edited client) is seen everywhere
within that bound without cross-node messaging. ``invalidate`` drops an entry at once on the node that made the
change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K, load: Callable[[K], V]) -> V:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        value = load(key)
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # bounded memory even under a flood of unknown ids
            self._entries[key] = (now + self.ttl, value)
        return value

    def invalidate(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
