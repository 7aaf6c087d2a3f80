"""Engines as the scheduler runs them: each call in its turn, and metered in one place (`CallMeter`).

The llama.cpp engine hands its steps to the compute scheduler itself (one thread for every llama.cpp model, see
`llama_runtime`), which meters them; the other engines are served through the wrappers here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import aclosing

from azurine.engines.base import (
    BlockingEmbedder,
    ChatPrompt,
    Embeddings,
    Engine,
    EngineError,
    Event,
    Sampling,
    TextPrompt,
)
from azurine.scheduler.compute import Scheduler
from azurine.scheduler.metering import CallMeter
from azurine.scheduler.upstream import UpstreamGate
from azurine.scheduler.work import WorkOrder


class ScheduledUpstream:
    """A model on an upstream server: a call waits for a place at the server's gate and holds it until its events
    end; what it used is counted from those events."""

    def __init__(self, engine: Engine, gate: UpstreamGate) -> None:
        self.spec = engine.spec
        self._engine = engine
        self._gate = gate

    def chat(self, prompt: ChatPrompt, sampling: Sampling, order: WorkOrder,
             stream: bool = True) -> AsyncIterator[Event]:
        return self._run(order, prompt.estimated_tokens(), lambda: self._engine.chat(prompt, sampling, order, stream))

    def complete(self, prompt: TextPrompt, sampling: Sampling, order: WorkOrder,
                 stream: bool = True) -> AsyncIterator[Event]:
        return self._run(order, prompt.estimated_tokens(),
                         lambda: self._engine.complete(prompt, sampling, order, stream))

    async def embed(self, inputs: list[str] | list[list[int]], order: WorkOrder | None = None) -> Embeddings:
        order = order or WorkOrder()
        async with self._gate.admitted(order):
            meter = CallMeter(order)
            meter.start()
            try:
                result = await self._engine.embed(inputs, order)
                meter.observe(result)
                return result
            finally:
                meter.end()

    async def _run(self, order: WorkOrder, prompt_estimate: int,
                   call: Callable[[], AsyncIterator[Event]]) -> AsyncIterator[Event]:
        # the call starts only once admitted: a request that waits has sent nothing upstream yet
        async with self._gate.admitted(order):
            meter = CallMeter(order, prompt_estimate)
            meter.start()
            try:
                # closed here, not when collected: a client that went away ends the upstream request now
                async with aclosing(call()) as events:  # type: ignore[type-var]
                    async for event in events:
                        meter.observe(event)
                        yield event
            finally:
                meter.end()

    async def close(self) -> None:
        await self._engine.close()


class NoTextGeneration:
    """Chat and completions refused, for an engine that serves neither: its deployment's capabilities keep such
    requests away."""

    def chat(self, prompt: ChatPrompt, sampling: Sampling, order: WorkOrder,
             stream: bool = True) -> AsyncIterator[Event]:
        raise EngineError("chat is not served by this engine", code="OperationNotSupported")

    def complete(self, prompt: TextPrompt, sampling: Sampling, order: WorkOrder,
                 stream: bool = True) -> AsyncIterator[Event]:
        raise EngineError("completions are not served by this engine", code="OperationNotSupported")


class ScheduledEmbedder(NoTextGeneration):
    """An embedding model that computes on a compute thread of its own, its calls taken in turn by class."""

    def __init__(self, embedder: BlockingEmbedder) -> None:
        self.spec = embedder.spec
        self._embedder = embedder
        self._compute = Scheduler(embedder.spec.name)

    async def embed(self, inputs: list[str] | list[list[int]], order: WorkOrder | None = None) -> Embeddings:
        return await self._compute.call(order or WorkOrder(), lambda: self._embedder.embed_blocking(inputs))

    async def close(self) -> None:
        self._compute.close()
