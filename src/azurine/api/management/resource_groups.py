"""`Microsoft.Resources/resourceGroups`: create, read, tag, list, delete, as `az group` calls them.

A group is made in an existing subscription and keeps the location it was made in; deleting it deletes the
accounts in it, as ARM deletes a group's resources with it. azure-mgmt-resource spells the segment
`resourcegroups`, the other SDKs `resourceGroups`, and ARM takes either."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from azurine.api.context import services
from azurine.api.management.arm import (
    arm_error,
    authorize,
    group_not_found,
    parse_arm_body,
    platform,
    subscription_caller,
)
from azurine.api.sse import AzureJSONResponse
from azurine.identity.access import Operation
from azurine.storage.subscriptions import GroupRecord

router = APIRouter()
GROUPS = ("/subscriptions/{subscription}/resourcegroups", "/subscriptions/{subscription}/resourceGroups")
GROUP_TYPE = "Microsoft.Resources/resourceGroups"
# ARM's rule: 1-90 letters, digits, underscores, hyphens, periods and parentheses, not ending in a period
NAME = re.compile(r"^[-\w.()]{0,89}[-\w()]$")
MAX_TAGS = 50


class GroupIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    location: str | None = None
    tags: dict[str, str] | None = None
    managedBy: str | None = None


def group_id(subscription: str, name: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{name}"


def group_json(record: GroupRecord) -> dict[str, Any]:
    return {"id": group_id(record.subscription_id, record.name), "name": record.name, "type": GROUP_TYPE,
            "location": record.location, "properties": {"provisioningState": "Succeeded"}, "tags": record.tags}


def _operation(subscription: str, name: str, verb: str) -> Operation:
    return Operation(group_id(subscription, name), f"Microsoft.Resources/subscriptions/resourceGroups/{verb}",
                     False)


def _checked_tags(tags: dict[str, str] | None) -> dict[str, str] | None:
    if tags is not None and (len(tags) > MAX_TAGS or any(len(k) > 512 or len(v) > 256 for k, v in tags.items())):
        raise arm_error(400, "InvalidTag", f"A resource group takes at most {MAX_TAGS} tags, names of up to 512 "
                        "characters and values of up to 256.")
    return tags


async def _put(subscription: str, name: str, request: Request) -> Response:
    principal = await subscription_caller(request, subscription)
    if not NAME.match(name):
        raise arm_error(400, "InvalidResourceGroup", f"The provided resource group name '{name[:100]}' has these "
                        "invalid characters or length: use 1 to 90 letters, digits, underscores, hyphens, periods "
                        "and parentheses, not ending in a period.")
    await authorize(request, principal, _operation(subscription, name, "write"))
    body = await parse_arm_body(request, GroupIn)
    if not body.location:
        raise arm_error(400, "LocationRequired", "The location property is required for this definition.")
    store = platform(request)
    existing = await run_in_threadpool(store.group, subscription, name)
    if existing is not None and existing.location.lower() != body.location.lower():
        raise arm_error(409, "InvalidResourceGroupLocation",
                        f"Invalid resource group location '{body.location[:64]}'. The Resource group already exists "
                        f"in location '{existing.location}'.")
    record, created = await run_in_threadpool(store.put_group, subscription, name, body.location[:64],
                                              _checked_tags(body.tags))
    return AzureJSONResponse(group_json(record), status_code=201 if created else 200)


async def _get(subscription: str, name: str, request: Request) -> Response:
    principal = await subscription_caller(request, subscription)
    await authorize(request, principal, _operation(subscription, name, "read"))
    record = await run_in_threadpool(platform(request).group, subscription, name)
    if record is None:
        raise group_not_found(name)
    return AzureJSONResponse(group_json(record))


async def _exists(subscription: str, name: str, request: Request) -> Response:
    principal = await subscription_caller(request, subscription)
    await authorize(request, principal, _operation(subscription, name, "read"))
    record = await run_in_threadpool(platform(request).group, subscription, name)
    return Response(status_code=204 if record else 404)


async def _patch(subscription: str, name: str, request: Request) -> Response:
    principal = await subscription_caller(request, subscription)
    await authorize(request, principal, _operation(subscription, name, "write"))
    body = await parse_arm_body(request, GroupIn)
    store = platform(request)
    existing = await run_in_threadpool(store.group, subscription, name)
    if existing is None:
        raise group_not_found(name)
    record, _ = await run_in_threadpool(store.put_group, subscription, existing.name, existing.location,
                                        _checked_tags(body.tags))
    return AzureJSONResponse(group_json(record))


async def _delete(subscription: str, name: str, request: Request) -> Response:
    principal = await subscription_caller(request, subscription)
    await authorize(request, principal, _operation(subscription, name, "delete"))
    store, svc = platform(request), services(request)
    if await run_in_threadpool(store.group, subscription, name) is None:
        raise group_not_found(name)
    for account in await run_in_threadpool(store.group_accounts, subscription, name):
        await run_in_threadpool(svc.store.delete_account, account)
    await run_in_threadpool(store.remove_group, subscription, name)
    svc.cache.forget()  # the deleted accounts' keys stop working on this replica at once
    return Response(status_code=200)


async def _list(subscription: str, request: Request) -> Response:
    """The groups the caller may read."""
    principal = await subscription_caller(request, subscription)
    access = services(request).access
    groups = await run_in_threadpool(platform(request).groups, subscription)
    readable = [g for g in groups if await run_in_threadpool(
        access.allowed, principal, _operation(subscription, g.name, "read"))]
    return AzureJSONResponse({"value": [group_json(g) for g in readable]})


for collection in GROUPS:
    router.add_api_route(collection + "/{name}", _put, methods=["PUT"])
    router.add_api_route(collection + "/{name}", _get, methods=["GET"])
    router.add_api_route(collection + "/{name}", _exists, methods=["HEAD"])
    router.add_api_route(collection + "/{name}", _patch, methods=["PATCH"])
    router.add_api_route(collection + "/{name}", _delete, methods=["DELETE"])
    router.add_api_route(collection, _list, methods=["GET"])
