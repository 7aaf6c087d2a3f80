"""The compute scheduler: classes in order, turns between deployments, cancelled waiters gone at once, each call's
usage counted once from what its engine said."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY

from azurine.engines.base import Delta, Finished
from azurine.scheduler.compute import Scheduler
from azurine.scheduler.priority import Priority
from azurine.scheduler.work import WorkOrder
from meters import CountingMeter

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


class CountingGang:
    """Steps its members together, each member being a number of steps to live; logs who ran in each step."""

    def __init__(self, width: int, log: list[str]) -> None:
        self.width = width
        self.log = log

    def run(self, first: list[Any], take: Callable[[int], list[Any]]) -> Iterator[None]:
        members: dict[Any, list[Any]] = {}
        arrivals = list(first)
        while True:
            arrivals += take(self.width - len(members) - len(arrivals))
            for job in arrivals:
                members[job] = job.start()  # [name, steps left, emit]
            arrivals = []
            if not members:
                return
            self.log.append("+".join(sorted(m[0] for m in members.values())))
            for job, member in list(members.items()):
                member[2](member[1])
                member[1] -= 1
                if member[1] == 0:
                    job.finish(None)
                    del members[job]
            yield


def test_a_gang_steps_its_members_together_and_takes_in_new_ones_as_others_finish() -> None:
    async def scenario() -> tuple[list[str], list[list[Any]]]:
        scheduler, log = Scheduler("test-gang"), []
        gang = CountingGang(2, log)
        release, blocked = await queued_behind_blocker(scheduler)

        def member(name: str, count: int) -> Callable[[Emit], Any]:
            return lambda emit: [name, count, emit]

        tasks = [asyncio.create_task(collect(scheduler.stream(WorkOrder(Priority.BATCH, "q"), member(n, c), gang)))
                 for n, c in (("a", 1), ("b", 3), ("c", 2))]
        await asyncio.sleep(0.05)
        release.set()
        await blocked
        return log, list(await asyncio.gather(*tasks))

    log, outputs = asyncio.run(scenario())
    assert log == ["a+b", "b+c", "b+c"]  # c takes a's place as soon as a ends
    assert outputs == [[1], [3, 2, 1], [2, 1]]


def test_a_higher_class_runs_between_a_gangs_steps_and_an_ungrouped_batch_job_drains_the_gang() -> None:
    async def scenario() -> list[str]:
        scheduler, log = Scheduler("test-gang-turns"), []
        gang = CountingGang(4, log)
        gate = threading.Event()

        def gated(emit: Emit) -> Emit:
            def first_waits(item: Any) -> None:
                gate.wait(10)
                emit(item)
            return first_waits

        long_member = asyncio.create_task(collect(scheduler.stream(
            WorkOrder(Priority.BATCH, "q"), lambda emit: ["g", 3, gated(emit)], gang)))
        while not log:  # the gang's first step has begun, and waits for the gate
            await asyncio.sleep(0.005)
        online = asyncio.create_task(drain(scheduler, WorkOrder(Priority.STANDARD, "online"), steps("s", 1, log)))
        alone = asyncio.create_task(drain(scheduler, WorkOrder(Priority.BATCH, "q"), steps("x", 1, log)))
        late = asyncio.create_task(collect(scheduler.stream(
            WorkOrder(Priority.BATCH, "q"), lambda emit: ["late", 1, emit], gang)))
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(long_member, online, alone, late)
        return log

    # the online step comes between two of the gang's; the batch job outside the gang, waiting, keeps the gang
    # from taking anyone in, so it runs when the gang has drained, and the late member starts a gang after it
    assert asyncio.run(scenario()) == ["g", "s0", "g", "g", "x0", "late"]


async def collect(stream: Any) -> list[Any]:
    return [item async for item in stream]


def test_the_scheduler_knows_whether_higher_classes_had_work_lately() -> None:
    scheduler, log = Scheduler("test-recent"), []
    assert not scheduler.recently_above(Priority.BATCH, 60)
    asyncio.run(drain(scheduler, WorkOrder(Priority.BATCH, "q"), steps("b", 1, log)))
    assert not scheduler.recently_above(Priority.BATCH, 60)  # its own class does not count
    asyncio.run(drain(scheduler, WorkOrder(Priority.STANDARD, "q"), steps("s", 1, log)))
    assert scheduler.recently_above(Priority.BATCH, 60) and not scheduler.recently_above(Priority.STANDARD, 60)
    assert not scheduler.recently_above(Priority.BATCH, 0)


def test_usage_comes_from_the_engines_finished_once_even_when_nobody_reads_it_any_more() -> None:
    async def scenario() -> CountingMeter:
        scheduler, meter = Scheduler("test-metering"), CountingMeter()
        order = WorkOrder(Priority.STANDARD, "d", meter, prompt_index=2)
        gate = threading.Event()

        def answer(emit: Emit) -> Iterator[None]:
            emit(Delta(text="Hello"))
            yield
            gate.wait(10)  # the client leaves while this step runs
            emit(Finished(reason="stop", prompt_tokens=9, completion_tokens=1))
            yield

        stream = scheduler.stream(order, answer)
        await stream.__anext__()
        await stream.aclose()
        gate.set()
        for _ in range(500):
            if meter.releases:
                break
            await asyncio.sleep(0.01)
        scheduler.close()
        return meter

    meter = asyncio.run(scenario())
    assert (meter.holds, meter.added, meter.releases) == (1, [(2, 9, 1)], 1)


def test_a_waiter_that_never_ran_is_never_counted() -> None:
    async def scenario() -> CountingMeter:
        scheduler, meter, log = Scheduler("test-unmetered"), CountingMeter(), []
        release, held = await queued_behind_blocker(scheduler)
        waiting = asyncio.create_task(drain(scheduler, WorkOrder(Priority.STANDARD, "d", meter), steps("w", 1, log)))
        await asyncio.sleep(0.05)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        release.set()
        await held
        scheduler.close()
        return meter

    meter = asyncio.run(scenario())
    assert (meter.holds, meter.added, meter.releases) == (0, [], 0)
