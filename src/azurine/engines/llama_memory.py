"""How much memory a GGUF model takes in llama.cpp, told from its file before it is loaded.

The residency (`scheduler/residency`) must decide what to unload before a model loads, so the estimate comes from the
file itself: its size (the weights, mapped from the file and all read once the model has answered), and the shape
of its attention from the header, which gives the bytes of one KV cell. llama.cpp caches keys and values in f16 (the
default of `llama_cpp.Llama` and of the gangs' contexts), so a cell takes, summed over the layers, the layer's KV heads
× (key length + value length) × 2 bytes.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

KV_BYTES = 2  # f16

# GGUF value types: the fixed sizes of the scalars, and the two variable ones
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


@lru_cache(maxsize=32)
def kv_cell_bytes(path: Path) -> int:
    """The bytes one KV cell of the model at `path` takes in every layer together (its file does not change while it
    is installed; a model not installed takes none)."""
    try:
        meta = _metadata(path)
    except (OSError, ValueError, struct.error):
        return 0  # llama.cpp refuses such a file itself when it loads it
    arch = meta.get("general.architecture")
    layers = meta.get(f"{arch}.block_count")
    heads = meta.get(f"{arch}.attention.head_count")
    width = meta.get(f"{arch}.embedding_length")
    if not isinstance(layers, int) or not isinstance(width, int) or not heads:
        return 0
    kv_heads = meta.get(f"{arch}.attention.head_count_kv", heads)
    per_layer = kv_heads if isinstance(kv_heads, list) else [kv_heads] * layers
    query_heads = heads if isinstance(heads, int) else max(heads)
    key = meta.get(f"{arch}.attention.key_length", width // query_heads)
    value = meta.get(f"{arch}.attention.value_length", width // query_heads)
    return sum(int(n) for n in per_layer[:layers]) * (key + value) * KV_BYTES


def _metadata(path: Path) -> dict[str, Any]:
    """The header's scalar values and short number arrays (per-layer head counts); strings and long arrays (the
    vocabulary) are skipped."""
    with path.open("rb") as file:
        if file.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        version, _tensors, count = struct.unpack("<IQQ", file.read(20))
        if version < 2:
            raise ValueError(f"{path} is GGUF version {version}, older than llama.cpp reads")
        meta: dict[str, Any] = {}
        for _ in range(count):
            key = _string(file)
            kind = _unpack(file, "<I")
            meta[key] = _value(file, kind)
        return meta


def _value(file: BinaryIO, kind: int) -> Any:
    if kind in _SCALARS:
        return _unpack(file, _SCALARS[kind])
    if kind == _STRING:
        return _string(file)
    if kind != _ARRAY:
        raise ValueError(f"unknown GGUF value type {kind}")
    item, length = struct.unpack("<IQ", file.read(12))
    if item in _SCALARS and length <= 1024:
        return [_unpack(file, _SCALARS[item]) for _ in range(length)]
    if item in _SCALARS:
        file.seek(length * struct.calcsize(_SCALARS[item]), 1)
        return None
    for _ in range(length):
        if item == _STRING:  # the vocabulary: a hundred thousand of them, passed over unread
            file.seek(_unpack(file, "<Q"), 1)
        else:
            _value(file, item)
    return None


def _string(file: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", file.read(8))
    return file.read(length).decode("utf-8", errors="replace")


def _unpack(file: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = file.read(size)
    if len(data) != size:
        raise ValueError("the GGUF header ends early")
    return struct.unpack(fmt, data)[0]
