"""Quota as Azure counts it: capacity units per `OpenAI.<SkuName>.<model>`, per subscription and location."""

from __future__ import annotations

from dataclasses import dataclass

from azurine import settings_table
from azurine.catalog import ModelSpec
from azurine.storage.state import StateStore

SKU_NAMES = (
    "Standard", "GlobalStandard", "DataZoneStandard", "ProvisionedManaged", "GlobalProvisionedManaged",
    "DataZoneProvisionedManaged", "GlobalBatch", "DataZoneBatch", "DeveloperTier",
)
PROVISIONED = frozenset({"ProvisionedManaged", "GlobalProvisionedManaged", "DataZoneProvisionedManaged"})
STANDARD = frozenset({"Standard", "GlobalStandard", "DataZoneStandard", "DeveloperTier"})
BATCH = frozenset({"GlobalBatch", "DataZoneBatch"})


def default_limit(sku: str) -> int:
    """A subscription's quota where none was set: `AZURINE_DEFAULT_QUOTA` units (1,000 by default)."""
    return int(settings_table.read("AZURINE_DEFAULT_QUOTA", "1000"))


def usage_name(sku: str, model: ModelSpec) -> str:
    return f"OpenAI.{sku}.{model.response_model}"


def unit_label(sku: str) -> str:
    if sku in PROVISIONED:
        return "Provisioned Managed Throughput Unit"
    if sku in BATCH:
        return "Enqueued Tokens (thousands)"
    return "Tokens Per Minute (thousands)"


def localized_name(sku: str, model: ModelSpec) -> str:
    label = "Requests Per Minute" if model.rate_limit == "requests" and sku in STANDARD else unit_label(sku)
    return f"{label} - {model.name} - {sku}"


def skus_of(model: ModelSpec) -> tuple[str, ...]:
    """The deployment types the model may be deployed as."""
    return model.skus or SKU_NAMES


@dataclass(frozen=True)
class Usage:
    name: str
    localized: str
    current: int
    limit: int


def usages(store: StateStore, subscription: str, location: str, models: list[ModelSpec]) -> list[Usage]:
    limits = store.quota_limits(subscription, location)
    in_use: dict[str, int] = {}
    for deployment in store.deployments_in(subscription, location):
        key = f"OpenAI.{deployment.sku_name}.{deployment.model_name.lower()}"
        in_use[key] = in_use.get(key, 0) + deployment.sku_capacity
    return [
        Usage(name=usage_name(sku, model), localized=localized_name(sku, model),
              current=in_use.get(usage_name(sku, model), 0),
              limit=limits.get(usage_name(sku, model), default_limit(sku)))
        for model in models for sku in skus_of(model)
    ]


@dataclass(frozen=True)
class QuotaShortfall:
    needed: int
    available: int
    used: int
    limit: int
    label: str


def check_quota(store: StateStore, subscription: str, location: str, model: ModelSpec, sku: str, capacity: int,
                replacing: tuple[str, str] | None) -> QuotaShortfall | None:
    """What is missing for a deployment of `capacity`; `replacing` is (account id, name) of one it updates."""
    name = usage_name(sku, model)
    limit = store.quota_limits(subscription, location).get(name, default_limit(sku))
    used = 0
    for deployment in store.deployments_in(subscription, location):
        if (deployment.account_id, deployment.name) == replacing:
            continue
        if deployment.sku_name == sku and deployment.model_name.lower() == model.name.lower():
            used += deployment.sku_capacity
    if used + capacity <= limit:
        return None
    return QuotaShortfall(needed=capacity, available=max(0, limit - used), used=used, limit=limit,
                          label=localized_name(sku, model))
