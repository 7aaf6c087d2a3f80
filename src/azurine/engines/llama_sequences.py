"""Many answers decoded in one pass: continuous batching through llama.cpp.

One token of one sequence leaves most of the CPU's arithmetic idle while the weights stream through it; the
same pass over the weights can carry a token of each of several sequences. So the answers of a class are decoded as
a gang: up to a width of answers share one llama.cpp context (one KV cache, each answer its own sequence), and each
scheduling step evaluates one token of every answer under way plus chunks of the prompts still coming in. A step
stays short, so a higher class still waits at most one step. An answer's KV cells are reserved when it starts (its
prompt and `max_tokens`), so a pass never runs out of room mid-answer; an answer that does not fit waits.

Prompts of one deployment mostly open alike (the chat template, a system message), so the gang keeps the last
prompt it evaluated in a sequence of its own and starts each new answer from the part they share: those KV
cells are shared, not evaluated again. Prompts are evaluated in pieces cut as `llama_context` cuts them, and shared
only where a piece may start, so a prompt's numbers do not depend on what it shares.
"""

from __future__ import annotations

import codecs
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from azurine.engines.base import Delta, EngineError, Event, Finished, Sampling
from azurine.engines.llama_context import ALIGN, piece_end, resume_limit
from azurine.scheduler.work import WorkOrder
from azurine.telemetry.metrics import GANG_WIDTH, GENERATED_TOKENS, GENERATIONS, PROMPT_TOKENS, PROMPT_TOKENS_REUSED

if TYPE_CHECKING:
    from azurine.engines.llama_runtime import LlamaCppEngine, _StopMatcher
    from azurine.scheduler.compute import Scheduler, _Job
    from azurine.scheduler.priority import Priority

Emit = Callable[[Event], None]

# Rows per step, all sequences together. A request of a higher class that arrives waits for the step under way, so
# while such requests keep coming the steps are short, and a class that has seen a higher one within the last minute
# keeps them moderate. With no higher class about, a step takes every waiting prompt's next piece at once, as
# llama-server does: on two cores a step of 8 answers' tokens takes ~120 ms and each prompt row beside them ~7-10 ms
# more, fewest in the largest steps (llama-server evaluated 8 prompts of 23 rows in one 1.27 s step). With 8 clients
# on Qwen2.5-0.5B, steps of at most 48 rows spent 10.6 s of a level's 27.5 s in 23 prompt-bearing steps; at most 256,
# 8.0 s in 9 (benchmarks/concurrency.py). The price is that an answer under way waits out such a step (up to ~2 s).
# One of 24 rows takes a third of a second, one of 8 rows ~120 ms. Every answer under way gets its token in every step.
STEP_TOKENS = 256
STEP_TOKENS_NEAR_HIGHER = 24
STEP_TOKENS_BESIDE_HIGHER = 8
HIGHER_RECENT_S = 2.0
HIGHER_SEEN_S = 60.0


def step_rows(scheduler: Scheduler, priority: Priority) -> int:
    """The rows a step of class `priority` may hold now, by how recently a higher class had work."""
    if scheduler.recently_above(priority, HIGHER_RECENT_S):
        return STEP_TOKENS_BESIDE_HIGHER
    if scheduler.recently_above(priority, HIGHER_SEEN_S):
        return STEP_TOKENS_NEAR_HIGHER
    return STEP_TOKENS


class Sequence:
    """One answer, decoded in a gang or by itself: its prompt still to evaluate, its sampler and what it has said.
    (Its length was checked against the model's context before it was made.)"""

    def __init__(self, engine: LlamaCppEngine, llm: Any, tokens: list[int], sampling: Sampling,
                 schema: str | None, order: WorkOrder, emit: Emit, param: str, stops: _StopMatcher) -> None:
        if not tokens:  # a sequence without a prompt token would never be given logits, and wait forever
            raise EngineError("A prompt must hold at least one token.", param=param)
        self.engine = engine
        self.llm = llm
        self.order = order
        self.emit = emit
        self.sampling = sampling
        self.n_prompt = len(tokens)
        self.budget = sampling.max_tokens if sampling.max_tokens is not None else engine.n_ctx - len(tokens)
        self.cells = self.n_prompt + self.budget
        self.sampler = engine._sampler(llm, sampling, schema)
        self.tokens = list(tokens)
        self.todo: list[int] = []  # the token sampled last, to evaluate in the next step
        self.generated: list[int] = []
        self.pos = 0
        self.reused = 0  # leading prompt tokens whose cells it was given
        self.produced = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stops = stops
        self.vocab = llm._model.vocab
        self.relay: Any = None  # where its events go, for an answer that may move to another engine call
        # whether what the answer has said is all its events' filter needs, so that decoding may end early
        self.enough: Callable[[], bool] | None = None

    @property
    def prefilling(self) -> bool:
        return self.pos < self.n_prompt

    def next_tokens(self, room: int) -> list[int]:
        """The tokens to evaluate next: the prompt's next piece for a step with `room` rows left (see `piece_end`), or
        the last token sampled."""
        if self.prefilling:
            return self.tokens[self.pos:piece_end(self.pos, self.n_prompt, room)]
        return self.todo

    def evaluated(self, count: int) -> bool:
        """`count` tokens went into the step; whether the sequence wants the logits of the last of them."""
        self.pos += count
        if self.prefilling:
            return False
        self.todo = []
        return True

    def skip(self, shared: int) -> None:
        """Start after the first `shared` prompt tokens, whose KV cells the sequence was given."""
        self.pos = self.reused = shared

    def sample(self, ctx: Any, idx: int) -> bool:
        """Take the next token from the logits at batch row `idx`; whether the answer has ended."""
        import llama_cpp

        if self.produced >= self.budget:  # `max_tokens: 0`: the prompt alone
            return self.end("length")
        token = self.sampler.sample(ctx, idx)
        if llama_cpp.llama_vocab_is_eog(self.vocab, token):
            return self.end("stop")
        self.produced += 1
        self.generated.append(token)
        sampling = self.sampling
        logprob = ([self.engine._logprob(self.llm, token, sampling.top_logprobs, ctx.ctx, idx)]
                   if sampling.logprobs else [])
        text, stopped = self.stops.feed(self.decoder.decode(self.llm.detokenize([token])))
        if text or logprob:
            self.emit(Delta(text=text, logprobs=logprob))
        if stopped:
            return self.end("stop", stopped=True)
        if self.enough is not None and self.enough():
            return self.end("stop")
        if self.produced >= self.budget:
            return self.end("length")
        self.todo = [token]
        return False

    def end(self, reason: str, stopped: bool = False) -> bool:
        if not stopped:
            tail = self.stops.pending + self.decoder.decode(b"", final=True)
            if tail:
                self.emit(Delta(text=tail))
        name = self.engine.spec.name
        GENERATIONS.labels(name, "cancelled" if self.order.cancelled else reason).inc()
        GENERATED_TOKENS.labels(name).inc(self.produced)
        PROMPT_TOKENS.labels(name).inc(self.n_prompt)
        PROMPT_TOKENS_REUSED.labels(name).inc(self.reused)
        self.emit(Finished(reason=reason, prompt_tokens=self.n_prompt,  # type: ignore[arg-type]
                           completion_tokens=self.produced, cached_tokens=self.reused))
        return True


def started(jobs: list[_Job]) -> list[tuple[_Job, Sequence]]:
    """The arriving members with their sequences; one cancelled while it waited, or that the model refuses (too long,
    a bad template or schema), ends here."""
    out = []
    for job in jobs:
        if job.order.cancelled:
            job.finish(None)
            continue
        try:
            out.append((job, job.start()))
        except BaseException as error:
            job.finish(error)
    return out


def place(batch: Any, row: int, seq_id: int, tokens: list[int], pos: int) -> None:
    """Put `tokens` of sequence `seq_id`, from position `pos` on, into `batch` from `row` on, no logits wanted."""
    for i, token in enumerate(tokens):
        batch.token[row + i] = token
        batch.pos[row + i] = pos + i
        batch.n_seq_id[row + i] = 1
        batch.seq_id[row + i][0] = seq_id
        batch.logits[row + i] = False


def fill_step(batch: Any, under_way: dict[int, tuple[_Job, Sequence]],
              step_tokens: int) -> tuple[int, list[tuple[int, int]], int | None]:
    """Put the next step's tokens into `batch`: every answer's next token, then pieces of the prompts in the order they
    came in, within `step_tokens` rows (a first piece always goes in when no answer is under way). Returns the number of
    tokens, the row of each sequence that wants logits, and the sequence whose piece went in first, if one did.

    Only the first piece gets the numbers its prompt gets alone: a piece placed after another prompt's piece in the
    same batch got numbers that moved by up to 0.43 on Qwen2.5-0.5B, while after any number of answers' tokens it got
    those it gets alone."""
    n = 0
    outputs: list[tuple[int, int]] = []
    first: int | None = None
    answering = [(seq_id, seq) for seq_id, (_, seq) in under_way.items() if not seq.prefilling]
    prompting = [(seq_id, seq) for seq_id, (_, seq) in under_way.items() if seq.prefilling]
    for seq_id, sequence in answering + prompting:
        tokens = sequence.next_tokens(step_tokens - n)
        if sequence.prefilling:
            if n and n + len(tokens) > step_tokens:
                break
            first = seq_id if first is None else first
        place(batch, n, seq_id, tokens, sequence.pos)
        n += len(tokens)
        if sequence.evaluated(len(tokens)):
            batch.logits[n - 1] = True
            outputs.append((seq_id, n - 1))
    return n, outputs, first


class _Lane:
    """The gang's llama.cpp context (its own KV cache, `width` sequences) and its reusable batch."""

    def __init__(self, llm: Any, n_ctx: int, width: int, n_threads: int) -> None:
        """Sequence ids 0 … width-1 carry answers; id `width` holds the last prompt evaluated."""
        import llama_cpp
        from llama_cpp import _internals

        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = params.n_ubatch = 512
        params.n_seq_max = width + 1
        params.n_threads = params.n_threads_batch = n_threads
        params.kv_unified = True  # one pool of cells for all sequences: an answer takes what it reserved
        # with flash attention a prompt gives the same logits wherever its cells lie among others'; without it, they
        # moved by up to 0.5 when the cells sat 3 or 5 places further on (measured on both models)
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.embeddings = False
        self.ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self.batch = _internals.LlamaBatch(n_tokens=512, embd=0, n_seq_max=1, verbose=False)
        self.memory = llama_cpp.llama_get_memory(self.ctx.ctx)

        self.prefix_id = width
        self.prefix: list[int] = []

    def forget(self, seq_id: int) -> None:
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self.memory, seq_id, -1, -1)

    def share_prefix(self, seq_id: int, tokens: list[int]) -> int:
        """Give `seq_id` the cells of the prompt start it shares with the kept prompt, up to where a piece of it may
        start (see `llama_context`); how many tokens that is."""
        import llama_cpp

        shared = 0
        for kept, wanted in zip(self.prefix, tokens[:resume_limit(len(tokens))], strict=False):
            if kept != wanted:
                break
            shared += 1
        shared -= shared % ALIGN
        if shared:
            llama_cpp.llama_memory_seq_cp(self.memory, self.prefix_id, seq_id, 0, shared)
        return shared

    def keep_prompt(self, seq_id: int, tokens: list[int]) -> None:
        """Keep this evaluated prompt (the cells of `seq_id` up to its length) for the answers that follow."""
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self.memory, self.prefix_id, -1, -1)
        llama_cpp.llama_memory_seq_cp(self.memory, seq_id, self.prefix_id, 0, len(tokens))
        self.prefix = list(tokens)


class SequenceGang:
    """Decodes up to `width` answers of one model and class together; the scheduler's `Gang` for that class."""

    def __init__(self, engine: LlamaCppEngine, width: int, step_rows: Callable[[], int]) -> None:
        self.engine = engine
        self.width = width
        self._step_rows = step_rows
        self._lane: _Lane | None = None

    def run(self, first: list[_Job], take: Callable[[int], list[_Job]]) -> Iterator[None]:
        engine = self.engine
        if self._lane is None:
            llm = engine._load()
            made = _Lane(llm, engine.n_ctx, self.width, engine._n_threads)
            engine.adapt(llm, made.ctx.ctx)  # before it is kept: a context that failed to take it is not used
            self._lane = made
        lane = self._lane
        waiting: deque[tuple[_Job, Sequence]] = deque(started(first))
        under_way: dict[int, tuple[_Job, Sequence]] = {}
        free_ids = list(range(self.width))
        free_cells = engine.n_ctx - len(lane.prefix)  # the kept prompt's cells are in use

        def release(seq_id: int) -> None:
            nonlocal free_cells
            lane.forget(seq_id)
            free_cells += under_way.pop(seq_id)[1].cells
            free_ids.append(seq_id)

        while True:
            if len(free_ids) > len(waiting):
                waiting += started(take(len(free_ids) - len(waiting)))
            while waiting and free_ids and waiting[0][1].cells <= free_cells:
                job, sequence = waiting.popleft()
                seq_id = free_ids.pop()
                free_cells -= sequence.cells
                under_way[seq_id] = (job, sequence)
                sequence.skip(lane.share_prefix(seq_id, sequence.tokens))
            if not under_way:
                if not waiting:
                    return
                raise RuntimeError("a waiting answer needs more KV cells than the whole context")  # by its check
            for seq_id, (job, sequence) in list(under_way.items()):
                if job.order.cancelled:
                    sequence.end("stop")
                    job.finish(None)
                    release(seq_id)
            n, outputs, _ = fill_step(lane.batch.batch, under_way, self._step_rows())
            if n:
                GANG_WIDTH.labels(engine.spec.name).observe(len(under_way))
                lane.batch.batch.n_tokens = n
                try:
                    lane.ctx.decode(lane.batch)
                except RuntimeError as error:
                    failure = EngineError(f"The model could not evaluate this batch step: {error}",
                                          status=500, code="internal_error")
                    for seq_id in list(under_way):
                        under_way[seq_id][0].finish(failure)
                        release(seq_id)
                    continue
            for seq_id, row in outputs:
                job, sequence = under_way[seq_id]
                if sequence.produced == 0 and sequence.cells - sequence.budget <= free_cells + len(lane.prefix):
                    free_cells += len(lane.prefix) - sequence.n_prompt
                    lane.keep_prompt(seq_id, sequence.tokens)  # just evaluated: the freshest start to share
                try:
                    ended = sequence.sample(lane.ctx, row)
                except BaseException as error:
                    job.finish(error)
                    release(seq_id)
                    continue
                if ended:
                    job.finish(None)
                    release(seq_id)
            yield
