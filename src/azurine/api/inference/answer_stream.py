"""The streamed answer of chat completions and completions: one loop, with what differs between them in an `Answers`.

A stream opens with the prompt's filter results, then sends each choice in turn as the content guard releases it,
ends each with its finish reason, counts the tokens, and closes with the usage chunk where asked for and `[DONE]`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any, ClassVar, Generic

from starlette.responses import StreamingResponse

from azurine.api.context import Target
from azurine.api.errors import AzureError
from azurine.api.inference.protocol_answers import (
    AnnotationChoice,
    AnnotationChunk,
    ChoiceT,
    ErrorDetail,
    FilterOffsets,
    PromptFilterChunk,
    StreamChunk,
    StreamError,
    Usage,
)
from azurine.api.inference.render import chained, fingerprint, new_id, now, prompt_filters, usage
from azurine.api.inference.ticket import Ticket
from azurine.api.sse import DONE, event, event_stream
from azurine.engines.base import Delta, EngineError, Event, Finished, Sampling
from azurine.safety.guard import ContentGuard
from azurine.safety.streaming import Annotated, Checked, Filtered


@dataclass(frozen=True)
class Choice:
    """One choice of the answer: its `index` in the answer and the prompt it answers."""

    index: int
    prompt: int
    start: Callable[[], AsyncIterator[Event]]  # the engine call that writes it


@dataclass
class Answers(ABC, Generic[ChoiceT]):
    """What a kind of answer puts in its stream."""

    target: Target
    ticket: Ticket
    sampling: Sampling
    id_prefix: ClassVar[str]
    object: ClassVar[str]
    chunk: ClassVar[type[StreamChunk[Any]]]
    counts_cached: ClassVar[bool] = False  # whether its usage reports the prompt tokens taken from the cache

    @abstractmethod
    def choices(self) -> Iterator[Choice]:
        """The choices in the order they are streamed; each one's engine call is started only when its turn comes."""

    def opened(self, index: int) -> list[ChoiceT]:
        """What a choice sends before its text."""
        return []

    @abstractmethod
    def released(self, index: int, delta: Delta, annotations: dict[str, Any], offset: int) -> list[ChoiceT]:
        """What a choice sends for `delta`, text the guard released after the first `offset` characters."""

    @abstractmethod
    def ended(self, index: int, reason: str, annotations: dict[str, Any]) -> ChoiceT:
        """The choice's last chunk: no text, and why it ended."""


@dataclass
class _Tally:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    prompts_counted: frozenset[int] = frozenset()

    def count(self, choice: Choice, finished: Finished) -> None:
        self.completion_tokens += finished.completion_tokens
        if choice.prompt not in self.prompts_counted:  # a prompt counts once, as the first of its choices read it
            self.prompts_counted |= {choice.prompt}
            self.prompt_tokens += finished.prompt_tokens
            self.cached_tokens += finished.cached_tokens

    def usage(self, counts_cached: bool) -> Usage:
        return usage(self.prompt_tokens, self.completion_tokens, self.cached_tokens if counts_cached else 0)


@dataclass
class _Stream(Generic[ChoiceT]):
    answers: Answers[ChoiceT]
    guard: ContentGuard
    header: dict[str, Any]
    include_usage: bool

    def chunk(self, choices: list[ChoiceT], usage: Usage | None = None) -> bytes:
        given = {"usage": usage} if self.include_usage else {}  # every chunk says `usage: null`, the last has it
        return event(self.answers.chunk(choices=choices, **self.header, **given).model_dump())

    async def render(self, started: Iterator[tuple[Choice, AsyncIterator[Event]]]) -> AsyncIterator[bytes]:
        yield event(PromptFilterChunk(prompt_filter_results=prompt_filters(self.guard.prompt_filter_results()))
                    .model_dump())
        tally = _Tally()
        try:
            for choice, events in started:
                async for chunk in self._choice(choice, events, tally):
                    yield chunk
        except (EngineError, AzureError) as error:
            yield event(StreamError(error=ErrorDetail(code=error.code, message=error.message)).model_dump())
            return
        if self.include_usage:
            yield self.chunk([], usage=tally.usage(self.answers.counts_cached))
        yield DONE

    async def _choice(self, choice: Choice, events: AsyncIterator[Event], tally: _Tally) -> AsyncIterator[bytes]:
        index, sent = choice.index, 0
        for opened in self.answers.opened(index):
            yield self.chunk([opened])
        async for item in self.guard.stream(events):
            if isinstance(item, Finished):
                yield self.chunk([self.answers.ended(index, item.reason, {})])
                tally.count(choice, item)
            elif isinstance(item, Filtered):
                yield self.chunk([self.answers.ended(index, "content_filter", item.annotations)])
                return  # the engine stops once nobody reads it
            elif isinstance(item, Annotated):
                yield event(_annotation(index, item).model_dump())
                if item.filtered:
                    return
            else:
                delta, annotations = (item.delta, item.annotations) if isinstance(item, Checked) else (item, {})
                for released in self.answers.released(index, delta, annotations, sent):
                    yield self.chunk([released])
                sent += len(delta.text)


def _annotation(index: int, item: Annotated) -> AnnotationChunk:
    offsets = FilterOffsets(check_offset=item.check_offset, end_offset=item.end_offset, start_offset=item.start_offset)
    return AnnotationChunk(choices=[AnnotationChoice(
        content_filter_offsets=offsets, content_filter_results=item.annotations,
        finish_reason="content_filter" if item.filtered else None, index=index)])


async def stream_answers(answers: Answers[ChoiceT], guard: ContentGuard, include_usage: bool) -> StreamingResponse:
    """The answer as a stream. Its first engine call starts at once, the others each when its turn comes."""
    choices = answers.choices()
    first = next(choices)
    events = first.start()
    opening = await events.__anext__()  # refusals (context length, bad schema) answer as errors, before the stream
    model = answers.target.model
    header: dict[str, Any] = {"created": now(), "id": new_id(answers.id_prefix), "model": model.response_model,
                              "object": answers.object, "system_fingerprint": fingerprint(model)}
    stream = _Stream(answers, guard, header, include_usage)
    return event_stream(stream.render(chain([(first, chained([opening], events))],
                                            ((choice, choice.start()) for choice in choices))))
