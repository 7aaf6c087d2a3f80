"""Tool calls that a chat model writes as text, parsed into structured calls.

Qwen-style templates ask the model for `<tool_call>{"name": …, "arguments": {…}}</tool_call>`; small
models sometimes drop the tags and write the bare JSON object. Both are accepted, and only calls to
tools the request offered count.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from typing import Any

from azurine.engines.base import ToolCall

TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
OPEN_TAG = "<tool_call>"
_ALPHABET = string.ascii_letters + string.digits


def new_call_id() -> str:
    return "call_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def may_be_tool_call(text: str) -> bool:
    """Whether text that has started could still turn out to be a tool call (so it is held back)."""
    head = text.lstrip()
    if not head:
        return True
    return head.startswith("{") or head.startswith(OPEN_TAG) or OPEN_TAG.startswith(head[: len(OPEN_TAG)])


def _as_call(obj: Any, names: set[str]) -> ToolCall | None:
    if not isinstance(obj, dict):
        return None
    name = obj.get("name")
    if name not in names:
        return None
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    return ToolCall(id=new_call_id(), name=name, arguments=json.dumps(arguments, ensure_ascii=False))


def parse_tool_calls(text: str, names: set[str]) -> list[ToolCall]:
    """The calls in a model's answer, or [] when the answer is plain text."""
    stripped = text.strip()
    bodies = TAGGED.findall(stripped) if OPEN_TAG in stripped else [stripped]
    calls: list[ToolCall] = []
    decoder = json.JSONDecoder()
    for body in bodies:
        position = 0
        while position < len(body):
            try:
                obj, end = decoder.raw_decode(body, position)
            except ValueError:
                break
            items = obj if isinstance(obj, list) else [obj]
            parsed = [_as_call(item, names) for item in items]
            if any(call is None for call in parsed):
                return []
            calls.extend(call for call in parsed if call is not None)
            position = end
            while position < len(body) and body[position] in " \t\r\n,":
                position += 1
        if position < len(body):
            return []
    return calls


def tools_system_prompt(tools: list[dict[str, Any]]) -> str:
    """Tool instructions for chat templates that have no tool support of their own."""
    described = "\n".join(json.dumps(t.get("function", t), ensure_ascii=False) for t in tools)
    return (
        "You may call one or more functions to assist with the user query.\n"
        f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{described}\n"
        "</tools>\n\nFor each function call, return a json object with function name and arguments within "
        '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
        "<args-json-object>}\n</tool_call>"
    )
