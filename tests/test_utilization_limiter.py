"""Provisioned (PTU) admission by utilization: Azure's leaky bucket, in memory and shared through Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
import redis

from azurine.quota.limiter import LimiterUnavailable, MemoryLimiter, RedisLimiter, Throughput

REDIS_URL = "redis://127.0.0.1:6379/0"
# 600 weighted tokens a minute is 10 a second: a 60 s window holds 600
THROUGHPUT = Throughput(per_minute=600)
# a bucket that drains 1 token a second holding 3,600 000: what drains while a Redis test runs is negligible
SLOW = Throughput(per_minute=60, window_s=3_600_000)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_memory_admits_up_to_and_across_full_then_refuses_until_drained() -> None:
    clock = Clock(1000.0)
    limiter = MemoryLimiter(clock)

    async def scenario() -> None:
        first = await limiter.admit_provisioned("d", THROUGHPUT, 300)
        assert first.admitted and first.utilization == pytest.approx(50.0) and first.retry_after_s == 0
        second = await limiter.admit_provisioned("d", THROUGHPUT, 300)
        assert second.admitted and second.utilization == pytest.approx(100.0)
        # exactly full is not above full: admitted, and this one takes the bucket past 100%
        crossing = await limiter.admit_provisioned("d", THROUGHPUT, 60)
        assert crossing.admitted and crossing.utilization == pytest.approx(110.0)
        refused = await limiter.admit_provisioned("d", THROUGHPUT, 1)
        assert not refused.admitted and refused.utilization == pytest.approx(110.0)
        assert refused.retry_after_s == pytest.approx(6.0)  # 60 tokens over, draining 10 a second
        assert await limiter.utilization("d", THROUGHPUT) == pytest.approx(110.0)  # the refusal charged nothing
        clock.now += 3.0
        halfway = await limiter.admit_provisioned("d", THROUGHPUT, 1)
        assert not halfway.admitted and halfway.retry_after_s == pytest.approx(3.0)
        clock.now += halfway.retry_after_s
        again = await limiter.admit_provisioned("d", THROUGHPUT, 10)
        assert again.admitted and again.utilization == pytest.approx(100 + 10 / 6)

    asyncio.run(scenario())


def test_memory_retry_after_never_below_a_millisecond() -> None:
    clock = Clock(50.0)
    limiter = MemoryLimiter(clock)

    async def scenario() -> None:
        await limiter.admit_provisioned("d", THROUGHPUT, 600.001)
        refused = await limiter.admit_provisioned("d", THROUGHPUT, 1)
        assert not refused.admitted and refused.retry_after_s == pytest.approx(0.001)

    asyncio.run(scenario())


def test_memory_settle_moves_the_level_and_never_below_zero() -> None:
    clock = Clock(0.0)
    limiter = MemoryLimiter(clock)

    async def scenario() -> None:
        await limiter.admit_provisioned("d", THROUGHPUT, 480)
        await limiter.settle_provisioned("d", THROUGHPUT, -180)  # the request used less than estimated
        assert await limiter.utilization("d", THROUGHPUT) == pytest.approx(50.0)
        await limiter.settle_provisioned("d", THROUGHPUT, 60)  # and this one more
        assert await limiter.utilization("d", THROUGHPUT) == pytest.approx(60.0)
        clock.now = 6.0  # drains 60 tokens first, then settles
        await limiter.settle_provisioned("d", THROUGHPUT, -10_000)
        assert await limiter.utilization("d", THROUGHPUT) == 0.0
        after = await limiter.admit_provisioned("d", THROUGHPUT, 60)
        assert after.admitted and after.utilization == pytest.approx(10.0)

    asyncio.run(scenario())


def test_memory_utilization_reads_and_drains_without_charging() -> None:
    clock = Clock(0.0)
    limiter = MemoryLimiter(clock)

    async def scenario() -> None:
        assert await limiter.utilization("fresh", THROUGHPUT) == 0.0
        await limiter.admit_provisioned("d", THROUGHPUT, 300)
        for _ in range(3):
            assert await limiter.utilization("d", THROUGHPUT) == pytest.approx(50.0)
        clock.now = 15.0
        assert await limiter.utilization("d", THROUGHPUT) == pytest.approx(25.0)
        clock.now = 600.0
        assert await limiter.utilization("d", THROUGHPUT) == 0.0
        # a longer window is a bigger bucket: the same level is a smaller percent
        await limiter.admit_provisioned("d", THROUGHPUT, 300)
        assert await limiter.utilization("d", Throughput(per_minute=600, window_s=120)) == pytest.approx(25.0)

    asyncio.run(scenario())


def test_throughput_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Throughput(per_minute=0)
    with pytest.raises(ValueError):
        Throughput(per_minute=100, window_s=0)


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = f"test-ptu-{uuid.uuid4()}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_redis_admits_across_full_then_refuses_and_settles(prefix: str) -> None:
    async def scenario() -> None:
        limiter = RedisLimiter(REDIS_URL, prefix=prefix)
        try:
            capacity = SLOW.capacity
            first = await limiter.admit_provisioned("d", SLOW, capacity * 0.6)
            assert first.admitted and first.utilization == pytest.approx(60.0, abs=0.01)
            crossing = await limiter.admit_provisioned("d", SLOW, capacity * 0.5)
            assert crossing.admitted and crossing.utilization == pytest.approx(110.0, abs=0.01)
            refused = await limiter.admit_provisioned("d", SLOW, 1)
            assert not refused.admitted and refused.utilization == pytest.approx(110.0, abs=0.01)
            # 10% of the bucket over, draining 1 token a second
            assert refused.retry_after_s == pytest.approx(capacity * 0.1, abs=60)
            assert await limiter.utilization("d", SLOW) == pytest.approx(110.0, abs=0.01)
            await limiter.settle_provisioned("d", SLOW, -capacity * 0.2)
            assert await limiter.utilization("d", SLOW) == pytest.approx(90.0, abs=0.01)
            assert (await limiter.admit_provisioned("d", SLOW, 1)).admitted
            await limiter.settle_provisioned("d", SLOW, -capacity * 10)
            assert await limiter.utilization("d", SLOW) == 0.0
        finally:
            await limiter.close()

    asyncio.run(scenario())
    ttl = redis.Redis.from_url(REDIS_URL).pttl(f"{prefix}:d:ptu")
    assert ttl > 0  # the bucket's hash expires on its own


def test_redis_replicas_share_one_bucket(prefix: str) -> None:
    async def scenario() -> None:
        replicas = [RedisLimiter(REDIS_URL, prefix=prefix) for _ in range(2)]
        try:
            capacity = SLOW.capacity
            assert (await replicas[0].admit_provisioned("d", SLOW, capacity * 0.7)).admitted
            seen = await replicas[1].admit_provisioned("d", SLOW, capacity * 0.4)
            assert seen.admitted and seen.utilization == pytest.approx(110.0, abs=0.01)
            assert not (await replicas[0].admit_provisioned("d", SLOW, 1)).admitted
            assert await replicas[1].utilization("d", SLOW) == pytest.approx(110.0, abs=0.01)
            await replicas[1].settle_provisioned("d", SLOW, -capacity * 0.5)
            assert await replicas[0].utilization("d", SLOW) == pytest.approx(60.0, abs=0.01)
            # checks racing from both replicas: one script each, so exactly the ones below full get in
            results = await asyncio.gather(
                *(replicas[i % 2].admit_provisioned("d", SLOW, capacity * 0.1) for i in range(10)))
            assert sum(r.admitted for r in results) == 5  # 60, 70, 80, 90, 100 (% before each charge)
        finally:
            for replica in replicas:
                await replica.close()

    asyncio.run(scenario())


def test_redis_unreachable_raises_limiter_unavailable() -> None:
    async def scenario() -> None:
        limiter = RedisLimiter("redis://127.0.0.1:1/0", prefix="unreachable")
        try:
            with pytest.raises(LimiterUnavailable):
                await limiter.admit_provisioned("d", THROUGHPUT, 1)
            with pytest.raises(LimiterUnavailable):
                await limiter.settle_provisioned("d", THROUGHPUT, -1)
            with pytest.raises(LimiterUnavailable):
                await limiter.utilization("d", THROUGHPUT)
        finally:
            await limiter.close()

    asyncio.run(scenario())
