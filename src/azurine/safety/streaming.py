"""An answer checked as it is produced, as the content-filter policy's mode wants it.

In Default mode text is held back in windows and released only once checked, each window with its annotations
(`Checked`); where the policy redacts PII, the answer so far is checked and redacted as a whole. In
Asynchronous_filter mode text flows at once and annotation chunks follow (`Annotated`). A blocking hit ends the
answer (`Filtered`). The check itself is the caller's: a function from the answer so far to its `AnswerCheck`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from azurine.engines.base import Delta, Event, Finished

# characters of answer held back per check in Default mode; the first token is checked on its own so
# that holding back costs the time to first token one check, not a window
WINDOW_CHARS = 80
REDACTION_TAIL = 48


@dataclass(frozen=True)
class AnswerCheck:
    annotations: dict[str, Any]
    filtered: bool
    redacted: str | None = None  # the answer as released, where the policy redacts PII and some was found

    def shown(self, text: str) -> str:
        return text if self.redacted is None else self.redacted


@dataclass
class Checked:
    """Answer text released after its check (Default mode)."""

    delta: Delta
    annotations: dict[str, Any]


@dataclass
class Annotated:
    """Annotations for answer text already sent (Asynchronous_filter mode)."""

    annotations: dict[str, Any]
    check_offset: int
    start_offset: int
    end_offset: int
    filtered: bool = False


@dataclass
class Filtered:
    """The answer stops here: the text since the last release tripped a blocking filter (Default mode)."""

    annotations: dict[str, Any]


Check = Callable[[str], Awaitable[AnswerCheck]]


def guarded(events: AsyncIterator[Event], check: Check, *, asynchronous: bool, redacts: bool,
            window_chars: int = WINDOW_CHARS) -> AsyncIterator[Any]:
    """`events` with `check` run between them: annotations after the text in Asynchronous_filter mode (text already
    sent cannot be redacted: PII is annotated there), held-back windows otherwise."""
    if asynchronous:
        return _annotated(events, check, window_chars)
    return _redacting(events, check, window_chars) if redacts else _held_back(events, check, window_chars)


async def _held_back(events: AsyncIterator[Event], check_answer: Check, window_chars: int) -> AsyncIterator[Any]:
    answer, held, first = "", [], True
    async for item in events:
        ends = isinstance(item, Finished) or not (item.text or item.logprobs)  # the answer's end, or tool calls
        if not ends:
            held.append(item)
        if held and (ends or first or sum(len(d.text) for d in held) >= window_chars):
            answer += "".join(d.text for d in held)
            check = await check_answer(answer)
            if check.filtered:
                yield Filtered(check.annotations)
                return
            yield Checked(_merged(held), check.annotations)
            held, first = [], False
        if ends:
            yield item


async def _redacting(events: AsyncIterator[Event], check_answer: Check, window_chars: int) -> AsyncIterator[Any]:
    """Default mode with PII redaction: the answer so far is checked and redacted as a whole, and what is
    released stops REDACTION_TAIL characters short of its end, at a space, so that PII still being written
    (an e-mail address half generated) is never released before it can be recognised."""
    answer, checked, released, shown = "", 0, 0, ""
    async for item in events:
        text = isinstance(item, Delta) and bool(item.text or item.logprobs)
        if text:
            answer += item.text  # type: ignore[union-attr]
            if len(answer) - checked < window_chars:
                continue
        if len(answer) > checked or (not text and released < len(shown)):
            check = await check_answer(answer)
            if check.filtered:
                yield Filtered(check.annotations)
                return
            shown, checked = check.shown(answer), len(answer)
            end = len(shown) if not text else _release_point(shown, released)
            if end > released:  # logprobs describe the tokens before redaction: they are not sent
                yield Checked(Delta(text=shown[released:end]), check.annotations)
                released = end
        if not text:
            yield item


async def _annotated(events: AsyncIterator[Event], check_answer: Check, window_chars: int) -> AsyncIterator[Any]:
    answer, checked = "", 0
    async for item in events:
        if isinstance(item, Delta):
            answer += item.text
            yield item
            if len(answer) - checked < window_chars:
                continue
        if len(answer) > checked:
            check = await check_answer(answer)
            yield Annotated(check.annotations, len(answer), checked, len(answer), check.filtered)
            checked = len(answer)
            if check.filtered:
                return
        if isinstance(item, Finished):
            yield item


def _release_point(shown: str, released: int) -> int:
    """Where released text may end: at the last whitespace at least REDACTION_TAIL characters before the end."""
    limit = len(shown) - REDACTION_TAIL
    if limit <= released:
        return released
    cut = max(shown.rfind(" ", released, limit), shown.rfind("\n", released, limit))
    return cut + 1 if cut >= 0 else released


def _merged(deltas: list[Delta]) -> Delta:
    return Delta(text="".join(d.text for d in deltas), logprobs=[lp for d in deltas for lp in d.logprobs])
