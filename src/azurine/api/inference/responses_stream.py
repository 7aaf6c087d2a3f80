"""A response streamed as the Responses API's typed events, in the order and shapes of the openai SDK's
`ResponseStreamEvent`s, each with its `sequence_number`:

    response.created, response.in_progress,
    for a message: response.output_item.added, response.content_part.added, response.output_text.delta…,
                   response.output_text.done, response.content_part.done, response.output_item.done,
    for each call: response.output_item.added, response.function_call_arguments.delta,
                   response.function_call_arguments.done, response.output_item.done,
    then response.completed, response.incomplete or response.failed.

The answer's text passes the content filter as chat's does (held back and released in checked windows, or annotated
after it was sent); a filtered answer ends the response `incomplete` (`content_filter`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from azurine.api.context import Services
from azurine.api.errors import AzureError
from azurine.api.inference.render import chained, now
from azurine.api.inference.responses_render import (
    Outcome,
    call_item,
    message_item,
    new_call_item_id,
    new_message_id,
    output_text,
    response_usage,
    text_logprobs,
)
from azurine.api.inference.responses_turn import Turn, answer_calls, failure, store_turn
from azurine.api.sse import dumps
from azurine.engines.base import Delta, EngineError, Event, Finished, ToolCall
from azurine.safety.guard import ContentGuard
from azurine.safety.streaming import Annotated, Checked, Filtered
from azurine.storage.state import AccountRecord


class Sequence:
    """Events numbered in the order they are sent, each under its type's `event:` line, as OpenAI sends them."""

    def __init__(self) -> None:
        self.number = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        payload = {"sequence_number": self.number, "type": kind, **fields}
        self.number += 1
        return b"event: " + kind.encode() + b"\ndata: " + dumps(payload) + b"\n\n"


class OpenMessage:
    """The assistant message being streamed: its id, place in `output` and the text sent so far."""

    def __init__(self, output_index: int, logprobs: bool) -> None:
        self.id = new_message_id()
        self.output_index = output_index
        self.text = ""
        self.logprobs: list[dict[str, Any]] | None = [] if logprobs else None

    def opened(self, send: Sequence) -> list[bytes]:
        return [send("response.output_item.added", item=message_item(self.id, None, "in_progress"),
                     output_index=self.output_index),
                send("response.content_part.added", content_index=0, item_id=self.id,
                     output_index=self.output_index, part=output_text(""))]

    def delta(self, send: Sequence, item: Delta) -> bytes:
        self.text += item.text
        logprobs = text_logprobs(item.logprobs) if self.logprobs is not None else []
        if self.logprobs is not None:
            self.logprobs.extend(logprobs)
        return send("response.output_text.delta", content_index=0, delta=item.text, item_id=self.id,
                    logprobs=logprobs, output_index=self.output_index)

    def closed(self, send: Sequence, status: str) -> tuple[list[bytes], dict[str, Any]]:
        part = output_text(self.text, self.logprobs)
        item = message_item(self.id, self.text, status, self.logprobs)
        return [send("response.output_text.done", content_index=0, item_id=self.id, logprobs=self.logprobs or [],
                     output_index=self.output_index, text=self.text),
                send("response.content_part.done", content_index=0, item_id=self.id,
                     output_index=self.output_index, part=part),
                send("response.output_item.done", item=item, output_index=self.output_index)], item


def call_events(send: Sequence, call: ToolCall, output_index: int) -> tuple[list[bytes], dict[str, Any]]:
    item_id = new_call_item_id()
    done = call_item(call, item_id, "completed")
    return [send("response.output_item.added", item=call_item(call, item_id, "in_progress", arguments=""),
                 output_index=output_index),
            send("response.function_call_arguments.delta", delta=call.arguments, item_id=item_id,
                 output_index=output_index),
            send("response.function_call_arguments.done", arguments=call.arguments, item_id=item_id,
                 output_index=output_index),
            send("response.output_item.done", item=done, output_index=output_index)], done


Save = Callable[[dict[str, Any]], Awaitable[None]]


async def stream_response(svc: Services, account: AccountRecord, turn: Turn, guard: ContentGuard,
                          events: AsyncIterator[Event], first: Event, *, send: Sequence | None = None,
                          save: Save | None = None) -> AsyncIterator[bytes]:
    """The response's events; `send` carries on a sequence already begun (a background response's, which opened
    `queued`), and `save` stores the response as it ends (by default, as a new stored response where it is stored)."""
    body = turn.body

    async def stored(response: dict[str, Any]) -> None:
        await (save(response) if save is not None else _store(svc, account, turn, response))

    if send is None:
        send = Sequence()
        yield send("response.created", response=turn.response(Outcome("in_progress")))
    yield send("response.in_progress", response=turn.response(Outcome("in_progress")))
    output: list[dict[str, Any]] = []
    message: OpenMessage | None = None
    calls: list[ToolCall] = []
    end: Finished | None = None
    filtered = False
    try:
        async for item in guard.stream(chained([first], events)):
            if isinstance(item, Finished):
                end = item
                continue
            if isinstance(item, Filtered) or (isinstance(item, Annotated) and item.filtered):
                filtered = True
                break
            if isinstance(item, Annotated):  # Azure's annotations have no place on a response: only a block shows
                continue
            delta = item.delta if isinstance(item, Checked) else item
            assert isinstance(delta, Delta)
            if delta.text:
                if message is None:
                    message = OpenMessage(len(output), body.wants_logprobs)
                    for sent in message.opened(send):
                        yield sent
                yield message.delta(send, delta)
            calls.extend(delta.tool_calls)
    except (EngineError, AzureError) as error:
        failed = turn.response(Outcome("failed", output, error=failure(error)))
        await stored(failed)
        yield send("response.failed", response=failed)
        return
    cut = end is not None and end.reason == "length"
    calls = [] if filtered else answer_calls(body, calls)
    if message is None and not calls and not filtered:
        message = OpenMessage(len(output), body.wants_logprobs)  # an answer with no text still says so
        for sent in message.opened(send):
            yield sent
    if message is not None:
        closing, item = message.closed(send, "incomplete" if cut or filtered else "completed")
        for sent in closing:
            yield sent
        output.append(item)
    for call in calls:
        sent_events, item = call_events(send, call, len(output))
        for sent in sent_events:
            yield sent
        output.append(item)
    usage = response_usage(end.prompt_tokens, end.completion_tokens, end.cached_tokens) if end is not None else None
    if filtered or cut:
        outcome = Outcome("incomplete", output, usage,
                          incomplete_reason="content_filter" if filtered else "max_output_tokens")
    else:
        outcome = Outcome("completed", output, usage, completed_at=now())
    response = turn.response(outcome)
    await stored(response)  # before the last event, so a request continuing it finds it
    yield send("response.completed" if outcome.status == "completed" else "response.incomplete", response=response)


async def _store(svc: Services, account: AccountRecord, turn: Turn, response: dict[str, Any]) -> None:
    if turn.body.stored:
        await run_in_threadpool(store_turn, svc, account.id, turn, response)
