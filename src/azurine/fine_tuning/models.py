"""The models one account sees: the catalog's, and the fine-tuned models its own jobs made.

A fine-tuned model is its base's catalog entry under the model's name (`<base>.ft-<job id>[-suffix]`, version
`1`), deployable as Standard, GlobalStandard or DeveloperTier, and served by its base's engine with the job's LoRA
adapter (`StoredAdapter`), read from the account's job, sealed under its data key, when the model loads. Another
account's lookups never reach it: every query names the account.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from azurine.catalog import Catalog, ModelSpec
from azurine.engines.base import EngineUnavailable
from azurine.storage.fine_tuning import FINE_TUNED_MARK, FineTuningStore, JobRecord
from azurine.storage.key_providers import KeyUnavailable

FINE_TUNED_VERSION = "1"
FINE_TUNED_SKUS = ("Standard", "GlobalStandard", "DeveloperTier")
MARK = FINE_TUNED_MARK  # in every fine-tuned model's name, and in no catalog model's


def fine_tuned_spec(base: ModelSpec, job: JobRecord) -> ModelSpec:
    """The base's entry as the fine-tuned model: its name, its deployment types, the job that made it."""
    return replace(base, name=str(job.fine_tuned_model), version=FINE_TUNED_VERSION, skus=FINE_TUNED_SKUS,
                   extra={**base.extra, "fine_tune": False, "base_model": base.name, "base_version": base.version,
                          "fine_tuning_job": job.id, "account_id": job.account_id,
                          "created": job.finished_at or job.created_at})


def fine_tuned(spec: ModelSpec) -> bool:
    return "fine_tuning_job" in spec.extra


def adapter_key(account_id: str, model: str) -> str:
    """What the engine registry keeps a fine-tuned model's one engine under."""
    return f"{account_id}/{model.lower()}"


@dataclass(frozen=True)
class StoredAdapter:
    """A fine-tuned model's adapter (GGUF), as its engine reads it when the model loads: unsealed from the job,
    and written for llama.cpp only to a private file in `scratch` (`engines/llama_adapter.py`)."""

    store: FineTuningStore
    account_id: str
    model: str
    scratch: Path

    @property
    def key(self) -> str:
        return adapter_key(self.account_id, self.model)

    def read(self) -> bytes:
        try:
            found = self.store.adapter(self.account_id, self.model)
        except KeyUnavailable as error:
            raise EngineUnavailable(f"The adapter of {self.model} cannot be read: {error}") from error
        if found is None:
            raise EngineUnavailable(f"The fine-tuned model {self.model} no longer exists.")
        return found[1]


class AccountModels:
    """The catalog as one account sees it: `get` as `Catalog.get` does, its own fine-tuned models beside."""

    def __init__(self, catalog: Catalog, store: FineTuningStore, account_id: str, scratch: Path) -> None:
        self.catalog, self._store = catalog, store
        self.account_id, self._scratch = account_id, scratch

    def get(self, name: str, version: str | None = None) -> ModelSpec | None:
        found = self.catalog.get(name, version)
        if found is not None or MARK not in name.lower() or version not in (None, FINE_TUNED_VERSION):
            return found
        job = self._store.fine_tuned_model(self.account_id, name)
        return self._spec(job) if job is not None else None

    def fine_tuned(self) -> list[ModelSpec]:
        """The account's fine-tuned models, oldest first."""
        specs = (self._spec(job) for job in self._store.fine_tuned_models(self.account_id))
        return [spec for spec in specs if spec is not None]

    def all(self) -> list[ModelSpec]:
        return [*self.catalog, *self.fine_tuned()]

    def adapter(self, spec: ModelSpec) -> StoredAdapter | None:
        """What a deployment of `spec` loads beside its base's weights; None for a catalog model."""
        if not fine_tuned(spec):
            return None
        return StoredAdapter(self._store, self.account_id, spec.name, self._scratch)

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.all())

    def _spec(self, job: JobRecord) -> ModelSpec | None:
        base = self.catalog.get(job.model)
        return fine_tuned_spec(base, job) if base is not None and job.fine_tuned_model else None
