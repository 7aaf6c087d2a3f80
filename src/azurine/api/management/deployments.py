"""`accounts/deployments`: a catalog model under a name, with a deployment type and capacity. The rules of a
write are `deployment_service`'s, shared with the command line."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from azurine.api.context import services
from azurine.api.management import deployment_service
from azurine.api.management.accounts import ACCOUNTS, find_account
from azurine.api.management.arm import (
    PROVIDER,
    account_id,
    arm_request,
    async_operation_url,
    check_api_version,
    not_found,
    parse_arm_body,
    system_data,
)
from azurine.api.management.deployment_service import DeploymentIn
from azurine.api.sse import AzureJSONResponse
from azurine.catalog import ModelSpec
from azurine.fleet.capacity import Gateway
from azurine.quota.capacity import STANDARD
from azurine.storage.state import AccountRecord, DeploymentRecord

router = APIRouter()
DEPLOYMENTS = ACCOUNTS + "/{account}/deployments"


def capabilities(model: ModelSpec) -> dict[str, str]:
    found = {"chatCompletion": model.can("chat"), "completion": model.can("completion"),
             "embeddings": model.can("embeddings"), "audio": model.audio,
             "imageGenerations": model.can("image_generation"), "vision": model.can("vision")}
    out = {k: "true" for k, v in found.items() if v}
    if not model.audio and not model.can("image_generation"):
        out["maxContextToken"] = str(model.context_length)
    if model.can("chat"):
        out["jsonObjectResponse"] = "true"
        out["jsonSchemaResponse"] = "true"
    return out


def rate_limits(sku: str, capacity: int, model: ModelSpec | None = None) -> list[dict[str, Any]]:
    """As Azure reports them: a Standard-family unit is 1,000 tokens and 6 requests a minute, or, for Whisper, TTS
    and DALL-E, one request a minute."""
    if sku in STANDARD and model is not None and model.rate_limit == "requests":
        return [{"count": float(capacity), "key": "request", "renewalPeriod": 60.0}]
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
        "rateLimits": rate_limits(deployment.sku_name, deployment.sku_capacity, model),
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


def _gateway(request: Request) -> Gateway:
    """This server as a place the fleet's capacity checks count: its region, and the models installed here."""
    settings = services(request).settings
    return Gateway(settings.region.lower(), settings.models_dir)


async def _find(request: Request, account: AccountRecord, name: str) -> DeploymentRecord:
    deployment = await run_in_threadpool(services(request).store.deployment, account.id, name)
    if deployment is None:
        raise not_found("accounts/deployments", f"{account.name}/{name}", account.resource_group)
    return deployment


@router.put(DEPLOYMENTS + "/{name}")
async def create_deployment(subscription: str, group: str, account: str, name: str, request: Request) -> Response:
    principal = await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    body = await parse_arm_body(request, DeploymentIn)
    svc = services(request)
    written = await run_in_threadpool(deployment_service.put_deployment, svc.store, svc.models_of(owner.id), owner,
                                      name, body, principal.object_id, None, None, _gateway(request))
    svc.cache.forget()
    resource = f"{account_id(subscription, group, account)}/deployments/{name}"
    operation = await run_in_threadpool(svc.store.add_operation, subscription, owner.location, resource, "Succeeded")
    return AzureJSONResponse(render_deployment(owner, written.deployment, written.model),
                             status_code=201 if written.created else 200,
                             headers={"Azure-AsyncOperation": async_operation_url(
                                 request, subscription, owner.location, operation, check_api_version(request))})


@router.patch(DEPLOYMENTS + "/{name}")
async def update_deployment(subscription: str, group: str, account: str, name: str, request: Request) -> Response:
    principal = await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    existing = await _find(request, owner, name)
    body = await parse_arm_body(request, DeploymentIn)
    svc = services(request)
    written = await run_in_threadpool(deployment_service.update_deployment, svc.store, svc.models_of(owner.id),
                                      owner, existing, body, principal.object_id, _gateway(request))
    svc.cache.forget()
    return AzureJSONResponse(render_deployment(owner, written.deployment, written.model))


@router.get(DEPLOYMENTS + "/{name}")
async def get_deployment(subscription: str, group: str, account: str, name: str, request: Request) -> Response:
    await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    deployment = await _find(request, owner, name)
    models = services(request).models_of(owner.id)
    model = await run_in_threadpool(models.get, deployment.model_name, deployment.model_version)
    return AzureJSONResponse(render_deployment(owner, deployment, model))


@router.get(DEPLOYMENTS)
async def list_deployments(subscription: str, group: str, account: str, request: Request) -> Response:
    await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    models = services(request).models_of(owner.id)

    def rendered() -> list[dict[str, Any]]:  # a fine-tuned model is read from the database
        return [render_deployment(owner, d, models.get(d.model_name, d.model_version))
                for d in services(request).store.deployments(owner.id)]

    return AzureJSONResponse({"value": await run_in_threadpool(rendered)})


@router.delete(DEPLOYMENTS + "/{name}")
async def delete_deployment(subscription: str, group: str, account: str, name: str, request: Request) -> Response:
    await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    deleted = await run_in_threadpool(services(request).store.delete_deployment, owner.id, name)
    services(request).cache.forget()
    return Response(status_code=200 if deleted else 204)

