"""Custom blocklists as Azure's management plane defines them: named lists of exact terms and regexes.

Matching rules (Azure documents exact terms as matching whole words, case-insensitively):

* An exact term matches case-insensitively (Unicode case folding) and only as whole words: where the term begins or
  ends with a letter, digit or underscore, the text next to it must not be one, so "pizza" hits "I love Pizza!" but
  not "pizzazz". Runs of whitespace count as one space on both sides, so "ice cream" hits "ice\\ncream".
  All exact terms of all lists go into one Aho-Corasick automaton (`pyahocorasick`), so 10,000-term lists cost one
  pass over the text.
* A regex item is searched for anywhere in the text, case-insensitively, with the `regex` package (Python `re`
  syntax plus extensions). Each list's regexes are combined into one branch-reset alternation, compiled once.
  Catastrophic backtracking is cut off by `regex`'s timeout: a search that exceeds `REGEX_TIMEOUT_S` is abandoned
  and counts as no hit (logged), so one bad pattern can slow a request by at most that much per list, never hang it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ahocorasick
import regex

logger = logging.getLogger(__name__)

# Azure's limits for one blocklist.
MAX_PATTERN_CHARS = 1000
MAX_ITEMS = 10_000
MAX_GROUP_DEPTH = 50  # nested groups in one regex

REGEX_TIMEOUT_S = 0.05
# All regex searches of one `match` call together stop after this much; the remaining ones count as no hit.
REGEX_BUDGET_S = 0.25

_SPACES = re.compile(r"\s+")
# A global inline flag group such as "(?x)" changes the meaning of every alternative it is combined with.
_GLOBAL_FLAGS = re.compile(r"\(\?[a-zA-Z]+\)")


@dataclass(frozen=True)
class BlocklistItem:
    pattern: str
    is_regex: bool = False

    def __post_init__(self) -> None:
        if not self.pattern.strip():
            raise ValueError("a blocklist item's pattern must not be empty")
        if len(self.pattern) > MAX_PATTERN_CHARS:
            raise ValueError(f"a blocklist item's pattern is limited to {MAX_PATTERN_CHARS} characters")

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> BlocklistItem:
        """From the management plane's `{"pattern": ..., "isRegex": ...}`."""
        return cls(str(body["pattern"]), bool(body.get("isRegex", False)))


@dataclass(frozen=True)
class Blocklist:
    name: str
    items: tuple[BlocklistItem, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))
        if len(self.items) > MAX_ITEMS:
            raise ValueError(f"blocklist {self.name!r} has {len(self.items)} items; the limit is {MAX_ITEMS}")


def _normalise(text: str) -> str:
    return _SPACES.sub(" ", text.casefold())


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def _group_depth(pattern: str) -> int:
    """How deep `pattern`'s groups nest, counting any "(" outside a character class (an over-count is safe)."""
    depth = deepest = 0
    escaped = in_class = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth = max(0, depth - 1)
    return deepest


def regex_problem(pattern: str) -> str | None:
    """Why `pattern` cannot be a blocklist regex, or None. The check is the matcher's own compile (the `regex`
    package, which reads some patterns otherwise than `re`); groups nest at most `MAX_GROUP_DEPTH` deep, as the
    parser recurses per level and a list's patterns are compiled nested in an alternation."""
    if _group_depth(pattern) > MAX_GROUP_DEPTH:
        return f"its groups nest more than {MAX_GROUP_DEPTH} deep"
    try:
        regex.compile(pattern, regex.IGNORECASE)
    except (regex.error, OverflowError, RecursionError) as exc:
        return str(exc)
    return None


def _compile(pattern: str) -> regex.Pattern:
    try:
        return regex.compile(pattern, regex.IGNORECASE)
    except (regex.error, OverflowError, RecursionError) as exc:
        raise ValueError(f"invalid blocklist regex {pattern!r}: {exc}") from exc


def _compile_list(patterns: list[str]) -> list[regex.Pattern]:
    """One pattern per list where possible; branch reset `(?|...)` keeps each item's group numbers its own."""
    compiled = [_compile(p) for p in patterns]  # validates every item on its own first
    combinable = [p for p in patterns if not _GLOBAL_FLAGS.search(p)]
    separate = [c for p, c in zip(patterns, compiled, strict=True) if _GLOBAL_FLAGS.search(p)]
    if len(combinable) <= 1:
        return compiled
    try:
        combined = regex.compile("(?|" + "|".join(f"(?:{p})" for p in combinable) + ")", regex.IGNORECASE)
    except (regex.error, OverflowError, RecursionError):
        return compiled
    return [combined, *separate]


class BlocklistMatcher:
    """Matches text against several blocklists at once; build once per set of lists, then share across threads."""

    def __init__(self, blocklists: Iterable[Blocklist]) -> None:
        self.names: list[str] = []
        terms: dict[str, set[int]] = {}
        self._regexes: list[tuple[int, list[regex.Pattern]]] = []
        for number, blocklist in enumerate(blocklists):
            self.names.append(blocklist.name)
            for item in blocklist.items:
                if not item.is_regex:
                    terms.setdefault(_normalise(item.pattern).strip(), set()).add(number)
            patterns = [item.pattern for item in blocklist.items if item.is_regex]
            if patterns:
                self._regexes.append((number, _compile_list(patterns)))
        self._automaton: Any = None
        if terms:
            self._automaton = ahocorasick.Automaton()
            for term, lists in terms.items():
                self._automaton.add_word(term, (term, frozenset(lists)))
            self._automaton.make_automaton()

    def match(self, text: str, deadline: float | None = None) -> list[str]:
        """Names of the blocklists with at least one item found in `text`, in the order the lists were given;
        regex searches stop at `deadline` (`time.monotonic()`; `REGEX_BUDGET_S` from now by default)."""
        hit: set[int] = set()
        if self._automaton is not None:
            hit |= self._term_hits(_normalise(text))
        deadline = time.monotonic() + REGEX_BUDGET_S if deadline is None else deadline
        for number, patterns in self._regexes:
            if number not in hit and self._any_regex(patterns, text, deadline):
                hit.add(number)
        return [name for number, name in enumerate(self.names) if number in hit]

    def _term_hits(self, text: str) -> set[int]:
        hit: set[int] = set()
        for end, (term, lists) in self._automaton.iter(text):
            start = end - len(term) + 1
            if _is_word_char(term[0]) and start > 0 and _is_word_char(text[start - 1]):
                continue
            if _is_word_char(term[-1]) and end + 1 < len(text) and _is_word_char(text[end + 1]):
                continue
            hit |= lists
        return hit

    @staticmethod
    def _any_regex(patterns: list[regex.Pattern], text: str, deadline: float) -> bool:
        for pattern in patterns:
            left = deadline - time.monotonic()
            if left <= 0:
                logger.warning("blocklist regex budget spent; %r and later patterns skipped", pattern.pattern[:80])
                return False
            try:
                if pattern.search(text, timeout=min(REGEX_TIMEOUT_S, left)):
                    return True
            except TimeoutError:
                logger.warning("blocklist regex %r timed out; counted as no hit", pattern.pattern[:80])
        return False


class BlocklistSet(BlocklistMatcher):
    """The lists of one policy, each compiled on its own (once per version of the list: `compiled_blocklists.py`) and
    asked together: a set is made per request from compiled lists at no cost, never by compiling."""

    def __init__(self, matchers: Iterable[BlocklistMatcher]) -> None:
        self._parts = list(matchers)
        self.names = [name for part in self._parts for name in part.names]

    def match(self, text: str, deadline: float | None = None) -> list[str]:
        deadline = time.monotonic() + REGEX_BUDGET_S if deadline is None else deadline  # shared by every list
        return [name for part in self._parts for name in part.match(text, deadline)]
