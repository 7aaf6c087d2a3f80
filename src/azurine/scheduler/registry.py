"""One engine per model instance, made on first use, kept for the life of the server, and served scheduled.

An in-process engine's model is loaded by its calls and unloaded by the residency when other models need its memory
(`residency`); upstream engines hold none.

Deployments that point at the same upstream server share that server's gate, whatever model they ask it for: the
server's capacity is what the gate shares out.
"""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import urlsplit

from azurine.catalog import ModelSpec
from azurine.config import UpstreamSettings, model_memory_budget, server_key
from azurine.engines.base import Engine
from azurine.engines.llama_adapter import AdapterSource
from azurine.engines.openai_upstream import OpenAIUpstreamEngine
from azurine.scheduler.compute import Scheduler
from azurine.scheduler.residency import Residency, ResidentEngine
from azurine.scheduler.scheduled import ScheduledEmbedder, ScheduledUpstream
from azurine.scheduler.scheduled_images import ScheduledImageUpstream, ScheduledPainter
from azurine.scheduler.scheduled_speech import ScheduledSpeaker, ScheduledTranscriber
from azurine.scheduler.upstream import UpstreamGate


class EngineRegistry:
    def __init__(self, models_dir: Path, upstream: UpstreamSettings | None = None,
                 model_memory: int | None = None) -> None:
        self._models_dir = models_dir
        self._upstream = upstream or UpstreamSettings.load()
        self.residency = Residency(model_memory_budget() if model_memory is None else model_memory)
        # Every llama.cpp model of the server computes on this one scheduler's thread. llama.cpp's OpenMP thread
        # teams belong to the thread that starts them: a second compute thread brings a second team that fights
        # the first for the same cores (measured: the small model at under half its speed once the default model
        # had run on a thread of its own).
        self.compute = Scheduler("llama.cpp")
        self._engines: dict[tuple[str, ...], Engine] = {}
        self._gates: dict[str, UpstreamGate] = {}
        self._lock = threading.Lock()

    def engine_for(self, spec: ModelSpec, upstream_url: str | None = None, upstream_model: str | None = None,
                   upstream_api_key: str | None = None, model_path: str | None = None,
                   adapter: AdapterSource | None = None) -> Engine:
        """The engine of a deployment of `spec`: on its upstream server, or in-process, from the operator's
        `model_path` where the deployment has one (one engine per directory of weights). A fine-tuned model's
        deployments share one engine of their own, its base's weights with the model's `adapter` on every context,
        never the base model's engine."""
        if upstream_url:
            key: tuple[str, ...] = ("upstream", upstream_url, upstream_model or "", upstream_api_key or "")
        elif adapter is not None:
            key = ("adapter", adapter.key)
        else:
            key = ("local", spec.name, spec.version, *((model_path,) if model_path else ()))
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = self._make(spec, upstream_url, upstream_model, upstream_api_key, model_path,
                                    None if upstream_url else adapter)
                self._engines[key] = engine
            return engine

    def forget_adapter(self, key: str) -> None:
        """Drop the engine of the fine-tuned model under `key` (deleted): unloaded now unless a call still holds it,
        and then as soon as the budget wants its memory."""
        with self._lock:
            engine = self._engines.pop(("adapter", key), None)
        if isinstance(engine, ResidentEngine):
            engine.forget()

    def provide(self, spec: ModelSpec, engine: Engine) -> None:
        """Serve `spec`'s in-process deployments with `engine`, made elsewhere: a test's engine runs the whole
        pipeline in milliseconds, with no model file behind it."""
        with self._lock:
            self._engines[("local", spec.name, spec.version)] = engine

    def _gate_for(self, upstream_url: str) -> UpstreamGate:
        """The gate of the upstream server at `upstream_url` (called with the lock held)."""
        server = server_key(upstream_url)
        gate = self._gates.get(server)
        if gate is None:
            gate = self._gates[server] = UpstreamGate(f"upstream {_shown(server)}", self._upstream.concurrency)
        return gate

    def _make(self, spec: ModelSpec, upstream_url: str | None, upstream_model: str | None,
              upstream_api_key: str | None, model_path: str | None = None,
              adapter: AdapterSource | None = None) -> Engine:
        if spec.can("image_generation"):
            return self._image_engine(spec, upstream_url, upstream_model, upstream_api_key, model_path)
        if upstream_url:
            engine = OpenAIUpstreamEngine(spec, upstream_url, upstream_model, upstream_api_key,
                                          send_priority=self._upstream.sends_priority(upstream_url))
            return ScheduledUpstream(engine, self._gate_for(upstream_url))
        path = spec.path_in(self._models_dir)
        if adapter is not None and (spec.engine != "llama_cpp" or spec.can("vision")):
            raise ValueError(f"{spec.name}: only llama.cpp text models take a LoRA adapter")
        if spec.engine == "llama_cpp" and spec.can("vision"):
            from azurine.engines.llama_vision import LlamaVisionEngine

            vision = LlamaVisionEngine(spec, Path(model_path).expanduser() if model_path else None, self.compute)
            return ResidentEngine(vision, vision, self.residency)  # type: ignore[arg-type]
        if spec.engine == "llama_cpp":
            from azurine.engines.llama_runtime import LlamaCppEngine

            engine = LlamaCppEngine(spec, path, self.compute, adapter=adapter)
            return ResidentEngine(engine, engine, self.residency)
        if spec.engine == "sentence_transformers":
            from azurine.engines.sentence_embeddings import SentenceEmbeddingEngine

            embedder = SentenceEmbeddingEngine(spec, path)
            return ResidentEngine(ScheduledEmbedder(embedder), embedder, self.residency)
        if spec.engine == "faster_whisper":
            from azurine.engines.whisper import WhisperEngine

            whisper = WhisperEngine(spec, path)
            return ResidentEngine(ScheduledTranscriber(whisper), whisper, self.residency)  # type: ignore[arg-type]
        if spec.engine == "piper":
            from azurine.engines.piper_voice import PiperEngine

            voice = PiperEngine(spec, path)
            return ResidentEngine(ScheduledSpeaker(voice), voice, self.residency)  # type: ignore[arg-type]
        raise ValueError(f"no engine named {spec.engine}")

    def _image_engine(self, spec: ModelSpec, upstream_url: str | None, upstream_model: str | None,
                      upstream_api_key: str | None, model_path: str | None) -> Engine:
        """An image model's engine: its upstream server's `images/generations`, or a diffusers pipeline from the
        deployment's `model_path` (else the catalog's `path`) on a compute thread of its own."""
        if upstream_url:
            from azurine.engines.image_upstream import ImageUpstreamEngine

            upstream = ImageUpstreamEngine(spec, upstream_url, upstream_model, upstream_api_key)
            return ScheduledImageUpstream(upstream, self._gate_for(upstream_url))  # type: ignore[return-value]
        from azurine.engines.diffusers_images import DiffusersEngine

        where = model_path or spec.extra.get("path")
        painter = DiffusersEngine(spec, Path(str(where)).expanduser() if where else None)
        return ResidentEngine(ScheduledPainter(painter), painter, self.residency)  # type: ignore[arg-type]

    async def close(self) -> None:
        for engine in list(self._engines.values()):
            await engine.close()
        self._engines.clear()


def _shown(server: str) -> str:
    """The server's URL without credentials someone may have written into it, for metric labels."""
    parts = urlsplit(server)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else server
