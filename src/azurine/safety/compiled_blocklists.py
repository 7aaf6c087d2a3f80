"""Blocklists compiled once per version: a list is compiled when it changes (by the management call that changed
it), keyed by its etag, and requests only look the compiled list up.

A list changed through another replica, or not compiled since this process started, is compiled by the first
request that needs it; every other request that needs it meanwhile waits for that one compile rather than
starting its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from azurine.safety.blocklists import Blocklist, BlocklistItem, BlocklistMatcher


class CompiledBlocklists:
    def __init__(self) -> None:
        self._compiled: dict[tuple[str, str], tuple[str, BlocklistMatcher]] = {}
        self._compiling: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()
        self.compiles = 0  # lists compiled since start: each version of a list once

    def get(self, account_id: str, name: str, etag: str,
            items: Callable[[], Iterable[BlocklistItem]]) -> BlocklistMatcher:
        """The list `name` at version `etag`, compiled from `items()` if this version has not been yet."""
        key = (account_id, name.lower())
        found = self._current(key, etag)
        if found is not None:
            return found
        with self._lock:
            compiling = self._compiling.setdefault(key, threading.Lock())
        with compiling:
            found = self._current(key, etag)  # compiled while this thread waited
            if found is None:
                found = BlocklistMatcher([Blocklist(name, tuple(items()))])
                with self._lock:
                    self._compiled[key] = (etag, found)
                    self.compiles += 1
            return found

    def forget(self, account_id: str, name: str) -> None:
        with self._lock:
            self._compiled.pop((account_id, name.lower()), None)

    def _current(self, key: tuple[str, str], etag: str) -> BlocklistMatcher | None:
        with self._lock:
            entry = self._compiled.get(key)
        return entry[1] if entry is not None and entry[0] == etag else None
