"""Tool calls that a chat model writes as text, parsed into structured calls.

Offered tools, a Qwen-style model writes a call in one of a few forms, and small models mix them:
- the chat template's own: `<tool_call>{"name": …, "arguments": {…}}</tool_call>`, once per call;
- a fenced block: ```json {"name": …, "arguments": {…}} ``` (or a fence without a language);
- the bare JSON object, with `arguments` (or `parameters`);
- a JSON list of such objects, for several calls.
Only calls to tools the request offered count; an object naming another tool stays text.

Text around the calls is the message's content, as llama-server's parser for this family keeps it
(`common_chat_parse_hermes_2_pro`: what comes before, between and after the calls is content). vLLM's hermes
parser keeps the text before the first call and drops what follows; the fuller choice loses nothing the model
said, and once the lazy grammar (`tool_grammar`) constrains a call, nothing but whitespace can follow it anyway.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Iterator
from typing import Any

from azurine.engines.base import ToolCall

OPEN_TAG = "<tool_call>"
CLOSE_TAG = "</tool_call>"
FENCE = "```"
FENCE_LANGUAGES = ("json", "JSON")
CALL_KEYS = ('"name"', '"arguments"', '"parameters"')
WHITESPACE = " \t\r\n"
# whitespace that may separate the parts of a call's opening; the grammar allows as much (see `tool_grammar`)
WS_MAX = 20
WS = None  # an atom of an opening: whitespace, up to WS_MAX characters

_CANDIDATE = re.compile(r"<tool_call>|```(?:json|JSON)?|[\[{]")
_ALPHABET = string.ascii_letters + string.digits


def new_call_id() -> str:
    return "call_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def _openings() -> list[tuple[str | None, ...]]:
    """How a call's text may begin, as atoms (literals and WS): far enough that a call has surely started."""
    out: list[tuple[str | None, ...]] = [(OPEN_TAG,)]
    for fence in (*(FENCE + lang for lang in FENCE_LANGUAGES), FENCE, None):
        for container in ((), ("[", WS)):
            for key in CALL_KEYS:
                out.append(((fence, WS) if fence else ()) + container + ("{", WS, key))
    return out


OPENINGS = _openings()


def match_atoms(atoms: tuple[str | None, ...], text: str) -> tuple[str, int] | None:
    """Whether `text` begins with the atoms ("full", and where they end) or is cut short within them ("prefix")."""
    at = 0
    for atom in atoms:
        if atom is WS:
            end = at
            while end < len(text) and text[end] in WHITESPACE:
                end += 1
            if end - at > WS_MAX:
                return None
            at = end
            if at == len(text):
                return "prefix", at
        elif text.startswith(atom, at):
            at += len(atom)
        elif atom.startswith(text[at:]):
            return "prefix", len(text)
        else:
            return None
    return "full", at


def call_start(text: str) -> tuple[int, bool] | None:
    """Where in `text` a tool call may begin, and whether one surely has (its opening is all there)."""
    for index, char in enumerate(text):
        if char not in "<`[{":
            continue
        found = [m[0] for m in (match_atoms(o, text[index:index + 160]) for o in OPENINGS) if m]
        if "full" in found:
            return index, True
        if found:
            return index, False
    return None


def held_from(text: str) -> tuple[int, bool]:
    """From where streamed text must be held back because it may turn into a call (the whitespace before a call
    is held with it, so that content never ends in it), and whether a call has surely begun there."""
    found = call_start(text)
    cut, started = found if found is not None else (len(text), False)
    while cut > 0 and text[cut - 1] in WHITESPACE:
        cut -= 1
    return cut, started


def may_be_tool_call(text: str) -> bool:
    """Whether an answer that has started so could still be a tool call from its first character."""
    head = text.lstrip()
    found = call_start(head)
    return not head or (found is not None and found[0] == 0)


def _as_call(obj: Any, names: set[str]) -> ToolCall | None:
    if not isinstance(obj, dict) or obj.get("name") not in names:
        return None
    # without its arguments (`{}` for a tool that takes none) an object naming a tool is no call: it may be data
    # that has a name, and arguments written beside the name would be a guess at which keys are which
    if "arguments" not in obj and "parameters" not in obj:
        return None
    arguments = obj.get("arguments", obj.get("parameters"))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return ToolCall(id=new_call_id(), name=obj["name"], arguments=json.dumps(arguments, ensure_ascii=False))


def _as_calls(value: Any, names: set[str]) -> list[ToolCall] | None:
    items = value if isinstance(value, list) else [value]
    calls = [_as_call(item, names) for item in items]
    if not calls or any(call is None for call in calls):
        return None
    return calls  # type: ignore[return-value]


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in WHITESPACE:
        at += 1
    return at


_DECODER = json.JSONDecoder()


def _json_at(text: str, at: int) -> tuple[Any, int] | None:
    try:
        return _DECODER.raw_decode(text, at)
    except ValueError:
        return None


def _call_at(text: str, opening: re.Match[str], names: set[str]) -> tuple[list[ToolCall], int] | None:
    """The calls written from `opening` on, and where their text ends; None where none is."""
    token = opening.group()
    if token == OPEN_TAG or token.startswith(FENCE):
        decoded = _json_at(text, _skip(text, opening.end()))
        if decoded is None:
            return None
        calls = _as_calls(decoded[0], names)
        if calls is None:
            return None
        end = _skip(text, decoded[1])
        close = CLOSE_TAG if token == OPEN_TAG else FENCE
        return calls, end + len(close) if text.startswith(close, end) else decoded[1]
    decoded = _json_at(text, opening.start())
    if decoded is None:
        return None
    calls = _as_calls(decoded[0], names)
    return (calls, decoded[1]) if calls is not None else ([], decoded[1])


def call_end(text: str) -> int | None:
    """Where the call form `text` begins with ends (its JSON whole, and the closing tag or fence of a tagged or fenced
    call), or None while it is unfinished or `text` begins no such form."""
    opening = _CANDIDATE.match(text)
    if opening is None:
        return None
    token = opening.group()
    if token == OPEN_TAG or token.startswith(FENCE):
        decoded = _json_at(text, _skip(text, opening.end()))
        if decoded is None:
            return None
        end = _skip(text, decoded[1])
        close = CLOSE_TAG if token == OPEN_TAG else FENCE
        return end + len(close) if text.startswith(close, end) else None
    decoded = _json_at(text, 0)
    return decoded[1] if decoded is not None else None


def _calls_in(text: str, names: set[str]) -> Iterator[tuple[int, int, list[ToolCall]]]:
    """Each call (or list of calls) in `text`, in order: where it starts and ends, and the calls it makes."""
    position = 0
    while (opening := _CANDIDATE.search(text, position)) is not None:
        found = _call_at(text, opening, names)
        if found is None:
            position = opening.start() + 1
            continue
        got, end = found
        if got:
            yield opening.start(), end, got
        position = end  # JSON that is no call: what is inside it is no call either


def split_tool_calls(text: str, names: set[str]) -> tuple[list[ToolCall], str]:
    """The calls in a model's answer, in order, and the text around them (the answer itself when it has none)."""
    calls: list[ToolCall] = []
    outside: list[str] = []
    kept = 0
    for start, end, got in _calls_in(text, names):
        outside.append(text[kept:start])
        calls.extend(got)
        kept = end
    if not calls:
        return [], text
    outside.append(text[kept:])
    return calls, "".join(outside)


def calls_so_far(text: str, names: set[str]) -> tuple[list[ToolCall], bool]:
    """The whole calls an answer so far has made, and whether what it wrote after the last of them can no longer be
    another call (prose, or whole JSON that is none)."""
    found = list(_calls_in(text, names))
    if not found:
        return [], False
    calls = [call for _, _, got in found for call in got]
    rest = text[found[-1][1]:].lstrip()
    if not rest:
        return calls, False
    start = call_start(rest)
    if start is not None and start[0] == 0:  # an opening: a call unless it closes as JSON that is none
        decoded = _json_at(rest, 0)
        return calls, decoded is not None and not _as_calls(decoded[0], names)
    return calls, True


def parse_tool_calls(text: str, names: set[str]) -> list[ToolCall]:
    """The calls in a model's answer, or [] when it has none."""
    return split_tool_calls(text, names)[0]


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
