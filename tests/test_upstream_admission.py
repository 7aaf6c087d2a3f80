"""The gate in front of an upstream server, and the metering of the calls that pass it: pure asyncio, no server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from azurine.config import UpstreamSettings
from azurine.engines.base import ChatPrompt, Delta, EngineUnavailable, Event, Finished, Sampling
from azurine.scheduler.priority import Priority
from azurine.scheduler.scheduled import ScheduledUpstream
from azurine.scheduler.upstream import UpstreamGate
from azurine.scheduler.work import WorkOrder
from meters import CountingMeter

PROMPT = ChatPrompt(messages=[{"role": "user", "content": "Say hi, please."}])


async def holder(gate: UpstreamGate, order: WorkOrder, name: str, log: list[str],
                 release: asyncio.Event | None = None) -> None:
    async with gate.admitted(order):
        log.append(name)
        if release is not None:
            await release.wait()


async def settle() -> None:
    """Let every task that can run, run: waiters queue up, admitted ones take their turn."""
    for _ in range(20):
        await asyncio.sleep(0)


async def blocked(gate: UpstreamGate, log: list[str]) -> tuple[asyncio.Event, asyncio.Task[None]]:
    """A request in flight that holds the gate's only place until released."""
    release = asyncio.Event()
    task = asyncio.create_task(holder(gate, WorkOrder(Priority.BATCH, "blocker"), "blocker", log, release))
    await settle()
    return release, task


def test_no_more_than_the_limit_are_in_flight_and_the_rest_wait() -> None:
    async def scenario() -> tuple[int, int, list[str], int]:
        gate, log, release = UpstreamGate("test-limit", 2), [], asyncio.Event()
        tasks = [asyncio.create_task(holder(gate, WorkOrder(Priority.STANDARD, "d"), f"r{i}", log, release))
                 for i in range(5)]
        await settle()
        in_flight, waiting, admitted = gate.in_flight, gate.depth(Priority.STANDARD), list(log)
        release.set()
        await asyncio.gather(*tasks)
        return in_flight, waiting, admitted, gate.in_flight

    in_flight, waiting, admitted, after = asyncio.run(scenario())
    assert (in_flight, waiting, admitted, after) == (2, 3, ["r0", "r1"], 0)


def test_a_waiting_higher_class_goes_first_whenever_it_came() -> None:
    async def scenario() -> list[str]:
        gate, log = UpstreamGate("test-classes", 1), []
        release, held = await blocked(gate, log)
        tasks = []
        for priority, name in ((Priority.BATCH, "b"), (Priority.STANDARD, "s1"), (Priority.STANDARD, "s2"),
                               (Priority.PROVISIONED, "p")):
            tasks.append(asyncio.create_task(holder(gate, WorkOrder(priority, name), name, log)))
            await settle()
        release.set()
        await asyncio.gather(held, *tasks)
        return log

    assert asyncio.run(scenario()) == ["blocker", "p", "s1", "s2", "b"]


def test_one_deployments_burst_cannot_starve_another_of_its_class() -> None:
    async def scenario() -> list[str]:
        gate, log = UpstreamGate("test-fairness", 1), []
        release, held = await blocked(gate, log)
        tasks = [asyncio.create_task(holder(gate, WorkOrder(Priority.STANDARD, "flood"), f"a{i}", log))
                 for i in range(4)]
        await settle()
        tasks += [asyncio.create_task(holder(gate, WorkOrder(Priority.STANDARD, "quiet"), f"b{i}", log))
                  for i in range(2)]
        await settle()
        release.set()
        await asyncio.gather(held, *tasks)
        return log

    assert asyncio.run(scenario()) == ["blocker", "a0", "b0", "a1", "b1", "a2", "a3"]


def test_a_cancelled_waiter_leaves_the_queue_at_once_and_is_never_let_in() -> None:
    async def scenario() -> tuple[int, int, list[str], int]:
        gate, log = UpstreamGate("test-cancel", 1), []
        release, held = await blocked(gate, log)
        waiting = asyncio.create_task(holder(gate, WorkOrder(Priority.PROVISIONED, "d"), "w", log))
        await settle()
        before = gate.depth(Priority.PROVISIONED)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        after = gate.depth(Priority.PROVISIONED)  # while the blocker still holds the place
        release.set()
        await held
        return before, after, log, gate.in_flight

    assert asyncio.run(scenario()) == (1, 0, ["blocker"], 0)


def test_a_waiter_cancelled_as_it_is_let_in_passes_its_place_on() -> None:
    async def scenario() -> tuple[list[str], int]:
        gate, log = UpstreamGate("test-handover", 1), []
        place = gate.admitted(WorkOrder(Priority.STANDARD, "first"))
        await place.__aenter__()
        first = asyncio.create_task(holder(gate, WorkOrder(Priority.STANDARD, "d"), "first", log))
        second = asyncio.create_task(holder(gate, WorkOrder(Priority.STANDARD, "d"), "second", log))
        await settle()
        await place.__aexit__(None, None, None)  # lets `first` in, and it is cancelled before it runs
        first.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
        return log, gate.in_flight

    assert asyncio.run(scenario()) == (["second"], 0)


# the calls through the gate: a place held until the stream ends, usage counted once -----------------------------

class FakeUpstream:
    """Says two words and finishes with the server's usage; or fails after the first word."""

    spec: Any = None

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.closed = 0

    def chat(self, prompt: ChatPrompt, sampling: Sampling, order: Any, stream: bool = True) -> AsyncIterator[Event]:
        return self._answer()

    async def _answer(self) -> AsyncIterator[Event]:
        try:
            yield Delta(text="Hello")
            if self.fail:
                raise EngineUnavailable("The upstream model server went away.")
            yield Delta(text=" there")
            yield Finished(reason="stop", prompt_tokens=11, completion_tokens=2)
        finally:
            self.closed += 1

    async def close(self) -> None:
        pass


def test_a_finished_call_is_counted_from_its_finished_once_and_frees_its_place() -> None:
    async def scenario() -> tuple[list[Event], CountingMeter, int]:
        gate, meter = UpstreamGate("test-finished", 1), CountingMeter()
        engine = ScheduledUpstream(FakeUpstream(), gate)  # type: ignore[arg-type]
        events = [e async for e in engine.chat(PROMPT, Sampling(), WorkOrder(Priority.STANDARD, "d", meter, 3))]
        return events, meter, gate.in_flight

    events, meter, in_flight = asyncio.run(scenario())
    assert isinstance(events[-1], Finished)
    assert (meter.holds, meter.added, meter.releases, in_flight) == (1, [(3, 11, 2)], 1, 0)


def test_a_client_that_leaves_ends_the_upstream_call_and_is_counted_from_what_it_saw() -> None:
    async def scenario() -> tuple[CountingMeter, int, int]:
        gate, meter, upstream = UpstreamGate("test-left", 1), CountingMeter(), FakeUpstream()
        events = ScheduledUpstream(upstream, gate).chat(  # type: ignore[arg-type]
            PROMPT, Sampling(), WorkOrder(Priority.STANDARD, "d", meter))
        await events.__anext__()
        await events.aclose()  # type: ignore[attr-defined]
        return meter, upstream.closed, gate.in_flight

    meter, closed, in_flight = asyncio.run(scenario())
    # the prompt's estimate (four characters a token) and one token for the one delta seen
    assert (meter.added, meter.releases, closed, in_flight) == ([(0, PROMPT.estimated_tokens(), 1)], 1, 1, 0)


def test_a_failed_call_frees_its_place_and_settles_once() -> None:
    async def scenario() -> tuple[CountingMeter, int]:
        gate, meter = UpstreamGate("test-failed", 1), CountingMeter()
        engine = ScheduledUpstream(FakeUpstream(fail=True), gate)  # type: ignore[arg-type]
        with pytest.raises(EngineUnavailable):
            async for _ in engine.chat(PROMPT, Sampling(), WorkOrder(Priority.STANDARD, "d", meter)):
                pass
        return meter, gate.in_flight

    meter, in_flight = asyncio.run(scenario())
    assert (meter.holds, len(meter.added), meter.releases, in_flight) == (1, 1, 1, 0)


def test_a_call_cancelled_while_waiting_is_never_counted() -> None:
    async def scenario() -> tuple[CountingMeter, list[str]]:
        gate, meter, log = UpstreamGate("test-never", 1), CountingMeter(), []
        release, held = await blocked(gate, log)
        engine = ScheduledUpstream(FakeUpstream(), gate)  # type: ignore[arg-type]

        async def read() -> None:
            async for _ in engine.chat(PROMPT, Sampling(), WorkOrder(Priority.STANDARD, "d", meter)):
                log.append("event")

        waiting = asyncio.create_task(read())
        await settle()
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        release.set()
        await held
        return meter, log

    meter, log = asyncio.run(scenario())
    assert (meter.holds, meter.added, meter.releases, log) == (0, [], 0, ["blocker"])


def test_priority_goes_only_to_the_servers_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURINE_UPSTREAM_CONCURRENCY", "4")
    monkeypatch.setenv("AZURINE_UPSTREAM_PRIORITY", "http://vllm:8000/v1/, http://other:8000/v1")
    settings = UpstreamSettings.load()
    assert settings.concurrency == 4
    assert settings.sends_priority("http://vllm:8000/v1") and settings.sends_priority("http://other:8000/v1/")
    assert not settings.sends_priority("http://llama-server:8080/v1")
    monkeypatch.setenv("AZURINE_UPSTREAM_PRIORITY", "1")
    assert UpstreamSettings.load().sends_priority("http://llama-server:8080/v1")
    monkeypatch.delenv("AZURINE_UPSTREAM_PRIORITY")
    assert not UpstreamSettings.load().sends_priority("http://vllm:8000/v1")
    monkeypatch.setenv("AZURINE_UPSTREAM_CONCURRENCY", "0")
    with pytest.raises(ValueError, match="AZURINE_UPSTREAM_CONCURRENCY"):
        UpstreamSettings.load()
