"""`Azurine.Fleet/modelServers`: the model servers a subscription's deployments may run on, as ARM resources under a
provider namespace of Azurine's own, apart from Azure's.

The registry is the operator's: only the built-in administrator, or a principal holding Owner at the
subscription's own scope (not a resource group's, and not Contributor, whose `*` would cover it), may read or
change it. A server serves only the accounts of the subscription it is registered in. Every call, allowed or
denied, other than a read goes to the audit log.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from azurine.api.context import services
from azurine.api.errors import AzureError
from azurine.api.management.arm import (
    arm_error,
    authenticate,
    authorization_failed,
    check_api_version,
    check_name,
    parse_arm_body,
    platform,
    subscription_not_found,
    system_data,
)
from azurine.api.sse import AzureJSONResponse
from azurine.fleet.capacity import reservations_in, reservations_lost
from azurine.fleet.member import Member
from azurine.fleet.placement import fleet_of
from azurine.fleet.servers import MAX_KEY, MAX_MODELS, MAX_URL, InvalidServer, ServerRecord, ServerSpec, server_spec
from azurine.fleet.store import ServerStore, TooManyServers, spec_json, specs_in
from azurine.identity.access import arm_operation
from azurine.identity.roles import ROLES_BY_NAME
from azurine.identity.tokens import Principal

router = APIRouter()
NAMESPACE = "Azurine.Fleet"
RESOURCE_TYPE = f"{NAMESPACE}/modelServers"
FLEET_VERSIONS = frozenset({"2025-06-01"})
SERVERS = f"/subscriptions/{{subscription}}/providers/{RESOURCE_TYPE}"
OWNER = ROLES_BY_NAME["owner"].id

Text = Annotated[StrictStr, Field(max_length=256)]


class ModelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[StrictStr, Field(max_length=128)]
    servedName: Annotated[StrictStr, Field(max_length=128)] | None = None
    ptus: StrictInt | None = None  # what the server carries of the model alone, in the catalog's PTUs


class ProbeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Text | None = None
    intervalSeconds: StrictInt | None = None
    timeoutSeconds: StrictInt | None = None


class PropertiesIn(BaseModel):
    model_config = ConfigDict(extra="ignore")  # read-only properties sent back (health, provisioningState)
    baseUrl: Annotated[StrictStr, Field(max_length=MAX_URL)]
    kind: Text
    apiKey: Annotated[StrictStr, Field(max_length=MAX_KEY)] | None = None
    models: Annotated[list[ModelIn], Field(max_length=MAX_MODELS)]
    region: Annotated[StrictStr, Field(max_length=64)]
    dataZone: Annotated[StrictStr, Field(max_length=16)] | None = None
    capacity: StrictInt
    priority: StrictBool = False
    healthProbe: ProbeIn | None = None


class ServerIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    properties: PropertiesIn


def _is_operator(request: Request, principal: Principal, subscription: str) -> bool:
    access = services(request).access
    if access.is_administrator(principal):
        return True
    scope = f"/subscriptions/{subscription}".lower()
    return any(a.scope.rstrip("/").lower() == scope and a.principal_tenant == principal.directory
               and a.role_definition_id.rstrip("/").rsplit("/", 1)[-1].lower() == OWNER
               for a in access.store.assignments(principal.object_id))


async def _operator(request: Request, subscription: str) -> Principal:
    """The opening of every registry call: api-version, token, a subscription that exists, an operator."""
    check_api_version(request, FLEET_VERSIONS)
    principal = await authenticate(request)
    if await run_in_threadpool(platform(request).subscription, subscription) is None:
        raise subscription_not_found(subscription)
    operation = arm_operation(request.method, request.url.path)
    allowed = await run_in_threadpool(_is_operator, request, principal, subscription)
    if not allowed or request.method != "GET":
        await run_in_threadpool(services(request).access.audit, principal, operation,
                                "allowed" if allowed else "denied", f"{request.method} {request.url.path}")
    if not allowed:
        raise authorization_failed(principal, operation)
    return principal


def _health(member: Member | None, record: ServerRecord) -> dict[str, Any]:
    """What this replica knows of the server's health (each replica probes for itself)."""
    if member is None or member.server.etag != record.etag:
        return {"circuit": "Unknown", "consecutiveFailures": 0, "outstanding": 0, "lastProbe": None}
    probe = member.last_probe
    return {"circuit": member.breaker.circuit.value, "consecutiveFailures": member.breaker.failures,
            "outstanding": member.outstanding,
            "lastProbe": None if probe is None else {"healthy": probe.healthy, "detail": probe.detail,
                                                     "time": system_data("", probe.at, "", probe.at)["createdAt"]}}


def server_json(request: Request, record: ServerRecord) -> dict[str, Any]:
    fleet = fleet_of(request)
    member = fleet.member(record.subscription_id, record.name) if fleet is not None else None
    return {
        "id": f"/subscriptions/{record.subscription_id}/providers/{RESOURCE_TYPE}/{record.name}",
        "name": record.name, "type": RESOURCE_TYPE, "etag": f'"{record.etag}"',
        "systemData": system_data(record.created_by, record.created_at, record.updated_by, record.updated_at),
        "properties": {**spec_json(record.spec), "hasApiKey": record.api_key is not None,
                       "provisioningState": "Succeeded", "health": _health(member, record)},
    }


def _not_found(name: str) -> AzureError:
    return arm_error(404, "ResourceNotFound", f"The Resource '{RESOURCE_TYPE}/{name[:64]}' was not found.")


async def _applied(request: Request) -> None:
    """A change applies on this replica at once; the others read it within a second or so."""
    fleet = fleet_of(request)
    if fleet is not None:
        await fleet.refresh()


@router.get(SERVERS)
async def list_servers(subscription: str, request: Request) -> Response:
    await _operator(request, subscription)
    records = await run_in_threadpool(_store(request).list, subscription)
    return AzureJSONResponse({"value": [server_json(request, r) for r in records]})


@router.get(SERVERS + "/{name}")
async def get_server(subscription: str, name: str, request: Request) -> Response:
    await _operator(request, subscription)
    record = await run_in_threadpool(_store(request).get, subscription, name)
    if record is None:
        raise _not_found(name)
    return AzureJSONResponse(server_json(request, record))


@router.put(SERVERS + "/{name}")
async def put_server(subscription: str, name: str, request: Request) -> Response:
    principal = await _operator(request, subscription)
    check_name(name, "the model server")
    body = await parse_arm_body(request, ServerIn)
    given = body.properties
    probe = given.healthProbe or ProbeIn()
    try:
        spec = server_spec(base_url=given.baseUrl, kind=given.kind,
                           models=[(m.name, m.servedName, m.ptus) for m in given.models],
                           region=given.region, data_zone=given.dataZone, capacity=given.capacity,
                           priority=given.priority, probe_path=probe.path, probe_interval=probe.intervalSeconds,
                           probe_timeout=probe.timeoutSeconds)
    except InvalidServer as error:
        raise arm_error(400, "InvalidRequestContent", f"properties.{error.field}: {error}") from None
    await run_in_threadpool(_keep_reservations, request, subscription, name, spec)
    try:
        record, created = await run_in_threadpool(_store(request).put, subscription, name, spec, given.apiKey,
                                                  principal.object_id)
    except TooManyServers as error:
        raise arm_error(409, "QuotaExceeded", str(error)) from None
    await _applied(request)
    return AzureJSONResponse(server_json(request, record), status_code=201 if created else 200)


@router.delete(SERVERS + "/{name}")
async def delete_server(subscription: str, name: str, request: Request) -> Response:
    await _operator(request, subscription)
    await run_in_threadpool(_keep_reservations, request, subscription, name, None)
    deleted = await run_in_threadpool(_store(request).delete, subscription, name)
    if not deleted:
        return Response(status_code=204)
    await _applied(request)
    return Response(status_code=200)


def _keep_reservations(request: Request, subscription: str, name: str, spec: ServerSpec | None) -> None:
    """Refuse a change (`spec`, or None for a removal) that leaves the provisioned deployments' reservations
    without room on the servers: what the servers can carry never falls below what is reserved on them."""
    store = services(request).store
    before = specs_in(store.engine, subscription)
    after = [(n, s) for n, s in before if n.lower() != name.lower()] + ([(name, spec)] if spec is not None else [])
    shortfall = reservations_lost(reservations_in(store, subscription), before, after)
    if shortfall is not None:
        raise arm_error(409, "Conflict", f"The change would leave {shortfall}: shrink, move or delete those "
                        "deployments first, or register a server that carries them.")


def _store(request: Request) -> ServerStore:
    fleet = fleet_of(request)
    if fleet is None:
        raise arm_error(503, "ServiceUnavailable", "The model server registry is not available on this server.")
    return fleet.store
