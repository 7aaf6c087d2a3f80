"""A transcript's segments and words with the redaction the content filter made of its whole text.

PII redaction rewrites the transcript's text (`[PERSON]` for a name); the segments and words that subtitles and
`verbose_json` show must say the same, or the name would be redacted in `text` and spoken in `segments`. The redacted
text is aligned with the original, and each piece takes the redacted text between its mapped ends: a replacement
belongs to the piece its original span starts in, and a word wholly inside another word's replacement goes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from difflib import SequenceMatcher

from azurine.engines.speech import Segment, Transcript, Word

# words, runs of space and single marks: a redaction replaces whole words, so no piece of a name is matched inside its
# replacement as single characters would be ("John Smith" and "[PERSON]" share letters)
TOKEN = re.compile(r"\w+|\s+|[^\w\s]")


def _starts(text: str) -> list[int]:
    """Where each token of `text` starts, and its end."""
    return [m.start() for m in TOKEN.finditer(text)] + [len(text)]


def _mapping(original: str, redacted: str) -> Callable[[int], int]:
    """Where a boundary between characters of `original` falls in `redacted`."""
    at_o, at_r = _starts(original), _starts(redacted)
    blocks = [(tag, at_o[i1], at_o[i2], at_r[j1], at_r[j2]) for tag, i1, i2, j1, j2 in SequenceMatcher(
        None, TOKEN.findall(original), TOKEN.findall(redacted), autojunk=False).get_opcodes()]

    def at(position: int) -> int:
        for tag, i1, i2, j1, _ in blocks:
            if tag == "equal" and i1 <= position <= i2:
                return j1 + position - i1
        for _, i1, i2, j1, j2 in blocks:
            if position == i1:  # where a replaced span starts: before its replacement
                return j1
            if i1 < position <= i2:  # inside or at the end of one: after it
                return j2
        return len(redacted)

    return at


def redacted_transcript(transcript: Transcript, redacted: str) -> Transcript:
    """`transcript` whose segments and words read as `redacted`, the redaction of its `written` text."""
    original = transcript.written
    at = _mapping(original, redacted)
    segments: list[Segment] = []
    start = 0
    for segment in transcript.segments:
        end = start + len(segment.text)
        words: list[Word] = []
        cursor = start
        for word in segment.words:
            found = original.find(word.word, cursor, end)
            if found < 0:  # a word that cannot be placed cannot be shown redacted
                continue
            cursor = found + len(word.word)
            shown = redacted[at(found):at(cursor)]
            if shown.strip():
                words.append(replace(word, word=shown))
        segments.append(replace(segment, text=redacted[at(start):at(end)], words=tuple(words)))
        start = end
    return replace(transcript, segments=tuple(segments))
