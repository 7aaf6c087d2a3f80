"""A call the model already made, and has the result of, is not made again: the answer is decoded anew as prose.

An agent loop (OpenAI's Agents SDK, LangChain) offers the same tools on every turn, so after a tool's output the model
may call a tool again or answer. Small models call again: after `get_weather("Bergen")` and its result, Qwen2.5-Coder
0.5B and 1.5B both write `{"name": "get_weather", "arguments": {"city": "Bergen"}}` once more, with a first-token
probability of 0.99 whatever the instructions or the tool's output say (measured over about 40 wordings), and the
loop runs until the agent's turn limit. Withholding tools after a tool result would stop legitimate multi-step use,
so only the exact repeat is turned away: an answer with tools on `auto` whose calls are all identical (name, and
arguments as JSON) to calls answered since the last user message, with nothing of it sent yet, is decoded again from
the same conversation as with `tool_choice: none` (the tools not offered), under a grammar that leaves out the
characters a call or any JSON opens with. Measured on that conversation with the 0.5B model: with the tools offered,
the grammar alone gives "Mark the city as Bergen."; without them it gives "The weather in Bergen right now is a
drizzle with a wind speed of 30 km/h from the south-east."

`AZURINE_TOOL_CALL_REPEATS=allow` returns such repeats as calls, for tools an application polls with the same
arguments.
"""

from __future__ import annotations

import json
from typing import Any

from azurine import settings_table
from azurine.engines.base import ToolCall

CallKey = tuple[str, str]

# prose: no character that opens a tool call (`<tool_call>`, a fence, `{`, `[`) or that the model was seen to put
# before one (`(`), nor their closing partners, which prose without them has no use for
PROSE_GBNF = r"root ::= [^{}\[\]<>`(]+"


def repeats_allowed() -> bool:
    return settings_table.read("AZURINE_TOOL_CALL_REPEATS", "answer") == "allow"


def call_key(name: str, arguments: Any) -> CallKey:
    """A call's identity: its name, and its arguments as canonical JSON (as written where they are not JSON)."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return name, arguments
    return name, json.dumps(arguments, sort_keys=True, separators=(",", ":"))


def answered_calls(messages: list[dict[str, Any]]) -> frozenset[CallKey]:
    """The calls made since the last user message whose results the conversation holds."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    made: dict[str, CallKey] = {}
    answered: set[CallKey] = set()
    for message in messages[last_user + 1:]:
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            if isinstance(call.get("id"), str) and isinstance(function.get("name"), str):
                made[call["id"]] = call_key(function["name"], function.get("arguments") or "{}")
        if message.get("role") == "tool" and message.get("tool_call_id") in made:
            answered.add(made[message["tool_call_id"]])
    return frozenset(answered)


def only_repeats(calls: list[ToolCall], answered: frozenset[CallKey]) -> bool:
    return bool(calls) and all(call_key(call.name, call.arguments) in answered for call in calls)
