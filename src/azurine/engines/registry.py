"""One engine per model instance, made on first use and kept for the life of the server."""

from __future__ import annotations

import threading
from pathlib import Path

from azurine.catalog import ModelSpec
from azurine.engines.base import Engine
from azurine.engines.openai_upstream import OpenAIUpstreamEngine


class EngineRegistry:
    def __init__(self, models_dir: Path) -> None:
        self._models_dir = models_dir
        self._engines: dict[tuple[str, ...], Engine] = {}
        self._lock = threading.Lock()

    def engine_for(self, spec: ModelSpec, upstream_url: str | None = None, upstream_model: str | None = None,
                   upstream_api_key: str | None = None) -> Engine:
        if upstream_url:
            key: tuple[str, ...] = ("upstream", upstream_url, upstream_model or "", upstream_api_key or "")
        else:
            key = ("local", spec.name, spec.version)
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = self._make(spec, upstream_url, upstream_model, upstream_api_key)
                self._engines[key] = engine
            return engine

    def _make(self, spec: ModelSpec, upstream_url: str | None, upstream_model: str | None,
              upstream_api_key: str | None) -> Engine:
        if upstream_url:
            return OpenAIUpstreamEngine(spec, upstream_url, upstream_model, upstream_api_key)
        path = spec.path_in(self._models_dir)
        if spec.engine == "llama_cpp":
            from azurine.engines.llama_runtime import LlamaCppEngine

            return LlamaCppEngine(spec, path)
        if spec.engine == "sentence_transformers":
            from azurine.engines.sentence_embeddings import SentenceEmbeddingEngine

            return SentenceEmbeddingEngine(spec, path)
        raise ValueError(f"no engine named {spec.engine}")

    async def close(self) -> None:
        for engine in list(self._engines.values()):
            await engine.close()
        self._engines.clear()
