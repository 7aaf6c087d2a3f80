"""Which in-process models stay loaded: as many as fit the memory budget (`AZURINE_MODEL_MEMORY`).

Every call to a local model holds it loaded until its events end, and the models are kept in the order they were last
used (a call's start and its end both count as a use). Whenever the models held, each at the size its engine estimates
before loading it (`footprint`), exceed the budget, the least recently used model that no call holds is unloaded; a
later call loads it again. The most recently used model is never unloaded for the budget's sake, so a budget smaller
than one model holds one model at a time instead of loading it again for every call.

When unloading idle models is not enough (every other loaded model is answering, or the model alone is larger than
the budget), the call is served anyway, over the budget, and models are unloaded as they go idle until the rest fits
again. A client of Azure OpenAI calls a deployment that exists and expects its answer: refused because another
deployment is busy, it could only retry until that deployment happened to be idle, which under steady traffic it never
is. So the budget bounds what idle models hold, and what answers at once goes beyond it only while it answers.

Upstream deployments hold no memory here and are not counted.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from typing import Protocol, cast

from azurine.catalog import ModelSpec
from azurine.engines.base import ChatPrompt, Embeddings, Engine, Event, Finished, Order, Sampling, TextPrompt
from azurine.engines.images import GeneratedImages, ImageAsk, ImageGenerator
from azurine.engines.speech import Speaker, SpeechChunk, SpeechInput, Transcriber, Transcript, TranscriptionOptions
from azurine.scheduler.priority import Priority
from azurine.telemetry.metrics import MODEL_MEMORY, MODEL_MEMORY_BUDGET, MODEL_UNLOADS

log = logging.getLogger("azurine")


class Loadable(Protocol):
    """A model that loads on first use and can be unloaded between calls."""

    spec: ModelSpec

    @property
    def loaded(self) -> bool: ...

    def footprint(self, priorities: Collection[int]) -> int:
        """The bytes it holds once it has served calls of these classes; known before it loads."""
        ...

    def unload(self) -> None:
        """Forget the loaded model, so that its memory is freed; only ever called while no call holds it."""
        ...


@dataclass(eq=False)
class _Member:
    model: Loadable
    in_flight: int = 0
    classes: set[int] = field(default_factory=set)  # of the calls served since it was last unloaded
    size: int = 0  # its footprint for those classes, as of its last call

    @property
    def held(self) -> int:
        # a model that a call holds counts before it has loaded, so that two models starting together both count
        return self.size if self.in_flight or self.model.loaded else 0


class Residency:
    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._members: OrderedDict[Loadable, _Member] = OrderedDict()  # the least recently used first
        self._lock = threading.Lock()  # calls come from the event loop and from the batch worker's
        MODEL_MEMORY_BUDGET.set(budget)

    def acquire(self, model: Loadable, priority: int) -> None:
        """A call of class `priority` starts on `model`: it stays loaded until `release`, and idle models make room."""
        with self._lock:
            member = self._members.get(model)
            if member is None:
                member = self._members[model] = _Member(model)
            if not member.in_flight and not model.loaded:
                member.classes.clear()  # it starts again from nothing
            member.in_flight += 1
            member.classes.add(priority)
            member.size = model.footprint(member.classes)
            self._members.move_to_end(model)
            self._fit()

    def release(self, model: Loadable) -> None:
        """A call on `model` has ended; models beyond the budget that are now idle are unloaded."""
        with self._lock:
            member = self._members[model]
            member.in_flight -= 1
            self._members.move_to_end(model)
            self._fit()

    def forget(self, model: Loadable) -> None:
        """Stop keeping a model whose engine is gone: unloaded now if no call holds it; one that a call holds stays
        counted until the budget unloads it."""
        with self._lock:
            member = self._members.get(model)
            if member is None or member.in_flight:
                return
            del self._members[model]
            if model.loaded:
                model.unload()
            with suppress(KeyError):  # its series goes with it
                MODEL_MEMORY.remove(model.spec.name)

    def loaded(self) -> list[str]:
        """The models loaded now, the least recently used first."""
        with self._lock:
            return [member.model.spec.name for member in self._members.values() if member.model.loaded]

    def _fit(self) -> None:
        """Unload idle models, the least recently used first, while the models held exceed the budget (called with the
        lock held)."""
        members = list(self._members.values())
        held = sum(member.held for member in members)
        for member in members[:-1]:  # never the most recently used
            if held <= self.budget:
                break
            if member.in_flight or not member.model.loaded:
                continue
            log.info("unloading %s (about %d MiB) to keep the loaded models within %d MiB",
                     member.model.spec.name, member.held >> 20, self.budget >> 20)
            held -= member.held
            member.model.unload()
            member.classes.clear()
            MODEL_UNLOADS.labels(member.model.spec.name).inc()
        for member in members:
            MODEL_MEMORY.labels(member.model.spec.name).set(member.held)


class ResidentEngine:
    """A local engine whose model the residency may unload while no call holds it: each call holds it loaded from its
    start until its events end (and, cut short, until its engine call is closed)."""

    def __init__(self, engine: Engine, model: Loadable, residency: Residency) -> None:
        self.spec = engine.spec
        self._engine = engine
        self._model = model
        self._residency = residency

    def chat(self, prompt: ChatPrompt, sampling: Sampling, order: Order, stream: bool = True) -> AsyncIterator[Event]:
        return self._held(order, lambda: self._engine.chat(prompt, sampling, order, stream))

    def complete(self, prompt: TextPrompt, sampling: Sampling, order: Order,
                 stream: bool = True) -> AsyncIterator[Event]:
        return self._held(order, lambda: self._engine.complete(prompt, sampling, order, stream))

    async def embed(self, inputs: list[str] | list[list[int]], order: Order | None = None) -> Embeddings:
        self._residency.acquire(self._model, order.priority if order is not None else Priority.STANDARD)
        try:
            return await self._engine.embed(inputs, order)
        finally:
            self._residency.release(self._model)

    async def transcribe(self, audio: bytes, options: TranscriptionOptions, order: Order) -> Transcript:
        self._residency.acquire(self._model, order.priority)
        try:
            return await cast(Transcriber, self._engine).transcribe(audio, options, order)
        finally:
            self._residency.release(self._model)

    async def generate(self, ask: ImageAsk, order: Order) -> GeneratedImages:
        self._residency.acquire(self._model, order.priority)
        try:
            return await cast(ImageGenerator, self._engine).generate(ask, order)
        finally:
            self._residency.release(self._model)

    def speak(self, request: SpeechInput, order: Order) -> AsyncIterator[SpeechChunk | Finished]:
        return self._held(order, lambda: cast(Speaker, self._engine).speak(request, order))  # type: ignore[arg-type,return-value]

    async def _held(self, order: Order, call: Callable[[], AsyncIterator[Event]]) -> AsyncIterator[Event]:
        self._residency.acquire(self._model, order.priority)
        try:
            # closed here, not when collected: the engine's own call ends before the model may be unloaded
            async with aclosing(call()) as events:  # type: ignore[type-var]
                async for event in events:
                    yield event
        finally:
            self._residency.release(self._model)

    def forget(self) -> None:
        """Its engine is dropped: the residency unloads its model (see `Residency.forget`)."""
        self._residency.forget(self._model)

    async def close(self) -> None:
        await self._engine.close()
