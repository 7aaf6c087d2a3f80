"""The Responses API's objects as the wire carries them: the response, its output items, usage and errors.

Shapes are the openai SDK's `Response`, `ResponseOutputMessage`, `ResponseFunctionToolCall` and `ResponseUsage`.
`output_text` is the SDKs' own property, computed from `output`, and is not sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from azurine.api.inference.protocol_responses import FunctionChoice, ResponsesRequest
from azurine.api.inference.render import new_id
from azurine.api.inference.responses_input import item_id
from azurine.engines.base import TokenLogprob, ToolCall

FINAL = ("completed", "incomplete", "failed", "cancelled")


def new_response_id() -> str:
    return new_id("resp_")


@dataclass
class Outcome:
    """How a response ended, as its object reports it."""

    status: str
    output: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    incomplete_reason: str | None = None
    completed_at: int | None = None


def response_usage(input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cache_write_tokens": 0, "cached_tokens": cached_tokens},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def response_error(code: str, message: str) -> dict[str, Any]:
    """`code` is one of the SDK's `ResponseError` codes: `server_error`, `invalid_prompt`, `rate_limit_exceeded`…"""
    return {"code": code, "message": message}


def text_logprobs(items: list[TokenLogprob]) -> list[dict[str, Any]]:
    return [{"bytes": i.bytes, "logprob": i.logprob, "token": i.token,
             "top_logprobs": [{"bytes": t.bytes, "logprob": t.logprob, "token": t.token} for t in i.top_logprobs]}
            for i in items]


def output_text(text: str, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"annotations": [], "logprobs": logprobs or [], "text": text, "type": "output_text"}


def message_item(message_id: str, text: str | None, status: str,
                 logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An assistant message: with no text yet (`None`), no content part either, as a stream opens it."""
    content = [] if text is None else [output_text(text, logprobs)]
    return {"content": content, "id": message_id, "role": "assistant", "status": status, "type": "message"}


def call_item(call: ToolCall, item: str, status: str, arguments: str | None = None) -> dict[str, Any]:
    return {"arguments": call.arguments if arguments is None else arguments, "call_id": call.id, "id": item,
            "name": call.name, "status": status, "type": "function_call"}


def new_message_id() -> str:
    return item_id("message")


def new_call_item_id() -> str:
    return item_id("function_call")


def tool_choice_json(body: ResponsesRequest) -> Any:
    choice = body.tool_choice
    if isinstance(choice, FunctionChoice):
        return {"name": choice.name, "type": "function"}
    return choice or "auto"


def tools_json(body: ResponsesRequest) -> list[dict[str, Any]]:
    return [{"description": t.description, "name": t.name, "parameters": t.parameters, "strict": t.strict,
             "type": "function"} for t in body.tools or []]


def text_json(body: ResponsesRequest) -> dict[str, Any]:
    fmt = body.text.format if body.text else None
    shown = fmt.model_dump(by_alias=True, exclude_none=True) if fmt is not None else {"type": "text"}
    return {"format": shown, "verbosity": "medium"}


def response_object(body: ResponsesRequest, response_id: str, created_at: int, model: str,
                    outcome: Outcome) -> dict[str, Any]:
    """The response as create, retrieve and every stream event that carries it show it."""
    return {
        "background": bool(body.background),
        "completed_at": outcome.completed_at,
        "created_at": created_at,
        "error": outcome.error,
        "id": response_id,
        "incomplete_details": {"reason": outcome.incomplete_reason} if outcome.incomplete_reason else None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": body.max_tool_calls,
        "metadata": body.metadata or {},
        "model": model,
        "object": "response",
        "output": outcome.output,
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id,
        "prompt_cache_key": body.prompt_cache_key,
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": body.safety_identifier,
        "service_tier": "default",
        "status": outcome.status,
        "store": body.stored,
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "text": text_json(body),
        "tool_choice": tool_choice_json(body),
        "tools": tools_json(body),
        "top_logprobs": body.top_logprobs or 0,
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "truncation": body.truncation or "disabled",
        "usage": outcome.usage,
        "user": body.user,
    }


def with_status(response: dict[str, Any], status: str, *, error: dict[str, Any] | None = None) -> dict[str, Any]:
    """A stored response moved to another status by something other than its run (a cancel, a lost runner)."""
    return {**response, "status": status, "error": error if error is not None else response.get("error")}


def deleted_object(response_id: str) -> dict[str, Any]:
    return {"deleted": True, "id": response_id, "object": "response.deleted"}


def item_list(page: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"data": page, "first_id": page[0]["id"] if page else None,
            "has_more": has_more, "last_id": page[-1]["id"] if page else None, "object": "list"}
