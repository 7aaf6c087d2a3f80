"""`Microsoft.Authorization` as ARM serves it: role definitions (the built-in roles) and role assignments at a
subscription, resource group or account scope.

An assignment's principal is a principal of one directory, as in Entra, where it is one of the assignment's
tenant: by default the directory of whoever creates the assignment; `properties.principalTenantId` (Azurine's)
names another, the built-in tenant, a trusted Entra tenant's id or a trusted issuer's URL."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from azurine.api.context import services
from azurine.api.management.arm import arm_error, arm_request, parse_arm_body
from azurine.api.sse import AzureJSONResponse
from azurine.identity.roles import BUILT_IN_ROLES, RoleDefinition, covers
from azurine.identity.tokens import Principal
from azurine.storage.access import AssignmentRecord

router = APIRouter()
AUTHORIZATION = "providers/Microsoft.Authorization"
API_VERSIONS = frozenset({"2015-07-01", "2018-01-01-preview", "2018-09-01-preview", "2020-04-01-preview",
                          "2020-10-01", "2020-10-01-preview", "2022-04-01", "2022-05-01-preview"})
SCOPE = re.compile(r"^/subscriptions/[^/]+(/resourceGroups/[^/]+(/providers/Microsoft\.CognitiveServices/accounts/"
                   r"[^/]+)?)?$", re.IGNORECASE)
PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device")


class AssignmentPropertiesIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    roleDefinitionId: str | None = None
    principalId: str | None = None
    principalType: str | None = None
    principalTenantId: str | None = None


class AssignmentIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    properties: AssignmentPropertiesIn | None = None


def _scope(scope: str) -> str:
    scope = "/" + scope.strip("/")
    if not SCOPE.match(scope):
        raise arm_error(400, "InvalidScope", f"The scope '{scope}' is not valid for role assignments here: use a "
                        "subscription, a resource group or a Microsoft.CognitiveServices account.")
    return scope


def definition_json(role: RoleDefinition, scope: str) -> dict[str, Any]:
    return {
        "id": f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{role.id}", "name": role.id,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {"roleName": role.name, "type": "BuiltInRole", "description": role.description,
                       "assignableScopes": ["/"],
                       "permissions": [{"actions": list(role.actions), "notActions": list(role.not_actions),
                                        "dataActions": list(role.data_actions),
                                        "notDataActions": list(role.not_data_actions)}]},
    }


def assignment_json(record: AssignmentRecord) -> dict[str, Any]:
    when = record.created_at.isoformat().replace("+00:00", "Z")
    return {
        "id": f"{record.scope}/providers/Microsoft.Authorization/roleAssignments/{record.id}", "name": record.id,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {"roleDefinitionId": record.role_definition_id, "principalId": record.principal_id,
                       "principalTenantId": record.principal_tenant, "principalType": record.principal_type,
                       "scope": record.scope, "condition": None, "conditionVersion": None, "createdOn": when,
                       "updatedOn": when,
                       "createdBy": record.created_by, "updatedBy": record.created_by,
                       "delegatedManagedIdentityResourceId": None, "description": None},
    }


async def _authorized(request: Request) -> Principal:
    return await arm_request(request, API_VERSIONS)


@router.get("/{scope:path}/providers/Microsoft.Authorization/roleDefinitions")
async def list_definitions(scope: str, request: Request) -> Response:
    await _authorized(request)
    where = _scope(scope)
    return AzureJSONResponse({"value": [definition_json(role, where) for role in BUILT_IN_ROLES.values()]})


@router.get("/{scope:path}/providers/Microsoft.Authorization/roleDefinitions/{role_id}")
async def get_definition(scope: str, role_id: str, request: Request) -> Response:
    await _authorized(request)
    role = BUILT_IN_ROLES.get(role_id.lower())
    if role is None:
        raise arm_error(404, "RoleDefinitionDoesNotExist", f"The specified role definition with ID '{role_id}' "
                        "does not exist.")
    return AzureJSONResponse(definition_json(role, _scope(scope)))


@router.put("/{scope:path}/providers/Microsoft.Authorization/roleAssignments/{name}")
async def create_assignment(scope: str, name: str, request: Request) -> Response:
    creator = await _authorized(request)
    where = _scope(scope)
    try:
        uuid.UUID(name)
    except ValueError:
        raise arm_error(400, "InvalidRoleAssignmentId", f"The role assignment ID '{name}' is not valid. The role "
                        "assignment ID must be a GUID.") from None
    body = await parse_arm_body(request, AssignmentIn)
    given = body.properties or AssignmentPropertiesIn()
    if not given.roleDefinitionId or not given.principalId:
        raise arm_error(400, "InvalidRequestContent",
                        "properties.roleDefinitionId and properties.principalId are required.")
    if given.roleDefinitionId.rstrip("/").rsplit("/", 1)[-1].lower() not in BUILT_IN_ROLES:
        raise arm_error(400, "RoleDefinitionDoesNotExist",
                        f"The specified role definition with ID '{given.roleDefinitionId}' does not exist.")
    if len(given.principalId) > 64:
        raise arm_error(400, "InvalidPrincipalId", "The principal ID is longer than 64 characters.")
    principal_type = given.principalType or "User"
    if principal_type not in PRINCIPAL_TYPES:
        raise arm_error(400, "InvalidPrincipalType", f"The principal type '{principal_type}' is not valid.")
    tenant = creator.directory
    if given.principalTenantId is not None:
        named = services(request).issuers.directory(given.principalTenantId)
        if named is None:
            raise arm_error(400, "InvalidPrincipalTenantId",
                            f"The principal tenant '{given.principalTenantId[:256]}' is neither this server's tenant "
                            "nor a tenant or issuer it trusts (AZURINE_TRUSTED_ISSUERS).")
        tenant = named
    access = services(request).access
    record, created = await run_in_threadpool(access.store.put_assignment, name, where, given.roleDefinitionId,
                                              given.principalId, principal_type, creator.object_id, tenant)
    if not created:
        raise arm_error(409, "RoleAssignmentExists", "The role assignment already exists.")
    access.forget()
    return AzureJSONResponse(assignment_json(record), status_code=201)


@router.get("/{scope:path}/providers/Microsoft.Authorization/roleAssignments/{name}")
async def get_assignment(scope: str, name: str, request: Request) -> Response:
    await _authorized(request)
    record = await run_in_threadpool(services(request).access.store.assignment, name)
    if record is None or record.scope.lower() != _scope(scope).lower():
        raise arm_error(404, "RoleAssignmentNotFound", f"The role assignment '{name}' is not found.")
    return AzureJSONResponse(assignment_json(record))


@router.delete("/{scope:path}/providers/Microsoft.Authorization/roleAssignments/{name}")
async def delete_assignment(scope: str, name: str, request: Request) -> Response:
    await _authorized(request)
    access = services(request).access
    record = await run_in_threadpool(access.store.assignment, name)
    if record is None or record.scope.lower() != _scope(scope).lower():
        return Response(status_code=204)
    await run_in_threadpool(access.store.delete_assignment, name)
    access.forget()
    return AzureJSONResponse(assignment_json(record))


@router.get("/{scope:path}/providers/Microsoft.Authorization/roleAssignments")
async def list_assignments(scope: str, request: Request) -> Response:
    """The assignments at the scope, above it and beneath it; `$filter=principalId eq '…'` narrows them."""
    await _authorized(request)
    where = _scope(scope)
    wanted = re.search(r"principalId\s+eq\s+'([^']+)'", request.query_params.get("$filter", ""))
    records = await run_in_threadpool(services(request).access.store.assignments,
                                      wanted.group(1) if wanted else None)
    related = [r for r in records if covers(r.scope, where) or covers(where, r.scope)]
    return AzureJSONResponse({"value": [assignment_json(r) for r in related]})
