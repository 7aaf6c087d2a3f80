"""Requests to one upstream model server: how many are in flight, and who goes next.

A server that deployments point at (vLLM, llama-server, Ollama) serves every deployment on it from one queue of its
own, first come first served, so a flood of standard requests would sit in front of a provisioned one there. The
gate keeps that queue here instead, where the classes are known: at most `limit` requests are in flight to the
server, and when one ends the next is chosen as the compute scheduler chooses:

- Classes: provisioned before standard before batch; a waiting request of a higher class goes before every
  request of a lower one, whenever it came.
- Within a class, the deployments' queues take turns, so one deployment's burst cannot starve another's request.
- A request cancelled while it waits leaves the queue at once. An admitted one holds its place until its stream
  ends, whatever ends it (its last event, an error, its client going away).

It runs on the event loop: waiting is an awaited future, never a thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from azurine.scheduler.priority import Priority
from azurine.scheduler.turns import Turns
from azurine.scheduler.work import WorkOrder
from azurine.telemetry.metrics import QUEUE_DEPTH, QUEUE_WAIT


@dataclass(eq=False)
class _Waiter:
    order: WorkOrder
    admitted: asyncio.Future[None]
    since: float = field(default_factory=time.monotonic)


class UpstreamGate:
    def __init__(self, name: str, limit: int) -> None:
        if limit < 1:
            raise ValueError("an upstream server needs room for at least one request")
        self.name = name
        self.limit = limit
        self._in_flight = 0
        # per class: queue name → waiting requests, in the order the queues take turns
        self._waiting: list[Turns[_Waiter]] = [Turns() for _ in Priority]

    @asynccontextmanager
    async def admitted(self, order: WorkOrder) -> AsyncIterator[None]:
        """Wait for a place in flight, in turn; hold it for the body of the `async with`."""
        await self._enter(order)
        try:
            yield
        finally:
            self._leave()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def depth(self, priority: Priority) -> int:
        return len(self._waiting[priority])

    async def _enter(self, order: WorkOrder) -> None:
        waiter = _Waiter(order, asyncio.get_running_loop().create_future())
        self._waiting[order.priority].push(order.queue, waiter)
        QUEUE_DEPTH.labels(self.name, order.priority.name.lower()).inc()
        self._admit()  # with a place free, the waiter just queued may be the next in turn
        try:
            await waiter.admitted
        except BaseException:
            if waiter.admitted.done() and not waiter.admitted.cancelled():
                self._leave()  # let in just as it was cancelled: the place goes to the next in turn
            else:
                self._withdraw(waiter)
            raise

    def _leave(self) -> None:
        self._in_flight -= 1
        self._admit()

    def _admit(self) -> None:
        while self._in_flight < self.limit:
            waiter = self._pop()
            if waiter is None:
                return
            if waiter.admitted.done() or waiter.admitted.get_loop().is_closed():
                continue  # its request is gone; it leaves the queue by itself or never will
            self._in_flight += 1
            waiter.admitted.set_result(None)
            QUEUE_WAIT.labels(self.name, waiter.order.priority.name.lower()).observe(time.monotonic() - waiter.since)

    def _pop(self) -> _Waiter | None:
        for priority in Priority:
            waiter = self._waiting[priority].pop()
            if waiter is not None:
                QUEUE_DEPTH.labels(self.name, priority.name.lower()).dec()
                return waiter
        return None

    def _withdraw(self, waiter: _Waiter) -> None:
        if not self._waiting[waiter.order.priority].remove(waiter.order.queue, waiter):
            return
        QUEUE_DEPTH.labels(self.name, waiter.order.priority.name.lower()).dec()
