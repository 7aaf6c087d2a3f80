"""Recently read accounts and deployments, kept for a moment so that a request's lookups cost no query.

Entries live for at most `ttl` seconds, so a change written by another replica is seen within that
time. Misses are never kept: a deployment created a moment ago answers on its first request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class ShortLivedCache:
    def __init__(self, ttl: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[tuple[object, ...], tuple[float, object]] = {}
        self._lock = threading.Lock()

    def peek(self, key: tuple[object, ...]) -> object | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            stored_at, value = entry
            if self._clock() - stored_at > self.ttl:
                del self._entries[key]
                return None
            return value

    def put(self, key: tuple[object, ...], value: object) -> None:
        if value is None:
            return
        with self._lock:
            self._entries[key] = (self._clock(), value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
