"""Azure Monitor metrics as they happen, summed per account, metric, dimensions and minute, and written to the
database once a second (as the usage ledger writes usage): every replica adds to the same rows, so what the Metrics
API reads is the whole service's, and nothing on a request's path waits for the database."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping

from azurine.storage.flush_loop import flush_until
from azurine.storage.metrics import MetricPoint, MetricStore
from azurine.telemetry import prometheus_names

_Key = tuple[str, str, int, tuple[tuple[str, str], ...]]  # account id, metric, minute, dimensions by name


class MetricRecorder:
    def __init__(self, store: MetricStore, flush_every_s: float = 1.0) -> None:
        self.store = store
        self._flush_every_s = flush_every_s
        self._lock = threading.Lock()  # record runs on worker threads and on the event loop
        self._pending: dict[_Key, MetricPoint] = {}
        self._flushing = threading.Lock()
        self._stopped = asyncio.Event()

    def record(self, account_id: str, metric: str, value: float, dimensions: Mapping[str, str | None],
               at: float | None = None) -> None:
        """One observation of `metric`; never blocks on I/O. Dimensions without a value are left out."""
        prometheus_names.observe(account_id, metric, value, dimensions)
        minute = int((time.time() if at is None else at) // 60)
        shown = tuple(sorted((name, str(v)) for name, v in dimensions.items() if v is not None and v != ""))
        key = (account_id, metric, minute, shown)
        with self._lock:
            point = self._pending.get(key)
            self._pending[key] = MetricPoint(account_id, metric, minute, dict(shown), 1, value, value, value) \
                if point is None else point.plus(value)

    def pending(self) -> list[MetricPoint]:
        with self._lock:
            return list(self._pending.values())

    def flush(self) -> None:
        with self._flushing:
            with self._lock:
                points, self._pending = list(self._pending.values()), {}
            if not points:
                return
            try:
                self.store.add(points)
            except BaseException:
                # put them back, to go with the next flush: a database that blinked loses no observation
                with self._lock:
                    for point in points:
                        key = (point.account_id, point.metric, point.minute, tuple(sorted(point.dimensions.items())))
                        held = self._pending.get(key)
                        self._pending[key] = point if held is None else held.merged(point)
                raise

    async def run(self) -> None:
        await flush_until(self._stopped, self.flush, self._flush_every_s, "metrics")

    async def close(self) -> None:
        self._stopped.set()
        await asyncio.to_thread(self.flush)
