"""The engine interface and the small values that cross it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from azurine.catalog import ModelSpec
from azurine.vision.tokens import without_images

FinishReason = Literal["stop", "length", "tool_calls"]


class EngineError(Exception):
    """A request the engine refused; `code`, `param` and `status` shape the Azure error."""

    def __init__(self, message: str, *, code: str = "invalid_request_error", param: str | None = None,
                 status: int = 400, error_type: str | None = "invalid_request_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.status = status
        self.error_type = error_type
        self.headers: dict[str, str] = {}


class ContextLengthExceeded(EngineError):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message, code="context_length_exceeded", param=param)


class EngineUnavailable(EngineError):
    """The engine cannot serve now (model files missing, upstream down): a server-side problem."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="ServiceUnavailable", status=503, error_type=None)


@dataclass(frozen=True)
class Sampling:
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    # the OpenAI `response_format`: {"type": "json_object"} or {"type": "json_schema", ...}
    response_format: dict[str, Any] | None = None

    def for_choice(self, index: int) -> Sampling:
        """Choices after the first get their own seed, so `n` answers differ yet stay reproducible."""
        if index == 0 or self.seed is None:
            return self
        return replace(self, seed=self.seed + index)


@dataclass(frozen=True)
class ChatPrompt:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    image_tokens: int = 0  # what the messages' images count for, as Azure counts them (`vision.tokens`)

    def estimated_tokens(self) -> int:
        """The prompt's size where no tokenizer counted it: about four characters a token, and its images."""
        text = [{**m, "content": without_images(m["content"])} if isinstance(m.get("content"), list) else m
                for m in self.messages]
        return max(1, len(json.dumps(text)) // 4) + self.image_tokens


@dataclass(frozen=True)
class TextPrompt:
    text: str
    suffix: str | None = None
    echo: bool = False
    tokens: tuple[int, ...] | None = None  # a prompt given as token ids instead of text

    def estimated_tokens(self) -> int:
        """The prompt's size where no tokenizer counted it: about four characters a token."""
        return len(self.tokens) if self.tokens else max(1, len(self.text) // 4)


@dataclass(frozen=True)
class TopLogprob:
    token: str
    logprob: float
    bytes: list[int]


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprob]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass
class Delta:
    """Text (and its tokens' logprobs) produced since the last delta."""

    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass(frozen=True)
class Finished:
    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    # leading prompt tokens whose cells were evaluated before and taken as they were: the prompt cache's hits
    cached_tokens: int = 0


@dataclass(frozen=True)
class HandedOver:
    """The answer goes on in another engine call (its slot ran out of room), which will end it and say what it used:
    this call reports nothing itself."""

    state: Any


Event = Delta | Finished | HandedOver


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int


class Order(Protocol):
    """What an engine reads of the work order it runs under (the scheduler's `WorkOrder`)."""

    @property
    def priority(self) -> int:
        """The request's class: 0 provisioned, 1 standard, 2 batch; lower goes first."""
        ...

    @property
    def cancelled(self) -> bool:
        """Whether the answer is still wanted; checked between tokens."""
        ...


class Engine(Protocol):
    spec: ModelSpec

    def chat(self, prompt: ChatPrompt, sampling: Sampling, order: Order,
             stream: bool = True) -> AsyncIterator[Event]:
        """A chat answer as deltas, then exactly one `Finished`, whose counts are what the call used; `stream=False`
        says nobody reads it early."""
        ...

    def complete(self, prompt: TextPrompt, sampling: Sampling, order: Order,
                 stream: bool = True) -> AsyncIterator[Event]:
        """A text completion as deltas, then exactly one `Finished`."""
        ...

    async def embed(self, inputs: list[str] | list[list[int]], order: Order | None = None) -> Embeddings: ...

    async def close(self) -> None: ...


class BlockingEmbedder(Protocol):
    """An embedding model that computes on the calling thread: the scheduler runs `embed_blocking` in its turn on a
    compute thread of its own, and serves the `Engine` interface around it."""

    spec: ModelSpec

    def embed_blocking(self, inputs: list[str] | list[list[int]]) -> Embeddings: ...
