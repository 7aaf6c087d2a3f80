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
from azurine.api.management.api_versions import COGNITIVE_SERVICES, RESOURCES
from azurine.api.middleware import REQUEST_ID_SCOPE_KEY
from azurine.api.network_stage import shown_address
from azurine.identity.access import Operation, arm_operation
from azurine.identity.bearer import verify_bearer_token
from azurine.identity.tokens import MANAGEMENT_AUDIENCES, InvalidToken, Principal
from azurine.json_depth import text_too_deep
from azurine.storage.subscriptions import GroupRecord, SubscriptionStore
from azurine.telemetry.diagnostic_logs import LogRecord, log_time

PROVIDER = "Microsoft.CognitiveServices"
ARM_VERSIONS = COGNITIVE_SERVICES
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


async def authorize(request: Request, principal: Principal, operation: Operation | None = None) -> Operation:
    """RBAC on the call's ARM operation (by default derived from its path and method). Every change, every action
    (reading or regenerating keys among them) and every denial goes to the audit log."""
    access = services(request).access
    operation = operation or arm_operation(request.method, request.url.path)
    allowed = await run_in_threadpool(access.allowed, principal, operation)
    if not allowed or request.method != "GET":
        await run_in_threadpool(access.audit, principal, operation, "allowed" if allowed else "denied",
                                f"{request.method} {request.url.path}")
        await run_in_threadpool(_audit_log, request, principal, operation, allowed)
    if not allowed:
        raise authorization_failed(principal, operation)
    return operation


ACCOUNT_SCOPE = re.compile(r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.CognitiveServices/"
                           r"accounts/([^/]+)", re.IGNORECASE)


def _audit_log(request: Request, principal: Principal, operation: Operation, allowed: bool) -> None:
    """The account's `Audit` resource log, where its diagnostic settings want one (decided when it is written)."""
    match = ACCOUNT_SCOPE.match(operation.scope)
    svc = services(request)
    account = svc.store.arm_account(*match.groups()) if match else None
    if account is None:
        return
    svc.diagnostics.add(LogRecord(account.id, "Audit", {
        "time": log_time(datetime.now(UTC)),
        "resourceId": account_id(account.subscription_id, account.resource_group, account.name).upper(),
        "operationName": operation.action, "category": "Audit",
        "resultType": "Succeeded" if allowed else "Failed", "resultSignature": "Allowed" if allowed else "Denied",
        "durationMs": 0, "callerIpAddress": shown_address(request, svc.network),
        "correlationId": request.scope.get("state", {}).get(REQUEST_ID_SCOPE_KEY, ""),
        "level": "Informational" if allowed else "Warning", "location": account.location,
        "identity": {"claims": {"oid": principal.object_id}},
        "properties": {"method": request.method, "scope": operation.scope, "principalDirectory": principal.directory},
    }))


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


def platform(request: Request) -> SubscriptionStore:
    """The store of subscriptions and resource groups, made once per app."""
    store = getattr(request.app.state, "subscriptions", None)
    if not isinstance(store, SubscriptionStore):
        store = request.app.state.subscriptions = SubscriptionStore(services(request).store.engine)
    return store


def subscription_not_found(subscription: str) -> AzureError:
    return arm_error(404, "SubscriptionNotFound", f"The subscription '{subscription[:64]}' could not be found.")


async def subscription_caller(request: Request, subscription: str) -> Principal:
    """The opening of a Microsoft.Resources call under a subscription, in ARM's order: api-version, token, and a
    subscription that exists."""
    check_api_version(request, RESOURCES)
    principal = await authenticate(request)
    if await run_in_threadpool(platform(request).subscription, subscription) is None:
        raise subscription_not_found(subscription)
    return principal


def group_not_found(group: str) -> AzureError:
    return arm_error(404, "ResourceGroupNotFound", f"Resource group '{group[:90]}' could not be found.")


async def existing_group(request: Request, subscription: str, group: str) -> GroupRecord:
    """The resource group, which must exist in an existing subscription, as ARM requires of what is put in it."""
    store = platform(request)
    if await run_in_threadpool(store.subscription, subscription) is None:
        raise subscription_not_found(subscription)
    found = await run_in_threadpool(store.group, subscription, group)
    if found is None:
        raise group_not_found(group)
    return found


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
