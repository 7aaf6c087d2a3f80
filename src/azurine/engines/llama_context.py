"""One llama.cpp context's evaluated tokens: where a new prompt may start from them, and how they are kept sound.

A context is shared by every request of its class, one after another, so its state must never carry one request's
mistakes into the next:

- A prompt resumes only from cells that an evaluation from scratch would have made bit for bit the same. The numbers
  of a prompt's rows depend on how the prompt is cut into the batches (pieces) that evaluate it: measured on
  Qwen2.5-0.5B's q4_K kernels, a piece of fewer than 8 rows, or one that starts off a multiple of 8, moved the last
  logits by up to 0.43 (SmolLM2's q4_1 gave the same numbers in every layout tried). Pieces that start at multiples of
  `ALIGN` and hold `ALIGN` to `PIECE_MAX` rows gave identical numbers however the prompt was cut into them (124
  random layouts, prompts of 8 to 90 tokens, beside 0 to 8 other sequences' tokens). So every prompt is cut so, its
  last piece included (a prompt shorter than `ALIGN` is one piece), and a prompt resumes only at a multiple of `ALIGN`
  at least `ALIGN` short of its end: a new prompt re-evaluates at most 7 tokens it shares with what a context holds,
  and a step may take as many rows of a prompt as it has room for.
- Every change of the evaluated position is checked against its bounds.
- A request that fails, or is abandoned, part-way through a step leaves the context empty rather than half-written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from azurine.engines.base import EngineError

ALIGN = 8
# Rows of one prompt evaluated in one piece at most: on two cores, Qwen2.5-0.5B evaluated 68 prompt tokens/s in pieces
# of 16, 83 in 32, 99 in 48 and no more in 64 or 128; a step of 48 rows takes about half a second.
PIECE_MAX = 48


def resume_limit(n_prompt: int) -> int:
    """The furthest a prompt of `n_prompt` tokens may resume: its last piece must still hold `ALIGN` rows."""
    return max(0, n_prompt - ALIGN) // ALIGN * ALIGN


def piece_end(start: int, n_prompt: int, room: int) -> int:
    """Where the piece of a prompt that starts at `start` ends, given `room` rows in its step: as many whole `ALIGN`s
    as fit (one at least), and the whole rest once it fits, never leaving fewer than `ALIGN` rows for a last piece."""
    rest = n_prompt - start
    room = max(ALIGN, min(room, PIECE_MAX))
    if rest <= room or rest < 2 * ALIGN:
        return n_prompt
    return start + min(room, rest - ALIGN) // ALIGN * ALIGN


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
        """Where evaluating `tokens` may start: the longest shared, exact prefix, at a multiple of `ALIGN` and short
        enough to leave a whole last piece."""
        shared = 0
        limit = min(self.exact, self.llm.n_tokens, resume_limit(len(tokens)))
        for held, wanted in zip(self.llm.input_ids[:limit].tolist(), tokens, strict=False):
            if held != wanted:
                break
            shared += 1
        return shared - shared % ALIGN

    def prefill(self, tokens: list[int], cancelled: Any) -> Iterator[None]:
        """Evaluate `tokens` from their resume point, one piece a step; stops early when `cancelled()`."""
        if not tokens:
            raise ContextStateError("A prompt must hold at least one token.")
        begin = self.resume_point(tokens)
        self.rewind(begin)
        while begin < len(tokens):
            if cancelled():
                return
            end = piece_end(begin, len(tokens), PIECE_MAX)
            self.eval(tokens[begin:end])
            self.exact = end - end % ALIGN
            begin = end
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
