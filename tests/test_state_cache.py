"""Lookups are kept for a moment only, and misses are never kept."""

from __future__ import annotations

from azurine.storage.cache import ShortLivedCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_for_the_ttl_only() -> None:
    clock = Clock()
    cache = ShortLivedCache(ttl=1.0, clock=clock)
    cache.put(("deployment", "a"), "record")
    clock.now = 0.9
    assert cache.peek(("deployment", "a")) == "record"
    clock.now = 1.2
    assert cache.peek(("deployment", "a")) is None


def test_misses_are_not_kept() -> None:
    cache = ShortLivedCache(ttl=1.0, clock=Clock())
    cache.put(("deployment", "b"), None)
    assert cache.peek(("deployment", "b")) is None
