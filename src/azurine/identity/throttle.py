"""Failed attempts per client address, for endpoints anyone may call (the built-in issuer's token endpoints).

An address that failed `limit` times within `window_s` waits until the oldest of those failures leaves the
window; until then it is refused before any work is done or anything is audited, so guessing secrets or flooding
the audit log costs a caller time. In-process: each replica counts its own callers. The addresses followed are
bounded, the least recently seen forgotten first, so spoofed or rotating addresses cannot grow memory.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from azurine import settings_table


class FailureThrottle:
    def __init__(self, limit: int, window_s: float = 60.0, addresses: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit  # 0: no limit
        self._window_s = window_s
        self._addresses = addresses
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> FailureThrottle:
        """`AZURINE_TOKEN_FAILURES_PER_MINUTE` (20; 0 turns the limit off)."""
        raw = settings_table.read("AZURINE_TOKEN_FAILURES_PER_MINUTE", "20").strip()
        if not raw.isascii() or not raw.isdigit():  # "²" is a digit to isdigit, not to int
            raise ValueError(f"AZURINE_TOKEN_FAILURES_PER_MINUTE must be a whole number, not {raw!r}")
        return cls(int(raw))

    def _recent(self, address: str, now: float) -> deque[float] | None:
        failures = self._failures.get(address)
        while failures and failures[0] <= now - self._window_s:
            failures.popleft()
        return failures

    def wait_s(self, address: str) -> int:
        """Whole seconds the address must wait before trying again; 0 when it may try now."""
        if self.limit <= 0:
            return 0
        now = self._clock()
        with self._lock:
            failures = self._recent(address, now)
            if not failures or len(failures) < self.limit:
                return 0
            return max(1, math.ceil(failures[-self.limit] + self._window_s - now))

    def failed(self, address: str) -> None:
        if self.limit <= 0:
            return
        now = self._clock()
        with self._lock:
            failures = self._recent(address, now)
            if failures is None:
                failures = self._failures[address] = deque(maxlen=self.limit)
            self._failures.move_to_end(address)
            failures.append(now)
            while len(self._failures) > self._addresses:
                self._failures.popitem(last=False)
