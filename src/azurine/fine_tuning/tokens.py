"""Token counts for checking a training file, by the model's own vocabulary (llama.cpp, vocabulary only: no
weights are read, so checking a file costs milliseconds of loading, once per model)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cache
from pathlib import Path

_lock = threading.Lock()


@cache
def _vocabulary(path: str) -> object:
    from llama_cpp import Llama

    return Llama(model_path=path, vocab_only=True, verbose=False)


def token_counter(model_path: Path) -> Callable[[str], int]:
    with _lock:
        vocabulary = _vocabulary(str(model_path))

    def count(text: str) -> int:
        return len(vocabulary.tokenize(text.encode(), add_bos=False, special=True))  # type: ignore[attr-defined]

    return count
