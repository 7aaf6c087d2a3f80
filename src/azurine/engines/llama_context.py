"""One llama.cpp context's evaluated tokens: where a new prompt may start from them, and how they are kept sound.

A context is shared by every request of its class, one after another, so its state must never carry one request's
mistakes into the next:

- A prompt resumes only from cells that an evaluation from scratch would have made bit for bit the same. Prompts
  are evaluated in chunks that start at multiples of `PREFILL_CHUNK`; the cells of a whole chunk are reusable, those
  of a prompt's last partial chunk and of generated tokens are not. Logits depend on how a prompt was split into
  batches (measured on SmolLM2: the last-token logits of a prompt resumed one token short of its end differed from
  those of the whole prompt by up to 0.58; resumed at a chunk boundary, they were identical), so resuming anywhere
  else would let whatever ran before change a greedy or seeded answer.
- Every change of the evaluated position is checked against its bounds.
- A request that fails, or is abandoned, part-way through a step leaves the context empty rather than half-written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from azurine.engines.base import EngineError

# Prompt tokens evaluated per scheduling step. A higher class waits at most one step, and on two cores
# 16 tokens keep nearly all of the prompt throughput of larger batches (measured: SmolLM2 183 tok/s at
# 16, 195 at 512; Qwen2.5-0.5B 82 and 89) while a step stays around a tenth of a second.
PREFILL_CHUNK = 16


class ContextStateError(EngineError):
    """The engine's own bookkeeping went wrong: a server fault, never the caller's."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="InternalServerError", status=500, error_type=None)


class EvaluatedContext:
    """A `llama_cpp.Llama` and how many of its leading cells are exactly what a fresh evaluation would make."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.exact = 0  # leading cells made by whole, aligned prompt chunks

    def resume_point(self, tokens: list[int]) -> int:
        """Where evaluating `tokens` may start: the longest shared, exact, chunk-aligned prefix, and never the whole
        prompt (its last token must be evaluated for the first logits)."""
        shared = 0
        limit = min(self.exact, self.llm.n_tokens, len(tokens) - 1)
        for held, wanted in zip(self.llm.input_ids[:limit].tolist(), tokens, strict=False):
            if held != wanted:
                break
            shared += 1
        return shared - shared % PREFILL_CHUNK

    def prefill(self, tokens: list[int], cancelled: Any) -> Iterator[None]:
        """Evaluate `tokens` from their resume point, one chunk a step; stops early when `cancelled()`."""
        if not tokens:
            raise ContextStateError("A prompt must hold at least one token.")
        start = self.resume_point(tokens)
        self.rewind(start)
        for begin in range(start, len(tokens), PREFILL_CHUNK):
            if cancelled():
                return
            chunk = tokens[begin:begin + PREFILL_CHUNK]
            self.eval(chunk)
            if len(chunk) == PREFILL_CHUNK:
                self.exact = begin + PREFILL_CHUNK
            yield

    def rewind(self, position: int) -> None:
        """Forget every cell from `position` on."""
        if not 0 <= position <= self.llm.n_tokens:
            raise ContextStateError(f"Cannot rewind to {position}: the context holds {self.llm.n_tokens} tokens.")
        self.llm.n_tokens = position
        self.exact = min(self.exact, position)
        self.llm._ctx.kv_cache_seq_rm(-1, position, -1)

    def eval(self, tokens: list[int]) -> None:
        """Evaluate `tokens` after what the context holds, within its size."""
        if self.llm.n_tokens + len(tokens) > self.llm.n_ctx():
            raise ContextStateError(f"{self.llm.n_tokens + len(tokens)} tokens do not fit the context.")
        self.llm.eval(tokens)

    def reset(self) -> None:
        """Empty the context: after a failure nothing it held can be trusted."""
        self.llm.n_tokens = 0
        self.exact = 0
        self.llm._ctx.kv_cache_clear()
