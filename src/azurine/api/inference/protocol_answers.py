"""Answers of the chat completions and completions routes, whole and streamed, as Azure's 2024-10-21 spec writes them.

Azure sends most keys even when they are null (`logprobs`, `refusal`, `finish_reason`), but leaves a few out unless
they say something: a `WhenGiven[...]` field goes on the wire only when it was given a value, null included (`usage`
is in every chunk, as null, only where the request asked for usage; `tool_calls` only on a message that calls tools).
Content-filter annotations are the safety package's, passed through as they are.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, SerializerFunctionWrapHandler, model_serializer

T = TypeVar("T")


class _OnlyWhenGiven:
    """Marks a field that is left off the wire unless it was given."""


WhenGiven = Annotated[T | None, _OnlyWhenGiven()]
Annotations = dict[str, Any]


class _Answer(BaseModel):
    _given_only: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._given_only = frozenset(name for name, info in cls.model_fields.items()
                                    if any(isinstance(m, _OnlyWhenGiven) for m in info.metadata))

    @model_serializer(mode="wrap")
    def _leave_out_unsaid(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for name in self._given_only - self.model_fields_set:
            data.pop(name, None)
        return data


# pieces of both kinds -----------------------------------------------------------------------------------------

class CompletionTokensDetails(_Answer):
    accepted_prediction_tokens: int = 0
    audio_tokens: int = 0
    reasoning_tokens: int = 0
    rejected_prediction_tokens: int = 0


class PromptTokensDetails(_Answer):
    audio_tokens: int = 0
    cached_tokens: int = 0


class Usage(_Answer):
    completion_tokens: int
    completion_tokens_details: CompletionTokensDetails = CompletionTokensDetails()
    prompt_tokens: int
    prompt_tokens_details: PromptTokensDetails
    total_tokens: int


class PromptFilterResult(_Answer):
    content_filter_results: Annotations
    prompt_index: int


class FilterOffsets(_Answer):
    check_offset: int
    end_offset: int
    start_offset: int


class AnnotationChoice(_Answer):
    content_filter_offsets: FilterOffsets
    content_filter_results: Annotations
    finish_reason: str | None
    index: int


class PromptFilterChunk(_Answer):
    """A stream's opening chunk: the prompt's filter results and nothing else, as Azure opens its streams."""

    choices: list[Any] = []
    created: int = 0
    id: str = ""
    model: str = ""
    object: str = ""
    prompt_filter_results: list[PromptFilterResult]


class AnnotationChunk(_Answer):
    """Asynchronous_filter: annotations for answer text already sent, in a chunk of their own."""

    choices: list[AnnotationChoice]
    created: int = 0
    id: str = ""
    model: str = ""
    object: str = ""


class ErrorDetail(_Answer):
    code: str
    message: str


class StreamError(_Answer):
    """A failure after the stream began: its status line has gone, so the error is an event."""

    error: ErrorDetail


# chat completions ---------------------------------------------------------------------------------------------

class TopLogprobOut(_Answer):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprobOut(TopLogprobOut):
    top_logprobs: list[TopLogprobOut]


class ChatLogprobs(_Answer):
    content: list[TokenLogprobOut]
    refusal: None = None


class FunctionCallOut(_Answer):
    arguments: str
    name: str


class ToolCallOut(_Answer):
    function: FunctionCallOut
    id: str
    index: WhenGiven[int] = None  # in a streamed delta, where calls arrive piece by piece
    type: Literal["function"] = "function"


class ChatMessageOut(_Answer):
    content: str | None
    function_call: WhenGiven[FunctionCallOut] = None
    refusal: None = None
    role: Literal["assistant"] = "assistant"
    tool_calls: WhenGiven[list[ToolCallOut]] = None


class ChatChoice(_Answer):
    content_filter_results: Annotations
    finish_reason: str
    index: int
    logprobs: ChatLogprobs | None
    message: ChatMessageOut


class ChatCompletion(_Answer):
    choices: list[ChatChoice]
    created: int
    id: str
    model: str
    object: Literal["chat.completion"] = "chat.completion"
    prompt_filter_results: list[PromptFilterResult]
    system_fingerprint: str
    usage: Usage


class ChatDelta(_Answer):
    content: WhenGiven[str] = None
    function_call: WhenGiven[FunctionCallOut] = None
    refusal: WhenGiven[str] = None
    role: WhenGiven[Literal["assistant"]] = None
    tool_calls: WhenGiven[list[ToolCallOut]] = None


class ChatChunkChoice(_Answer):
    content_filter_results: Annotations
    delta: ChatDelta
    finish_reason: str | None = None
    index: int
    logprobs: ChatLogprobs | None = None


# completions --------------------------------------------------------------------------------------------------

class CompletionLogprobs(_Answer):
    text_offset: list[int]
    token_logprobs: list[float]
    tokens: list[str]
    top_logprobs: list[dict[str, float]]


class CompletionChoice(_Answer):
    content_filter_results: Annotations
    finish_reason: str | None
    index: int
    logprobs: CompletionLogprobs | None
    text: str


class Completion(_Answer):
    choices: list[CompletionChoice]
    created: int
    id: str
    model: str
    object: Literal["text_completion"] = "text_completion"
    prompt_filter_results: list[PromptFilterResult]
    system_fingerprint: str
    usage: Usage


# a streamed chunk of either kind ------------------------------------------------------------------------------

ChoiceT = TypeVar("ChoiceT", ChatChunkChoice, CompletionChoice)


class StreamChunk(_Answer, Generic[ChoiceT]):
    choices: list[ChoiceT]
    created: int
    id: str
    model: str
    object: str
    system_fingerprint: str
    usage: WhenGiven[Usage] = None


ChatCompletionChunk = StreamChunk[ChatChunkChoice]
CompletionChunk = StreamChunk[CompletionChoice]
