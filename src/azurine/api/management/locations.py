"""Models, quota usages and operation statuses, per location and per account."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from azurine.api.context import services
from azurine.api.management.accounts import ACCOUNTS, find_account
from azurine.api.management.arm import PROVIDER, arm_error, arm_request, iso
from azurine.api.management.deployments import capabilities, rate_limits
from azurine.api.sse import AzureJSONResponse
from azurine.catalog import ModelSpec
from azurine.fine_tuning.models import fine_tuned
from azurine.quota.capacity import default_limit, skus_of, usage_name, usages
from azurine.storage.state import AccountRecord

router = APIRouter()
LOCATION = f"/subscriptions/{{subscription}}/providers/{PROVIDER}/locations/{{location}}"
# the catalog's models are supported from the day the package shipped, for ten years
AVAILABLE_SINCE = 1764115200.0
DEPRECATION = AVAILABLE_SINCE + 10 * 365 * 24 * 3600


def account_model(model: ModelSpec, limits: dict[str, int]) -> dict[str, Any]:
    """A model as ARM lists it. One that takes fine-tuning has `fineTune` among its capabilities and a date for
    it; a fine-tuned model names its `baseModel`."""
    marks = capabilities(model)
    deprecation = {"inference": iso(DEPRECATION)}
    if model.extra.get("fine_tune"):
        marks["fineTune"] = "true"
        deprecation["fineTune"] = iso(DEPRECATION)
    body: dict[str, Any] = {
        "capabilities": marks,
        "deprecation": deprecation,
        "format": model.publisher,
        "isDefaultVersion": True,
        "lifecycleStatus": "GenerallyAvailable",
        "maxCapacity": max(limits.get(usage_name(s, model), default_limit(s)) for s in skus_of(model)),
        "name": model.name,
        "skus": [{
            "capacity": {"default": 1, "maximum": limits.get(usage_name(sku, model), default_limit(sku)),
                         "minimum": 1, "step": 1},
            "name": sku,
            "rateLimits": rate_limits(sku, 1, model),
            "usageName": usage_name(sku, model),
        } for sku in skus_of(model)],
        "version": model.version,
    }
    if fine_tuned(model):
        body["baseModel"] = {"format": model.publisher, "name": model.extra["base_model"],
                             "version": model.extra["base_version"]}
    return body


def usage_json(usage: Any) -> dict[str, Any]:
    return {"currentValue": float(usage.current), "limit": float(usage.limit),
            "name": {"localizedValue": usage.localized, "value": usage.name}, "unit": "Count"}


async def _models(request: Request, subscription: str, location: str,
                  account: AccountRecord | None = None) -> list[dict[str, Any]]:
    """The catalog's models, and with an `account` its fine-tuned ones after them."""
    svc = services(request)
    limits = await run_in_threadpool(svc.store.quota_limits, subscription, location)
    models = list(svc.catalog)
    if account is not None:
        models += await run_in_threadpool(svc.models_of(account.id).fine_tuned)
    return [account_model(m, limits) for m in models]


async def _usages(request: Request, subscription: str, location: str) -> list[dict[str, Any]]:
    svc = services(request)
    found = await run_in_threadpool(usages, svc.store, subscription, location, list(svc.catalog))
    return [usage_json(u) for u in found]


@router.get(LOCATION + "/models")
async def location_models(subscription: str, location: str, request: Request) -> Response:
    await arm_request(request)
    models = await _models(request, subscription, location)
    return AzureJSONResponse({"value": [{"kind": "OpenAI", "model": m, "skuName": "S0"} for m in models]})


@router.get(LOCATION + "/usages")
async def location_usages(subscription: str, location: str, request: Request) -> Response:
    await arm_request(request)
    return AzureJSONResponse({"value": await _usages(request, subscription, location)})


@router.get(ACCOUNTS + "/{account}/models")
async def account_models(subscription: str, group: str, account: str, request: Request) -> Response:
    await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    return AzureJSONResponse({"value": await _models(request, subscription, owner.location, owner)})


@router.get(ACCOUNTS + "/{account}/usages")
async def account_usages(subscription: str, group: str, account: str, request: Request) -> Response:
    await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    return AzureJSONResponse({"value": await _usages(request, subscription, owner.location)})


@router.get(LOCATION + "/operationStatuses/{operation}")
async def operation_status(subscription: str, location: str, operation: str, request: Request) -> Response:
    await arm_request(request)
    record = await run_in_threadpool(services(request).store.operation, operation)
    if record is None:
        raise arm_error(404, "OperationNotFound", f"The operation '{operation}' was not found.")
    body: dict[str, Any] = {"id": request.url.path, "name": record.id, "startTime": iso(record.created_at),
                            "status": record.status}
    if record.ended_at is not None:
        body["endTime"] = iso(record.ended_at)
    return AzureJSONResponse(body)
