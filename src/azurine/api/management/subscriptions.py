"""`Microsoft.Resources` subscriptions and tenants, as `az login`, `az account` and azure-mgmt-resource's
SubscriptionClient read them.

A principal sees the subscriptions where it holds a role, at the subscription or beneath it, as in Azure; the
built-in administrator sees them all. A subscription it cannot see is, to it, one that does not exist."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from azurine.api.context import services
from azurine.api.management.api_versions import SUBSCRIPTIONS
from azurine.api.management.arm import authenticate, check_api_version, platform, subscription_not_found
from azurine.api.sse import AzureJSONResponse
from azurine.identity.roles import covers
from azurine.identity.tokens import TENANT_ID, Principal
from azurine.storage.subscriptions import SubscriptionRecord

router = APIRouter()
TENANT_NAME = "Azurine"
TENANT_DOMAIN = "azurine.local"


def subscription_json(record: SubscriptionRecord) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{record.id}", "authorizationSource": "RoleBased", "managedByTenants": [],
        "subscriptionId": record.id, "tenantId": record.tenant_id, "displayName": record.display_name,
        "state": record.state,
        "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01",
                                 "spendingLimit": "Off"},
        "tags": {},
    }


def _visible(request: Request, principal: Principal, records: list[SubscriptionRecord]) -> list[SubscriptionRecord]:
    access = services(request).access
    if access.is_administrator(principal):
        return records
    scopes = access.scopes(principal)
    return [r for r in records if any(covers(f"/subscriptions/{r.id}", scope) for scope in scopes)]


async def visible_subscription(request: Request, principal: Principal, subscription: str) -> SubscriptionRecord:
    """The subscription, when it exists and the principal may see it; else SubscriptionNotFound."""
    found = await run_in_threadpool(platform(request).subscription, subscription)
    shown = await run_in_threadpool(_visible, request, principal, [found] if found else [])
    if not shown:
        raise subscription_not_found(subscription)
    return shown[0]


@router.get("/subscriptions")
async def list_subscriptions(request: Request) -> Response:
    check_api_version(request, SUBSCRIPTIONS)
    principal = await authenticate(request)
    records = await run_in_threadpool(platform(request).subscriptions)
    shown = await run_in_threadpool(_visible, request, principal, records)
    return AzureJSONResponse({"value": [subscription_json(r) for r in shown]})


@router.get("/subscriptions/{subscription}")
async def get_subscription(subscription: str, request: Request) -> Response:
    check_api_version(request, SUBSCRIPTIONS)
    principal = await authenticate(request)
    return AzureJSONResponse(subscription_json(await visible_subscription(request, principal, subscription)))


@router.get("/subscriptions/{subscription}/locations")
async def list_locations(subscription: str, request: Request) -> Response:
    """The one region this server is."""
    check_api_version(request, SUBSCRIPTIONS)
    principal = await authenticate(request)
    found = await visible_subscription(request, principal, subscription)
    settings = services(request).settings
    return AzureJSONResponse({"value": [{
        "id": f"/subscriptions/{found.id}/locations/{settings.region}", "name": settings.region,
        "displayName": settings.region_display_name, "regionalDisplayName": settings.region_display_name,
        "type": "Region", "metadata": {"regionType": "Physical", "regionCategory": "Recommended"},
    }]})


@router.get("/tenants")
async def list_tenants(request: Request) -> Response:
    """The directory of the caller's principal: the built-in tenant, or the trusted tenant it signed in from."""
    check_api_version(request, SUBSCRIPTIONS)
    principal = await authenticate(request)
    tenant = principal.directory
    built_in = tenant == TENANT_ID
    return AzureJSONResponse({"value": [{
        "id": f"/tenants/{tenant}", "tenantId": tenant, "tenantCategory": "Home", "tenantType": "AAD",
        "displayName": TENANT_NAME if built_in else tenant,
        "defaultDomain": TENANT_DOMAIN if built_in else None,
        "domains": [TENANT_DOMAIN] if built_in else [],
    }]})
