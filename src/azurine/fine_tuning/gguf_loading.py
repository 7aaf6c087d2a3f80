"""A catalog GGUF model loaded into transformers for training, its tokenizer and its float32 weights.

transformers parses a GGUF's metadata three times on the way (tokenizer, config, weights) and builds gguf's table of
tensor names once for every module of the model (397 times for SmolLM2-135M): 8 of the 15 s that model took to load
here, before a job's first step. While a model loads, each is made once. transformers imports both from the `gguf`
package at each call, so that is where they are swapped, for the load alone and one load at a time.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_LOADING = threading.Lock()


def load_base(model_path: Path) -> tuple[Any, Any]:
    """The tokenizer and the float32 causal language model that `model_path` (a GGUF file) holds."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(model_path.parent), model_path.name
    with _LOADING, _parsed_once():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    return tokenizer, model


@contextmanager
def _parsed_once() -> Iterator[None]:
    import gguf

    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, str], Any] = {}

    def read(path: str | Path, mode: str = "r") -> Any:
        key = (str(path), mode)
        if key not in readers:
            readers[key] = reader(path, mode)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = read, functools.cache(name_map)  # type: ignore[assignment]
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map  # type: ignore[misc]
