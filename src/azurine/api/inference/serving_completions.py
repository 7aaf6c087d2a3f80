"""Legacy completions: one or more prompts, `n` and `best_of` choices each, `echo`, `suffix`, `logprobs`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response

from azurine.api.context import Target
from azurine.api.errors import bad_request
from azurine.api.inference.answer_stream import Answers, Choice, stream_answers
from azurine.api.inference.protocol import CompletionRequest
from azurine.api.inference.protocol_answers import Completion, CompletionChoice, CompletionChunk
from azurine.api.inference.render import (
    Collected,
    collect,
    completion_logprobs,
    fingerprint,
    new_id,
    now,
    prompt_filters,
    together,
    unless_disconnected,
    usage,
)
from azurine.api.inference.ticket import Ticket
from azurine.api.sse import AzureJSONResponse
from azurine.engines.base import Delta, Event, Sampling, TextPrompt
from azurine.safety.guard import ContentGuard
from azurine.scheduler.work import WorkOrder


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
    prompts, sampling = body.prompts(), body.to_sampling()
    n, best_of = body.n or 1, max(body.best_of or 1, body.n or 1)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await stream_answers(_CompletionAnswers(target, ticket, sampling, prompts, n), guard, include_usage)

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
            choices.append(CompletionChoice(
                content_filter_results=check.annotations,
                finish_reason="content_filter" if filtered else answer.finished.reason,  # type: ignore[union-attr]
                index=p_index * n + j,
                logprobs=completion_logprobs(answer.logprobs, echo_len)
                if body.logprobs is not None and not filtered and check.redacted is None else None,
                text="" if filtered else check.shown(answer.text),
            ))
    return AzureJSONResponse(Completion(
        choices=choices, created=now(), id=new_id("cmpl-"), model=target.model.response_model,
        prompt_filter_results=prompt_filters(guard.prompt_filter_results()),
        system_fingerprint=fingerprint(target.model),
        usage=usage(prompt_tokens, completion_tokens),
    ).model_dump())


@dataclass
class _CompletionAnswers(Answers[CompletionChoice]):
    """Choices stream prompt by prompt, `n` for each; a choice's index counts across prompts."""

    prompts: list[TextPrompt]
    n: int
    id_prefix: ClassVar[str] = "cmpl-"
    object: ClassVar[str] = "text_completion"
    chunk: ClassVar[type[CompletionChunk]] = CompletionChunk

    def choices(self) -> Iterator[Choice]:
        for p_index, prompt in enumerate(self.prompts):
            for j in range(self.n):
                yield Choice(p_index * self.n + j, p_index, partial(self._start, prompt, p_index, j))

    def _start(self, prompt: TextPrompt, p_index: int, j: int) -> AsyncIterator[Event]:
        return self.target.engine.complete(prompt, self.sampling.for_choice(j), self.ticket.order(p_index))

    def released(self, index: int, delta: Delta, annotations: dict[str, Any], offset: int) -> list[CompletionChoice]:
        logprobs = completion_logprobs(delta.logprobs, offset) if self.sampling.logprobs else None
        return [CompletionChoice(content_filter_results=annotations, finish_reason=None, index=index,
                                 logprobs=logprobs, text=delta.text)]

    def ended(self, index: int, reason: str, annotations: dict[str, Any]) -> CompletionChoice:
        return CompletionChoice(content_filter_results=annotations, finish_reason=reason, index=index, logprobs=None,
                                text="")
