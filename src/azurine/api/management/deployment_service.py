"""Deployments written once for every surface that writes them: the ARM routes and `azurine deployments create`.

Every rule Azure applies to a deployment (its name, model, deployment type and capacity, a provisioned one's PTU
sizes and spillover deployment, RAI policy, the subscription's quota) is checked here, and so is what the fleet
can serve where a model server of the subscription lists the model (`fleet/capacity.py`), so no surface can write
around one; a refusal is ARM's error, raised as an `AzureError` that each surface shows as it shows errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from azurine.api.management.accounts import SkuIn
from azurine.api.management.arm import arm_error, check_name
from azurine.catalog import ModelSpec
from azurine.fine_tuning.models import fine_tuned
from azurine.fleet.capacity import Gateway, check_deployment, reservations_in
from azurine.fleet.store import specs_in
from azurine.quota import spillover
from azurine.quota.capacity import BATCH, PROVISIONED, SKU_NAMES, check_quota
from azurine.storage.state import AccountRecord, DeploymentRecord, StateStore

UPGRADE_OPTIONS = ("OnceNewDefaultVersionAvailable", "OnceCurrentVersionExpired", "NoAutoUpgrade")
BUILT_IN_POLICIES = ("Microsoft.Default", "Microsoft.DefaultV2")
READ_ONLY = frozenset({"provisioningState", "capabilities", "rateLimits", "callRateLimit", "currentCapacity",
                       "dynamicThrottlingEnabled", "model", "raiPolicyName", "versionUpgradeOption"})


class Models(Protocol):
    """Where a deployment's model is looked up: the catalog (the command line's), or an account's models, its
    fine-tuned ones among them (ARM's: `fine_tuning/models.AccountModels`)."""

    def get(self, name: str, version: str | None = None) -> ModelSpec | None: ...


class ModelIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    format: str | None = None
    name: str | None = None
    version: str | None = None


class DeploymentPropertiesIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: ModelIn | None = None
    raiPolicyName: str | None = None
    versionUpgradeOption: str | None = None
    scaleSettings: dict[str, Any] | None = None


class DeploymentIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    sku: SkuIn | None = None
    properties: DeploymentPropertiesIn | None = None
    tags: dict[str, str] | None = None


@dataclass(frozen=True)
class Upstream:
    """An OpenAI-compatible server that serves the model instead of this process (set by the operator)."""

    url: str
    model: str | None = None
    api_key: str | None = None


@dataclass(frozen=True)
class LocalWeights:
    """A directory on the server whose weights an in-process engine loads (set by the operator: a diffusers pipeline
    for an image model), and that engine's bounds (`steps`, `resolution`)."""

    path: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Written:
    deployment: DeploymentRecord
    model: ModelSpec
    created: bool


def model_for(catalog: Models, fields: ModelIn | None, account: AccountRecord) -> ModelSpec:
    if fields is None or not fields.name:
        raise arm_error(400, "InvalidResourceProperties", "The deployment's properties.model.name is required.")
    model = catalog.get(fields.name, fields.version)
    described = f"Format:{fields.format}, Name:{fields.name}, Version:{fields.version}"
    if model is None or (fields.format and fields.format.lower() != model.publisher.lower()):
        raise arm_error(400, "DeploymentModelNotSupported",
                        f"The model '{described}' of account deployment is not supported in this region "
                        f"'{account.location}'.")
    return model


def sku_of(body: DeploymentIn, existing: DeploymentRecord | None, model: ModelSpec) -> tuple[str, int]:
    if body.sku is not None:
        name, capacity = body.sku.name, body.sku.capacity
    elif body.properties and body.properties.scaleSettings is not None:  # before sku, deployments had this
        name, capacity = "Standard", body.properties.scaleSettings.get("capacity")
    elif existing is not None:
        name, capacity = existing.sku_name, existing.sku_capacity
    else:
        raise arm_error(400, "InvalidResourceProperties", "The deployment's sku is required.")
    if name not in SKU_NAMES:
        raise arm_error(400, "InvalidResourceProperties",
                        f"The specified SKU '{name}' for model '{model.name} {model.version}' is not supported. "
                        f"The supported SKUs are {', '.join(SKU_NAMES)}.")
    if model.skus and name not in model.skus:
        raise arm_error(400, "InvalidResourceProperties",
                        f"The specified SKU '{name}' for model '{model.name} {model.version}' is not supported. "
                        f"The supported SKUs are {', '.join(model.skus)}.")
    if capacity is None:
        capacity = existing.sku_capacity if existing is not None else 1
    # scaleSettings is a free-form object: its capacity may be anything JSON holds
    if not isinstance(capacity, int) or isinstance(capacity, bool):
        raise arm_error(400, "InvalidCapacity", f"The capacity '{str(capacity)[:64]}' must be a whole number.")
    if capacity < 1:
        raise arm_error(400, "InvalidCapacity", f"The capacity '{capacity}' must be at least 1.")
    return name, capacity


def require_quota(store: StateStore, owner: AccountRecord, model: ModelSpec, sku: str, capacity: int,
                  name: str) -> None:
    """Refuse, as Azure does, a deployment whose capacity the subscription's quota cannot hold."""
    shortfall = check_quota(store, owner.subscription_id, owner.location, model, sku, capacity, (owner.id, name))
    if shortfall is not None:
        raise arm_error(400, "InsufficientQuota",
                        f"This operation require {shortfall.needed} new capacity in quota {shortfall.label}, which "
                        f"is bigger than the current available capacity {shortfall.available}. The current quota "
                        f"usage is {shortfall.used} and the quota limit is {shortfall.limit} for quota "
                        f"{shortfall.label}.")


def require_ptu_size(model: ModelSpec, sku: str, capacity: int) -> None:
    """A provisioned deployment is bought in the catalog's sizes: at least `ptu_minimum` PTUs, in steps of
    `ptu_increment` above it."""
    if sku not in PROVISIONED:
        return
    minimum, step = model.extra.get("ptu_minimum"), model.extra.get("ptu_increment")
    if not isinstance(minimum, int) or not isinstance(step, int) or step < 1:
        return
    if capacity < minimum or (capacity - minimum) % step:
        raise arm_error(400, "InvalidCapacity",
                        f"The specified capacity '{capacity}' of account deployment is not a valid size for a {sku} "
                        f"deployment of {model.name}: at least {minimum} PTUs, in steps of {step} above it.")


def require_spillover(store: StateStore, owner: AccountRecord, source: spillover.Source,
                      properties: dict[str, Any]) -> None:
    """A spillover deployment that exists in the same account and may take the provisioned deployment's overflow
    (`quota/spillover.py`); the property, when set, is kept as given."""
    if spillover.PROPERTY not in properties:
        return
    name = properties[spillover.PROPERTY]
    wrong = spillover.check_name(name) or spillover.problem(source, name, store.deployment(owner.id, name))
    if wrong is not None:
        raise arm_error(400, "InvalidResourceProperties", f"properties.{spillover.PROPERTY}: {wrong}")


def require_fleet_capacity(store: StateStore, owner: AccountRecord, model: ModelSpec, sku: str, capacity: int,
                           name: str, gateway: Gateway | None) -> None:
    """Refuse what the subscription's model servers cannot serve, where one of them lists the model."""
    servers = specs_in(store.engine, owner.subscription_id)
    if not servers or fine_tuned(model):
        return
    refusal = check_deployment(servers, reservations_in(store, owner.subscription_id),
                               gateway or Gateway.from_settings(), owner.location, sku, model, capacity,
                               f"{owner.id}/{name}")
    if refusal is not None:
        raise arm_error(400, "InvalidCapacity", refusal)


def _policy_exists(store: StateStore, account: AccountRecord, name: str) -> bool:
    return name in BUILT_IN_POLICIES or store.child(account.id, "raiPolicies", name) is not None


def require_weights(model: ModelSpec, upstream: Upstream | None, local: LocalWeights | None,
                    existing: DeploymentRecord | None) -> None:
    """A model with no packaged weights (DALL-E 3) is served only by an upstream server or from weights the operator
    gives, so only the operator can deploy it, or replace a deployment of it that has them."""
    if model.packaged or upstream is not None or local is not None or model.extra.get("path"):
        return
    if existing is not None and (existing.upstream_url or existing.model_path):
        return
    raise arm_error(400, "InvalidResourceProperties",
                    f"The model '{model.name} {model.version}' has no weights on this server: the operator deploys it "
                    "with an upstream server or a directory of weights (`azurine deployments create --upstream-url` "
                    "or `--model-path`).")


def put_deployment(store: StateStore, catalog: Models, owner: AccountRecord, name: str, body: DeploymentIn,
                   principal: str, upstream: Upstream | None = None, local: LocalWeights | None = None,
                   gateway: Gateway | None = None) -> Written:
    """Create or replace `owner`'s deployment `name` (ARM's PUT). `gateway` is where the answering server runs
    (the settings' region and models directory where not given)."""
    check_name(name, "deployments")
    existing = store.deployment(owner.id, name)
    props = body.properties or DeploymentPropertiesIn()
    if props.model is None and existing is not None:
        props.model = ModelIn(format=existing.model_format, name=existing.model_name, version=existing.model_version)
    model = model_for(catalog, props.model, owner)
    sku, capacity = sku_of(body, existing, model)
    upgrade = props.versionUpgradeOption or (existing.version_upgrade_option if existing else UPGRADE_OPTIONS[0])
    if upgrade not in UPGRADE_OPTIONS:
        raise arm_error(400, "InvalidResourceProperties",
                        f"The versionUpgradeOption '{upgrade}' is invalid; use one of {', '.join(UPGRADE_OPTIONS)}.")
    policy = props.raiPolicyName or (existing.rai_policy_name if existing else "Microsoft.DefaultV2")
    if not _policy_exists(store, owner, policy):
        raise arm_error(400, "InvalidResourceProperties", f"The RAI policy '{policy}' was not found in this account.")
    if sku in BATCH and not model.can("chat") and not model.can("embeddings"):
        raise arm_error(400, "InvalidResourceProperties", f"{model.name} cannot be deployed as {sku}.")
    require_weights(model, upstream, local, existing)
    require_ptu_size(model, sku, capacity)
    require_quota(store, owner, model, sku, capacity, name)
    extra = {k: v for k, v in (props.model_extra or {}).items() if k not in READ_ONLY}
    if extra.get(spillover.PROPERTY, "") is None:  # a null spillover deployment is none
        del extra[spillover.PROPERTY]
    require_spillover(store, owner, spillover.Source(name, sku, model.name, model.version), extra)
    placed_by_operator = upstream or local or (existing is not None and (existing.upstream_url or existing.model_path))
    if not placed_by_operator:
        require_fleet_capacity(store, owner, model, sku, capacity, name, gateway)
    deployment, created = store.put_deployment(
        owner.id, name, model_format=model.publisher, model_name=model.name, model_version=model.version,
        sku_name=sku, sku_capacity=capacity, rai_policy_name=policy, version_upgrade_option=upgrade,
        properties=extra, tags=body.tags if body.tags is not None else (existing.tags if existing else {}),
        principal=principal, upstream=(upstream.url, upstream.model, upstream.api_key) if upstream else None,
        local=(local.path, local.options) if local else None)
    return Written(deployment, model, created)


def update_deployment(store: StateStore, catalog: Models, owner: AccountRecord, existing: DeploymentRecord,
                      body: DeploymentIn, principal: str, gateway: Gateway | None = None) -> Written:
    """Resize or retag an existing deployment (ARM's PATCH); its model, policy and spillover deployment stay."""
    model = catalog.get(existing.model_name, existing.model_version)
    if model is None:
        raise arm_error(400, "DeploymentModelNotSupported",
                        f"The model '{existing.model_name} {existing.model_version}' of account deployment is not "
                        f"supported in this region '{owner.location}'.")
    sku, capacity = sku_of(body, existing, model)
    require_ptu_size(model, sku, capacity)
    require_quota(store, owner, model, sku, capacity, existing.name)
    require_spillover(store, owner, spillover.Source(existing.name, sku, model.name, model.version),
                      existing.properties)
    if not existing.upstream_url and not existing.model_path:
        require_fleet_capacity(store, owner, model, sku, capacity, existing.name, gateway)
    deployment, _ = store.put_deployment(
        owner.id, existing.name, model_format=existing.model_format, model_name=existing.model_name,
        model_version=existing.model_version, sku_name=sku, sku_capacity=capacity,
        rai_policy_name=existing.rai_policy_name, version_upgrade_option=existing.version_upgrade_option,
        properties=existing.properties, tags=body.tags if body.tags is not None else existing.tags,
        principal=principal)
    return Written(deployment, model, False)
