"""One response to make (a turn): the engine's answer to it, and how that answer ends the response.

The request is served as the chat completion it amounts to (`responses_input.chat_request`): the same prompt
template, sampling, grammar for `text.format` and tool calls as chat, under the same ticket and content filter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from azurine.api.context import Services, Target
from azurine.api.inference.protocol import ChatCompletionRequest
from azurine.api.inference.protocol_responses import ResponsesRequest
from azurine.api.inference.render import Collected, chained, collect, now
from azurine.api.inference.responses_input import Conversation, chat_request, continued
from azurine.api.inference.responses_render import (
    Outcome,
    call_item,
    message_item,
    new_call_item_id,
    new_message_id,
    new_response_id,
    response_error,
    response_object,
    response_usage,
    text_logprobs,
)
from azurine.api.inference.serving_chat import chat_prompt, chat_sampling
from azurine.api.inference.ticket import Ticket
from azurine.api.inference.vision_input import Images
from azurine.engines.base import ContextLengthExceeded, Event, ToolCall
from azurine.safety.streaming import AnswerCheck

DAY_SECONDS = 24 * 3600
LEASE_SECONDS = 30.0  # a background run renews its lease this far ahead…
RENEW_SECONDS = 10.0  # …this often, and learns of a cancel made on another replica when it does
INTERRUPTED = "The response was interrupted: the server running it stopped before it finished."


@dataclass(frozen=True)
class Turn:
    """One response to make: the request, what the response it continues read and said (`earlier`), the items it
    stores as its own input, what the model reads, as chat."""

    body: ResponsesRequest
    response_id: str
    created_at: int
    model: str
    earlier: list[dict[str, Any]]
    items: list[dict[str, Any]]
    conversation: Conversation
    chat: ChatCompletionRequest
    images: Images | None = None  # what the vision stage read and downloaded, for a shorter turn's chat too

    def shorter(self) -> Turn | None:
        """The same turn with the oldest turn of its conversation left out (truncation `auto`), if any is left."""
        if self.body.truncation != "auto":
            return None
        conversation = self.conversation.shortened()
        if conversation is None:
            return None
        chat = chat_request(self.body, conversation)
        if self.images is not None:
            self.images.apply(chat)
        return replace(self, conversation=conversation, chat=chat)

    def response(self, outcome: Outcome) -> dict[str, Any]:
        return response_object(self.body, self.response_id, self.created_at, self.model, outcome)


def new_turn(body: ResponsesRequest, model: str, earlier: list[dict[str, Any]]) -> Turn:
    items = continued(earlier, body)
    conversation = Conversation(body.instructions, [*earlier, *items])
    return Turn(body, new_response_id(), now(), model, earlier, items, conversation,
                chat_request(body, conversation))


def fitted(turn: Turn, context_length: int) -> Turn:
    """Under truncation `auto`, the turn less as many old turns as its words say cannot fit, before the prompt is
    screened (which refuses a prompt of more words than the model has tokens); the engine's count decides the
    rest."""
    while turn.conversation.words() >= context_length:
        shorter = turn.shorter()
        if shorter is None:
            return turn
        turn = shorter
    return turn


def expiry(svc: Services, created_at: int) -> int:
    return created_at + svc.settings.response_retention_days * DAY_SECONDS


def store_turn(svc: Services, account_id: str, turn: Turn, response: dict[str, Any], *, background: bool = False,
               lease_until: float | None = None) -> None:
    """Store the response with its own input items, linked to the response it continues."""
    svc.responses.create(account_id, response, turn.items, expires_at=expiry(svc, turn.created_at),
                         previous_id=turn.body.previous_response_id, earlier=turn.earlier, background=background,
                         lease_until=lease_until)


# the engine call -----------------------------------------------------------------------------------------------

async def open_answer(target: Target, turn: Turn, ticket: Ticket,
                      stream: bool = True) -> tuple[Turn, AsyncIterator[Event], Event]:
    """The engine's answer, its first event taken so that a refusal (too long, a bad schema) is raised here; under
    truncation `auto` a conversation too long for the model loses its oldest turns until it fits."""
    while True:
        events = target.engine.chat(chat_prompt(turn.chat), chat_sampling(turn.chat), ticket.order(), stream=stream)
        try:
            return turn, events, await events.__anext__()
        except ContextLengthExceeded:
            shorter = turn.shorter()
            if shorter is None:
                raise
            turn = shorter


async def answer(target: Target, turn: Turn, ticket: Ticket) -> Collected:
    turn, events, first = await open_answer(target, turn, ticket, stream=False)
    return await collect(chained([first], events))


def answer_calls(body: ResponsesRequest, calls: list[ToolCall]) -> list[ToolCall]:
    return calls[:1] if body.parallel_tool_calls is False else calls


def finished(turn: Turn, collected: Collected, check: AnswerCheck) -> Outcome:
    """How a whole answer ends the response: completed; incomplete when cut at `max_output_tokens` or withheld by
    the content filter."""
    body, end = turn.body, collected.finished
    assert end is not None
    usage = response_usage(end.prompt_tokens, end.completion_tokens, end.cached_tokens)
    if check.filtered:  # withheld: the output is empty, `incomplete_details` says why
        return Outcome("incomplete", [], usage, incomplete_reason="content_filter")
    cut = end.reason == "length"
    calls = answer_calls(body, collected.tool_calls)
    output = []
    text = check.shown(collected.text)
    if text or not calls:
        logprobs = text_logprobs(collected.logprobs) if body.wants_logprobs and check.redacted is None else []
        output.append(message_item(new_message_id(), text, "incomplete" if cut else "completed", logprobs))
    output += [call_item(call, new_call_item_id(), "completed") for call in calls]
    if cut:
        return Outcome("incomplete", output, usage, incomplete_reason="max_output_tokens")
    return Outcome("completed", output, usage, completed_at=now())


def failure(error: Exception) -> dict[str, Any]:
    """A run that failed, as its response's `error`: a prompt the model refused, or the server's own trouble."""
    status = getattr(error, "status", 500)
    message = getattr(error, "message", None) or "The server had an error while processing the response."
    return response_error("invalid_prompt" if status < 500 else "server_error", message)
