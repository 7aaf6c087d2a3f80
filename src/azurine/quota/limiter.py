"""Rate limits as Azure OpenAI applies them: requests per 10 seconds and tokens per minute, charged on arrival.

Windows are fixed and aligned to the clock (Azure's "running token count reset each minute"). Two backends
share one interface: memory, for one process, and Redis, for replicas that must enforce one limit between
them. Redis admits with one script call, so a check and its charge are one round trip and one atomic step,
with Redis's own clock deciding the window for every replica alike.

Provisioned (PTU) deployments are admitted differently, by utilization: Azure's leaky bucket, which drains
continuously at the deployment's throughput and refuses only while it is already more than full.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True)
class Limits:
    requests: int
    tokens: int
    request_window_s: int = 10
    token_window_s: int = 60


@dataclass(frozen=True)
class Admission:
    admitted: bool
    remaining_requests: int
    remaining_tokens: int
    reset_requests_s: float
    reset_tokens_s: float
    limited_by: Literal["requests", "tokens"] | None = None

    @property
    def retry_after_s(self) -> float:
        """How long until the window that refused this request opens again."""
        return self.reset_tokens_s if self.limited_by == "tokens" else self.reset_requests_s


@dataclass(frozen=True)
class Throughput:
    per_minute: float  # weighted tokens a provisioned deployment processes per minute
    window_s: float = 60.0

    def __post_init__(self) -> None:
        # both divide: a zero would make every utilization infinite or undefined
        if self.per_minute <= 0 or self.window_s <= 0:
            raise ValueError("throughput and window must be positive")

    @property
    def capacity(self) -> float:
        """The bucket's level at 100% utilization, in weighted tokens."""
        return self.per_minute * self.window_s / 60

    @property
    def per_second(self) -> float:
        return self.per_minute / 60


@dataclass(frozen=True)
class UtilizationCheck:
    admitted: bool
    utilization: float  # percent, e.g. 74.2
    retry_after_s: float = 0.0


# Draining by floats leaves a level a hair above 100% at the very moment a retry-after said it would be there;
# that hair must not refuse the retry. Relative to capacity, so it means the same at every size.
FULL_TOLERANCE = 1e-9
MIN_RETRY_AFTER_S = 0.001


def _over_full(level: float, throughput: Throughput) -> bool:
    return level > throughput.capacity * (1 + FULL_TOLERANCE)


def _utilization_check(admitted: bool, level: float, throughput: Throughput) -> UtilizationCheck:
    percent = level / throughput.capacity * 100
    if admitted:
        return UtilizationCheck(admitted=True, utilization=percent)
    retry = (level - throughput.capacity) / throughput.per_second
    return UtilizationCheck(admitted=False, utilization=percent, retry_after_s=max(MIN_RETRY_AFTER_S, retry))


class LimiterUnavailable(Exception):
    """The shared counters cannot be reached; requests are refused rather than let through unlimited."""


class Limiter(Protocol):
    async def admit(self, key: str, limits: Limits, tokens: int) -> Admission: ...

    async def admit_provisioned(self, key: str, throughput: Throughput, cost: float) -> UtilizationCheck: ...

    async def settle_provisioned(self, key: str, throughput: Throughput, delta: float) -> None: ...

    async def utilization(self, key: str, throughput: Throughput) -> float: ...

    async def close(self) -> None: ...


def _decide(limits: Limits, requests_used: int, tokens_used: int, tokens: int) -> tuple[bool, str | None]:
    if requests_used + 1 > limits.requests:
        return False, "requests"
    if tokens_used + tokens > limits.tokens:
        return False, "tokens"
    return True, None


class MemoryLimiter:
    """Counters in this process: right for one replica, and limit × replicas for several."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # key → (window index, used) for requests and for tokens
        self._requests: dict[str, tuple[int, int]] = {}
        self._tokens: dict[str, tuple[int, int]] = {}
        # key → (bucket level in weighted tokens, when it was last drained)
        self._buckets: dict[str, tuple[float, float]] = {}

    def admit_now(self, key: str, limits: Limits, tokens: int) -> Admission:
        now = self._clock()
        request_window = int(now // limits.request_window_s)
        token_window = int(now // limits.token_window_s)
        with self._lock:
            r_index, r_used = self._requests.get(key, (request_window, 0))
            t_index, t_used = self._tokens.get(key, (token_window, 0))
            r_used = r_used if r_index == request_window else 0
            t_used = t_used if t_index == token_window else 0
            admitted, limited_by = _decide(limits, r_used, t_used, tokens)
            if admitted:
                r_used, t_used = r_used + 1, t_used + tokens
            self._requests[key] = (request_window, r_used)
            self._tokens[key] = (token_window, t_used)
        return Admission(
            admitted=admitted, remaining_requests=max(0, limits.requests - r_used),
            remaining_tokens=max(0, limits.tokens - t_used),
            reset_requests_s=(request_window + 1) * limits.request_window_s - now,
            reset_tokens_s=(token_window + 1) * limits.token_window_s - now,
            limited_by=limited_by,  # type: ignore[arg-type]
        )

    async def admit(self, key: str, limits: Limits, tokens: int) -> Admission:
        return self.admit_now(key, limits, tokens)

    def _drained(self, key: str, throughput: Throughput) -> tuple[float, float]:
        """The bucket's level now, and now; the caller holds the lock."""
        now = self._clock()
        level, then = self._buckets.get(key, (0.0, now))
        # a clock stepped backwards drains nothing, and keeping the later time stops the same span draining twice
        now = max(now, then)
        return max(0.0, level - (now - then) * throughput.per_second), now

    async def admit_provisioned(self, key: str, throughput: Throughput, cost: float) -> UtilizationCheck:
        with self._lock:
            level, now = self._drained(key, throughput)
            admitted = not _over_full(level, throughput)
            if admitted:
                level += cost
            self._buckets[key] = (level, now)
        return _utilization_check(admitted, level, throughput)

    async def settle_provisioned(self, key: str, throughput: Throughput, delta: float) -> None:
        with self._lock:
            level, now = self._drained(key, throughput)
            self._buckets[key] = (max(0.0, level + delta), now)

    async def utilization(self, key: str, throughput: Throughput) -> float:
        with self._lock:
            level, _ = self._drained(key, throughput)
        return level / throughput.capacity * 100

    async def close(self) -> None:
        return None


# KEYS: request counter prefix, token counter prefix. ARGV: request limit, token limit, request window s,
# token window s, tokens asked. Returns admitted, requests used, tokens used, ms to each window's end, reason.
ADMIT_SCRIPT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local r_limit, t_limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local r_window_ms, t_window_ms = tonumber(ARGV[3]) * 1000, tonumber(ARGV[4]) * 1000
local asked = tonumber(ARGV[5])
local r_index, t_index = math.floor(now_ms / r_window_ms), math.floor(now_ms / t_window_ms)
local r_key, t_key = KEYS[1] .. ':' .. r_index, KEYS[2] .. ':' .. t_index
local r_used = tonumber(redis.call('GET', r_key) or '0')
local t_used = tonumber(redis.call('GET', t_key) or '0')
local reason = ''
if r_used + 1 > r_limit then
  reason = 'requests'
elseif t_used + asked > t_limit then
  reason = 'tokens'
else
  r_used = redis.call('INCR', r_key)
  t_used = redis.call('INCRBY', t_key, asked)
  redis.call('PEXPIRE', r_key, r_window_ms * 2)
  redis.call('PEXPIRE', t_key, t_window_ms * 2)
end
return {reason == '' and 1 or 0, r_used, t_used, (r_index + 1) * r_window_ms - now_ms,
        (t_index + 1) * t_window_ms - now_ms, reason}
"""


# KEYS: the bucket's hash. ARGV: operation ('admit', 'settle' or 'read'), capacity, drain per ms, window ms,
# amount (cost to charge or delta to settle), tolerance over capacity. Returns admitted (1/0) and the level as a
# string: Lua numbers come back from Redis truncated to integers.
PROVISIONED_SCRIPT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + tonumber(now[2]) / 1000
local op = ARGV[1]
local capacity, per_ms, window_ms = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local amount, tolerance = tonumber(ARGV[5]), tonumber(ARGV[6])
local state = redis.call('HMGET', KEYS[1], 'level', 'ts')
local level, then_ms = tonumber(state[1]) or 0, tonumber(state[2]) or now_ms
now_ms = math.max(now_ms, then_ms)
level = math.max(0, level - (now_ms - then_ms) * per_ms)
local admitted = 1
if op == 'admit' then
  if level > capacity * (1 + tolerance) then
    admitted = 0
  else
    level = level + amount
  end
elseif op == 'settle' then
  level = math.max(0, level + amount)
end
if op ~= 'read' then
  redis.call('HSET', KEYS[1], 'level', string.format('%.17g', level), 'ts', string.format('%.17g', now_ms))
  -- outlive the drain to empty, so an expired bucket is always one that would read as zero anyway
  redis.call('PEXPIRE', KEYS[1], math.ceil(window_ms * 2 + level / per_ms))
end
return {admitted, string.format('%.17g', level)}
"""


class RedisLimiter:
    """Counters in Redis, shared by every replica that points at the same server."""

    def __init__(self, url: str, prefix: str = "azurine:rl") -> None:
        import redis.asyncio as redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._script = self._redis.register_script(ADMIT_SCRIPT)
        self._provisioned_script = self._redis.register_script(PROVISIONED_SCRIPT)
        self._prefix = prefix

    async def admit(self, key: str, limits: Limits, tokens: int) -> Admission:
        import redis

        try:
            admitted, r_used, t_used, r_ms, t_ms, reason = await self._script(
                keys=[f"{self._prefix}:{key}:req", f"{self._prefix}:{key}:tok"],
                args=[limits.requests, limits.tokens, limits.request_window_s, limits.token_window_s, tokens])
        except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
            raise LimiterUnavailable(str(error)) from error
        reason = reason.decode() if isinstance(reason, bytes) else reason
        return Admission(
            admitted=bool(admitted), remaining_requests=max(0, limits.requests - int(r_used)),
            remaining_tokens=max(0, limits.tokens - int(t_used)), reset_requests_s=int(r_ms) / 1000,
            reset_tokens_s=int(t_ms) / 1000, limited_by=reason or None,  # type: ignore[arg-type]
        )

    async def _provisioned(self, op: str, key: str, throughput: Throughput, amount: float) -> tuple[bool, float]:
        import redis

        try:
            admitted, level = await self._provisioned_script(
                keys=[f"{self._prefix}:{key}:ptu"],
                args=[op, repr(throughput.capacity), repr(throughput.per_minute / 60_000),
                      repr(throughput.window_s * 1000), repr(float(amount)), repr(FULL_TOLERANCE)])
        except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
            raise LimiterUnavailable(str(error)) from error
        return bool(admitted), float(level)

    async def admit_provisioned(self, key: str, throughput: Throughput, cost: float) -> UtilizationCheck:
        admitted, level = await self._provisioned("admit", key, throughput, cost)
        return _utilization_check(admitted, level, throughput)

    async def settle_provisioned(self, key: str, throughput: Throughput, delta: float) -> None:
        await self._provisioned("settle", key, throughput, delta)

    async def utilization(self, key: str, throughput: Throughput) -> float:
        _, level = await self._provisioned("read", key, throughput, 0.0)
        return level / throughput.capacity * 100

    async def close(self) -> None:
        await self._redis.aclose()


def make_limiter(redis_url: str | None) -> Limiter:
    return RedisLimiter(redis_url) if redis_url else MemoryLimiter()


def ceil_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))
