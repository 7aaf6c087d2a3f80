"""Protected material: verbatim copies of known text and code, found by winnowed k-gram fingerprints.

Both sides are normalised into tokens, every k consecutive tokens (a shingle) are hashed, and winnowing (Schleimer,
Wilkerson & Aiken, "Winnowing: local algorithms for document fingerprinting", SIGMOD 2003) keeps the smallest hash of
every window of w shingles. Winnowing is local, so two documents sharing a run of at least w + k - 1 tokens are
guaranteed to share a fingerprint there, and a longer shared run shares one about every (w + 1) / 2 tokens.

A copy is reported when fingerprints shared with one work line up along one diagonal (the same offset between the
completion and the work, give or take a few inserted tokens) over a long enough stretch:

* text: at least `TEXT_MIN_WORDS` (40) normalised words of the work, backed by at least `TEXT_MIN_FINGERPRINTS` (8)
  distinct fingerprints. Text is compared as case-folded words; punctuation, line breaks and spacing are ignored.
* code: at least `CODE_MIN_LINES` (8) non-blank lines of the work and `CODE_MIN_TOKENS` (40) tokens, backed by at least
  `CODE_MIN_FINGERPRINTS` (5) distinct fingerprints. Code is compared as tokens with comments dropped, string
  literals, numbers and identifiers each folded to one placeholder (keywords kept), so whitespace, reformatting and
  renamed variables do not hide a copy; renaming must be consistent (one name for one name), as a real copy's is.

Works shorter than these thresholds can never be reported: a few words or lines in common is quotation, not copying.
"""

from __future__ import annotations

import json
import re
import threading
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from azurine import settings_table

CORPUS_ENV = "AZURINE_PROTECTED_CORPUS"
PACKAGED_CORPUS = Path(__file__).parent / "corpus"

TEXT_SUFFIXES = frozenset({".txt"})
CODE_SUFFIXES = frozenset({
    ".py", ".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".cs", ".go",
    ".java", ".kt", ".scala", ".rs", ".rb", ".php", ".swift", ".m", ".sh", ".lua", ".pl", ".r", ".sql", ".dart",
})

# Text: 5-word shingles are rarely shared by chance between unrelated prose; w = 4 guarantees any common run of
# 8 words yields a fingerprint and keeps about 0.4 fingerprints per word, so 40 words carry ~16.
TEXT_K = 5
TEXT_W = 4
TEXT_MIN_WORDS = 40
TEXT_MIN_FINGERPRINTS = 8

# Code tokens are far less varied than words once identifiers are folded, hence longer shingles.
CODE_K = 12
CODE_W = 6
CODE_MIN_LINES = 8
CODE_MIN_TOKENS = 40
CODE_MIN_FINGERPRINTS = 5
# Share of aligned identifier pairs that must follow one consistent renaming; unrelated code with the same shape
# pairs its names at random.
CODE_MIN_RENAMING_CONSISTENCY = 0.8

# Fingerprints of one copy may drift off their diagonal by a few inserted or deleted tokens and leave gaps where a
# word was changed; chains tolerate that much.
MAX_SHIFT = 3
TEXT_MAX_GAP = 2 * (TEXT_K + TEXT_W)
CODE_MAX_GAP = 2 * (CODE_K + CODE_W)

_WORD = re.compile(r"[^\W_]+")
# One lexer for every language, since a completion's language is unknown: "#" and "//" start comments everywhere.
# That drops a little real code (C preprocessor lines, Python floor division), but on both sides alike.
_CODE_TOKEN = re.compile(
    r"""(?P<comment>\#[^\n]*|//[^\n]*|/\*.*?\*/|<!--.*?-->)
    |(?P<string>\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|`(?:\\.|[^`\\])*`|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')
    |(?P<number>\d[\w.]*)
    |(?P<ident>[^\W\d]\w*)
    |(?P<op>[^\s\w])""",
    re.VERBOSE | re.DOTALL,
)
# Markdown fence lines around code in a completion; blanked before lexing, as their backticks would otherwise open a
# template-literal string that swallows the code.
_FENCE = re.compile(r"^[ \t]*(?:```|~~~).*$", re.MULTILINE)
# Kept as themselves so that the shape of control flow survives identifier folding (union over common languages).
_KEYWORDS = frozenset("""
    abstract and as assert async await break case catch class const continue def default defer del delete do elif
    else enum except export extends extern false final finally fn for foreach from func function go goto if impl
    implements import in instanceof interface is lambda let loop match mod module mut namespace new nil none nonlocal
    not null of or package pass private protected pub public raise return self static struct super switch this throw
    throws trait true try type typeof union unsafe use var void volatile where while with yield
""".split())


@dataclass(frozen=True)
class Work:
    """One protected work of the corpus, as described by its sidecar `<file>.json`."""

    source: str
    title: str
    url: str | None = None
    license: str | None = None


@dataclass(frozen=True)
class TextMatch:
    """A copied stretch of a text work; `start`/`end` are character offsets of the copy in the checked text."""

    work: Work
    words: int
    start: int
    end: int


@dataclass(frozen=True)
class CodeMatch:
    """A copied stretch of a code work; `lines` counts the work's non-blank lines that were copied."""

    work: Work
    lines: int
    tokens: int
    start: int
    end: int

    @property
    def citation(self) -> dict[str, str | None]:
        """In the shape of Azure's `protected_material_code.citation`."""
        return {"URL": self.work.url, "license": self.work.license}


@dataclass
class _Tokens:
    """Normalised tokens with where each came from, so that a match maps back to characters and lines."""

    norm: list[str] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    # Original spelling of identifiers folded to "V" (None for every other token), for the renaming check.
    names: list[str | None] = field(default_factory=list)


def _text_tokens(text: str) -> _Tokens:
    tokens = _Tokens()
    for m in _WORD.finditer(text):
        tokens.norm.append(m.group().casefold())
        tokens.starts.append(m.start())
        tokens.ends.append(m.end())
    return tokens


def _code_tokens(text: str) -> _Tokens:
    tokens = _Tokens()
    line, scanned = 1, 0
    text = _FENCE.sub(lambda m: " " * len(m.group()), text)  # same length, so offsets still point into the original
    for m in _CODE_TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "comment":
            continue
        value = m.group()
        name = None
        if kind == "string":
            value = "S"
        elif kind == "number":
            value = "N"
        elif kind == "ident":
            if value.lower() not in _KEYWORDS:
                name, value = value, "V"
            else:
                value = value.lower()
        line += text.count("\n", scanned, m.start())
        scanned = m.start()
        tokens.norm.append(value)
        tokens.starts.append(m.start())
        tokens.ends.append(m.end())
        tokens.lines.append(line)
        tokens.names.append(name)
    return tokens


def _fingerprints(norm: list[str], k: int, w: int) -> list[tuple[int, int]]:
    """Winnowed (hash, position) pairs; position is the index of the shingle's first token."""
    count = len(norm) - k + 1
    if count <= 0:
        return []
    # crc32 rather than hash(): stable across processes, so which shingles get selected is reproducible.
    hashes = [zlib.crc32("\x1f".join(norm[i:i + k]).encode()) for i in range(count)]
    if count <= w:
        low = min(range(count), key=lambda i: (hashes[i], -i))
        return [(hashes[low], low)]
    selected: list[tuple[int, int]] = []
    window: deque[int] = deque()  # positions with increasing hashes; the front is the window's (rightmost) minimum
    last = -1
    for i, h in enumerate(hashes):
        while window and hashes[window[-1]] >= h:
            window.pop()
        window.append(i)
        if window[0] <= i - w:
            window.popleft()
        if i >= w - 1 and window[0] != last:
            last = window[0]
            selected.append((hashes[last], last))
    return selected


@dataclass
class _Chain:
    first_q: int
    first_w: int
    last_q: int
    last_w: int
    hashes: set[int]
    pairs: list[tuple[int, int]]


def _chains(pairs: Iterable[tuple[int, int, int]], max_gap: int) -> list[_Chain]:
    """Groups (query position, work position, hash) in query order into runs along one diagonal."""
    done: list[_Chain] = []
    active: list[_Chain] = []
    for q, w, h in pairs:
        still = []
        for chain in active:
            (still if q - chain.last_q <= max_gap else done).append(chain)
        active = still
        best, best_shift = None, MAX_SHIFT + 1
        for chain in active:
            shift = abs((w - q) - (chain.last_w - chain.last_q))
            if q > chain.last_q and w > chain.last_w and shift < best_shift:
                best, best_shift = chain, shift
        if best is None:
            active.append(_Chain(q, w, q, w, {h}, [(q, w)]))
        else:
            best.last_q, best.last_w = q, w
            best.hashes.add(h)
            best.pairs.append((q, w))
    return done + active


@dataclass
class _Indexed:
    work: Work
    tokens: _Tokens


class _Index:
    """Fingerprint postings over the works of one kind (text or code)."""

    def __init__(self, k: int, w: int, tokenize: Callable[[str], _Tokens]) -> None:
        self.k, self.w = k, w
        self._tokenize = tokenize
        self.works: list[_Indexed] = []
        self.postings: dict[int, list[tuple[int, int]]] = {}

    def add(self, work: Work, content: str) -> None:
        tokens = self._tokenize(content)
        number = len(self.works)
        self.works.append(_Indexed(work, tokens))
        for h, pos in _fingerprints(tokens.norm, self.k, self.w):
            self.postings.setdefault(h, []).append((number, pos))

    def chains(self, tokens: _Tokens, max_gap: int) -> list[tuple[_Indexed, _Chain]]:
        per_work: dict[int, list[tuple[int, int, int]]] = {}
        for h, q in _fingerprints(tokens.norm, self.k, self.w):
            for number, w in self.postings.get(h, ()):
                per_work.setdefault(number, []).append((q, w, h))
        return [(self.works[n], c) for n, pairs in per_work.items() for c in _chains(pairs, max_gap)]


def _renaming_consistency(query: _Tokens, work: _Tokens, chain: _Chain, k: int) -> float:
    """How far the identifiers aligned by the chain's shingles follow one-to-one renaming (1.0 when none)."""
    aligned: dict[int, int] = {}
    for q, w in chain.pairs:
        for i in range(k):
            aligned[w + i] = q + i
    pairs = [(work.names[w], query.names[q]) for w, q in aligned.items() if work.names[w] is not None]
    if not pairs:
        return 1.0

    def agreement(pairs_: list[tuple[str | None, str | None]]) -> int:
        by_source: dict[str | None, Counter[str | None]] = {}
        for a, b in pairs_:
            by_source.setdefault(a, Counter())[b] += 1
        return sum(counter.most_common(1)[0][1] for counter in by_source.values())

    return min(agreement(pairs), agreement([(b, a) for a, b in pairs])) / len(pairs)


class ProtectedMaterialIndex:
    """Known protected text and code works, checked against completions by fingerprint."""

    def __init__(self) -> None:
        self._text = _Index(TEXT_K, TEXT_W, _text_tokens)
        self._code = _Index(CODE_K, CODE_W, _code_tokens)

    @property
    def works(self) -> list[Work]:
        return [entry.work for entry in self._text.works + self._code.works]

    def add_text(self, work: Work, content: str) -> None:
        self._text.add(work, content)

    def add_code(self, work: Work, content: str) -> None:
        self._code.add(work, content)

    @classmethod
    def from_directory(cls, path: Path) -> ProtectedMaterialIndex:
        """Indexes every `*.txt` under `path` as text and every source file (by suffix) as code.

        A work's title, URL and license come from an optional sidecar `<file>.json` ({"title", "url", "license"});
        without one the title is the file name.
        """
        index = cls()
        root = Path(path)
        if not root.is_dir():
            raise NotADirectoryError(f"protected material corpus {root} is not a directory")
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            suffix = file.suffix.lower()
            if suffix not in TEXT_SUFFIXES and suffix not in CODE_SUFFIXES:
                continue
            work = _describe(file, root)
            content = file.read_text(encoding="utf-8", errors="replace")
            (index.add_text if suffix in TEXT_SUFFIXES else index.add_code)(work, content)
        return index

    @classmethod
    def default(cls) -> ProtectedMaterialIndex:
        """The corpus named by `AZURINE_PROTECTED_CORPUS`, else the small one packaged with Azurine; built once."""
        return _cached(Path(settings_table.read(CORPUS_ENV) or PACKAGED_CORPUS).resolve())

    def check_text(self, text: str) -> TextMatch | None:
        """The longest copied stretch of a known text work in `text`, if one is long enough to be copying."""
        tokens = _text_tokens(text)
        best: TextMatch | None = None
        for entry, chain in self._text.chains(tokens, TEXT_MAX_GAP):
            words = min(chain.last_q - chain.first_q, chain.last_w - chain.first_w) + TEXT_K
            if words < TEXT_MIN_WORDS or len(chain.hashes) < TEXT_MIN_FINGERPRINTS:
                continue
            if best is None or words > best.words:
                end = tokens.ends[chain.last_q + TEXT_K - 1]
                best = TextMatch(entry.work, words, tokens.starts[chain.first_q], end)
        return best

    def check_code(self, text: str) -> CodeMatch | None:
        """The longest copied stretch of a known code work in `text`, if one is long enough to be copying."""
        tokens = _code_tokens(text)
        best: CodeMatch | None = None
        for entry, chain in self._code.chains(tokens, CODE_MAX_GAP):
            count = min(chain.last_q - chain.first_q, chain.last_w - chain.first_w) + CODE_K
            if count < CODE_MIN_TOKENS or len(chain.hashes) < CODE_MIN_FINGERPRINTS:
                continue
            lines = len(set(entry.tokens.lines[chain.first_w:chain.last_w + CODE_K]))
            if lines < CODE_MIN_LINES or (best is not None and lines <= best.lines):
                continue
            if _renaming_consistency(tokens, entry.tokens, chain, CODE_K) < CODE_MIN_RENAMING_CONSISTENCY:
                continue
            end = tokens.ends[chain.last_q + CODE_K - 1]
            best = CodeMatch(entry.work, lines, count, tokens.starts[chain.first_q], end)
        return best


def _describe(file: Path, root: Path) -> Work:
    source = file.relative_to(root).as_posix()
    sidecar = file.with_name(file.name + ".json")
    meta: dict[str, object] = {}
    if sidecar.is_file():
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    title = meta.get("title") or file.name
    url = meta.get("url")
    license_ = meta.get("license")
    return Work(source, str(title), str(url) if url else None, str(license_) if license_ else None)


_cache: dict[Path, ProtectedMaterialIndex] = {}
_cache_lock = threading.Lock()


def _cached(path: Path) -> ProtectedMaterialIndex:
    with _cache_lock:
        if path not in _cache:
            _cache[path] = ProtectedMaterialIndex.from_directory(path)
        return _cache[path]
