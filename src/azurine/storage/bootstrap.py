"""What a first start creates: the default subscription and resource group, the default account, its two keys and
its deployments: chat, a small chat model, embeddings, speech to text and text to speech."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from azurine import settings_table
from azurine.catalog import Catalog
from azurine.identity.tokens import TENANT_ID
from azurine.storage.state import AccountRecord, StateStore
from azurine.storage.subscriptions import DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION, SubscriptionStore


@dataclass(frozen=True)
class DefaultDeployment:
    name: str
    model: str
    capacity: int


DEFAULT_DEPLOYMENTS = (
    DefaultDeployment("chat", "Qwen2.5-Coder-0.5B-Instruct", 250),
    DefaultDeployment("chat-small", "SmolLM2-135M-Instruct", 250),
    DefaultDeployment("embeddings", "all-MiniLM-L6-v2", 250),
    # capacity in requests a minute, as Azure counts Whisper's and TTS's
    DefaultDeployment("whisper", "Whisper-base", 120),
    DefaultDeployment("tts", "Piper-en_US-joe-medium", 120),
)


def ensure_defaults(store: StateStore, catalog: Catalog, location: str) -> AccountRecord | None:
    """Create the default account on an empty database; return it when it was created now."""
    if store.has_accounts():
        return None
    platform = SubscriptionStore(store.engine)
    if platform.subscription(DEFAULT_SUBSCRIPTION) is None:
        platform.add_subscription(DEFAULT_SUBSCRIPTION, "Azurine", TENANT_ID)
    platform.put_group(DEFAULT_SUBSCRIPTION, DEFAULT_RESOURCE_GROUP, location, None)
    try:
        account = store.create_account(
            settings_table.read("AZURINE_ACCOUNT_NAME", "default"),
            location=location, subscription_id=DEFAULT_SUBSCRIPTION, resource_group=DEFAULT_RESOURCE_GROUP,
            key1=settings_table.read("AZURINE_API_KEY") or None,
        )
    except IntegrityError:  # another replica starting on the same database made it first
        return None
    for default in DEFAULT_DEPLOYMENTS:
        spec = catalog.get(default.model)
        assert spec is not None, f"{default.model} is missing from the catalog"
        store.create_deployment(
            account.id, default.name, model_name=spec.name, model_version=spec.version,
            model_format=spec.publisher, sku_name="GlobalStandard", sku_capacity=default.capacity,
        )
    return account
