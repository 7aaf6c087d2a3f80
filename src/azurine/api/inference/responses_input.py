"""A Responses request's input as the items it stores and as the chat conversation the engine reads.

The items a response stores are its own input; the conversation its model read, less the instructions, is the
conversation of the response it continues (`previous_response_id`: that one's items and output, and so on back),
then its own input, rebuilt exactly as the model saw it from the stored chain. Instructions are not carried over,
as OpenAI documents: each request gives its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from azurine.api.errors import bad_request
from azurine.api.inference.protocol import ChatCompletionRequest
from azurine.api.inference.protocol_responses import (
    FunctionCallItem,
    FunctionCallOutputItem,
    InputImage,
    MessageItem,
    Refusal,
    ResponsesRequest,
)
from azurine.api.inference.render import new_id

ITEM_PREFIXES = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_"}


def item_id(kind: str) -> str:
    return new_id(ITEM_PREFIXES[kind])


# the request's input as stored items ---------------------------------------------------------------------------

def input_items(body: ResponsesRequest, taken: set[str]) -> list[dict[str, Any]]:
    """The request's input in the item form `input_items` lists, each with an id no earlier item has (`taken`
    grows with them). An id the caller gave is kept unless an earlier item already has it."""
    if body.input is None:
        return []
    if isinstance(body.input, str):
        given: list[Any] = [MessageItem(role="user", content=body.input)]
    else:
        given = list(body.input)
    out = []
    for index, item in enumerate(given):
        stored = _stored(item, index)
        if stored.get("id") in taken or not stored.get("id"):
            stored["id"] = item_id(stored["type"])
        taken.add(stored["id"])
        out.append(stored)
    return out


def _stored(item: MessageItem | FunctionCallItem | FunctionCallOutputItem, index: int) -> dict[str, Any]:
    if isinstance(item, FunctionCallItem):
        return {"arguments": item.arguments, "call_id": item.call_id, "id": item.id, "name": item.name,
                "status": "completed", "type": "function_call"}
    if isinstance(item, FunctionCallOutputItem):
        output = item.output if isinstance(item.output, str) else [
            _input_part(part, f"input[{index}].output[{j}]") for j, part in enumerate(item.output)]
        return {"call_id": item.call_id, "id": item.id, "output": output, "status": "completed",
                "type": "function_call_output"}
    parts = [item.content] if isinstance(item.content, str) else item.content
    if item.role == "assistant":
        content = [_output_part(part) for part in parts]
    else:
        content = [_input_part(part, f"input[{index}].content[{j}]") for j, part in enumerate(parts)]
        if item.role != "user" and any(p["type"] != "input_text" for p in content):
            raise bad_request(f"Invalid content type: a {item.role} message holds text only.",
                              f"input[{index}].content", "invalid_value")
    return {"content": content, "id": item.id, "role": item.role, "status": "completed", "type": "message"}


def _output_part(part: Any) -> dict[str, Any]:
    if isinstance(part, Refusal):
        return {"refusal": part.refusal, "type": "refusal"}
    if isinstance(part, InputImage):
        raise bad_request("Invalid content type: an assistant message holds text and refusals only.", "input",
                          "invalid_value")
    text = part if isinstance(part, str) else part.text
    return {"annotations": [], "text": text, "type": "output_text"}


def _input_part(part: Any, param: str) -> dict[str, Any]:
    if isinstance(part, InputImage):
        if part.image_url is None:
            raise bad_request("Unsupported parameter: images by 'file_id' are not supported by Azurine; give "
                              "'image_url'.", f"{param}.file_id", "unsupported_parameter")
        return {"detail": part.detail or "auto", "image_url": part.image_url, "type": "input_image"}
    if isinstance(part, Refusal):
        return {"text": part.refusal, "type": "input_text"}
    text = part if isinstance(part, str) else part.text
    return {"text": text, "type": "input_text"}


# the conversation ----------------------------------------------------------------------------------------------

@dataclass
class Conversation:
    """Everything the model reads for one response: the instructions, then the items."""

    instructions: str | None
    items: list[dict[str, Any]]

    def shortened(self) -> Conversation | None:
        """The conversation less its oldest turn (truncation `auto`), so that it starts at a user message and no
        call's output is left without its call; None when only the last turn is left."""
        items = self.items[1:]
        while items and not (items[0]["type"] == "message" and items[0]["role"] == "user"):
            items = items[1:]
        return Conversation(self.instructions, items) if items else None

    def words(self) -> int:
        """The words the model reads, as the prompt filter counts them before the engine tokenizes."""
        return sum(len(_item_text(item).split()) for item in self.items) + len((self.instructions or "").split())


def _item_text(item: dict[str, Any]) -> str:
    if item["type"] == "function_call":
        return f"{item['name']} {item['arguments']}"
    if item["type"] == "function_call_output":
        output = item["output"]
        return output if isinstance(output, str) else " ".join(p.get("text", "") for p in output)
    return " ".join(p.get("text") or p.get("refusal") or "" for p in item["content"])


def continued(earlier: list[dict[str, Any]], body: ResponsesRequest) -> list[dict[str, Any]]:
    """This request's input as the items it stores, after `earlier` (what the previous response read and said): no
    item has the id of one before it, and every call's output follows its call."""
    taken = {item["id"] for item in earlier if item.get("id")}
    items = input_items(body, taken)
    if not earlier and not items:
        raise bad_request("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    _calls_answered([*earlier, *items])
    return items


def _calls_answered(items: list[dict[str, Any]]) -> None:
    calls: set[str] = set()
    for item in items:
        if item["type"] == "function_call":
            calls.add(item["call_id"])
        elif item["type"] == "function_call_output" and item["call_id"] not in calls:
            raise bad_request(f"No tool call found for function call output with call_id {item['call_id']}.",
                              "input", "invalid_value")


# as the chat the engine reads ----------------------------------------------------------------------------------

def chat_messages(conversation: Conversation) -> list[dict[str, Any]]:
    """The conversation as chat messages: instructions as the system message, consecutive function calls as one
    assistant message's tool calls, each call's output as a tool message."""
    messages: list[dict[str, Any]] = []
    if conversation.instructions is not None:
        messages.append({"role": "system", "content": conversation.instructions})
    for item in conversation.items:
        if item["type"] == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif item["type"] == "function_call_output":
            output = item["output"]
            text = output if isinstance(output, str) else "".join(p.get("text", "") for p in output)
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": text})
        elif item["role"] == "assistant":
            text = "".join(p.get("text") or p.get("refusal") or "" for p in item["content"])
            messages.append({"role": "assistant", "content": text})
        else:
            messages.append({"role": item["role"], "content": _chat_content(item)})
    return messages


def _chat_content(item: dict[str, Any]) -> str | list[dict[str, Any]]:
    parts = item["content"]
    if item["role"] != "user" or all(p["type"] == "input_text" for p in parts):
        return "".join(p.get("text", "") for p in parts)
    return [{"type": "text", "text": p["text"]} if p["type"] == "input_text"
            else {"type": "image_url", "image_url": {"url": p["image_url"], "detail": p.get("detail", "auto")}}
            for p in parts]


def chat_request(body: ResponsesRequest, conversation: Conversation) -> ChatCompletionRequest:
    """The request as the chat completion it is served as: the same sampling, grammar and tools."""
    chat: dict[str, Any] = {"model": body.model, "messages": chat_messages(conversation)}
    if body.max_output_tokens is not None:
        chat["max_completion_tokens"] = body.max_output_tokens
    for name in ("temperature", "top_p", "parallel_tool_calls"):
        if getattr(body, name) is not None:
            chat[name] = getattr(body, name)
    if body.wants_logprobs:
        chat["logprobs"] = True
        chat["top_logprobs"] = body.top_logprobs or 0
    fmt = body.text.format if body.text else None
    if fmt is not None and fmt.type == "json_schema":
        schema = {"name": fmt.name, "schema": fmt.schema_}  # type: ignore[union-attr]
        if fmt.strict is not None:  # type: ignore[union-attr]
            schema["strict"] = fmt.strict  # type: ignore[union-attr]
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif fmt is not None:
        chat["response_format"] = {"type": fmt.type}
    if body.tools:
        chat["tools"] = [{"type": "function", "function": {
            k: v for k, v in {"name": t.name, "description": t.description, "parameters": t.parameters,
                              "strict": t.strict}.items() if v is not None}} for t in body.tools]
    if body.tool_choice is not None:
        choice = body.tool_choice
        chat["tool_choice"] = choice if isinstance(choice, str) else {"type": "function",
                                                                      "function": {"name": choice.name}}
    try:
        return ChatCompletionRequest.model_validate(chat)
    except ValidationError as error:
        first = error.errors()[0]
        raise bad_request(f"Invalid input: {first.get('msg', 'the conversation cannot be read')}.", "input",
                          "invalid_value") from None

