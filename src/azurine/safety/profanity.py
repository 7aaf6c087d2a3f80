"""Profanity: the linear SVM of `alt-profanity-check` (TF-IDF over words, trained on ~200k labelled comments).

The model is lexical, so it cannot tell a clinical or historical use of a word from an insult; the threshold and the
windowing below are what keeps ordinary work prompts clear:

* `THRESHOLD` = 0.95. Crude insults and swearing score 0.99-1.0. Ordinary prompts stay below: "kill the process",
  "abort the transaction", "execute the migration" score under 0.25; medical and history questions up to ~0.6
  ("breast cancer screening", "why did Harold die at Hastings"), "master/slave replication" ~0.6, and mild words
  such as "hell" and "crap" 0.78-0.86 (Azure's profanity filter targets profanity, not everyday bluntness).
  Known false positives at any useful threshold: anatomical terms ("penis", "vagina") and "bitch" in dog breeding.
* Windows: TF-IDF vectors are L2-normalised over the whole text, so one insult inside a long completion is diluted
  to nothing (a 5-word insult within 60 ordinary words already scores 0.01). Texts are therefore scored over windows
  of `WINDOW_WORDS` words overlapping by half, and a text's score is its highest window's. Any phrase of up to
  `WINDOW_WORDS // 2` words lies wholly inside one window with at most as many other words around it.
"""

from __future__ import annotations

import threading
from typing import Any

THRESHOLD = 0.95
WINDOW_WORDS = 12


def _windows(text: str) -> list[str]:
    words = text.split()
    if len(words) <= WINDOW_WORDS:
        return [" ".join(words)] if words else []
    step = WINDOW_WORDS // 2
    return [" ".join(words[i:i + WINDOW_WORDS]) for i in range(0, len(words) - step, step)]


class ProfanityDetector:
    """Scores texts for profanity. Build with `load()`; the model is loaded once per process and shared."""

    _shared: ProfanityDetector | None = None
    _load_lock = threading.Lock()

    def __init__(self, vectorizer: Any, model: Any, threshold: float = THRESHOLD) -> None:
        self._vectorizer = vectorizer
        self._model = model
        self.threshold = threshold

    @classmethod
    def load(cls) -> ProfanityDetector:
        if cls._shared is None:
            with cls._load_lock:
                if cls._shared is None:
                    # Importing the package unpickles the model; that is the slow part, so it waits for first use.
                    from profanity_check import profanity_check

                    cls._shared = cls(profanity_check.vectorizer, profanity_check.model)
        return cls._shared

    def scores(self, texts: list[str]) -> list[float]:
        """Probability that each text is offensive: the highest over its windows, 0.0 for blank text."""
        windows: list[str] = []
        owners: list[int] = []
        for number, text in enumerate(texts):
            for window in _windows(text):
                windows.append(window)
                owners.append(number)
        result = [0.0] * len(texts)
        if not windows:
            return result
        # One batched call: vectorising and predicting per window would cost far more in Python overhead.
        probabilities = self._model.predict_proba(self._vectorizer.transform(windows))[:, 1]
        for owner, probability in zip(owners, probabilities, strict=True):
            result[owner] = max(result[owner], float(probability))
        return result

    def detect(self, texts: list[str]) -> list[bool]:
        """Whether each text is profane, i.e. scores at least `threshold`."""
        return [score >= self.threshold for score in self.scores(texts)]
