"""One compute thread, many requests: who runs next.

Work comes as a generator of steps (a chunk of prompt evaluation, or one token), so the choice is made
again between any two steps:

- Classes: provisioned before standard before batch. A class runs only while no higher class has work,
  so a provisioned request waits at most one step of a standard one, never a whole answer.
- Within a class, a started request runs to its end: interleaving two answers of one class would only
  make both later. Waiting requests start in turn between their queues (one per deployment), so one
  deployment's burst cannot starve another's single request.
- A request cancelled while it waits leaves the queue at once; a started one stops at its next step.

Each class has at most one started request at a time, which is what lets an engine keep one model
context per class: a paused answer keeps its evaluated tokens while a higher class runs.

The exception is a gang: requests submitted with the same `Gang` (an engine that decodes many sequences in one
pass) start together as one started unit of their class, and the gang takes more of them in as its members
finish, so long as nothing else of that class waits. The batch class runs so: its throughput is what counts.

A job's usage is counted from what it emits, on the compute thread (see `metering`): an answer whose client left
still counts the step it was in when it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol, TypeVar

from azurine.scheduler.metering import CallMeter
from azurine.scheduler.priority import Priority
from azurine.scheduler.turns import Turns
from azurine.scheduler.work import WorkOrder
from azurine.telemetry.metrics import QUEUE_DEPTH, QUEUE_WAIT

log = logging.getLogger("azurine")
T = TypeVar("T")
Emit = Callable[[Any], None]

_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Job:
    def __init__(self, order: WorkOrder, meter: CallMeter, start: Callable[[], Any],
                 done: Callable[[BaseException | None], None], gang: Gang | None = None) -> None:
        self.order = order
        self.meter = meter
        self.start = start  # the steps; for a gang's member, what the gang steps it with
        self.done = done
        self.gang = gang
        self.submitted = time.monotonic()
        self.steps: Iterator[None] | None = None
        self.ended = False

    def finish(self, error: BaseException | None) -> None:
        """A gang's member ends (on the compute thread): its request gets its end or its error."""
        if self.ended:
            return
        self.ended = True
        try:
            self.done(error)
        finally:
            self.meter.end()


class Gang(Protocol):
    """Steps several members of one class together. `run` gets the first members and `take(n)`, which hands over
    up to n more waiting members (none while another request of the class waits); it starts each member
    (`member.start()`), steps them, ends each with `member.finish(error)`, and returns when it has none left."""

    def run(self, first: list[_Job], take: Callable[[int], list[_Job]]) -> Iterator[None]: ...


class _GangRun:
    """A gang as the one started unit of its class."""

    def __init__(self, gang: Gang, priority: Priority, members: list[_Job]) -> None:
        self.gang = gang
        self.priority = priority
        self.members = members
        self.steps: Iterator[None] | None = None


class Scheduler:
    def __init__(self, name: str) -> None:
        self.name = name
        self._cond = threading.Condition()
        # per class: queue name → waiting jobs, in the order the queues take turns
        self._waiting: list[Turns[_Job]] = [Turns() for _ in Priority]
        self._running: list[_Job | _GangRun | None] = [None for _ in Priority]
        self._thread: threading.Thread | None = None
        self._closed = False
        self._last_submitted = [float("-inf") for _ in Priority]

    # the event loop's side -------------------------------------------------------------------------

    def stream(self, order: WorkOrder, produce: Callable[[Emit], Any], gang: Gang | None = None) -> AsyncIterator[Any]:
        """Run `produce(emit)` step by step in its turn; yield what it emits, as it emits it. With `gang`,
        `produce(emit)` makes the member the gang steps."""
        return self._stream(order, produce, gang)

    async def _stream(self, order: WorkOrder, produce: Callable[[Emit], Any], gang: Gang | None) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        meter = CallMeter(order)

        def emit(item: Any) -> None:
            meter.observe(item)  # on the compute thread, so a request nobody reads any more is counted too
            if not loop.is_closed():
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def done(error: BaseException | None) -> None:
            if error is not None:
                emit(_Failure(error))
            emit(_END)

        job = _Job(order, meter, lambda: produce(emit), done, gang)
        self._submit(job)
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
                order.cancel()  # a started job stops at its next step
                self._withdraw(job)

    async def call(self, order: WorkOrder, work: Callable[[], T]) -> T:
        """Run blocking `work` as one step in its turn and return its result."""

        def produce(emit: Emit) -> Iterator[None]:
            emit(work())
            yield

        results = [item async for item in self.stream(order, produce)]
        return results[0]  # type: ignore[no-any-return]

    def depth(self, priority: Priority) -> int:
        with self._cond:
            return len(self._waiting[priority])

    def recently_above(self, priority: Priority, within_s: float) -> bool:
        """Whether work of a higher class than `priority` arrived within the last `within_s` seconds."""
        now = time.monotonic()
        return any(now - self._last_submitted[p] < within_s for p in Priority if p < priority)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _submit(self, job: _Job) -> None:
        priority = job.order.priority
        with self._cond:
            self._last_submitted[priority] = time.monotonic()
            self._waiting[priority].push(job.order.queue, job)
            QUEUE_DEPTH.labels(self.name, priority.name.lower()).inc()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=f"compute-{self.name}", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _withdraw(self, job: _Job) -> None:
        """Take a job that has not started out of its queue; a started one ends by itself."""
        priority = job.order.priority
        with self._cond:
            if not self._waiting[priority].remove(job.order.queue, job):
                return
            QUEUE_DEPTH.labels(self.name, priority.name.lower()).dec()
        job.done(None)

    # the compute thread's side ---------------------------------------------------------------------

    def _pop(self, priority: Priority, gang: Gang | None = None) -> _Job | None:
        """The next waiting job of the class (called with the condition held); with `gang`, only a member of that
        gang, and none while a job outside it waits, so that the gang drains and lets that job run."""
        waiting = self._waiting[priority]
        if gang is not None and any(job.gang is not gang for job in waiting):
            return None
        job = waiting.pop()
        if job is None:
            return None
        QUEUE_DEPTH.labels(self.name, priority.name.lower()).dec()
        QUEUE_WAIT.labels(self.name, priority.name.lower()).observe(time.monotonic() - job.submitted)
        job.meter.start()
        return job

    def _take(self, priority: Priority, gang: Gang, n: int) -> list[_Job]:
        taken: list[_Job] = []
        with self._cond:
            while len(taken) < n:
                job = self._pop(priority, gang)
                if job is None:
                    break
                taken.append(job)
        return taken

    def _take_for(self, run: _GangRun, n: int) -> list[_Job]:
        taken = self._take(run.priority, run.gang, n)
        run.members = [m for m in run.members if not m.ended] + taken
        return taken

    def _next(self) -> _Job | _GangRun | None:
        """The job to step now (called with the condition held)."""
        for priority in Priority:
            running = self._running[priority]
            if running is not None:
                return running
            job = self._pop(priority)
            if job is None:
                continue
            if job.gang is not None:
                run = _GangRun(job.gang, priority, [job])
                self._running[priority] = run
                return run
            self._running[priority] = job
            return job
        return None

    def _loop(self) -> None:
        while True:
            with self._cond:
                job = self._next()
                while job is None:
                    if self._closed:
                        return
                    self._cond.wait()
                    job = self._next()
            if isinstance(job, _GangRun):
                self._step_gang(job)
                continue
            try:
                if job.steps is None:
                    job.steps = iter(()) if job.order.cancelled else job.start()
                next(job.steps)
            except StopIteration:
                self._finish(job, None)
            except BaseException as error:  # handed to the awaiting request, raised there
                self._finish(job, error)

    def _step_gang(self, run: _GangRun) -> None:
        try:
            if run.steps is None:
                run.steps = run.gang.run(list(run.members), lambda n: self._take_for(run, n))
            next(run.steps)
        except StopIteration:
            pass
        except BaseException as error:  # a gang ends its members itself; this is a fault of the gang's own
            log.exception("a gang of %s failed", self.name)
            for member in run.members:
                member.finish(error)
        else:
            return
        with self._cond:
            self._running[run.priority] = None

    def _finish(self, job: _Job, error: BaseException | None) -> None:
        with self._cond:
            self._running[job.order.priority] = None
        try:
            job.done(error)
        finally:
            job.meter.end()
