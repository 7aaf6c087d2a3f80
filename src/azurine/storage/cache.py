"""Values read from the state store, kept in memory for a moment so that a request's lookups cost no query.

Entries live for less than `ttl` seconds, so a change written by another replica is seen within that time, and a TTL
of 0 keeps nothing. Misses (`None`) are never kept: a deployment created a moment ago answers on its first request.

A change made on this replica calls `forget`, and applies here at once. A value read from the store before that
change, and stored after it, would bring the old value back for a whole TTL; so a reader takes `changes()` before
it reads, and `put` keeps the value only if nothing was forgotten since. `read_through` (and, for a blocking read
from async code, `read_through_in_thread`) does the three steps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import anyio.to_thread

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringCache(Generic[K, V]):
    def __init__(self, ttl: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}  # value and the clock's time it expires at
        self._changes = 0  # times `forget` ran
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value kept under `key`, or None when there is none or it has expired."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, value = entry
            if self._clock() >= expires:
                del self._entries[key]
                return None
            return value

    def changes(self) -> int:
        """A mark to take before reading what `put` will keep: a `forget` after it voids the read."""
        with self._lock:
            return self._changes

    def put(self, key: K, value: V | None, since: int | None = None) -> None:
        """Keep `value` for `ttl` seconds, unless it is None, or a `forget` ran after the mark `since`."""
        if value is None:
            return
        with self._lock:
            if since is None or since == self._changes:
                self._entries[key] = (self._clock() + self.ttl, value)

    def read_through(self, key: K, read: Callable[[], V | None]) -> V | None:
        """The value kept under `key`, else what `read` returns, kept unless a `forget` overtook the read."""
        found = self.get(key)
        if found is None:
            since = self.changes()
            found = read()
            self.put(key, found, since)
        return found

    async def read_through_in_thread(self, key: K, read: Callable[[], V | None]) -> V | None:
        """`read_through` where `read` blocks (a query): a miss reads in a worker thread, off the event loop."""
        found = self.get(key)
        if found is None:
            found = await anyio.to_thread.run_sync(self.read_through, key, read)
        return found

    def forget(self, key: K | None = None) -> None:
        """Drop `key`'s value, or every value: something this replica changed must apply at once."""
        with self._lock:
            self._changes += 1
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)


# what a request looks up by a tuple key, the record's kind first: accounts, deployments, fine-tuned models, content
# filtering policies and blocklists (a miss is looked up again, so the types are the readers' to check)
StateCache = ExpiringCache[tuple[object, ...], object]
