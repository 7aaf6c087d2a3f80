"""Which of the allowed places a request goes to.

Least outstanding work weighted by capacity: the place where one more request is the smallest share of what it
can run at once (`Place.load`), ties broken at random so that equal places share the load. A prefix-affinity hint
comes first: requests that open the same way (a conversation continued, a shared system prompt) go where the last
such request went, while that place has a free sequence, so that its KV cache already holds their prefix.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from azurine.fleet.member import Place

AFFINITY_ENTRIES = 4096  # hints kept per replica, the least recently used dropped first
PREFIX_CHARS = 2048  # of the prompt's opening that a hint is keyed on


def chat_prefix(model: str, messages: list[dict[str, Any]]) -> str:
    """The hint's key for a chat: its first message (a system prompt, or the first turn of a conversation)."""
    first = messages[0] if messages else {}
    return _key(model, json.dumps(first, sort_keys=True, default=str)[:PREFIX_CHARS])


def text_prefix(model: str, text: str) -> str:
    return _key(model, text[:PREFIX_CHARS])


def _key(model: str, opening: str) -> str:
    return hashlib.sha256(f"{model}\x00{opening}".encode()).hexdigest()[:32]


class Affinity:
    def __init__(self, entries: int = AFFINITY_ENTRIES) -> None:
        self._entries = entries
        self._where: OrderedDict[str, str] = OrderedDict()

    def hint(self, prefix: str | None) -> str | None:
        if prefix is None:
            return None
        found = self._where.get(prefix)
        if found is not None:
            self._where.move_to_end(prefix)
        return found

    def remember(self, prefix: str | None, place: str) -> None:
        if prefix is None:
            return
        self._where[prefix] = place
        self._where.move_to_end(prefix)
        while len(self._where) > self._entries:
            self._where.popitem(last=False)


def pick(places: Sequence[Place], hinted: str | None, rng: random.Random | None = None) -> Place | None:
    """The place for the next request among `places` (the allowed ones not tried yet); None when none is routable."""
    open_places = [p for p in places if p.routable]
    if not open_places:
        return None
    if hinted is not None:
        for place in open_places:
            if place.key == hinted and place.outstanding < place.capacity:
                return place
    least = min(p.load for p in open_places)
    return (rng or random).choice([p for p in open_places if p.load == least])
