"""Pieces shared by the chat and completions answers: ids, usage, logprobs, filter annotations."""

from __future__ import annotations

import asyncio
import secrets
import string
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import Request

from azurine.api.inference.protocol_answers import (
    ChatLogprobs,
    CompletionLogprobs,
    FunctionCallOut,
    PromptFilterResult,
    PromptTokensDetails,
    TokenLogprobOut,
    ToolCallOut,
    TopLogprobOut,
    Usage,
)
from azurine.catalog import ModelSpec
from azurine.engines.base import Delta, Event, Finished, TokenLogprob, ToolCall

_ALPHABET = string.ascii_letters + string.digits
T = TypeVar("T")
DISCONNECT_POLL_SECONDS = 0.25


def new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(29))


def now() -> int:
    return int(time.time())


def fingerprint(model: ModelSpec) -> str:
    return "fp_" + model.sha256[:10]


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> Usage:
    return Usage(completion_tokens=completion_tokens, prompt_tokens=prompt_tokens,
                 prompt_tokens_details=PromptTokensDetails(cached_tokens=cached_tokens),
                 total_tokens=prompt_tokens + completion_tokens)


def prompt_filters(results: list[dict[str, Any]]) -> list[PromptFilterResult]:
    return [PromptFilterResult.model_validate(result) for result in results]


def chat_logprobs(items: list[TokenLogprob]) -> ChatLogprobs:
    return ChatLogprobs(content=[
        TokenLogprobOut(token=i.token, logprob=i.logprob, bytes=i.bytes,
                        top_logprobs=[TopLogprobOut(token=t.token, logprob=t.logprob, bytes=t.bytes)
                                      for t in i.top_logprobs])
        for i in items
    ])


def completion_logprobs(items: list[TokenLogprob], start_offset: int) -> CompletionLogprobs:
    offsets, position = [], start_offset
    for item in items:
        offsets.append(position)
        position += len(item.token)
    return CompletionLogprobs(tokens=[i.token for i in items], token_logprobs=[i.logprob for i in items],
                              top_logprobs=[{t.token: t.logprob for t in i.top_logprobs} for i in items],
                              text_offset=offsets)


def tool_calls_out(calls: list[ToolCall], with_index: bool = False) -> list[ToolCallOut]:
    return [ToolCallOut(id=call.id, function=FunctionCallOut(name=call.name, arguments=call.arguments),
                        **({"index": index} if with_index else {}))
            for index, call in enumerate(calls)]


async def chained(first: list[Event], rest: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """Events already taken from a stream, then the rest of it."""
    for item in first:
        yield item
    async for item in rest:
        yield item


@dataclass
class Collected:
    """A whole answer gathered from an engine's events."""

    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    finished: Finished | None = None


async def collect(events: AsyncIterator[Event]) -> Collected:
    result = Collected()
    async for item in events:
        if isinstance(item, Delta):
            result.text += item.text
            result.logprobs.extend(item.logprobs)
            result.tool_calls.extend(item.tool_calls)
        else:
            result.finished = item
    return result


class ClientDisconnected(Exception):
    pass


async def unless_disconnected(request: Request, work: Any) -> Any:
    """Await `work`, cancelling it (and so the generation) if the client goes away first."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_SECONDS)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                raise ClientDisconnected()
    finally:
        if not task.done():
            task.cancel()


async def together(answers: list[Awaitable[T]]) -> list[T]:
    """A request's answers (`n`, `best_of`, several prompts) at once, so the engine decodes them side by side; the
    first to fail stops the others and is raised as itself."""
    tasks = [asyncio.ensure_future(answer) for answer in answers]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
