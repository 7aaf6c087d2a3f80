"""Chat completions: a validated request and a deployment's engine in, Azure's answer out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response

from azurine.api.context import Target
from azurine.api.errors import bad_request
from azurine.api.inference.answer_stream import Answers, Choice, stream_answers
from azurine.api.inference.protocol import AssistantMessage, ChatCompletionRequest, FunctionMessage, Message
from azurine.api.inference.protocol_answers import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    ChatMessageOut,
    FunctionCallOut,
)
from azurine.api.inference.render import (
    Collected,
    chat_logprobs,
    collect,
    fingerprint,
    new_id,
    now,
    prompt_filters,
    together,
    tool_calls_out,
    unless_disconnected,
    usage,
)
from azurine.api.inference.ticket import Ticket
from azurine.api.sse import AzureJSONResponse
from azurine.engines.base import ChatPrompt, Delta, Event, Sampling, ToolCall
from azurine.safety.guard import ContentGuard
from azurine.safety.streaming import AnswerCheck


def chat_sampling(body: ChatCompletionRequest) -> Sampling:
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    return Sampling(
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        stop=stop, seed=body.seed,
        presence_penalty=body.presence_penalty or 0.0, frequency_penalty=body.frequency_penalty or 0.0,
        logit_bias={int(k): v for k, v in body.logit_bias.items()} if body.logit_bias else None,
        logprobs=bool(body.logprobs), top_logprobs=body.top_logprobs or 0,
        response_format=body.response_format.model_dump(by_alias=True, exclude_none=True)
        if body.response_format and body.response_format.type != "text" else None,
    )


def chat_prompt(body: ChatCompletionRequest) -> ChatPrompt:
    tool_choice = body.tool_choice
    return ChatPrompt(
        messages=engine_messages(body.messages),
        tools=[t.model_dump(exclude_none=True) for t in body.tools] if body.tools else None,
        tool_choice=tool_choice.model_dump() if hasattr(tool_choice, "model_dump") else tool_choice,  # type: ignore[union-attr]
        parallel_tool_calls=not one_call_only(body),
        image_tokens=body.image_tokens(),
    )


def one_call_only(body: ChatCompletionRequest) -> bool:
    """An answer makes at most one call: `parallel_tool_calls: false`, and always in the deprecated functions form."""
    return body.parallel_tool_calls is False or body.legacy_functions


def engine_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """The conversation in the tools form engines read: the deprecated function call and function result become a
    tool call and its result, and a refusal the assistant gave is text it said."""
    calls: dict[str, str] = {}  # a function's name → the id given to its latest call
    out = []
    for index, message in enumerate(messages):
        item = message.model_dump(exclude_none=True)
        if isinstance(message, AssistantMessage):
            item = _assistant_item(item, index, calls)
        elif isinstance(message, FunctionMessage):
            item = {"role": "tool", "tool_call_id": calls.get(message.name, f"call_{message.name}"),
                    "name": message.name, "content": message.content or ""}
        out.append(item)
    return out


def _assistant_item(item: dict[str, Any], index: int, calls: dict[str, str]) -> dict[str, Any]:
    function_call = item.pop("function_call", None)
    if function_call is not None:
        call_id = f"call_{index}"
        calls[function_call["name"]] = call_id
        call = {"id": call_id, "type": "function", "function": function_call}
        item["tool_calls"] = [*item.get("tool_calls", []), call]
    refusal = item.pop("refusal", None)
    if isinstance(item.get("content"), list):
        item["content"] = [{"type": "text", "text": p["refusal"]} if p["type"] == "refusal" else p
                           for p in item["content"]]
    elif item.get("content") is None and refusal is not None:
        item["content"] = refusal
    return item


def answer_calls(body: ChatCompletionRequest, calls: list[ToolCall]) -> list[ToolCall]:
    return calls[:1] if one_call_only(body) else calls


def calls_fields(body: ChatCompletionRequest, calls: list[ToolCall], with_index: bool = False) -> dict[str, Any]:
    """The calls of an answer as its message or delta carries them: `function_call` in the deprecated form."""
    calls = answer_calls(body, calls)
    if body.legacy_functions:
        return {"function_call": FunctionCallOut(arguments=calls[0].arguments, name=calls[0].name)}
    return {"tool_calls": tool_calls_out(calls, with_index=with_index)}


def finish_reason(body: ChatCompletionRequest, reason: str) -> str:
    return "function_call" if reason == "tool_calls" and body.legacy_functions else reason


def check_content_types(body: ChatCompletionRequest, target: Target) -> None:
    """Images go only to models with the `vision` capability; the others refuse them in Azure's words."""
    if target.model.can("vision"):
        return
    for i, message in enumerate(body.messages):
        for j, part in enumerate(message.content if isinstance(message.content, list) else []):
            if part.type == "image_url":
                raise bad_request("Invalid content type. image_url is only supported by certain models.",
                                  f"messages[{i}].content[{j}].type", "invalid_value")


async def serve_chat(request: Request, target: Target, body: ChatCompletionRequest, ticket: Ticket,
                     guard: ContentGuard) -> Response:
    sampling, prompt, n = chat_sampling(body), chat_prompt(body), body.n or 1
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await stream_answers(_ChatAnswers(target, ticket, sampling, body, prompt), guard, include_usage)
    collected = await unless_disconnected(
        request, _answers(target, ticket, prompt, sampling, n))
    checks = [await guard.check_answer(a.text) for a in collected]
    return AzureJSONResponse(_body(body, target, guard, collected, checks).model_dump())


async def _answers(target: Target, ticket: Ticket, prompt: ChatPrompt, sampling: Sampling,
                   n: int) -> list[Collected]:
    return await together([collect(target.engine.chat(prompt, sampling.for_choice(i), ticket.order(), stream=False))
                           for i in range(n)])


def _message(body: ChatCompletionRequest, answer: Collected, check: AnswerCheck) -> ChatMessageOut:
    if check.filtered:  # the answer is withheld; its annotations say why
        return ChatMessageOut(content=None)
    if answer.tool_calls:  # text the model wrote around its calls is their message's content, as streamed
        return ChatMessageOut(content=check.shown(answer.text) or None, **calls_fields(body, answer.tool_calls))
    return ChatMessageOut(content=check.shown(answer.text))


def _body(body: ChatCompletionRequest, target: Target, guard: ContentGuard, answers: list[Collected],
          checks: list[AnswerCheck]) -> ChatCompletion:
    choices = []
    for index, (answer, check) in enumerate(zip(answers, checks, strict=True)):
        assert answer.finished is not None
        choices.append(ChatChoice(
            content_filter_results=check.annotations,
            finish_reason="content_filter" if check.filtered else finish_reason(body, answer.finished.reason),
            index=index,
            logprobs=chat_logprobs(answer.logprobs)
            if answer.logprobs and not check.filtered and check.redacted is None else None,
            message=_message(body, answer, check),
        ))
    first = answers[0].finished
    assert first is not None
    completion_tokens = sum(a.finished.completion_tokens for a in answers if a.finished is not None)
    return ChatCompletion(
        choices=choices, created=now(), id=new_id("chatcmpl-"), model=target.model.response_model,
        prompt_filter_results=prompt_filters(guard.prompt_filter_results()),
        system_fingerprint=fingerprint(target.model),
        usage=usage(first.prompt_tokens, completion_tokens, first.cached_tokens),
    )


@dataclass
class _ChatAnswers(Answers[ChatChunkChoice]):
    body: ChatCompletionRequest
    prompt: ChatPrompt
    id_prefix: ClassVar[str] = "chatcmpl-"
    object: ClassVar[str] = "chat.completion.chunk"
    chunk: ClassVar[type[ChatCompletionChunk]] = ChatCompletionChunk
    counts_cached: ClassVar[bool] = True

    def choices(self) -> Iterator[Choice]:
        return (Choice(index, 0, partial(self._start, index)) for index in range(self.body.n or 1))

    def _start(self, index: int) -> AsyncIterator[Event]:
        return self.target.engine.chat(self.prompt, self.sampling.for_choice(index), self.ticket.order())

    def opened(self, index: int) -> list[ChatChunkChoice]:
        return [ChatChunkChoice(content_filter_results={}, delta=ChatDelta(content="", refusal=None, role="assistant"),
                                index=index)]

    def released(self, index: int, delta: Delta, annotations: dict[str, Any], offset: int) -> list[ChatChunkChoice]:
        out = []
        if delta.text or delta.logprobs:
            out.append(ChatChunkChoice(content_filter_results=annotations, delta=ChatDelta(content=delta.text),
                                       index=index,
                                       logprobs=chat_logprobs(delta.logprobs) if self.sampling.logprobs else None))
        if delta.tool_calls:
            calls = ChatDelta(**calls_fields(self.body, delta.tool_calls, with_index=True))
            out.append(ChatChunkChoice(content_filter_results={}, delta=calls, index=index))
        return out

    def ended(self, index: int, reason: str, annotations: dict[str, Any]) -> ChatChunkChoice:
        return ChatChunkChoice(content_filter_results=annotations, delta=ChatDelta(),
                               finish_reason=finish_reason(self.body, reason), index=index)
