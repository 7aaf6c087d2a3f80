"""Lookups are kept for a moment only, misses are never kept, and a change made here applies at once."""

from __future__ import annotations

from azurine.storage.cache import ExpiringCache, StateCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_for_the_ttl_only() -> None:
    clock = Clock()
    cache = StateCache(ttl=1.0, clock=clock)
    cache.put(("deployment", "a"), "record")
    clock.now = 0.9
    assert cache.get(("deployment", "a")) == "record"
    clock.now = 1.0
    assert cache.get(("deployment", "a")) is None


def test_a_ttl_of_zero_keeps_nothing() -> None:
    cache: ExpiringCache[str, str] = ExpiringCache(ttl=0, clock=Clock())
    cache.put("account", "key")
    assert cache.get("account") is None


def test_misses_are_not_kept() -> None:
    cache = StateCache(ttl=1.0, clock=Clock())
    cache.put(("deployment", "b"), None)
    assert cache.get(("deployment", "b")) is None


def test_forget_drops_one_entry_or_all() -> None:
    cache: ExpiringCache[str, int] = ExpiringCache(ttl=60, clock=Clock())
    for key in "abc":
        cache.put(key, 1)
    cache.forget("a")
    assert [cache.get(key) for key in "abc"] == [None, 1, 1]
    cache.forget()
    assert [cache.get(key) for key in "abc"] == [None, None, None]


def test_a_read_that_a_change_overtook_is_not_kept() -> None:
    """A value read before `forget` and stored after it would bring the old value back for a whole TTL."""
    cache: ExpiringCache[str, str] = ExpiringCache(ttl=60, clock=Clock())
    since = cache.changes()
    cache.forget("assignments")  # another request changed what the first one was reading
    cache.put("assignments", "read before the change", since)
    assert cache.get("assignments") is None
    since = cache.changes()
    cache.put("assignments", "read after it", since)
    assert cache.get("assignments") == "read after it"


def test_a_read_through_keeps_what_it_read_and_reads_again_after_a_miss_or_a_change() -> None:
    cache: ExpiringCache[str, str] = ExpiringCache(ttl=60, clock=Clock())
    reads: list[str] = []

    def read() -> str | None:
        reads.append("read")
        return None if len(reads) == 1 else f"value {len(reads)}"

    assert cache.read_through("deployment", read) is None  # a miss: not kept
    assert cache.read_through("deployment", read) == "value 2"
    assert cache.read_through("deployment", read) == "value 2"  # kept: no third read
    cache.forget("deployment")
    assert cache.read_through("deployment", read) == "value 3"
    assert len(reads) == 3


def test_a_read_through_in_a_thread_is_not_kept_when_a_change_overtook_it() -> None:
    """The read runs off the event loop; a `forget` while it runs voids what it read."""
    import anyio

    cache: ExpiringCache[str, str] = ExpiringCache(ttl=60, clock=Clock())

    def overtaken() -> str:
        cache.forget("account")  # a key regeneration on this replica while the lookup was in flight
        return "read before the change"

    async def main() -> None:
        assert await cache.read_through_in_thread("account", overtaken) == "read before the change"
        assert cache.get("account") is None
        assert await cache.read_through_in_thread("account", lambda: "read after it") == "read after it"
        assert cache.get("account") == "read after it"

    anyio.run(main)
