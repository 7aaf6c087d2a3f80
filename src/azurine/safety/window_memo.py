"""The scores of recently screened windows, so that text screened again costs only its new windows.

An answer in the policy's Default mode is screened again, whole, each time a window of it is released (its harm
severity is the maximum over its sentence windows), and the first token of nearly every answer is one of a few short
words that open the classifiers' contextual stage: "A" or "The" alone cost 17 ms of MiniLM on two cores, against
0.3 ms for a sentence the fast stage settles. Remembering each window's scores keeps the verdicts exactly as they were
(a window's scores depend on its own text alone) while the work per check follows the new text.

Entries are kept per scope, the account whose text it was, so that how fast a text is screened tells one tenant
nothing about another's traffic; the number of entries is bounded and the least recently used go first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

ENTRIES = 4096  # windows of up to 48 words: a few MB at most


class WindowMemo:
    def __init__(self, entries: int = ENTRIES) -> None:
        self._entries = entries
        self._scores: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, scope: str, stage: str, window: str) -> np.ndarray | None:
        """A window's scores of one stage (`fast`, `contextual`), if they are remembered."""
        key = (scope, stage, window)
        with self._lock:
            scores = self._scores.get(key)
            if scores is not None:
                self._scores.move_to_end(key)
            return scores

    def put(self, scope: str, stage: str, window: str, scores: np.ndarray) -> None:
        scores = scores.copy()
        scores.flags.writeable = False  # shared between checks: nobody may change a remembered verdict
        with self._lock:
            self._scores[(scope, stage, window)] = scores
            self._scores.move_to_end((scope, stage, window))
            while len(self._scores) > self._entries:
                self._scores.popitem(last=False)
