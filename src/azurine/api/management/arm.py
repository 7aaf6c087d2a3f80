"""What every ARM route shares: api-version rules, bearer tokens, resource ids, the envelope."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, TypeVar

import jwt
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from azurine.api.context import services
from azurine.api.errors import AzureError
from azurine.identity.access import Operation, arm_operation
from azurine.identity.bearer import verify_bearer_token
from azurine.identity.tokens import MANAGEMENT_AUDIENCES, InvalidToken, Principal
from azurine.json_depth import text_too_deep

PROVIDER = "Microsoft.CognitiveServices"
ARM_VERSIONS = frozenset({
    "2016-02-01-preview", "2017-04-18", "2021-04-30", "2021-10-01", "2022-03-01", "2022-10-01", "2022-12-01",
    "2023-05-01", "2023-10-01-preview", "2024-04-01-preview", "2024-06-01-preview", "2024-10-01",
    "2025-04-01-preview", "2025-06-01", "2025-07-01-preview", "2025-09-01", "2025-10-01-preview",
    "2026-09-01",
})
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}[a-zA-Z0-9_]$|^[a-zA-Z0-9]$")
ACCOUNT_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]{1,63}$")

Body = TypeVar("Body", bound=BaseModel)


def arm_error(status: int, code: str, message: str) -> AzureError:
    return AzureError(status, code, message)


def check_api_version(request: Request, versions: frozenset[str] = ARM_VERSIONS) -> str:
    """The call's api-version, one of `versions` (each resource provider has its own)."""
    version = request.query_params.get("api-version")
    if not version:
        raise arm_error(400, "MissingApiVersionParameter",
                        "The api-version query parameter (?api-version=) is required for all requests.")
    if version not in versions:
        raise arm_error(400, "InvalidApiVersionParameter",
                        f"The api-version '{version}' is invalid. The supported versions are "
                        f"'{','.join(sorted(versions, reverse=True))}'.")
    return version


async def authenticate(request: Request) -> Principal:
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise arm_error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
    svc = services(request)
    try:
        unverified = jwt.decode_complete(token.strip(), options={"verify_signature": False})
        return await run_in_threadpool(verify_bearer_token, svc.store, svc.issuers, token.strip(), unverified,
                                       MANAGEMENT_AUDIENCES)
    except jwt.PyJWTError:
        raise arm_error(401, "InvalidAuthenticationToken", "The access token is invalid.") from None
    except InvalidToken as error:
        raise arm_error(401, "InvalidAuthenticationToken", str(error)) from error


def authorization_failed(principal: Principal, operation: Operation) -> AzureError:
    return arm_error(403, "AuthorizationFailed",
                     f"The client '{principal.object_id}' with object id '{principal.object_id}' does not have "
                     f"authorization to perform action '{operation.action}' over scope '{operation.scope}' or the "
                     "scope is invalid. If access was recently granted, please refresh your credentials.")


async def authorize(request: Request, principal: Principal) -> Operation:
    """RBAC on the call's ARM operation (derived from its path and method). Every change, every action (reading
    or regenerating keys among them) and every denial goes to the audit log."""
    access = services(request).access
    operation = arm_operation(request.method, request.url.path)
    allowed = await run_in_threadpool(access.allowed, principal, operation)
    if not allowed or request.method != "GET":
        await run_in_threadpool(access.audit, principal, operation, "allowed" if allowed else "denied",
                                f"{request.method} {request.url.path}")
    if not allowed:
        raise authorization_failed(principal, operation)
    return operation


async def arm_request(request: Request, versions: frozenset[str] = ARM_VERSIONS) -> Principal:
    """The first stages of every ARM call: a known api-version, a valid token, a role that allows the call."""
    check_api_version(request, versions)
    principal = await authenticate(request)
    await authorize(request, principal)
    return principal


async def parse_arm_body(request: Request, model: type[Body]) -> Body:
    raw = await request.body()
    limit = services(request).settings.limits.max_json_depth
    if text_too_deep(raw, limit):
        raise arm_error(400, "InvalidRequestContent",
                        f"The request content nests arrays and objects more than {limit} levels deep.")
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as error:
        first = error.errors()[0]
        if first.get("type") == "json_invalid":
            raise arm_error(400, "InvalidRequestContent",
                            "The request content was invalid and could not be deserialized.") from None
        path = ".".join(str(p) for p in first.get("loc", ()))
        raise arm_error(400, "InvalidRequestContent",
                        f"The request content was invalid: '{path}': {first.get('msg', 'invalid value')}.") from None


def account_id(subscription: str, group: str, account: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{group}/providers/{PROVIDER}/accounts/{account}"


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def system_data(created_by: str, created_at: float, updated_by: str, updated_at: float) -> dict[str, Any]:
    return {"createdAt": iso(created_at), "createdBy": created_by or "azurine", "createdByType": "User",
            "lastModifiedAt": iso(updated_at), "lastModifiedBy": updated_by or created_by or "azurine",
            "lastModifiedByType": "User"}


def not_found(resource_type: str, name: str, group: str) -> AzureError:
    return arm_error(404, "ResourceNotFound",
                     f"The Resource '{PROVIDER}/{resource_type}/{name}' under resource group '{group}' was not "
                     "found. For more details please go to https://aka.ms/ARMResourceNotFoundFix")


def check_name(name: str, what: str, pattern: re.Pattern[str] = NAME) -> None:
    if not pattern.match(name):
        raise arm_error(400, "InvalidResourceName",
                        f"Resource name '{name}' for {what} is invalid: use 2 to 64 letters, digits and hyphens, "
                        "starting with a letter or digit.")


def async_operation_url(request: Request, subscription: str, location: str, operation_id: str,
                        version: str) -> str:
    base = str(request.base_url).rstrip("/")
    return (f"{base}/subscriptions/{subscription}/providers/{PROVIDER}/locations/{location}/operationStatuses/"
            f"{operation_id}?api-version={version}")
