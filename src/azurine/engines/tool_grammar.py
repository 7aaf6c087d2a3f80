"""The grammar a tool call follows once the model has begun one: llama.cpp's lazy grammar, for `tool_choice: auto`.

With `auto` the model may answer in text or call a tool, so a grammar from the first token would force a call. The
grammar stays off until the answer shows that a call has begun: one of the openings `tool_calls` knows (the
`<tool_call>` tag, a fence, a list, a bare object) followed by `"name": "<an offered tool>"`, as llama-server
triggers its grammar for this family of models. From there on the call is constrained: its arguments are JSON
valid for that tool's parameters (llama.cpp's schema converter), and its form is closed (`}`, `]`, the fence, the
tag). After the call only whitespace, further calls (where the request allows several) or the end may follow.

The trigger is matched here, in Python (`trigger`), and by llama.cpp when the grammar is switched on (the same
pattern, in the ECMAScript dialect both read alike): llama.cpp then feeds the grammar the text from the match on,
so every character the pattern matches must be one the grammar accepts, and the rest of the token that completed
the match must be too (`safe_rest`); otherwise llama.cpp would throw inside the sampler, and the process with it.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from azurine.engines.tool_calls import CLOSE_TAG, FENCE, FENCE_LANGUAGES, OPEN_TAG, WS, WS_MAX, match_atoms

log = logging.getLogger("azurine")

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # names that need no escaping in a pattern or a grammar literal
_WS_PATTERN = f"[ \\t\\n\\r]{{0,{WS_MAX}}}"
# what may follow the name in a constrained call, up to its arguments' value
_AFTER_NAME = (WS, ",", WS, '"arguments"', WS, ":", WS)
# the longest text a trigger can span: openings, whitespace between each part, and a name of 64 characters
TRIGGER_SPAN = 4 * 64 + 6 * WS_MAX


@dataclass(frozen=True)
class ToolGrammar:
    """A request's lazy tool-call grammar: GBNF whose root is `root`, and the pattern that switches it on."""

    gbnf: str
    pattern: str

    @cached_property
    def _compiled(self) -> re.Pattern[bytes]:
        return re.compile(self.pattern.encode())

    def trigger(self, text: bytes, start: int = 0) -> re.Match[bytes] | None:
        """The first match in `text` from `start` on."""
        return self._compiled.search(text, start)


def safe_rest(rest: bytes) -> bool:
    """Whether the text after a trigger's match (the rest of the token that completed it) is text the grammar takes:
    the way from the tool's name to its arguments, or part of it."""
    try:
        found = match_atoms(_AFTER_NAME, rest.decode("ascii"))
    except UnicodeDecodeError:
        return False
    return found is not None and found[1] == len(rest)


def _literal(text: str) -> str:
    return json.dumps(text)


def tool_grammar(tools: list[dict[str, Any]], parallel: bool) -> ToolGrammar | None:
    """The lazy grammar for calls to `tools` (function tools in the chat shape), or None where none can be made: no
    tool has a plain name, or no schema converts."""
    from llama_cpp.llama_grammar import SchemaConverter

    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    branches, names = [], []
    for index, tool in enumerate(tools):
        function = tool.get("function") or {}
        name = function.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            continue
        rule = None
        for schema in (function.get("parameters") or {"type": "object"}, {"type": "object"}):
            try:
                rule = converter.visit(converter.resolve_refs(schema, f"tool-{index}"), f"arguments-{index}")
                break
            except Exception as error:  # a schema the converter cannot express: its arguments are only JSON
                log.info("tool %s: its parameters do not convert to a grammar (%s)", name, error)
        if rule is None:
            return None
        names.append(name)
        branches.append(f'{_literal(_literal(name))} tool-ws "," tool-ws {_literal(_literal("arguments"))} tool-ws ":" '
                        f"tool-ws {rule}")
    if not names:
        return None
    fence = f"{_literal(FENCE)} ({' | '.join(_literal(language) for language in FENCE_LANGUAGES)})?"
    rules = {
        # one call in the form it began in; several only as a list, and only where the request allows several
        "root": "(tool-tagged | tool-fenced | tool-list | tool-call) tool-ws",
        "tool-tagged": f"{_literal(OPEN_TAG)} tool-ws tool-body tool-ws {_literal(CLOSE_TAG)}",
        "tool-fenced": f"{fence} tool-ws tool-body tool-ws {_literal(FENCE)}",
        "tool-body": "tool-call | tool-list",
        "tool-list": '"[" tool-ws tool-call' + (' (tool-ws "," tool-ws tool-call)*' if parallel else "")
                     + ' tool-ws "]"',
        "tool-call": f'"{{" tool-ws {_literal(_literal("name"))} tool-ws ":" tool-ws '
                     f'({" | ".join(f"tool-call-{i}" for i in range(len(branches)))}) tool-ws "}}"',
        "tool-ws": f"[ \\t\\n\\r]{{0,{WS_MAX}}}",
    }
    for index, branch in enumerate(branches):
        rules[f"tool-call-{index}"] = branch
    gbnf = "\n".join(f"{name} ::= {rule}" for name, rule in rules.items()) + "\n" + converter.format_grammar()
    return ToolGrammar(gbnf=gbnf, pattern=_pattern(names))


def _pattern(names: list[str]) -> str:
    """The trigger: an opening, then `"name": "<offered>"`. No capturing group, so llama.cpp starts the grammar where
    the whole match starts, as Python's `Match.start` says."""
    ws = _WS_PATTERN
    fence = "```(?:" + "|".join(FENCE_LANGUAGES) + ")?"
    opening = f"(?:{OPEN_TAG}{ws}|{fence}{ws})?"  # `<`, `_` and `>` are no operators in either dialect
    return (f'{opening}(?:\\[{ws})?\\{{{ws}"name"{ws}:{ws}"(?:{"|".join(names)})"')
