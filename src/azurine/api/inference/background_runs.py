"""The background responses this process runs."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class BackgroundRuns:
    """The background responses this process runs, by id: a cancel made here stops its run at once (one made on
    another replica reaches it at its next lease renewal), and stopping the server stops them all."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, response_id: str, run: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(run)
        self._tasks[response_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(response_id, None))

    def cancel(self, response_id: str) -> None:
        task = self._tasks.get(response_id)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
