"""The background responses this process runs, and the events of those that are streamed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

# How long a streamed background response's events stay to be read again after it ended, and how many ended ones are
# kept at most: a reader who lost the stream comes back within moments, and each log holds a whole answer.
EVENTS_KEPT_S = 600.0
MAX_ENDED_LOGS = 256


class EventLog:
    """A streamed background response's events, each at the index of its `sequence_number`, so that any number of
    readers follow it from any point (`starting_after`), while the response runs and for a while after."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.ended_at: float | None = None
        self._grown = asyncio.Event()

    def add(self, frame: bytes) -> None:
        self.frames.append(frame)
        self._wake()

    def end(self) -> None:
        self.ended_at = time.monotonic()
        self._wake()

    def _wake(self) -> None:
        # one Event per change: a reader takes the current one before it waits, with no await in between
        self._grown.set()
        self._grown = asyncio.Event()

    async def follow(self, after: int = -1) -> AsyncIterator[bytes]:
        """The events after sequence number `after`, as they come, until the response has ended."""
        index = max(after + 1, 0)
        while True:
            while index < len(self.frames):
                yield self.frames[index]
                index += 1
            if self.ended_at is not None:
                return
            await self._grown.wait()


class BackgroundRuns:
    """The background responses this process runs, by id: a cancel made here stops its run at once (one made on
    another replica reaches it at its next lease renewal), and stopping the server stops them all."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._logs: dict[str, EventLog] = {}

    def start(self, response_id: str, run: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(run)
        self._tasks[response_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(response_id, None))

    def open_log(self, response_id: str) -> EventLog:
        self._forget_old()
        log = self._logs[response_id] = EventLog()
        return log

    def log(self, response_id: str) -> EventLog | None:
        self._forget_old()
        return self._logs.get(response_id)

    def _forget_old(self) -> None:
        now = time.monotonic()
        ended = sorted(((log.ended_at, key) for key, log in self._logs.items() if log.ended_at is not None))
        for index, (ended_at, key) in enumerate(ended):
            if now - ended_at > EVENTS_KEPT_S or index < len(ended) - MAX_ENDED_LOGS:
                del self._logs[key]

    def cancel(self, response_id: str) -> None:
        task = self._tasks.get(response_id)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
