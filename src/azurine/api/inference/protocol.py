"""Request bodies of the inference routes, with the types and limits of Azure's 2024-10-21 spec.

JSON types are strict, as in the spec: `true` is not an integer, `"1"` is not a number, and a field that the spec
does not mark nullable refuses `null`. A field the spec defines that Azurine does not act on is refused by name
(`unsupported_parameter`), never ignored: a caller must not believe it had an effect. Unknown fields are accepted and
ignored, as Azure does for fields an api-version does not know.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    StrictBool,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from azurine.engines.base import Sampling, TextPrompt
from azurine.vision.tokens import image_tokens, unmeasured_tokens

T = TypeVar("T")

UNSUPPORTED = "unsupported_parameter"
DEFAULT_MAX_TOKENS = 16  # of a completion, in the spec
# a token id as logit_bias keys write it: ASCII digits only (str.isdigit also takes "²", which int refuses, and `$`
# matches before a final newline), and few enough of them for int() and any vocabulary
TOKEN_ID = re.compile(r"[0-9]{1,10}")


def _present(value: Any) -> Any:
    if value is None:
        raise PydanticCustomError("null_forbidden", "null is not allowed for this parameter")
    return value


def unsupported(message: str) -> PydanticCustomError:
    """The error for a spec'd field Azurine does not implement; the field's name becomes the error's `param`."""
    return PydanticCustomError(UNSUPPORTED, message)


# optional, but when given not null: the spec's optional fields without `nullable: true`
Absent = Annotated[T | None, BeforeValidator(_present)]

Int = Annotated[int, Strict()]
Number = Annotated[float, Strict()]  # a JSON integer or fraction, never a boolean or a string
Int64 = Annotated[int, Strict(), Field(ge=-(2**63), le=2**63 - 1)]
TokenId = Annotated[int, Strict(), Field(ge=0)]
TokenArray = Annotated[list[TokenId], Field(min_length=1)]
Stop = StrictStr | Annotated[list[StrictStr], Field(min_length=1, max_length=4)] | None
Name = Annotated[StrictStr, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class TextPart(_Body):
    type: Literal["text"]
    text: StrictStr


class ImageUrl(_Body):
    url: StrictStr
    detail: Absent[Literal["auto", "low", "high"]] = None
    # its width and height in pixels, once the vision stage has read the image (`vision_input`)
    _size: tuple[int, int] | None = PrivateAttr(default=None)

    @field_validator("url")
    @classmethod
    def _is_uri(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", value):
            raise ValueError("image_url.url must be a URL or a data URI")
        return value

    def tokens(self) -> int:
        """What the image counts for, as Azure counts it; the most it can count until it has been measured."""
        return image_tokens(*self._size, self.detail) if self._size else unmeasured_tokens(self.detail)


class ImagePart(_Body):
    type: Literal["image_url"]
    image_url: ImageUrl


class RefusalPart(_Body):
    type: Literal["refusal"]
    refusal: StrictStr


UserPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]
AssistantPart = Annotated[TextPart | RefusalPart, Field(discriminator="type")]
TextContent = StrictStr | Annotated[list[TextPart], Field(min_length=1)]
UserContent = StrictStr | Annotated[list[UserPart], Field(min_length=1)]
AssistantContent = StrictStr | Annotated[list[AssistantPart], Field(min_length=1)]


class FunctionCall(_Body):
    name: StrictStr
    arguments: StrictStr


class ToolCallIn(_Body):
    id: StrictStr
    type: Literal["function"]
    function: FunctionCall


class SystemMessage(_Body):
    role: Literal["system"]
    content: TextContent
    name: Absent[StrictStr] = None


class DeveloperMessage(_Body):
    role: Literal["developer"]
    content: TextContent
    name: Absent[StrictStr] = None


class UserMessage(_Body):
    role: Literal["user"]
    content: UserContent
    name: Absent[StrictStr] = None


class AssistantMessage(_Body):
    role: Literal["assistant"]
    content: AssistantContent | None = None
    refusal: StrictStr | None = None
    name: Absent[StrictStr] = None
    tool_calls: Absent[list[ToolCallIn]] = None
    function_call: FunctionCall | None = None

    @model_validator(mode="after")
    def _says_something(self) -> AssistantMessage:
        if self.content is None and not self.tool_calls and self.function_call is None and self.refusal is None:
            raise ValueError("an assistant message needs content, tool_calls or function_call")
        return self


class ToolMessage(_Body):
    role: Literal["tool"]
    content: TextContent
    tool_call_id: StrictStr


class FunctionMessage(_Body):
    role: Literal["function"]
    content: StrictStr | None
    name: StrictStr


Message = Annotated[
    SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage,
    Field(discriminator="role"),
]


class FunctionDefinition(_Body):
    name: Name
    description: Absent[StrictStr] = None
    parameters: Absent[dict[str, Any]] = None
    strict: StrictBool | None = None


class Tool(_Body):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Body):
    name: StrictStr


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(_Body):
    name: Name
    description: Absent[StrictStr] = None
    schema_: Absent[dict[str, Any]] = Field(default=None, alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: Absent[JsonSchemaFormat] = None

    @model_validator(mode="after")
    def _schema_present(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("json_schema is required when type is json_schema")
        return self


class StreamOptions(_Body):
    include_usage: Absent[StrictBool] = None


class _Sampling(_Body):
    model: StrictStr | None = None  # not in the spec: the SDK sends it, and /openai/v1 reads the deployment from it
    temperature: Annotated[Number, Field(ge=0, le=2)] | None = None
    top_p: Annotated[Number, Field(ge=0, le=1)] | None = None
    n: Annotated[Int, Field(ge=1, le=128)] | None = None
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    stop: Stop = None
    presence_penalty: Annotated[Number, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[Number, Field(ge=-2, le=2)] | None = None
    logit_bias: dict[str, Annotated[Int, Field(ge=-100, le=100)]] | None = None
    seed: Int64 | None = None
    # accepted without effect, as on Azure: it only feeds Azure's abuse monitoring and never changes an answer
    user: Absent[StrictStr] = None

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        for key in value or {}:
            if not TOKEN_ID.fullmatch(key):
                raise ValueError(f"logit_bias keys must be token ids, got {key!r}")
        return value


class ChatCompletionRequest(_Sampling):
    """Fields are in dependency order: a field's validator sees the fields above it (`info.data`)."""

    messages: Annotated[list[Message], Field(min_length=1)]
    data_sources: Absent[list[dict[str, Any]]] = None
    max_tokens: Annotated[Int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[Int, Field(ge=1)] | None = None
    logprobs: StrictBool | None = None
    top_logprobs: Annotated[Int, Field(ge=0, le=20)] | None = None
    response_format: Absent[ResponseFormat] = None
    tools: Absent[Annotated[list[Tool], Field(max_length=128)]] = None
    tool_choice: Absent[Literal["none", "auto", "required"] | NamedToolChoice] = None
    # the spec puts `nullable` beside a `$ref`, where OpenAPI 3.0 ignores it; null is what it means
    parallel_tool_calls: StrictBool | None = None
    functions: Absent[Annotated[list[FunctionDefinition], Field(min_length=1, max_length=128)]] = None
    function_call: Absent[Literal["none", "auto"] | NamedFunction] = None

    @field_validator("data_sources")
    @classmethod
    def _no_data_sources(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value:  # an empty list asks for nothing, so nothing is ignored
            raise unsupported("Unsupported parameter: 'data_sources' is not supported by Azurine: Azure OpenAI On "
                              "Your Data (azure_search, azure_cosmos_db) is not available on this server.")
        return value

    @field_validator("top_logprobs")
    @classmethod
    def _with_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value and not info.data.get("logprobs"):
            raise ValueError("logprobs must be set to true when top_logprobs is used")
        return value

    @field_validator("tool_choice")
    @classmethod
    def _tool_offered(cls, value: str | NamedToolChoice | None, info: ValidationInfo) -> str | NamedToolChoice | None:
        tools: list[Tool] = info.data.get("tools") or []
        if value not in (None, "none", "auto") and not tools:
            raise ValueError("tool_choice is only allowed when tools are specified")
        if isinstance(value, NamedToolChoice) and value.function.name not in {t.function.name for t in tools}:
            raise ValueError(f"tool_choice names {value.function.name!r}, which is not in tools")
        return value

    @field_validator("functions")
    @classmethod
    def _not_with_tools(cls, value: list[FunctionDefinition] | None,
                        info: ValidationInfo) -> list[FunctionDefinition] | None:
        if value is not None and (info.data.get("tools") is not None or info.data.get("tool_choice") is not None):
            raise ValueError("functions is deprecated in favour of tools; a request may use one form, not both")
        return value

    @field_validator("function_call")
    @classmethod
    def _function_offered(cls, value: str | NamedFunction | None, info: ValidationInfo) -> str | NamedFunction | None:
        functions: list[FunctionDefinition] | None = info.data.get("functions")
        if value is not None and functions is None:  # beside tools it would go unheeded
            raise ValueError("function_call is only allowed when functions are specified")
        if isinstance(value, NamedFunction) and value.name not in {f.name for f in functions or []}:
            raise ValueError(f"function_call names {value.name!r}, which is not in functions")
        return value

    @model_validator(mode="after")
    def _functions_as_tools(self) -> ChatCompletionRequest:
        # the deprecated form is the tools form with one call per answer: serve it as tools, answer in its shape
        if self.functions is not None:
            self.tools = [Tool(type="function", function=f) for f in self.functions]
            self.tool_choice = _as_tool_choice(self.function_call)
        return self

    def image_parts(self) -> list[tuple[str, ImageUrl]]:
        """Each image of the conversation, with the `param` that names its URL."""
        return [(f"messages[{i}].content[{j}].image_url.url", part.image_url)
                for i, message in enumerate(self.messages) if isinstance(message.content, list)
                for j, part in enumerate(message.content) if isinstance(part, ImagePart)]

    def image_tokens(self) -> int:
        return sum(url.tokens() for _, url in self.image_parts())

    @property
    def legacy_functions(self) -> bool:
        """Whether the request used `functions`, so the answer carries `function_call` instead of `tool_calls`."""
        return self.functions is not None


def _as_tool_choice(function_call: str | NamedFunction | None) -> str | NamedToolChoice:
    if isinstance(function_call, NamedFunction):
        return NamedToolChoice(type="function", function=function_call)
    return function_call or "auto"


class CompletionRequest(_Sampling):
    # required, and nullable: null is the spec's default, the start of a new document
    prompt: StrictStr | Annotated[list[StrictStr], Field(min_length=1)] | TokenArray | Annotated[
        list[TokenArray], Field(min_length=1)] | None
    max_tokens: Annotated[Int, Field(ge=0)] | None = DEFAULT_MAX_TOKENS
    suffix: StrictStr | None = None
    echo: StrictBool | None = None
    logprobs: Annotated[Int, Field(ge=0, le=5)] | None = None
    best_of: Annotated[Int, Field(ge=0, le=20)] | None = None

    @field_validator("max_tokens")
    @classmethod
    def _null_is_default(cls, value: int | None) -> int:
        # null stands for the spec's default, as it does for every other nullable field with one
        return DEFAULT_MAX_TOKENS if value is None else value

    def prompts(self) -> list[TextPrompt]:
        raw, echo = self.prompt, bool(self.echo)
        if raw is None:  # the model generates "as if from the beginning of a new document"
            return [TextPrompt(text="", suffix=self.suffix, echo=echo)]
        if isinstance(raw, str):
            return [TextPrompt(text=raw, suffix=self.suffix, echo=echo)]
        if raw and isinstance(raw[0], int):
            return [TextPrompt(text="", tokens=tuple(raw), echo=echo)]  # type: ignore[arg-type]
        if raw and isinstance(raw[0], list):
            return [TextPrompt(text="", tokens=tuple(p), echo=echo) for p in raw]  # type: ignore[union-attr]
        return [TextPrompt(text=p, suffix=self.suffix, echo=echo) for p in raw]  # type: ignore[misc]

    def to_sampling(self) -> Sampling:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return Sampling(
            max_tokens=self.max_tokens, temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p, stop=stop, seed=self.seed,
            presence_penalty=self.presence_penalty or 0.0, frequency_penalty=self.frequency_penalty or 0.0,
            logit_bias={int(k): v for k, v in self.logit_bias.items()} if self.logit_bias else None,
            logprobs=self.logprobs is not None, top_logprobs=self.logprobs or 0,
        )


class EmbeddingsRequest(_Body):
    input: StrictStr | Annotated[list[StrictStr], Field(min_length=1, max_length=2048)] | TokenArray | Annotated[
        list[TokenArray], Field(min_length=1, max_length=2048)]
    model: StrictStr | None = None
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[Int, Field(ge=1)] | None = None
    user: Absent[StrictStr] = None
    input_type: Absent[StrictStr] = None

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        texts = [value] if isinstance(value, str) else value
        if any(isinstance(t, str) and t == "" for t in texts):
            raise ValueError("input cannot be an empty string")
        return value

    @field_validator("input_type")
    @classmethod
    def _no_input_type(cls, value: str | None) -> str | None:
        if value is not None:
            raise unsupported("Unsupported parameter: 'input_type' is not supported by Azurine: its embedding "
                              "models encode queries and documents alike.")
        return value

    def inputs(self) -> list[str] | list[list[int]]:
        raw = self.input
        if isinstance(raw, str):
            return [raw]
        if raw and isinstance(raw[0], int):
            return [list(raw)]  # type: ignore[arg-type]
        return list(raw)  # type: ignore[arg-type]
