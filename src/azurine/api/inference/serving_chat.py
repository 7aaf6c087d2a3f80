"""Chat completions: a validated request and a deployment's engine in, Azure's answer out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from azurine.api.context import Target
from azurine.api.errors import AzureError, bad_request
from azurine.api.inference.content_filter import Annotated, AnswerCheck, Checked, ContentGuard, Filtered
from azurine.api.inference.protocol import AssistantMessage, ChatCompletionRequest, FunctionMessage, Message
from azurine.api.inference.render import (
    chained,
    chat_logprobs,
    collect,
    fingerprint,
    new_id,
    now,
    together,
    tool_calls_json,
    unless_disconnected,
    usage,
)
from azurine.api.inference.ticket import Ticket
from azurine.api.sse import DONE, AzureJSONResponse, event, event_stream
from azurine.engines.base import ChatPrompt, Delta, EngineError, Event, Finished, Sampling, ToolCall


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


def calls_json(body: ChatCompletionRequest, calls: list[ToolCall], with_index: bool = False) -> dict[str, Any]:
    """The calls of an answer as its message or delta carries them: `function_call` in the deprecated form."""
    calls = answer_calls(body, calls)
    if body.legacy_functions:
        return {"function_call": {"arguments": calls[0].arguments, "name": calls[0].name}}
    return {"tool_calls": tool_calls_json(calls, with_index=with_index)}


def finish_reason(body: ChatCompletionRequest, reason: str) -> str:
    return "function_call" if reason == "tool_calls" and body.legacy_functions else reason


def check_content_types(body: ChatCompletionRequest, target: Target) -> None:
    """Images go only to models that can see; the catalog's models read text."""
    if target.model.can("vision"):  # type: ignore[arg-type]
        return
    for i, message in enumerate(body.messages):
        for j, part in enumerate(message.content if isinstance(message.content, list) else []):
            if part.type == "image_url":
                raise bad_request("Invalid content type. image_url is only supported by certain models.",
                                  f"messages[{i}].content[{j}].type", "invalid_value")


async def serve_chat(request: Request, target: Target, body: ChatCompletionRequest, ticket: Ticket,
                     guard: ContentGuard) -> Response:
    check_content_types(body, target)
    sampling, prompt, n = chat_sampling(body), chat_prompt(body), body.n or 1
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        first = target.engine.chat(prompt, sampling, ticket.order())
        opening = await _first_event(first)  # refusals (context length, bad schema) answer as errors
        return event_stream(_stream(body, target, ticket, guard, prompt, sampling, include_usage, first, opening))
    answers = await unless_disconnected(
        request, _answers(target, ticket, prompt, sampling, n))
    checks = [await guard.check_answer(a.text) for a in answers]
    return AzureJSONResponse(_body(body, target, guard, answers, checks))


async def _first_event(events: AsyncIterator[Event]) -> Event:
    return await events.__anext__()


async def _answers(target: Target, ticket: Ticket, prompt: ChatPrompt, sampling: Sampling, n: int) -> list[Any]:
    return await together([collect(target.engine.chat(prompt, sampling.for_choice(i), ticket.order(), stream=False))
                           for i in range(n)])


def _body(body: ChatCompletionRequest, target: Target, guard: ContentGuard, answers: list[Any],
          checks: list[AnswerCheck]) -> dict[str, Any]:
    choices = []
    for index, (answer, check) in enumerate(zip(answers, checks, strict=True)):
        results, filtered = check.annotations, check.filtered
        message: dict[str, Any] = {"role": "assistant", "content": check.shown(answer.text), "refusal": None}
        if answer.tool_calls:  # text the model wrote around its calls is their message's content, as streamed
            message["content"] = message["content"] or None
            message.update(calls_json(body, answer.tool_calls))
        if filtered:  # the answer is withheld; its annotations say why
            message = {"role": "assistant", "content": None, "refusal": None}
        choices.append({
            "content_filter_results": results,
            "finish_reason": "content_filter" if filtered else finish_reason(body, answer.finished.reason),
            "index": index,
            "logprobs": chat_logprobs(answer.logprobs) if answer.logprobs and not filtered and check.redacted is None
            else None,
            "message": message,
        })
    prompt_tokens, cached_tokens = answers[0].finished.prompt_tokens, answers[0].finished.cached_tokens
    completion_tokens = sum(a.finished.completion_tokens for a in answers)
    return {
        "choices": choices, "created": now(), "id": new_id("chatcmpl-"), "model": target.model.response_model,
        "object": "chat.completion", "prompt_filter_results": guard.prompt_filter_results(),
        "system_fingerprint": fingerprint(target.model),
        "usage": usage(prompt_tokens, completion_tokens, cached_tokens),
    }


async def _stream(body: ChatCompletionRequest, target: Target, ticket: Ticket, guard: ContentGuard,
                  prompt: ChatPrompt, sampling: Sampling, include_usage: bool, first: AsyncIterator[Event],
                  opening: Event) -> AsyncIterator[bytes]:
    n = body.n or 1
    completion_id, created, model = new_id("chatcmpl-"), now(), target.model.response_model
    base = {"created": created, "id": completion_id, "model": model, "object": "chat.completion.chunk",
            "system_fingerprint": fingerprint(target.model)}
    if include_usage:
        base["usage"] = None

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None,
              annotations: dict[str, Any] | None = None) -> bytes:
        choice = {"content_filter_results": annotations if annotations is not None else {}, "delta": delta,
                  "finish_reason": finish, "index": index, "logprobs": logprobs}
        return event({**base, "choices": [choice]})

    def annotation(index: int, item: Annotated) -> bytes:
        # Asynchronous_filter: annotations for text already sent, in a chunk of their own
        choice = {"content_filter_offsets": {"check_offset": item.check_offset, "end_offset": item.end_offset,
                                             "start_offset": item.start_offset},
                  "content_filter_results": item.annotations,
                  "finish_reason": "content_filter" if item.filtered else None, "index": index}
        return event({"choices": [choice], "created": 0, "id": "", "model": "", "object": ""})

    # Azure's opening chunk carries the prompt's filter results and nothing else
    yield event({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                 "prompt_filter_results": guard.prompt_filter_results()})
    prompt_tokens = completion_tokens = cached_tokens = 0
    try:
        for index in range(n):
            events = first if index == 0 else target.engine.chat(prompt, sampling.for_choice(index), ticket.order())
            pending: list[Event] = [opening] if index == 0 else []
            yield chunk(index, {"content": "", "refusal": None, "role": "assistant"})
            finished: Finished | None = None
            async for item in guard.stream(chained(pending, events)):
                if isinstance(item, Finished):
                    finished = item
                    continue
                if isinstance(item, Filtered):
                    yield chunk(index, {}, finish="content_filter", annotations=item.annotations)
                    break
                if isinstance(item, Annotated):
                    yield annotation(index, item)
                    if item.filtered:
                        break
                    continue
                results = None
                if isinstance(item, Checked):
                    item, results = item.delta, item.annotations
                assert isinstance(item, Delta)
                if item.text or item.logprobs:
                    yield chunk(index, {"content": item.text},
                                logprobs=chat_logprobs(item.logprobs) if sampling.logprobs else None,
                                annotations=results)
                if item.tool_calls:
                    yield chunk(index, calls_json(body, item.tool_calls, with_index=True))
            if finished is None:  # cut short by the filter: the engine stops once nobody reads it
                continue
            yield chunk(index, {}, finish=finish_reason(body, finished.reason))
            if not prompt_tokens:  # the prompt counts once, as the first answer read it
                cached_tokens = finished.cached_tokens
            prompt_tokens = finished.prompt_tokens
            completion_tokens += finished.completion_tokens
    except (EngineError, AzureError) as error:
        message = error.message if hasattr(error, "message") else str(error)
        yield event({"error": {"code": getattr(error, "code", "InternalServerError"), "message": message}})
        return
    if include_usage:
        yield event({**base, "choices": [], "usage": usage(prompt_tokens, completion_tokens, cached_tokens)})
    yield DONE
