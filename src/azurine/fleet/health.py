"""A model server's health as one replica sees it: a circuit breaker fed by its probes and by the requests sent to it.

- Closed: requests go to the server. Three failures in a row (failed probes, or requests that failed before their
  first byte or midway) open it.
- Open: no request goes to the server; its probe goes on at the server's interval.
- Half-open: a probe answered after the breaker opened. Requests go to the server again; the first to fail opens
  the breaker at once, the first to succeed (or a second good probe) closes it.

Each replica keeps its own breakers: a server one replica cannot reach may be reachable from another.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import httpx

FAILURES_TO_OPEN = 3


class Circuit(Enum):
    CLOSED = "Closed"
    OPEN = "Open"
    HALF_OPEN = "HalfOpen"


@dataclass(frozen=True)
class ProbeResult:
    healthy: bool
    at: float  # time.time()
    detail: str  # the status it answered, or what went wrong, without the server's own words


class Breaker:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.circuit = Circuit.CLOSED
        self.failures = 0  # in a row
        self.opened_at: float | None = None

    @property
    def routable(self) -> bool:
        return self.circuit is not Circuit.OPEN

    def failed(self) -> None:
        self.failures += 1
        if self.circuit is Circuit.HALF_OPEN or self.failures >= FAILURES_TO_OPEN:
            if self.circuit is not Circuit.OPEN:
                self.opened_at = self._clock()
            self.circuit = Circuit.OPEN

    def request_succeeded(self) -> None:
        self.failures = 0
        self.circuit = Circuit.CLOSED
        self.opened_at = None

    def probe_succeeded(self) -> None:
        self.failures = 0
        if self.circuit is Circuit.OPEN:
            self.circuit = Circuit.HALF_OPEN
        elif self.circuit is Circuit.HALF_OPEN:
            self.circuit = Circuit.CLOSED
            self.opened_at = None


async def probe(client: httpx.AsyncClient, url: str, api_key: str | None, timeout_s: float) -> ProbeResult:
    """One GET of the server's health URL; a 200 within the timeout is healthy."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = await client.get(url, headers=headers, timeout=timeout_s)
    except httpx.TimeoutException:
        return ProbeResult(False, time.time(), "timed out")
    except httpx.HTTPError as error:
        return ProbeResult(False, time.time(), f"unreachable ({type(error).__name__})")
    return ProbeResult(response.status_code == 200, time.time(), f"HTTP {response.status_code}")
