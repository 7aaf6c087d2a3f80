"""The resource provider as ARM describes it: `GET /subscriptions/{s}/providers[/Microsoft.CognitiveServices]` and
its `register` (`az provider show|register`), with each resource type Azurine serves and every api-version it
takes; and the provider's subscription-wide calls: `skus` (`az cognitiveservices account list-skus|list-kinds`) and
`checkDomainAvailability`.

Microsoft.CognitiveServices is registered in every subscription: there is nothing to set up before using it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from azurine.api.context import services
from azurine.api.management.accounts import KINDS
from azurine.api.management.api_versions import COGNITIVE_SERVICES
from azurine.api.management.arm import (
    PROVIDER,
    arm_error,
    arm_request,
    authenticate,
    authorize,
    check_api_version,
    parse_arm_body,
    subscription_caller,
)
from azurine.api.sse import AzureJSONResponse
from azurine.identity.access import Operation

router = APIRouter()
PROVIDERS = "/subscriptions/{subscription}/providers"
RESOURCE_TYPES = (
    "accounts", "accounts/deployments", "accounts/models", "accounts/usages", "accounts/raiPolicies",
    "accounts/raiBlocklists", "accounts/raiBlocklists/raiBlocklistItems", "locations", "locations/models",
    "locations/usages", "locations/operationStatuses", "locations/raiContentFilters", "skus",
    "checkDomainAvailability",
)
SKUS = ("S0",)


def provider_json(subscription: str, region: str) -> dict[str, Any]:
    versions = sorted(COGNITIVE_SERVICES, reverse=True)
    return {
        "id": f"/subscriptions/{subscription}/providers/{PROVIDER}", "namespace": PROVIDER,
        "registrationState": "Registered", "registrationPolicy": "RegistrationRequired",
        "resourceTypes": [{"resourceType": t, "locations": [region], "apiVersions": versions,
                           "defaultApiVersion": max(v for v in versions if "preview" not in v)}
                          for t in RESOURCE_TYPES],
    }


def _ours(namespace: str) -> None:
    if namespace.lower() != PROVIDER.lower():
        raise arm_error(404, "InvalidResourceNamespace", f"The resource namespace '{namespace[:128]}' is invalid.")


def _read(subscription: str) -> Operation:
    return Operation(f"/subscriptions/{subscription}", "Microsoft.Resources/subscriptions/providers/read", False)


@router.get(PROVIDERS)
async def list_providers(subscription: str, request: Request) -> Response:
    principal = await subscription_caller(request, subscription)
    await authorize(request, principal, _read(subscription))
    return AzureJSONResponse({"value": [provider_json(subscription, services(request).settings.region)]})


@router.get(PROVIDERS + "/{namespace}")
async def get_provider(subscription: str, namespace: str, request: Request) -> Response:
    principal = await subscription_caller(request, subscription)
    _ours(namespace)
    await authorize(request, principal, _read(subscription))
    return AzureJSONResponse(provider_json(subscription, services(request).settings.region))


@router.post(PROVIDERS + "/{namespace}/register")
async def register_provider(subscription: str, namespace: str, request: Request) -> Response:
    principal = await subscription_caller(request, subscription)
    _ours(namespace)
    await authorize(request, principal, Operation(f"/subscriptions/{subscription}", f"{PROVIDER}/register/action",
                                                  False))
    return AzureJSONResponse(provider_json(subscription, services(request).settings.region))


def sku_json(kind: str, name: str, region: str) -> dict[str, Any]:
    return {"resourceType": "accounts", "name": name, "tier": "Standard", "kind": kind, "locations": [region.upper()],
            "restrictions": []}


@router.get(f"{PROVIDERS}/{PROVIDER}/skus")
async def list_skus(subscription: str, request: Request) -> Response:
    await arm_request(request)
    region = services(request).settings.region
    return AzureJSONResponse({"value": [sku_json(kind, name, region) for kind in KINDS for name in SKUS]})


class DomainIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    subdomainName: str
    type: str
    kind: str | None = None


@router.post(f"{PROVIDERS}/{PROVIDER}/checkDomainAvailability")
async def check_domain_availability(subscription: str, request: Request) -> Response:
    """Names and subdomains share one namespace across all accounts, in any case (as endpoints' DNS labels)."""
    check_api_version(request)
    principal = await authenticate(request)
    await authorize(request, principal, Operation(f"/subscriptions/{subscription}",
                                                  f"{PROVIDER}/checkDomainAvailability/action", False))
    body = await parse_arm_body(request, DomainIn)
    label = body.subdomainName[:64]
    taken = await run_in_threadpool(services(request).store.account_named, label)
    answer: dict[str, Any] = {"isSubdomainAvailable": taken is None, "subdomainName": label, "type": body.type[:128],
                              "kind": body.kind}
    if taken is not None:
        answer["reason"] = f"Subdomain name '{label}' is not available as it's already used by a resource."
    return AzureJSONResponse(answer)
