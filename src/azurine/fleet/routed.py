"""One request's engine when the fleet serves its model: each call goes to one allowed place, and to one more if the
first fails before its first byte.

- The places are those the deployment type allows (`regions.allows`), decided before the request got here; a retry
  goes to another of them, never outside, and at most once.
- A call that failed before its first event has sent the caller nothing, so it is tried again elsewhere, and counts
  for nothing: its meter starts only with the first event. A call cut after its first event is not tried again
  (the caller has part of an answer): the failure reaches the renderer, which ends the stream with an error event,
  and the meter counts what was sent.
- With no place left, the answer is a 503 with `retry-after`: when the next probe may have let a server in again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Protocol

from azurine.catalog import ModelSpec
from azurine.engines.base import (
    ChatPrompt,
    Embeddings,
    Engine,
    EngineUnavailable,
    Event,
    Sampling,
    TextPrompt,
)
from azurine.fleet.member import Member, Place
from azurine.fleet.router import Affinity, chat_prefix, pick, text_prefix
from azurine.scheduler.metering import CallMeter
from azurine.scheduler.work import WorkOrder

ATTEMPTS = 2  # the first place, and one retry


class Routing(Protocol):
    """What a routed call needs of the fleet."""

    affinity: Affinity

    def retry_after(self, places: Sequence[Place]) -> int: ...


class RoutedEngine:
    def __init__(self, spec: ModelSpec, places: Sequence[Place], local: Engine, routing: Routing,
                 on_route: Callable[[Place], None]) -> None:
        self.spec = spec
        self._places = list(places)
        self._local = local
        self._routing = routing
        self._on_route = on_route

    def chat(self, prompt: ChatPrompt, sampling: Sampling, order: WorkOrder,
             stream: bool = True) -> AsyncIterator[Event]:
        return self._run(chat_prefix(self.spec.name, prompt.messages), order, prompt.estimated_tokens(),
                         lambda engine: engine.chat(prompt, sampling, order, stream))

    def complete(self, prompt: TextPrompt, sampling: Sampling, order: WorkOrder,
                 stream: bool = True) -> AsyncIterator[Event]:
        prefix = None if prompt.tokens else text_prefix(self.spec.name, prompt.text)
        return self._run(prefix, order, prompt.estimated_tokens(),
                         lambda engine: engine.complete(prompt, sampling, order, stream))

    async def embed(self, inputs: list[str] | list[list[int]], order: WorkOrder | None = None) -> Embeddings:
        order = order or WorkOrder()
        failure: EngineUnavailable | None = None
        for place in self._places_to_try(None):
            try:
                async with self._holding(place, order):
                    result = await self._embed_at(place, inputs, order)
            except EngineUnavailable as error:
                _failed(place)
                failure = error
                continue
            _succeeded(place)
            self._on_route(place)
            return result
        raise self._none_left(failure)

    async def close(self) -> None:
        """Nothing of its own: the places keep their engines."""

    def _places_to_try(self, prefix: str | None) -> Iterator[Place]:
        """The allowed places a call tries in turn: the one the router picks, and another while attempts are left."""
        tried: list[Place] = []
        while len(tried) < ATTEMPTS:
            place = pick([p for p in self._places if p not in tried], self._routing.affinity.hint(prefix))
            if place is None:
                return
            tried.append(place)
            yield place

    @asynccontextmanager
    async def _holding(self, place: Place, order: WorkOrder) -> AsyncIterator[None]:
        """A call at `place`: counted in its outstanding calls, and at a server's gate (the in-process engine is
        scheduled by its own engine)."""
        place.outstanding += 1
        try:
            gate = place.gate if isinstance(place, Member) else None
            admitted: AbstractAsyncContextManager[object] = gate.admitted(order) if gate is not None else nullcontext()
            async with admitted:
                yield
        finally:
            place.outstanding -= 1

    async def _embed_at(self, place: Place, inputs: list[str] | list[list[int]], order: WorkOrder) -> Embeddings:
        if not isinstance(place, Member):
            return await self._local.embed(inputs, order)
        meter = CallMeter(order)  # the in-process engine meters itself; a server's call is counted here
        meter.start()
        try:
            result = await place.engine(self.spec).embed(inputs, order)
            meter.observe(result)
            return result
        finally:
            meter.end()

    def _engine_at(self, place: Place) -> Engine:
        return place.engine(self.spec) if isinstance(place, Member) else self._local  # type: ignore[return-value]

    async def _run(self, prefix: str | None, order: WorkOrder, prompt_estimate: int,
                   call: Callable[[Engine], AsyncIterator[Event]]) -> AsyncIterator[Event]:
        failure: EngineUnavailable | None = None
        for place in self._places_to_try(prefix):
            async with self._holding(place, order):
                events = call(self._engine_at(place))
                try:
                    first = await anext(events)
                except EngineUnavailable as error:
                    await events.aclose()  # type: ignore[attr-defined]
                    _failed(place)
                    failure = error
                    continue
                except StopAsyncIteration:
                    return
                self._routing.affinity.remember(prefix, place.key)
                self._on_route(place)
                # the in-process engine meters itself; a server's calls are counted here, from the first event
                meter = CallMeter(order, prompt_estimate) if isinstance(place, Member) else None
                if meter is not None:
                    meter.start()
                try:
                    if meter is not None:
                        meter.observe(first)
                    yield first
                    async for event in events:
                        if meter is not None:
                            meter.observe(event)
                        yield event
                except EngineUnavailable:
                    _failed(place)  # cut midway: the caller has part of an answer, so no retry
                    raise
                finally:
                    await events.aclose()  # type: ignore[attr-defined]
                    if meter is not None:
                        meter.end()
                _succeeded(place)
                return
        raise self._none_left(failure)

    def _none_left(self, failure: EngineUnavailable | None) -> EngineUnavailable:
        error = EngineUnavailable(
            "No model server that this deployment's type allows (its region, or data zone) can serve the request "
            "now. Retry after the time in the retry-after header." if failure is None else failure.message)
        error.headers = {"retry-after": str(self._routing.retry_after(self._places))}
        return error


def _failed(place: Place) -> None:
    if isinstance(place, Member):
        place.breaker.failed()


def _succeeded(place: Place) -> None:
    if isinstance(place, Member):
        place.breaker.request_succeeded()
