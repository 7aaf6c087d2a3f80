"""Online answers decoded together in slots: continuous batching that gives each answer what it would get alone.

An online class (provisioned, standard) decodes its answers as a gang, as the batch class does, but each answer runs
in a slot: a KV cache of its own within one llama.cpp context (llama.cpp's non-unified cache, as llama-server's
`-np` slots), so its cells always lie in position order from the slot's start. Where an answer's cells lie changes
its numbers: decoded among other answers' cells in one shared cache, the same greedy request drew logits that moved
by up to 0.67 depending on what had run before (measured on SmolLM2), and so a different answer; in a slot it gets
the same numbers as in a context of its own.

A slot keeps the cells of the last answer it served. A new answer takes the free slot whose cells share the longest
prompt start with its own, up to where a piece may start (see `llama_context`), and evaluates only the rest: the
chat template and a deployment's system message are evaluated once per slot, not once per request. A prompt too long
for a slot runs alone in its class's context of the model's full length instead, and an answer that fills its slot
goes on there: what it has read and said is evaluated again, and it carries on with its own sampler and filters.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from azurine.engines.base import EngineError, HandedOver
from azurine.engines.llama_context import ALIGN, resume_limit
from azurine.engines.llama_sequences import Sequence, fill_step, started
from azurine.telemetry.metrics import GANG_WIDTH

if TYPE_CHECKING:
    from azurine.engines.llama_runtime import LlamaCppEngine
    from azurine.scheduler.compute import _Job


@dataclass
class _Slot:
    tokens: list[int] = field(default_factory=list)  # what its cells hold, position by position
    exact: int = 0  # leading cells made as a prompt's pieces are made alone: what a later prompt may start from
    used: float = 0.0  # when it last took an answer in, to choose between equals


class _SlotContext:
    """One llama.cpp context of `width` slots of `size` cells each, and its reusable batch."""

    def __init__(self, llm: Any, width: int, size: int, n_threads: int) -> None:
        import llama_cpp
        from llama_cpp import _internals

        params = llama_cpp.llama_context_default_params()
        params.n_ctx = width * size
        params.n_batch = params.n_ubatch = 512
        params.n_seq_max = width
        params.n_threads = params.n_threads_batch = n_threads
        params.kv_unified = False  # a cache of its own for each sequence
        # with flash attention an answer's numbers stay the same wherever its slot's cells begin
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.embeddings = False
        self.ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self.batch = _internals.LlamaBatch(n_tokens=512, embd=0, n_seq_max=1, verbose=False)
        self.memory = llama_cpp.llama_get_memory(self.ctx.ctx)
        self.slots = [_Slot() for _ in range(width)]

    def admit(self, tokens: list[int], free: set[int]) -> tuple[int, int]:
        """The free slot to answer `tokens` in and how many of their first tokens its cells already hold."""

        def shared(slot_id: int) -> int:
            slot = self.slots[slot_id]
            count = 0
            for held, wanted in zip(slot.tokens[:slot.exact], tokens[:resume_limit(len(tokens))], strict=False):
                if held != wanted:
                    break
                count += 1
            return count - count % ALIGN

        slot_id = max(free, key=lambda i: (shared(i), -self.slots[i].used))
        start = shared(slot_id)
        self.rewind(slot_id, start)
        self.slots[slot_id].used = time.monotonic()
        return slot_id, start

    def rewind(self, slot_id: int, position: int) -> None:
        import llama_cpp

        slot = self.slots[slot_id]
        llama_cpp.llama_memory_seq_rm(self.memory, slot_id, position, -1)
        del slot.tokens[position:]
        slot.exact = min(slot.exact, position)

    def evaluated(self, slot_id: int, tokens: list[int], prompt: bool) -> None:
        """`tokens` went into the slot; a later prompt may resume from within a prompt's piece (see `llama_context`)."""
        slot = self.slots[slot_id]
        start = len(slot.tokens)
        slot.tokens += tokens
        if prompt and slot.exact == start:
            slot.exact = len(slot.tokens) - len(slot.tokens) % ALIGN


class SlotGang:
    """Decodes up to `width` answers of one model and class together, each in a slot; the scheduler's `Gang`."""

    def __init__(self, engine: LlamaCppEngine, width: int, size: int, step_rows: Callable[[], int]) -> None:
        self.engine = engine
        self.width = width
        self.size = size
        self._step_rows = step_rows
        self._context: _SlotContext | None = None

    def fits(self, n_prompt: int) -> bool:
        """Whether a prompt of `n_prompt` tokens fits a slot with room for an answer to start."""
        return n_prompt < self.size

    def run(self, first: list[_Job], take: Callable[[int], list[_Job]]) -> Iterator[None]:
        engine = self.engine
        if self._context is None:
            self._context = _SlotContext(engine._load(), self.width, self.size, engine._n_threads)
        context = self._context
        waiting: deque[tuple[_Job, Sequence]] = deque(started(first))
        under_way: dict[int, tuple[_Job, Sequence]] = {}
        free = set(range(self.width))

        def release(slot_id: int, error: BaseException | None) -> None:
            job, _ = under_way.pop(slot_id)
            if error is not None:  # nothing the failed answer left in its slot can be trusted
                context.rewind(slot_id, 0)
            free.add(slot_id)
            job.finish(error)

        while True:
            if len(free) > len(waiting):
                waiting += started(take(len(free) - len(waiting)))
            while waiting and free:
                job, sequence = waiting.popleft()
                slot_id, start = context.admit(sequence.tokens, free)
                free.discard(slot_id)
                under_way[slot_id] = (job, sequence)
                sequence.skip(start)
            for slot_id, (job, sequence) in list(under_way.items()):
                if job.order.cancelled:
                    sequence.end("stop")
                    release(slot_id, None)
                elif sequence.pos >= self.size:  # the slot is full: the answer goes on in a context of its own
                    sequence.relay.target(HandedOver(sequence))
                    release(slot_id, None)
            if not under_way:
                return

            starts = {slot_id: sequence.pos for slot_id, (_, sequence) in under_way.items()}
            n, outputs, prompted = fill_step(context.batch.batch, under_way, self._step_rows())
            if n:
                GANG_WIDTH.labels(engine.spec.name).observe(len(under_way))
                context.batch.batch.n_tokens = n
                try:
                    context.ctx.decode(context.batch)
                except RuntimeError as error:
                    failure = EngineError(f"The model could not evaluate this step: {error}", status=500,
                                          code="internal_error")
                    for slot_id in list(under_way):
                        release(slot_id, failure)
                    yield
                    continue
                for slot_id, (_, sequence) in under_way.items():
                    if sequence.pos > starts[slot_id]:
                        context.evaluated(slot_id, self._tokens_of(sequence, starts[slot_id]), slot_id == prompted)
            for slot_id, row in outputs:
                _, sequence = under_way[slot_id]
                try:
                    ended = sequence.sample(context.ctx, row)
                except BaseException as error:
                    release(slot_id, error)
                    continue
                if ended:
                    release(slot_id, None)
            yield

    @staticmethod
    def _tokens_of(sequence: Sequence, start: int) -> list[int]:
        """The tokens the sequence evaluated from position `start` on, in this step."""
        if start < sequence.n_prompt:
            return sequence.tokens[start:sequence.pos]
        return sequence.generated[start - sequence.n_prompt:sequence.pos - sequence.n_prompt]
