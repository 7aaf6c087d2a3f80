"""A LoRA adapter (GGUF) on one engine's llama.cpp contexts, and on no other engine's.

llama.cpp reads an adapter from a path only, and the adapter is stored sealed: its unsealed bytes are written to a
file of the process's own (mode 0600, in a 0700 folder under the data directory) and the file is removed as soon as
`llama_adapter_lora_init` has read it, before the model serves anything. The adapter then lives in the model's
memory, freed with the model, and is set on each context made from that model: the engine's lanes, and its gangs'
contexts (`LlamaCppEngine.adapt`). A base model's engine is another `Llama`, so its contexts never see it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

from azurine.engines.base import EngineUnavailable

log = logging.getLogger("azurine")
SCALE = 1.0  # llama.cpp scales by the adapter's own alpha / rank; this multiplies that


class AdapterSource(Protocol):
    """Where an engine's adapter comes from: its bytes, read when a model loads, and the folder for its file."""

    @property
    def key(self) -> str: ...

    @property
    def scratch(self) -> Path: ...

    def read(self) -> bytes: ...


class LoraAdapter:
    """An adapter loaded for one llama.cpp model; `apply` sets it on a context made from that model."""

    def __init__(self, pointer: Any) -> None:
        import llama_cpp

        self._adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(pointer)
        self._scales = (ctypes.c_float * 1)(SCALE)

    def apply(self, ctx: Any) -> None:
        import llama_cpp

        if llama_cpp.llama_set_adapters_lora(ctx, self._adapters, 1, self._scales):
            raise EngineUnavailable("The fine-tuned model's adapter could not be applied.")


def private_folder(scratch: Path) -> Path:
    scratch.mkdir(parents=True, exist_ok=True)
    os.chmod(scratch, 0o700)  # mkdir's mode is cut by the umask, and an existing folder keeps its own
    return scratch


def load_adapter(llm: Any, source: AdapterSource) -> LoraAdapter:
    """The source's adapter loaded for `llm`'s model and set on `llm`'s own context."""
    import llama_cpp

    data = source.read()
    descriptor, name = tempfile.mkstemp(prefix="adapter-", suffix=".gguf", dir=private_folder(source.scratch))
    try:
        with os.fdopen(descriptor, "wb") as out:  # mkstemp made it 0600
            out.write(data)
        pointer = llama_cpp.llama_adapter_lora_init(llm._model.model, name.encode())
    finally:
        os.unlink(name)
    if not pointer:
        # llama.cpp's reason is on its own log; the operator's log says which model
        log.warning("the LoRA adapter of %s could not be loaded", source.key)
        raise EngineUnavailable("The fine-tuned model's adapter could not be loaded.")
    adapter = LoraAdapter(pointer)
    adapter.apply(llm._ctx.ctx)
    return adapter
