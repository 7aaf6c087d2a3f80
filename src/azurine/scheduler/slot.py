"""A model instance serves one request at a time; the rest wait their turn in arrival order.

Blocking model code runs on the slot's own thread and hands its events to the event loop. The slot is
released only when that thread has finished, so a client that disconnects mid-generation can never
leave two generations running on one model instance.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from azurine.engines.base import CancelToken

T = TypeVar("T")
Emit = Callable[[Any], None]

_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class EngineSlot:
    def __init__(self, name: str, executor: ThreadPoolExecutor | None = None) -> None:
        self._lock = asyncio.Lock()
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"engine-{name}")
        self.waiting = 0

    async def _acquire(self) -> None:
        self.waiting += 1
        try:
            await self._lock.acquire()  # a cancelled waiter leaves the queue here
        finally:
            self.waiting -= 1

    async def call(self, work: Callable[[], T]) -> T:
        """Run blocking `work` in its turn and return its result."""
        await self._acquire()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, work)
        future.add_done_callback(lambda _: self._lock.release())
        return await asyncio.shield(future)

    async def stream(self, produce: Callable[[Emit], None], cancel: CancelToken) -> AsyncIterator[Any]:
        """Run blocking `produce(emit)` in its turn and yield what it emits, as it emits it."""
        await self._acquire()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def emit(item: Any) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def run() -> None:
            try:
                if not cancel.cancelled:  # a client that left while queued costs nothing
                    produce(emit)
            except BaseException as error:  # handed to the awaiting request, raised there
                emit(_Failure(error))
            finally:
                emit(_END)

        future = loop.run_in_executor(self._executor, run)
        future.add_done_callback(lambda _: self._lock.release())
        finished = False
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    finished = True
                    return
                if isinstance(item, _Failure):
                    finished = True
                    raise item.error
                yield item
        finally:
            if not finished:
                cancel.cancel()  # the thread stops at its next token and frees the slot

    def shutdown(self) -> None:
        if self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
