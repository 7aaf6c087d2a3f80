"""How deeply a JSON value nests, measured without recursion: callers send values nested far deeper than Python's
stack allows (json.loads raises RecursionError near 1,000 levels), and the server refuses them before any code
that walks a value recursively sees one."""

from __future__ import annotations

from typing import Any

import pydantic_core


def too_deep(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels in a parsed value (`{"a": 1}` is one level)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def text_too_deep(raw: bytes | str, limit: int) -> bool:
    """`too_deep` for JSON text: also True for text nested beyond what the parser accepts at all; False for text
    that is not JSON (its own parse says what is wrong with it)."""
    text = raw.encode() if isinstance(raw, str) else raw
    if text.count(b"[") + text.count(b"{") <= limit:  # too few brackets to nest that deep: no parse needed
        return False
    try:
        value = pydantic_core.from_json(text)
    except ValueError as error:
        return "recursion limit" in str(error)
    return too_deep(value, limit)
