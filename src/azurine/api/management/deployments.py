"""`accounts/deployments`: a catalog model under a name, with a deployment type and capacity."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from azurine.api.context import services
from azurine.api.management.accounts import ACCOUNTS, SkuIn, find_account
from azurine.api.management.arm import (
    PROVIDER,
    account_id,
    arm_error,
    arm_request,
    async_operation_url,
    check_api_version,
    check_name,
    not_found,
    parse_arm_body,
    system_data,
)
from azurine.api.sse import AzureJSONResponse
from azurine.catalog import ModelSpec
from azurine.quota.capacity import BATCH, SKU_NAMES, STANDARD, check_quota
from azurine.storage.state import AccountRecord, DeploymentRecord

router = APIRouter()
DEPLOYMENTS = ACCOUNTS + "/{account}/deployments"
UPGRADE_OPTIONS = ("OnceNewDefaultVersionAvailable", "OnceCurrentVersionExpired", "NoAutoUpgrade")
BUILT_IN_POLICIES = ("Microsoft.Default", "Microsoft.DefaultV2")
READ_ONLY = frozenset({"provisioningState", "capabilities", "rateLimits", "callRateLimit", "currentCapacity",
                       "dynamicThrottlingEnabled", "model", "raiPolicyName", "versionUpgradeOption"})


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


def capabilities(model: ModelSpec) -> dict[str, str]:
    found = {"chatCompletion": model.can("chat"), "completion": model.can("completion"),
             "embeddings": model.can("embeddings")}
    out = {k: "true" for k, v in found.items() if v}
    out["maxContextToken"] = str(model.context_length)
    if model.can("chat"):
        out["jsonObjectResponse"] = "true"
        out["jsonSchemaResponse"] = "true"
    return out


def rate_limits(sku: str, capacity: int) -> list[dict[str, Any]]:
    """As Azure reports them: a Standard-family unit is 1,000 tokens and 6 requests a minute."""
    if sku in STANDARD:
        return [{"count": float(capacity), "key": "request", "renewalPeriod": 10.0},
                {"count": float(capacity * 1000), "key": "token", "renewalPeriod": 60.0}]
    return []


def render_deployment(account: AccountRecord, deployment: DeploymentRecord, model: ModelSpec | None) -> dict[str, Any]:
    properties: dict[str, Any] = {**deployment.properties}
    properties.update({
        "model": {"format": deployment.model_format, "name": deployment.model_name,
                  "version": deployment.model_version},
        "provisioningState": "Succeeded",
        "raiPolicyName": deployment.rai_policy_name,
        "versionUpgradeOption": deployment.version_upgrade_option,
        "rateLimits": rate_limits(deployment.sku_name, deployment.sku_capacity),
        "currentCapacity": deployment.sku_capacity,
        "dynamicThrottlingEnabled": False,
    })
    if model is not None:
        properties["capabilities"] = capabilities(model)
    body = {
        "etag": deployment.etag,
        "id": f"{account_id(account.subscription_id, account.resource_group, account.name)}/deployments/"
              f"{deployment.name}",
        "name": deployment.name, "properties": properties,
        "sku": {"capacity": deployment.sku_capacity, "name": deployment.sku_name},
        "systemData": system_data(deployment.created_by, deployment.created_at, deployment.updated_by,
                                  deployment.updated_at),
        "type": f"{PROVIDER}/accounts/deployments",
    }
    if deployment.tags:
        body["tags"] = deployment.tags
    return body


def _model_for(request: Request, fields: ModelIn | None, account: AccountRecord) -> ModelSpec:
    if fields is None or not fields.name:
        raise arm_error(400, "InvalidResourceProperties", "The deployment's properties.model.name is required.")
    catalog = services(request).catalog
    model = catalog.get(fields.name, fields.version)
    described = f"Format:{fields.format}, Name:{fields.name}, Version:{fields.version}"
    if model is None or (fields.format and fields.format.lower() != model.publisher.lower()):
        raise arm_error(400, "DeploymentModelNotSupported",
                        f"The model '{described}' of account deployment is not supported in this region "
                        f"'{account.location}'.")
    return model


def _sku(body: DeploymentIn, existing: DeploymentRecord | None, model: ModelSpec) -> tuple[str, int]:
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
    if capacity is None:
        capacity = existing.sku_capacity if existing is not None else 1
    if capacity < 1:
        raise arm_error(400, "InvalidCapacity", f"The capacity '{capacity}' must be at least 1.")
    return name, capacity


def _policy_exists(request: Request, account: AccountRecord, name: str) -> bool:
    if name in BUILT_IN_POLICIES:
        return True
    return services(request).store.child(account.id, "raiPolicies", name) is not None


async def require_quota(request: Request, owner: AccountRecord, model: ModelSpec, sku: str, capacity: int,
                        name: str) -> None:
    """Refuse, as Azure does, a deployment whose capacity the subscription's quota cannot hold."""
    shortfall = await run_in_threadpool(check_quota, services(request).store, owner.subscription_id, owner.location,
                                        model, sku, capacity, (owner.id, name))
    if shortfall is not None:
        raise arm_error(400, "InsufficientQuota",
                        f"This operation require {shortfall.needed} new capacity in quota {shortfall.label}, which "
                        f"is bigger than the current available capacity {shortfall.available}. The current quota "
                        f"usage is {shortfall.used} and the quota limit is {shortfall.limit} for quota "
                        f"{shortfall.label}.")


async def _find(request: Request, account: AccountRecord, name: str) -> DeploymentRecord:
    deployment = await run_in_threadpool(services(request).store.deployment, account.id, name)
    if deployment is None:
        raise not_found("accounts/deployments", f"{account.name}/{name}", account.resource_group)
    return deployment


@router.put(DEPLOYMENTS + "/{name}")
async def create_deployment(subscription: str, group: str, account: str, name: str, request: Request) -> Response:
    principal = await arm_request(request)
    check_name(name, "deployments")
    owner = await find_account(request, subscription, group, account)
    body = await parse_arm_body(request, DeploymentIn)
    svc = services(request)
    existing = await run_in_threadpool(svc.store.deployment, owner.id, name)
    props = body.properties or DeploymentPropertiesIn()
    if props.model is None and existing is not None:
        props.model = ModelIn(format=existing.model_format, name=existing.model_name, version=existing.model_version)
    model = _model_for(request, props.model, owner)
    sku, capacity = _sku(body, existing, model)
    upgrade = props.versionUpgradeOption or (existing.version_upgrade_option if existing else UPGRADE_OPTIONS[0])
    if upgrade not in UPGRADE_OPTIONS:
        raise arm_error(400, "InvalidResourceProperties",
                        f"The versionUpgradeOption '{upgrade}' is invalid; use one of {', '.join(UPGRADE_OPTIONS)}.")
    policy = props.raiPolicyName or (existing.rai_policy_name if existing else "Microsoft.DefaultV2")
    if not await run_in_threadpool(_policy_exists, request, owner, policy):
        raise arm_error(400, "InvalidResourceProperties", f"The RAI policy '{policy}' was not found in this account.")
    if sku in BATCH and not model.can("chat") and not model.can("embeddings"):
        raise arm_error(400, "InvalidResourceProperties", f"{model.name} cannot be deployed as {sku}.")
    await require_quota(request, owner, model, sku, capacity, name)
    extra = {k: v for k, v in (props.model_extra or {}).items() if k not in READ_ONLY}
    deployment, created = await run_in_threadpool(
        lambda: svc.store.put_deployment(
            owner.id, name, model_format=model.publisher, model_name=model.name, model_version=model.version,
            sku_name=sku, sku_capacity=capacity, rai_policy_name=policy, version_upgrade_option=upgrade,
            properties=extra, tags=body.tags if body.tags is not None else (existing.tags if existing else {}),
            principal=principal.object_id))
    svc.cache.clear()
    resource = f"{account_id(subscription, group, account)}/deployments/{name}"
    operation = await run_in_threadpool(svc.store.add_operation, subscription, owner.location, resource, "Succeeded")
    return AzureJSONResponse(render_deployment(owner, deployment, model), status_code=201 if created else 200,
                             headers={"Azure-AsyncOperation": async_operation_url(
                                 request, subscription, owner.location, operation, check_api_version(request))})


@router.patch(DEPLOYMENTS + "/{name}")
async def update_deployment(subscription: str, group: str, account: str, name: str, request: Request) -> Response:
    principal = await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    existing = await _find(request, owner, name)
    body = await parse_arm_body(request, DeploymentIn)
    svc = services(request)
    model = svc.catalog.get(existing.model_name, existing.model_version)
    assert model is not None
    sku, capacity = _sku(body, existing, model)
    await require_quota(request, owner, model, sku, capacity, name)
    deployment, _ = await run_in_threadpool(
        lambda: svc.store.put_deployment(
            owner.id, name, model_format=existing.model_format, model_name=existing.model_name,
            model_version=existing.model_version, sku_name=sku, sku_capacity=capacity,
            rai_policy_name=existing.rai_policy_name, version_upgrade_option=existing.version_upgrade_option,
            properties=existing.properties, tags=body.tags if body.tags is not None else existing.tags,
            principal=principal.object_id))
    svc.cache.clear()
    return AzureJSONResponse(render_deployment(owner, deployment, model))


@router.get(DEPLOYMENTS + "/{name}")
async def get_deployment(subscription: str, group: str, account: str, name: str, request: Request) -> Response:
    await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    deployment = await _find(request, owner, name)
    model = services(request).catalog.get(deployment.model_name, deployment.model_version)
    return AzureJSONResponse(render_deployment(owner, deployment, model))


@router.get(DEPLOYMENTS)
async def list_deployments(subscription: str, group: str, account: str, request: Request) -> Response:
    await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    rows = await run_in_threadpool(services(request).store.deployments, owner.id)
    catalog = services(request).catalog
    return AzureJSONResponse({"value": [render_deployment(owner, d, catalog.get(d.model_name, d.model_version))
                                        for d in rows]})


@router.delete(DEPLOYMENTS + "/{name}")
async def delete_deployment(subscription: str, group: str, account: str, name: str, request: Request) -> Response:
    await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    deleted = await run_in_threadpool(services(request).store.delete_deployment, owner.id, name)
    services(request).cache.clear()
    return Response(status_code=200 if deleted else 204)

