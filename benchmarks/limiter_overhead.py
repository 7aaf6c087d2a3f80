"""What one admission costs: `MemoryLimiter.admit` and `RedisLimiter.admit` (one Lua script call against the
local Redis), with a plain Redis PING measured the same way as the round trip that admission is judged by.

    .venv/bin/python benchmarks/limiter_overhead.py [--memory 20000] [--redis 5000] [--warmup 500]
        [--redis-url redis://127.0.0.1:6379/0]

Every admission is awaited on its own from one asyncio loop and timed with perf_counter_ns, with limits so high
that all are admitted (an admission charges; a refusal only reads). The Redis admissions and the PINGs run
interleaved, one of each in turn over two connections opened the same way, so drift in the machine's load hits
both alike; the admission/PING ratio is what the Redis backend costs over a bare round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from azurine.quota.limiter import Limits, MemoryLimiter, RedisLimiter

# far above what any run admits in one window, so every call is an admission and charges both counters
EVERYTHING = Limits(requests=10**12, tokens=10**15)
MEMORY_TARGET_US = 50.0


@dataclass
class Timings:
    micros: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.micros)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.micros)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter_ns()
    await call()
    return (time.perf_counter_ns() - start) / 1000


async def memory_admissions(count: int, warmup: int) -> Timings:
    limiter = MemoryLimiter()
    key = f"bench-{uuid.uuid4().hex}"

    async def admit() -> None:
        assert (await limiter.admit(key, EVERYTHING, 25)).admitted

    for _ in range(warmup):
        await admit()
    return Timings([await timed(admit) for _ in range(count)])


@dataclass
class ServerSide:
    """What Redis itself counted over the timed calls (INFO commandstats; other clients' calls would show)."""

    evalsha_per_admission: float
    script_us: float
    ping_us: float


def command_stats(info: dict[str, dict[str, float]], command: str) -> tuple[float, float]:
    stats = info.get(f"cmdstat_{command}", {})
    return stats.get("calls", 0), stats.get("usec", 0)


async def redis_admissions(url: str, count: int, warmup: int) -> tuple[Timings, Timings, ServerSide]:
    """Admissions and PINGs, alternating, each on its own connection from the same kind of client."""
    import redis.asyncio as redis

    limiter = RedisLimiter(url, prefix="azurine:bench")
    # the same settings RedisLimiter opens its client with
    plain = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    key = f"bench-{uuid.uuid4().hex}"

    async def admit() -> None:
        assert (await limiter.admit(key, EVERYTHING, 25)).admitted

    async def ping() -> None:
        assert await plain.ping()

    try:
        for _ in range(warmup):  # connections, and the script's first NOSCRIPT → SCRIPT LOAD
            await admit()
            await ping()
        before = await plain.info("commandstats")
        admissions: list[float] = []
        pings: list[float] = []
        for index in range(count):
            if index % 2 == 0:
                admissions.append(await timed(admit))
                pings.append(await timed(ping))
            else:
                pings.append(await timed(ping))
                admissions.append(await timed(admit))
        after = await plain.info("commandstats")
        (evals_before, script_before), (evals_after, script_after) = (command_stats(info, "evalsha")
                                                                      for info in (before, after))
        (pings_before, ping_before), (pings_after, ping_after) = (command_stats(info, "ping")
                                                                  for info in (before, after))
        server = ServerSide((evals_after - evals_before) / count,
                            (script_after - script_before) / max(1, evals_after - evals_before),
                            (ping_after - ping_before) / max(1, pings_after - pings_before))
        return Timings(admissions), Timings(pings), server
    finally:
        await limiter.close()
        await plain.aclose()


def row(what: str, timings: Timings, peer: Timings | None, target: str) -> list[str]:
    ratio = f"{timings.mean / peer.mean:.2f} / {timings.percentile(50) / peer.percentile(50):.2f}" if peer else "—"
    return [what, f"{len(timings.micros):,}", f"{timings.mean:.1f}", f"{timings.percentile(50):.1f}",
            f"{timings.percentile(99):.1f}", ratio, target]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memory", type=int, default=20_000, help="memory admissions to time")
    parser.add_argument("--redis", type=int, default=5_000, help="Redis admissions (and as many PINGs) to time")
    parser.add_argument("--warmup", type=int, default=500, help="untimed calls of each kind first")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    console = Console(width=120)

    with console.status(f"memory: {args.memory:,} admissions"):
        memory = asyncio.run(memory_admissions(args.memory, args.warmup))
    with console.status(f"redis: {args.redis:,} admissions and {args.redis:,} PINGs, interleaved"):
        admissions, pings, server = asyncio.run(redis_admissions(args.redis_url, args.redis, args.warmup))

    table = Table(title="limiter overhead: µs per call, awaited one at a time from one asyncio loop "
                        f"(Redis at {args.redis_url})")
    for column in ("call", "n", "mean µs", "p50 µs", "p99 µs", "÷ PING (mean / p50)", "target"):
        table.add_column(column, justify="right")
    memory_ok = "met" if memory.mean < MEMORY_TARGET_US else "NOT met"
    table.add_row(*row("MemoryLimiter.admit", memory, None, f"< {MEMORY_TARGET_US:.0f} µs mean: {memory_ok}"))
    table.add_row(*row("RedisLimiter.admit", admissions, pings, "≈ one round trip"))
    table.add_row(*row("Redis PING", pings, pings, "the round trip"))
    table.caption = (f"Redis counted {server.evalsha_per_admission:.2f} EVALSHA per admission; inside Redis a script "
                     f"call took {server.script_us:.1f} µs and a PING {server.ping_us:.1f} µs (INFO commandstats)")
    console.print(table)


if __name__ == "__main__":
    main()
