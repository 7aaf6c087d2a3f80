"""Legacy completions: one or more prompts, `n` and `best_of` choices each, `echo`, `suffix`, `logprobs`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from azurine.api.context import Target
from azurine.api.errors import AzureError, bad_request
from azurine.api.inference.content_filter import Annotated, Checked, ContentGuard, Filtered
from azurine.api.inference.protocol import CompletionRequest
from azurine.api.inference.render import (
    Collected,
    chained,
    collect,
    completion_logprobs,
    fingerprint,
    new_id,
    now,
    together,
    unless_disconnected,
    usage,
)
from azurine.api.inference.ticket import Ticket
from azurine.api.sse import DONE, AzureJSONResponse, event, event_stream
from azurine.engines.base import Delta, EngineError, Event, Finished, Sampling, TextPrompt
from azurine.scheduler.work import WorkOrder


def completion_prompts(body: CompletionRequest) -> list[TextPrompt]:
    raw = body.prompt
    echo = bool(body.echo)
    if raw is None:  # the model generates "as if from the beginning of a new document"
        return [TextPrompt(text="", suffix=body.suffix, echo=echo)]
    if isinstance(raw, str):
        return [TextPrompt(text=raw, suffix=body.suffix, echo=echo)]
    if raw and isinstance(raw[0], int):
        return [TextPrompt(text="", tokens=tuple(raw), echo=echo)]  # type: ignore[arg-type]
    if raw and isinstance(raw[0], list):
        return [TextPrompt(text="", tokens=tuple(p), echo=echo) for p in raw]  # type: ignore[union-attr]
    return [TextPrompt(text=p, suffix=body.suffix, echo=echo) for p in raw]  # type: ignore[misc]


def completion_sampling(body: CompletionRequest) -> Sampling:
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    return Sampling(
        max_tokens=body.max_tokens, temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p, stop=stop, seed=body.seed,
        presence_penalty=body.presence_penalty or 0.0, frequency_penalty=body.frequency_penalty or 0.0,
        logit_bias={int(k): v for k, v in body.logit_bias.items()} if body.logit_bias else None,
        logprobs=body.logprobs is not None, top_logprobs=body.logprobs or 0,
    )


def check_combination(body: CompletionRequest) -> None:
    n = body.n or 1
    best_of = body.best_of or n
    if body.echo and body.logprobs is not None:
        raise bad_request("Setting 'echo' and 'logprobs' at the same time is not supported for this model.",
                          "echo", "invalid_value")
    if best_of < n:
        raise bad_request("best_of must be greater than or equal to n.", "best_of", "invalid_value")
    if body.stream and best_of > 1:
        raise bad_request("Cannot stream results with best_of > 1.", "best_of", "invalid_value")


async def _choices(target: Target, order: Callable[[], WorkOrder], prompt: TextPrompt, sampling: Sampling, n: int,
                   best_of: int) -> list[Collected]:
    # best_of: sample more, keep the n with the highest log probability per token
    scoring = sampling if best_of <= n else replace(sampling, logprobs=True)
    candidates = await together([collect(target.engine.complete(prompt, scoring.for_choice(i), order(), stream=False))
                                 for i in range(max(n, best_of))])
    if best_of <= n:
        return candidates
    ranked = sorted(candidates, key=lambda c: sum(lp.logprob for lp in c.logprobs), reverse=True)[:n]
    if not sampling.logprobs:
        for candidate in ranked:
            candidate.logprobs = []
    return ranked


async def serve_completions(request: Request, target: Target, body: CompletionRequest, ticket: Ticket,
                            guard: ContentGuard) -> Response:
    check_combination(body)
    prompts, sampling = completion_prompts(body), completion_sampling(body)
    n, best_of = body.n or 1, max(body.best_of or 1, body.n or 1)
    if body.stream:
        first = target.engine.complete(prompts[0], sampling, ticket.order(0))
        opening = await first.__anext__()
        return event_stream(_stream(target, ticket, guard, prompts, sampling, n, body, first, opening))

    async def run() -> list[list[Collected]]:
        return await together([_choices(target, partial(ticket.order, i), p, sampling, n, best_of)
                               for i, p in enumerate(prompts)])

    per_prompt = await unless_disconnected(request, run())
    choices, prompt_tokens, completion_tokens = [], 0, 0
    for p_index, answers in enumerate(per_prompt):
        prompt_tokens += answers[0].finished.prompt_tokens  # type: ignore[union-attr]
        for j, answer in enumerate(answers):
            completion_tokens += answer.finished.completion_tokens  # type: ignore[union-attr]
            echo_len = len(prompts[p_index].text) if body.echo else 0
            check = await guard.check_answer(answer.text)
            filtered = check.filtered
            choices.append({
                "content_filter_results": check.annotations,
                "finish_reason": "content_filter" if filtered else answer.finished.reason,  # type: ignore[union-attr]
                "index": p_index * n + j,
                "logprobs": completion_logprobs(answer.logprobs, echo_len)
                if body.logprobs is not None and not filtered and check.redacted is None else None,
                "text": "" if filtered else check.shown(answer.text),
            })
    return AzureJSONResponse({
        "choices": choices, "created": now(), "id": new_id("cmpl-"), "model": target.model.response_model,
        "object": "text_completion", "prompt_filter_results": guard.prompt_filter_results(),
        "system_fingerprint": fingerprint(target.model), "usage": usage(prompt_tokens, completion_tokens),
    })


async def _stream(target: Target, ticket: Ticket, guard: ContentGuard, prompts: list[TextPrompt], sampling: Sampling,
                  n: int, body: CompletionRequest, first: AsyncIterator[Event], opening: Event) -> AsyncIterator[bytes]:
    completion_id, created, model = new_id("cmpl-"), now(), target.model.response_model
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    base: dict[str, Any] = {"created": created, "id": completion_id, "model": model, "object": "text_completion",
                            "system_fingerprint": fingerprint(target.model)}
    if include_usage:
        base["usage"] = None
    yield event({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                 "prompt_filter_results": guard.prompt_filter_results()})
    prompt_tokens = completion_tokens = 0
    try:
        for p_index, prompt in enumerate(prompts):
            for j in range(n):
                index = p_index * n + j
                if index == 0:
                    events, pending = first, [opening]
                else:
                    events = target.engine.complete(prompt, sampling.for_choice(j), ticket.order(p_index))
                    pending = []
                offset = 0
                async for item in guard.stream(chained(pending, events)):
                    if isinstance(item, (Filtered, Annotated)):
                        filtered = isinstance(item, Filtered) or item.filtered
                        yield event(_filter_chunk(base, index, item, filtered))
                        if filtered:
                            break
                        continue
                    if isinstance(item, Finished):
                        yield event({**base, "choices": [{"content_filter_results": {}, "finish_reason": item.reason,
                                                          "index": index, "logprobs": None, "text": ""}]})
                        completion_tokens += item.completion_tokens
                        if j == 0:
                            prompt_tokens += item.prompt_tokens
                        continue
                    results: dict[str, Any] = {}
                    if isinstance(item, Checked):
                        item, results = item.delta, item.annotations
                    assert isinstance(item, Delta)
                    logprobs = completion_logprobs(item.logprobs, offset) if body.logprobs is not None else None
                    offset += len(item.text)
                    yield event({**base, "choices": [{"content_filter_results": results,
                                                      "finish_reason": None, "index": index,
                                                      "logprobs": logprobs, "text": item.text}]})
    except (EngineError, AzureError) as error:
        yield event({"error": {"code": error.code, "message": error.message}})
        return
    if include_usage:
        yield event({**base, "choices": [], "usage": usage(prompt_tokens, completion_tokens)})
    yield DONE


def _filter_chunk(base: dict[str, Any], index: int, item: Filtered | Annotated, filtered: bool) -> dict[str, Any]:
    choice: dict[str, Any] = {"content_filter_results": item.annotations,
                              "finish_reason": "content_filter" if filtered else None, "index": index}
    if isinstance(item, Annotated):  # Asynchronous_filter: annotations for text already sent
        choice["content_filter_offsets"] = {"check_offset": item.check_offset, "end_offset": item.end_offset,
                                            "start_offset": item.start_offset}
        return {"choices": [choice], "created": 0, "id": "", "model": "", "object": ""}
    return {**base, "choices": [{**choice, "logprobs": None, "text": ""}]}
