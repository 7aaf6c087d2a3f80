"""The compute scheduler: classes in order, turns between deployments, cancelled waiters gone at once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY

from azurine.engines.base import WorkOrder
from azurine.scheduler.compute import Scheduler
from azurine.scheduler.priority import Priority

Emit = Callable[[Any], None]


def steps(name: str, count: int, log: list[str]) -> Callable[[Emit], Iterator[None]]:
    def produce(emit: Emit) -> Iterator[None]:
        for i in range(count):
            log.append(f"{name}{i}")
            emit(i)
            yield

    return produce


def blocker(started: threading.Event, release: threading.Event) -> Callable[[Emit], Iterator[None]]:
    """Holds the compute thread in its first step until released, so others queue up behind it."""

    def produce(emit: Emit) -> Iterator[None]:
        started.set()
        release.wait(10)
        emit("blocker")
        yield

    return produce


async def drain(scheduler: Scheduler, order: WorkOrder, produce: Callable[[Emit], Iterator[None]]) -> list[Any]:
    return [item async for item in scheduler.stream(order, produce)]


async def queued_behind_blocker(scheduler: Scheduler) -> tuple[threading.Event, asyncio.Task[list[Any]]]:
    started, release = threading.Event(), threading.Event()
    task = asyncio.create_task(drain(scheduler, WorkOrder(Priority.BATCH, "blocker"), blocker(started, release)))
    while not started.is_set():
        await asyncio.sleep(0.01)
    return release, task


def test_provisioned_work_overtakes_a_running_standard_answer_between_steps() -> None:
    async def scenario() -> list[str]:
        scheduler, log = Scheduler("test-priority"), []
        gate = threading.Event()

        def standard(emit: Emit) -> Iterator[None]:
            for i in range(6):
                log.append(f"s{i}")
                emit(i)
                if i == 1:
                    gate.wait(10)  # the provisioned request arrives while step 1 runs
                yield

        running = asyncio.create_task(drain(scheduler, WorkOrder(Priority.STANDARD, "std"), standard))
        while "s1" not in log:
            await asyncio.sleep(0.01)
        provisioned = asyncio.create_task(drain(scheduler, WorkOrder(Priority.PROVISIONED, "ptu"),
                                                steps("p", 3, log)))
        await asyncio.sleep(0.05)
        gate.set()
        assert await provisioned == [0, 1, 2]
        assert await running == list(range(6))
        scheduler.close()
        return log

    log = asyncio.run(scenario())
    # the standard answer paused after the step it was in and resumed once the provisioned one was done
    assert log == ["s0", "s1", "p0", "p1", "p2", "s2", "s3", "s4", "s5"]


def test_batch_waits_for_standard_and_standard_for_provisioned() -> None:
    async def scenario() -> list[str]:
        scheduler, log = Scheduler("test-classes"), []
        release, held = await queued_behind_blocker(scheduler)
        tasks = [asyncio.create_task(drain(scheduler, WorkOrder(priority, name), steps(name, 2, log)))
                 for priority, name in ((Priority.BATCH, "b"), (Priority.STANDARD, "s"), (Priority.PROVISIONED, "p"))]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(held, *tasks)
        scheduler.close()
        return log

    assert asyncio.run(scenario()) == ["p0", "p1", "s0", "s1", "b0", "b1"]


def test_one_deployments_burst_cannot_starve_another() -> None:
    async def scenario() -> list[str]:
        scheduler, log = Scheduler("test-fairness"), []
        release, held = await queued_behind_blocker(scheduler)
        tasks = [asyncio.create_task(drain(scheduler, WorkOrder(Priority.STANDARD, "flood"), steps(f"a{i}-", 1, log)))
                 for i in range(5)]
        await asyncio.sleep(0.02)
        tasks += [asyncio.create_task(drain(scheduler, WorkOrder(Priority.STANDARD, "quiet"), steps(f"b{i}-", 1, log)))
                  for i in range(2)]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(held, *tasks)
        scheduler.close()
        return log

    # the two queues take turns: the quiet deployment's requests do not wait for the whole flood
    assert asyncio.run(scenario()) == ["a0-0", "b0-0", "a1-0", "b1-0", "a2-0", "a3-0", "a4-0"]


def test_a_cancelled_waiter_leaves_the_queue_at_once_and_never_runs() -> None:
    async def scenario() -> tuple[int, int, list[str]]:
        scheduler, log = Scheduler("test-cancel"), []
        release, held = await queued_behind_blocker(scheduler)
        order = WorkOrder(Priority.STANDARD, "d")
        waiting = asyncio.create_task(drain(scheduler, order, steps("w", 3, log)))
        await asyncio.sleep(0.05)
        depth_before = scheduler.depth(Priority.STANDARD)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        depth_after = scheduler.depth(Priority.STANDARD)  # while the blocker still holds the thread
        release.set()
        await held
        scheduler.close()
        return depth_before, depth_after, log

    before, after, log = asyncio.run(scenario())
    assert (before, after) == (1, 0)
    assert log == []


def test_a_consumer_that_leaves_cancels_its_started_job() -> None:
    async def scenario() -> tuple[bool, bool]:
        scheduler, produced = Scheduler("test-stop"), []
        order = WorkOrder(Priority.STANDARD, "d")

        def tokens(emit: Emit) -> Iterator[None]:
            while not order.cancelled:  # as engines do between tokens
                produced.append(len(produced))
                emit(len(produced))
                yield

        stream = scheduler.stream(order, tokens)
        assert await stream.__anext__() == 1
        await stream.aclose()  # the client went away
        for _ in range(500):
            if scheduler._running[Priority.STANDARD] is None:
                break
            await asyncio.sleep(0.01)
        ended = scheduler._running[Priority.STANDARD] is None
        scheduler.close()
        return order.cancelled, ended

    # the order was cancelled and the job ended by itself, freeing the class for the next request
    assert asyncio.run(scenario()) == (True, True)


def test_failures_reach_the_awaiting_request_and_waits_are_measured() -> None:
    def failing(emit: Emit) -> Iterator[None]:
        raise ValueError("refused")
        yield  # pragma: no cover

    async def scenario() -> str:
        scheduler = Scheduler("test-failure")
        try:
            await drain(scheduler, WorkOrder(Priority.PROVISIONED, "d"), failing)
        except ValueError as error:
            return str(error)
        finally:
            scheduler.close()
        return "no error"

    assert asyncio.run(scenario()) == "refused"
    waits = REGISTRY.get_sample_value("azurine_queue_wait_seconds_count",
                                      {"scheduler": "test-failure", "priority": "provisioned"})
    assert waits == 1
