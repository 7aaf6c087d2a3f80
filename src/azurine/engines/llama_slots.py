"""Online answers decoded together in slots: continuous batching that gives each prompt what it would get alone.

An online class (provisioned, standard) decodes its answers as a gang, as the batch class does, but each answer runs
in a slot: a KV cache of its own within one llama.cpp context (llama.cpp's non-unified cache, as llama-server's
`-np` slots), so its cells always lie in position order from the slot's start. Where an answer's cells lie changes
its numbers: decoded among other answers' cells in one shared cache, the same greedy request drew logits that moved
by up to 0.67 depending on what had run before (measured on SmolLM2); in a slot they do not move.

How a step is laid out changes them too. llama.cpp evaluates a step of several slots in sub-batches that take one
token of every slot, then the rest; so a prompt piece that shares a call with answers' tokens is cut after its first
row, and gets numbers that moved by up to 0.31 from those it gets alone (Qwen2.5-0.5B's q4_K kernels). A step is
therefore one call for the answers' next tokens and one call for each prompt piece: each piece then gets bit for bit
the numbers it gets alone (measured against a piece evaluated alone, beside 2 answers and another prompt), and the
calls cost what the sub-batches did. (An answer's own token still depends on how many answers step with it: on
Qwen2.5-0.5B, 4 or more rows take another kernel than 1 to 3.)

Every slot's prompt cells are thus exact, and any slot may start from any other's: a new answer takes the free slot
whose cells share the longest prompt start with its own, and where another slot shares a longer one, up to where a
piece may start (see `llama_context`), those cells are copied across, as llama-server copies a slot for `n`
choices. The chat template and a deployment's system message are evaluated once, not once per slot. A prompt that
would share with one still being evaluated waits a step for it, so prompts that come in together evaluate what they
share once. A prompt too long for a slot runs alone in its class's context of the model's full length instead, and
an answer that fills its slot goes on there: what it has read and said is evaluated again, and it carries on with
its own sampler and filters.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from azurine.engines.base import EngineError, HandedOver
from azurine.engines.llama_context import ALIGN, resume_limit
from azurine.engines.llama_sequences import Sequence, place, started
from azurine.telemetry.metrics import GANG_WIDTH

if TYPE_CHECKING:
    from azurine.engines.llama_runtime import LlamaCppEngine
    from azurine.scheduler.compute import _Job


@dataclass
class _Slot:
    tokens: list[int] = field(default_factory=list)  # what its cells hold, position by position
    exact: int = 0  # leading cells made as a prompt's pieces are made alone: what a later prompt may start from
    used: float = 0.0  # when it last took an answer in, to choose between equals


def shared_start(held: list[int], tokens: list[int]) -> int:
    """How many of `tokens`' first tokens a prompt may take from cells holding `held`: their common start, cut to a
    multiple of `ALIGN` and short enough to leave the prompt a whole last piece."""
    count = 0
    for have, want in zip(held, tokens[:resume_limit(len(tokens))], strict=False):
        if have != want:
            break
        count += 1
    return count - count % ALIGN


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

    def shared(self, slot_id: int, tokens: list[int]) -> int:
        slot = self.slots[slot_id]
        return shared_start(slot.tokens[:slot.exact], tokens)

    def admit(self, tokens: list[int], free: set[int]) -> tuple[int, int]:
        """The free slot to answer `tokens` in and how many of their first tokens its cells already hold (a longer
        start another slot holds is taken by `take_shared`, before each step while the prompt has not started).

        The slot that shares the longest start is taken when the prompt keeps at least half of what it holds, as a
        conversation's next turn does; otherwise the least recently used one is, and `take_shared` copies it the
        shared start. Taking the longest start regardless let a prompt that shares only a chat template's opening
        wipe out another conversation's cells: Qwen2.5 with one tool re-evaluated 147 of its 163 prompt tokens at
        every request between two other prompts, 2.1 s each on one thread."""
        shares = {i: self.shared(i, tokens) for i in free}
        slot_id = max(free, key=lambda i: (shares[i], -self.slots[i].used))
        if 2 * shares[slot_id] < len(self.slots[slot_id].tokens):
            slot_id = min(free, key=lambda i: self.slots[i].used)
        start = shares[slot_id]
        self.rewind(slot_id, start)
        self.slots[slot_id].used = time.monotonic()
        return slot_id, start

    def take_shared(self, slot_id: int, tokens: list[int], start: int) -> int:
        """Where slot `slot_id`, holding the first `start` of `tokens`, may start them once it has taken another
        slot's cells that share a longer start, if one does. A whole slot is copied (llama.cpp copies a non-unified
        cache's sequences no other way: 12 MB for a 2,048-cell slot of Qwen2.5-0.5B) and its tail forgotten."""
        import llama_cpp

        best, source = start, slot_id
        for other in range(len(self.slots)):
            if other != slot_id and (count := self.shared(other, tokens)) > best:
                best, source = count, other
        if source == slot_id:
            return start
        llama_cpp.llama_memory_seq_cp(self.memory, source, slot_id, -1, -1)
        llama_cpp.llama_memory_seq_rm(self.memory, slot_id, best, -1)
        self.slots[slot_id].tokens = self.slots[source].tokens[:best]
        self.slots[slot_id].exact = best
        return best

    def rewind(self, slot_id: int, position: int) -> None:
        import llama_cpp

        slot = self.slots[slot_id]
        llama_cpp.llama_memory_seq_rm(self.memory, slot_id, position, -1)
        del slot.tokens[position:]
        slot.exact = min(slot.exact, position)

    def decode(self, rows: list[tuple[int, list[int], int]]) -> list[int]:
        """Evaluate `rows` (slot, tokens, their first position) in one call; the batch row of each entry's last token,
        whose logits are wanted."""
        batch = self.batch.batch
        n = 0
        wanted = []
        for slot_id, tokens, pos in rows:
            place(batch, n, slot_id, tokens, pos)
            n += len(tokens)
            batch.logits[n - 1] = True
            wanted.append(n - 1)
        batch.n_tokens = n
        self.ctx.decode(self.batch)
        return wanted

    def evaluated(self, slot_id: int, tokens: list[int], prompt: bool) -> None:
        """`tokens` went into the slot: a prompt's piece, made as it is made alone, or an answer's token."""
        slot = self.slots[slot_id]
        start = len(slot.tokens)
        slot.tokens += tokens
        if prompt and slot.exact == start:
            slot.exact = len(slot.tokens) - len(slot.tokens) % ALIGN


def plan_pieces(prompting: list[tuple[int, Sequence]], answering: int, rows: int,
                fresh: set[int]) -> list[tuple[int, list[int]]]:
    """The prompt pieces of a step of `rows` rows beside `answering` answers' tokens, in the order the prompts came
    in (a first piece always goes in when nothing else does). A prompt that has not started yet waits while one
    ahead of it, still short of their shared start, is being evaluated: it takes those cells later instead of
    evaluating them again."""
    pieces: list[tuple[int, list[int]]] = []
    ahead: list[Sequence] = []
    used = answering
    for slot_id, sequence in prompting:
        waits = slot_id in fresh and any(
            other.pos < (share := shared_start(other.tokens, sequence.tokens)) and share > sequence.pos
            for other in ahead)
        ahead.append(sequence)
        if waits:
            continue
        tokens = sequence.next_tokens(rows - used)
        if used and used + len(tokens) > rows:
            break
        pieces.append((slot_id, tokens))
        used += len(tokens)
    return pieces


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
            llm = engine._load()
            made = _SlotContext(llm, self.width, self.size, engine._n_threads)
            engine.adapt(llm, made.ctx.ctx)  # before it is kept: a context that failed to take it is not used
            self._context = made
        context = self._context
        waiting: deque[tuple[_Job, Sequence]] = deque(started(first))
        under_way: dict[int, tuple[_Job, Sequence]] = {}
        free = set(range(self.width))
        fresh: set[int] = set()  # slots whose prompt has not had a piece evaluated yet

        def release(slot_id: int, error: BaseException | None) -> None:
            job, _ = under_way.pop(slot_id)
            fresh.discard(slot_id)
            if error is not None:  # nothing the failed answer left in its slot can be trusted
                context.rewind(slot_id, 0)
            free.add(slot_id)
            job.finish(error)

        def step(rows: list[tuple[int, list[int], int]], prompt: bool) -> bool:
            """Evaluate `rows` in one call and sample the answers whose prompt they end; False if the call failed."""
            try:
                wanted = context.decode(rows)
            except RuntimeError as error:
                failure = EngineError(f"The model could not evaluate this step: {error}", status=500,
                                      code="internal_error")
                for slot_id in list(under_way):
                    release(slot_id, failure)
                return False
            for (slot_id, tokens, _), row in zip(rows, wanted, strict=True):
                _, sequence = under_way[slot_id]
                context.evaluated(slot_id, tokens, prompt)
                fresh.discard(slot_id)
                if not sequence.evaluated(len(tokens)):
                    continue
                try:
                    ended = sequence.sample(context.ctx, row)
                except BaseException as error:
                    release(slot_id, error)
                    continue
                if ended:
                    release(slot_id, None)
            return True

        while True:
            if len(free) > len(waiting):
                waiting += started(take(len(free) - len(waiting)))
            while waiting and free:
                job, sequence = waiting.popleft()
                slot_id, start = context.admit(sequence.tokens, free)
                free.discard(slot_id)
                fresh.add(slot_id)
                under_way[slot_id] = (job, sequence)
                sequence.skip(start)
            for slot_id, (job, sequence) in list(under_way.items()):
                if job.order.cancelled:
                    sequence.end("stop")
                    release(slot_id, None)
                elif sequence.pos >= self.size:  # the slot is full: the answer goes on in a context of its own
                    sequence.relay.target(HandedOver(sequence))
                    release(slot_id, None)
                elif slot_id in fresh:  # just admitted, or a prompt it waited for may have been evaluated since
                    sequence.skip(context.take_shared(slot_id, sequence.tokens, sequence.pos))
            if not under_way:
                return

            GANG_WIDTH.labels(engine.spec.name).observe(len(under_way))
            answers = [(slot_id, sequence.todo, sequence.pos) for slot_id, (_, sequence) in under_way.items()
                       if not sequence.prefilling]
            prompting = [(slot_id, sequence) for slot_id, (_, sequence) in under_way.items() if sequence.prefilling]
            pieces = plan_pieces(prompting, len(answers), self._step_rows(), fresh)
            if not answers or step(answers, prompt=False):
                for slot_id, tokens in pieces:
                    if slot_id in under_way and not step([(slot_id, tokens, under_way[slot_id][1].pos)], prompt=True):
                        break
            yield
