"""Request bodies of the Responses API (`/openai/v1/responses`, `/openai/responses`), with the types and limits of
Azure's v1 spec (`AzureCreateResponse`) and the openai SDK's `ResponseCreateParams`.

As in `protocol`, JSON types are strict, spec'd fields that Azurine does not act on are refused by name
(`unsupported_parameter`), and fields no spec names are accepted and ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    StrictBool,
    StrictStr,
    Tag,
    ValidationInfo,
    field_validator,
)

from azurine.api.inference.protocol import Int, Name, Number, _Body, unsupported

MAX_INPUT_ITEMS = 10_000
MAX_ID_CHARS = 64
MAX_CALL_ID_CHARS = 256
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512

Status = Literal["in_progress", "completed", "incomplete"]
ItemId = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_CHARS)]
CallId = Annotated[StrictStr, Field(min_length=1, max_length=MAX_CALL_ID_CHARS)]
INCLUDABLE = Literal[
    "file_search_call.results", "web_search_call.results", "web_search_call.action.sources",
    "message.input_image.image_url", "computer_call_output.output.image_url", "code_interpreter_call.outputs",
    "reasoning.encrypted_content", "message.output_text.logprobs",
]
# item types of the spec that belong to tools Azurine does not have: refused by name rather than misread
TOOL_ITEM_TYPES = frozenset({
    "file_search_call", "computer_call", "computer_call_output", "web_search_call", "tool_search_call",
    "tool_search_output", "additional_tools", "reasoning", "compaction", "compaction_trigger",
    "image_generation_call", "code_interpreter_call", "local_shell_call", "local_shell_call_output", "shell_call",
    "shell_call_output", "apply_patch_call", "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request",
    "mcp_approval_response", "mcp_call", "custom_tool_call", "custom_tool_call_output", "item_reference", "program",
    "program_output", "configuration_update",
})


# content parts -------------------------------------------------------------------------------------------------

class InputText(_Body):
    type: Literal["input_text"]
    text: StrictStr


class OutputText(_Body):
    """Text an assistant said, as a previous response's output carries it back in."""

    type: Literal["output_text"]
    text: StrictStr


class Refusal(_Body):
    type: Literal["refusal"]
    refusal: StrictStr


class InputImage(_Body):
    type: Literal["input_image"]
    image_url: StrictStr | None = None
    file_id: StrictStr | None = None
    detail: Literal["low", "high", "auto", "original"] | None = None


class InputFile(_Body):
    type: Literal["input_file"]

    @field_validator("type")
    @classmethod
    def _no_files(cls, value: str) -> str:
        raise unsupported("Unsupported parameter: 'input_file' content is not supported by Azurine: its models "
                          "read text.")


ContentPart = Annotated[InputText | OutputText | Refusal | InputImage | InputFile, Field(discriminator="type")]
OutputPart = Annotated[InputText | InputImage | InputFile, Field(discriminator="type")]


# input items ---------------------------------------------------------------------------------------------------

class MessageItem(_Body):
    """A message: the easy form (`type` left out, content a string) or the item form (content parts)."""

    type: Literal["message"] | None = None
    id: ItemId | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: StrictStr | Annotated[list[ContentPart], Field(max_length=MAX_INPUT_ITEMS)]
    status: Status | None = None


class FunctionCallItem(_Body):
    type: Literal["function_call"]
    id: ItemId | None = None
    call_id: CallId
    name: Annotated[StrictStr, Field(min_length=1, max_length=256)]
    arguments: StrictStr
    status: Status | None = None


class FunctionCallOutputItem(_Body):
    type: Literal["function_call_output"]
    id: ItemId | None = None
    call_id: CallId
    output: StrictStr | Annotated[list[OutputPart], Field(max_length=MAX_INPUT_ITEMS)]
    status: Status | None = None


def _item_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("type", "message")
    return getattr(value, "type", None) or "message"


def _known_item(value: Any) -> Any:
    kind = value.get("type") if isinstance(value, dict) else None
    if isinstance(kind, str) and kind in TOOL_ITEM_TYPES:
        raise unsupported(f"Unsupported parameter: input items of type '{kind}' are not supported by Azurine: it "
                          "has function tools only.")
    return value


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")] | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")],
    Discriminator(_item_tag), BeforeValidator(_known_item),
]


# tools and formats ---------------------------------------------------------------------------------------------

class FunctionTool(_Body):
    type: Literal["function"]
    name: Name
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


def _functions_only(field: str) -> Callable[[Any], Any]:
    """A check that refuses, by name, a `field` entry of a type other than `function` (built-in tools)."""
    def check(value: Any) -> Any:
        kind = value.get("type") if isinstance(value, dict) else None
        if isinstance(kind, str) and kind != "function":
            raise unsupported(f"Unsupported parameter: {field} of type '{kind}' is not supported by Azurine: it "
                              "has function tools only.")
        return value
    return check


Tool = Annotated[FunctionTool, BeforeValidator(_functions_only("tools"))]


class FunctionChoice(_Body):
    type: Literal["function"]
    name: StrictStr


ToolChoice = Literal["none", "auto", "required"] | Annotated[FunctionChoice,
                                                              BeforeValidator(_functions_only("tool_choice"))]


class TextFormat(_Body):
    type: Literal["text"]


class JsonObjectFormat(_Body):
    type: Literal["json_object"]


class JsonSchemaFormat(_Body):
    type: Literal["json_schema"]
    name: Name
    schema_: dict[str, Any] = Field(alias="schema")
    description: StrictStr | None = None
    strict: StrictBool | None = None


Format = Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")]


class TextConfig(_Body):
    format: Format | None = None
    verbosity: Literal["low", "medium", "high"] | None = None

    @field_validator("verbosity")
    @classmethod
    def _no_verbosity(cls, value: str | None) -> str | None:
        if value not in (None, "medium"):
            raise unsupported("Unsupported parameter: 'text.verbosity' is not supported with this model.")
        return value


class Reasoning(_Body):
    effort: StrictStr | None = None
    summary: StrictStr | None = None
    generate_summary: StrictStr | None = None

    @field_validator("effort", "summary", "generate_summary")
    @classmethod
    def _not_a_reasoning_model(cls, value: str | None) -> str | None:
        if value is not None:
            raise unsupported("Unsupported parameter: 'reasoning' is not supported with this model: it does not "
                              "reason before it answers.")
        return value


class StreamOptions(_Body):
    # Azurine never pads deltas, so there is nothing to turn off
    include_obfuscation: StrictBool | None = None


# the request ---------------------------------------------------------------------------------------------------

class ResponsesRequest(_Body):
    """Fields are in dependency order: a field's validator sees the fields above it (`info.data`)."""

    model: StrictStr | None = None
    input: StrictStr | Annotated[list[InputItem], Field(max_length=MAX_INPUT_ITEMS)] | None = None
    instructions: StrictStr | None = None
    max_output_tokens: Annotated[Int, Field(ge=1)] | None = None
    temperature: Annotated[Number, Field(ge=0, le=2)] | None = None
    top_p: Annotated[Number, Field(ge=0, le=1)] | None = None
    top_logprobs: Annotated[Int, Field(ge=0, le=20)] | None = None
    text: TextConfig | None = None
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    # limits built-in tool calls; Azurine has none, so it never binds
    max_tool_calls: Annotated[Int, Field(ge=1)] | None = None
    previous_response_id: Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_CHARS)] | None = None
    store: StrictBool | None = None
    background: StrictBool | None = None
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    include: Annotated[list[INCLUDABLE], Field(max_length=16)] | None = None
    metadata: dict[str, StrictStr] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    reasoning: Reasoning | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    # accepted without effect, as on Azure: they feed abuse monitoring and cache routing, never an answer
    user: StrictStr | None = None
    safety_identifier: Annotated[StrictStr, Field(max_length=MAX_ID_CHARS)] | None = None
    prompt_cache_key: StrictStr | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    # spec'd, and not implemented: refused by name when given
    conversation: Any = None
    prompt: Any = None
    context_management: Any = None
    moderation: Any = None
    access_programs: Any = None
    prompt_cache_options: Any = None
    background_options: Any = None
    image: Any = None

    @field_validator("tool_choice")
    @classmethod
    def _tool_offered(cls, value: Any, info: ValidationInfo) -> Any:
        tools: list[FunctionTool] = info.data.get("tools") or []
        if value == "required" and not tools:
            raise ValueError("tool_choice 'required' needs tools")
        if isinstance(value, FunctionChoice) and value.name not in {t.name for t in tools}:
            raise ValueError(f"tool_choice names {value.name!r}, which is not in tools")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return value
        if len(value) > MAX_METADATA_PAIRS:
            raise ValueError(f"metadata may hold at most {MAX_METADATA_PAIRS} pairs")
        for key, item in value.items():
            if len(key) > MAX_METADATA_KEY_CHARS:
                raise ValueError(f"metadata keys are at most {MAX_METADATA_KEY_CHARS} characters long")
            if len(item) > MAX_METADATA_VALUE_CHARS:
                raise ValueError(f"metadata values are at most {MAX_METADATA_VALUE_CHARS} characters long")
        return value

    @field_validator("background")
    @classmethod
    def _background_is_stored(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        if value and info.data.get("store") is False:
            raise ValueError("background mode needs store: a response run in the background is read by retrieving "
                             "it")
        return value

    @field_validator("service_tier")
    @classmethod
    def _one_tier(cls, value: str | None) -> str | None:
        if value not in (None, "auto", "default"):
            raise unsupported(f"Unsupported parameter: service_tier '{value}' is not supported by Azurine: "
                              "a deployment's SKU sets how it is served.")
        return value

    @field_validator("conversation", "prompt", "context_management", "moderation", "access_programs",
                     "prompt_cache_options", "background_options", "image")
    @classmethod
    def _not_implemented(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            raise unsupported(f"Unsupported parameter: '{info.field_name}' is not supported by Azurine.")
        return value

    @property
    def stored(self) -> bool:
        return self.store is not False

    @property
    def wants_logprobs(self) -> bool:
        return "message.output_text.logprobs" in (self.include or [])

