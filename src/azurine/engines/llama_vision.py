"""A vision-language model in-process: a GGUF model and its multimodal projector (`mmproj`), run by llama.cpp's mtmd
through llama-cpp-python's chat handler (`MTMDChatHandler`, which reads the prompt template from the GGUF, or the
handler the catalog's `chat_handler` names, e.g. `Qwen25VLChatHandler`).

No vision model's weights are on the package index, so this engine has only ever been run without them: it is
untested until an operator gives a model, and kept small. The weights are the deployment's `--model-path` directory:
one `mmproj*.gguf` projector and one other `*.gguf`, the model. An answer runs alone, one token a step on the
llama.cpp compute thread (no slots, no prompt cache); its usage is the estimate (its text by characters, its images
as Azure counts them), as llama.cpp's handler reports none on streams.

It reads images from data URLs only: the vision stage sends every image here inline, and anything else is refused,
because the handlers would download an `http(s)://` URL themselves, past every bound of `vision.fetch`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator, Collection, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from azurine import settings_table
from azurine.catalog import ModelSpec
from azurine.engines.base import (
    ChatPrompt,
    Delta,
    Embeddings,
    EngineError,
    EngineUnavailable,
    Event,
    Finished,
    Order,
    Sampling,
    TextPrompt,
)
from azurine.engines.llama_memory import kv_cell_bytes
from azurine.scheduler.compute import Scheduler
from azurine.scheduler.work import WorkOrder

log = logging.getLogger("azurine")
DEFAULT_HANDLER = "MTMDChatHandler"


def vision_weights(directory: Path) -> tuple[Path, Path] | None:
    """The model and its projector in an operator's directory: the one `mmproj*.gguf` and the one other `*.gguf`;
    None where they are not both there, alone."""
    if not directory.is_dir():
        return None
    files = sorted(p for p in directory.glob("*.gguf") if p.is_file())
    projectors = [p for p in files if p.name.lower().startswith("mmproj")]
    models = [p for p in files if p not in projectors]
    return (models[0], projectors[0]) if len(models) == 1 and len(projectors) == 1 else None


def _only_inline_images(messages: list[dict[str, Any]]) -> None:
    for message in messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            url = (part.get("image_url") or {}).get("url", "") if part.get("type") == "image_url" else "data:"
            if not url.lower().startswith("data:"):
                raise EngineError("This deployment reads images given as data URLs only.", code="invalid_value")


class LlamaVisionEngine:
    def __init__(self, spec: ModelSpec, directory: Path | None, compute: Scheduler) -> None:
        self.spec = spec
        self._directory = directory
        self._compute = compute
        self._n_threads = int(settings_table.read("AZURINE_THREADS", "0")) or os.cpu_count() or 1
        self._llm: Any = None
        self._lock = threading.Lock()

    def _weights(self) -> tuple[Path, Path] | None:
        return vision_weights(self._directory) if self._directory is not None else None

    # residency (`scheduler/residency`) -------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def footprint(self, priorities: Collection[int]) -> int:
        found = self._weights()
        if found is None:
            return 0
        model, projector = found
        cells = self.spec.context_length * kv_cell_bytes(model)
        return int((model.stat().st_size + projector.stat().st_size + cells) * 1.1)

    def unload(self) -> None:
        with self._lock:
            self._llm = None

    def _load(self) -> Any:
        with self._lock:
            if self._llm is not None:
                return self._llm
            found = self._weights()
            if found is None:
                raise EngineUnavailable(f"The weights of {self.spec.name} are not on this server: the operator gives "
                                        "a GGUF model and its mmproj projector, or serves it from an upstream server.")
            from llama_cpp import Llama, llama_chat_format

            model, projector = found
            handler_class = getattr(llama_chat_format, str(self.spec.extra.get("chat_handler", DEFAULT_HANDLER)))
            try:
                handler = handler_class(clip_model_path=str(projector), verbose=False)
                self._llm = Llama(model_path=str(model), chat_handler=handler, n_ctx=self.spec.context_length,
                                  n_threads=self._n_threads, verbose=False)
            except ValueError as error:  # its words name the host's files: the operator's log has them
                log.warning("the model %s could not be loaded from %s: %s", self.spec.name, model, error)
                raise EngineUnavailable(f"The model {self.spec.name} could not be loaded.") from error
            return self._llm

    # the engine ------------------------------------------------------------------------------------

    def chat(self, prompt: ChatPrompt, sampling: Sampling, order: WorkOrder,
             stream: bool = True) -> AsyncIterator[Event]:
        _only_inline_images(prompt.messages)
        return self._compute.stream(order, partial(self._answer, prompt, sampling, order))

    def _answer(self, prompt: ChatPrompt, sampling: Sampling, order: WorkOrder, emit: Any) -> Iterator[None]:
        llm = self._load()
        chunks = llm.create_chat_completion(
            messages=prompt.messages, stream=True, max_tokens=sampling.max_tokens, temperature=sampling.temperature,
            top_p=sampling.top_p, stop=list(sampling.stop) or None, seed=sampling.seed,
            presence_penalty=sampling.presence_penalty, frequency_penalty=sampling.frequency_penalty)
        written, reason = 0, "stop"
        for chunk in chunks:
            choice = (chunk.get("choices") or [{}])[0]
            text = (choice.get("delta") or {}).get("content")
            if text:
                written += 1
                emit(Delta(text=text))
            if choice.get("finish_reason") == "length":
                reason = "length"
            yield
            if order.cancelled:
                return
        emit(Finished(reason=reason, prompt_tokens=prompt.estimated_tokens(), completion_tokens=written))  # type: ignore[arg-type]

    def complete(self, prompt: TextPrompt, sampling: Sampling, order: Order,
                 stream: bool = True) -> AsyncIterator[Event]:
        raise EngineError("completions are not served by this engine", code="OperationNotSupported")

    async def embed(self, inputs: list[str] | list[list[int]], order: Order | None = None) -> Embeddings:
        raise EngineError("embeddings are not served by this engine", code="OperationNotSupported")

    async def close(self) -> None:
        self.unload()
