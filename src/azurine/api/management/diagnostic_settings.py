"""`{accountId}/providers/Microsoft.Insights/diagnosticSettings/{name}`: an account opts in to resource logs.

A setting names the log categories it wants (`RequestResponse`, `Audit`, or the groups `allLogs` and `audit`) and
where they go, one destination or both:
- `storageAccountId`: Azurine writes them as Azure writes them into a storage account; the storage account's name
  (3-24 lower-case letters and digits, as Azure's) names a folder under the server's data directory;
- `workspaceId`: a Log Analytics workspace, which here is the operator's OpenTelemetry collector: the records go to
  it over OTLP with the workspace's id on each (`telemetry/otlp_logs.py`). Only where the server has a collector,
  and, as Azure's linked access check, only for a caller who may use the workspace's shared keys.
Event Hubs and partner solutions are Azure services Azurine cannot reach, and a setting that names one is refused
rather than silently dropped. At most five settings per account, as Azure allows.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from azurine.api.context import services
from azurine.api.management.accounts import ACCOUNTS, find_account
from azurine.api.management.arm import account_id, arm_error, arm_request, parse_arm_body
from azurine.api.sse import AzureJSONResponse
from azurine.identity.access import Operation
from azurine.identity.tokens import Principal
from azurine.storage.state import AccountRecord, ChildRecord
from azurine.telemetry.diagnostic_logs import CATEGORIES, GROUPS, SETTINGS_KIND

router = APIRouter()
# specification/monitor/resource-manager/Microsoft.Insights/{stable,preview}/<version>/diagnosticsSettings_API.json
VERSIONS = frozenset({"2016-09-01", "2017-05-01-preview", "2021-05-01-preview"})
SETTINGS = ACCOUNTS + "/{name}/providers/Microsoft.Insights/diagnosticSettings"
MAX_SETTINGS = 5
MAX_ENTRIES = 16  # of `logs` and of `metrics` each: Azure's categories are few, and a setting is stored whole
SETTING_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,259}$")
STORAGE_ACCOUNT = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Storage/"
                             r"storageAccounts/[a-z0-9]{3,24}$", re.IGNORECASE)
WORKSPACE = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.OperationalInsights/"
                       r"workspaces/[A-Za-z0-9][A-Za-z0-9-]{2,61}[A-Za-z0-9]$", re.IGNORECASE)
# what Azure's linked access check asks of the caller on a workspace a setting sends to
WORKSPACE_ACTION = "Microsoft.OperationalInsights/workspaces/sharedKeys/action"
DESTINATION_TYPES = ("Dedicated", "AzureDiagnostics")
UNREACHABLE = ("eventHubAuthorizationRuleId", "serviceBusRuleId", "marketplacePartnerId")
NO_COLLECTOR = ("'workspaceId' sends resource logs to the server's OpenTelemetry collector, and none is configured: "
                "the operator sets OTEL_EXPORTER_OTLP_LOGS_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT (an OTLP/HTTP "
                "endpoint) for it. Until then, give 'storageAccountId'.")


class SettingIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    properties: dict[str, Any] | None = None


def _destinations(given: dict[str, Any], collector: bool) -> tuple[str | None, str | None]:
    """The setting's storage account and workspace ids, at least one of them."""
    for field in UNREACHABLE:
        if given.get(field):
            raise arm_error(400, "BadRequest", f"'{field}' names a destination Azurine cannot reach: it writes "
                            "resource logs as Azure writes them into a storage account ('storageAccountId'), or "
                            "sends them to the operator's OpenTelemetry collector ('workspaceId').")
    storage, workspace = given.get("storageAccountId"), given.get("workspaceId")
    if storage is None and workspace is None:
        raise arm_error(400, "BadRequest", "A diagnostic setting needs a destination: 'storageAccountId', the id of "
                        "a storage account (/subscriptions/{id}/resourceGroups/{group}/providers/Microsoft.Storage/"
                        "storageAccounts/{3-24 lower-case letters and digits}), or 'workspaceId', the id of a Log "
                        "Analytics workspace.")
    if storage is not None and (not isinstance(storage, str) or not STORAGE_ACCOUNT.match(storage.strip())):
        raise arm_error(400, "BadRequest", "'storageAccountId' is the id of a storage account (/subscriptions/{id}/"
                        "resourceGroups/{group}/providers/Microsoft.Storage/storageAccounts/{3-24 lower-case letters "
                        "and digits}).")
    if workspace is not None and (not isinstance(workspace, str) or not WORKSPACE.match(workspace.strip())):
        raise arm_error(400, "BadRequest", "'workspaceId' is the id of a Log Analytics workspace (/subscriptions/"
                        "{id}/resourceGroups/{group}/providers/Microsoft.OperationalInsights/workspaces/{4-63 "
                        "letters, digits and hyphens, starting and ending with a letter or digit}).")
    if workspace is not None and not collector:
        raise arm_error(400, "BadRequest", NO_COLLECTOR)
    return (storage.strip() if storage else None), (workspace.strip() if workspace else None)


def _properties(given: dict[str, Any], collector: bool) -> dict[str, Any]:
    storage, workspace = _destinations(given, collector)
    destination_type = given.get("logAnalyticsDestinationType")
    if destination_type is not None and destination_type not in DESTINATION_TYPES:
        raise arm_error(400, "BadRequest", "'logAnalyticsDestinationType' is 'Dedicated', 'AzureDiagnostics' or "
                        "null.")
    for field in ("logs", "metrics"):
        entries = given.get(field) or []
        if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
            raise arm_error(400, "BadRequest", f"'{field}' is a list of at most {MAX_ENTRIES} entries.")
    logs = []
    for entry in given.get("logs") or []:
        if not isinstance(entry, dict):
            raise arm_error(400, "BadRequest", "Each of 'logs' is an object with 'category' or 'categoryGroup'.")
        category, group = entry.get("category"), entry.get("categoryGroup")
        if (category is None) == (group is None):
            raise arm_error(400, "BadRequest", "Each of 'logs' names a 'category' or a 'categoryGroup', not both.")
        if category is not None and category not in CATEGORIES:
            raise arm_error(400, "BadRequest", f"Category '{str(category)[:64]}' is not supported. The categories "
                            f"are: {', '.join(CATEGORIES)}.")
        if group is not None and group not in GROUPS:
            raise arm_error(400, "BadRequest", f"Category group '{str(group)[:64]}' is not supported. The groups "
                            f"are: {', '.join(GROUPS)}.")
        logs.append({"category": category, "categoryGroup": group, "enabled": bool(entry.get("enabled")),
                     "retentionPolicy": {"enabled": False, "days": 0}})
    metrics = [{"category": m.get("category", "AllMetrics"), "enabled": bool(m.get("enabled")),
                "retentionPolicy": {"enabled": False, "days": 0}, "timeGrain": None}
               for m in given.get("metrics") or [] if isinstance(m, dict)]
    if not any(entry["enabled"] for entry in logs) and not any(m["enabled"] for m in metrics):
        raise arm_error(400, "BadRequest", "A diagnostic setting must enable at least one log category or metric.")
    return {"storageAccountId": storage, "serviceBusRuleId": None, "eventHubAuthorizationRuleId": None,
            "eventHubName": None, "workspaceId": workspace, "marketplacePartnerId": None,
            "logAnalyticsDestinationType": destination_type if workspace else None, "logs": logs,
            "metrics": metrics}


async def _check_linked_access(request: Request, principal: Principal, setting_scope: str, workspace: str) -> None:
    """Azure's linked access check: writing a setting that sends to a workspace also takes the right to use that
    workspace's keys, so nobody sends their logs into a workspace that is not theirs."""
    access = services(request).access
    linked = Operation(workspace, WORKSPACE_ACTION, False)
    if await run_in_threadpool(access.allowed, principal, linked):
        return
    await run_in_threadpool(access.audit, principal, linked, "denied", f"{request.method} {request.url.path}")
    raise arm_error(403, "LinkedAuthorizationFailed",
                    f"The client '{principal.object_id}' with object id '{principal.object_id}' has permission to "
                    f"perform action 'Microsoft.Insights/diagnosticSettings/write' on scope '{setting_scope}'; "
                    f"however, it does not have permission to perform action '{WORKSPACE_ACTION}' on the linked "
                    f"scope(s) '{workspace}' or the linked scope(s) are invalid.")


def render(owner: AccountRecord, record: ChildRecord) -> dict[str, Any]:
    resource = account_id(owner.subscription_id, owner.resource_group, owner.name)
    return {"id": f"{resource}/providers/microsoft.insights/diagnosticSettings/{record.name}", "name": record.name,
            "type": "Microsoft.Insights/diagnosticSettings", "properties": record.properties}


@router.get(SETTINGS)
async def list_settings(subscription: str, group: str, name: str, request: Request) -> Response:
    await arm_request(request, VERSIONS)
    owner = await find_account(request, subscription, group, name)
    records = await run_in_threadpool(services(request).store.children, owner.id, SETTINGS_KIND)
    return AzureJSONResponse({"value": [render(owner, r) for r in records]})


@router.get(SETTINGS + "/{setting}")
async def get_setting(subscription: str, group: str, name: str, setting: str, request: Request) -> Response:
    await arm_request(request, VERSIONS)
    owner = await find_account(request, subscription, group, name)
    record = await run_in_threadpool(services(request).store.child, owner.id, SETTINGS_KIND, setting)
    if record is None:
        raise arm_error(404, "ResourceNotFound", f"The diagnostic setting '{setting[:260]}' doesn't exist.")
    return AzureJSONResponse(render(owner, record))


@router.put(SETTINGS + "/{setting}")
async def put_setting(subscription: str, group: str, name: str, setting: str, request: Request) -> Response:
    principal = await arm_request(request, VERSIONS)
    owner = await find_account(request, subscription, group, name)
    if not SETTING_NAME.match(setting):
        raise arm_error(400, "BadRequest", "A diagnostic setting's name is 1 to 260 letters, digits, spaces, dots, "
                        "hyphens and underscores, starting with a letter or digit.")
    body = await parse_arm_body(request, SettingIn)
    properties = _properties(body.properties or {}, collector=services(request).diagnostics.otlp is not None)
    if properties["workspaceId"]:
        await _check_linked_access(request, principal, request.url.path, properties["workspaceId"])
    store = services(request).store
    existing = await run_in_threadpool(store.children, owner.id, SETTINGS_KIND)
    if len(existing) >= MAX_SETTINGS and setting.lower() not in {r.name.lower() for r in existing}:
        raise arm_error(400, "BadRequest", f"An account has at most {MAX_SETTINGS} diagnostic settings.")
    record, _ = await run_in_threadpool(
        lambda: store.put_child(owner.id, SETTINGS_KIND, setting, properties=properties, tags={},
                                principal=principal.object_id))
    services(request).diagnostics.forget(owner.id)
    return AzureJSONResponse(render(owner, record))


@router.delete(SETTINGS + "/{setting}")
async def delete_setting(subscription: str, group: str, name: str, setting: str, request: Request) -> Response:
    await arm_request(request, VERSIONS)
    owner = await find_account(request, subscription, group, name)
    deleted = await run_in_threadpool(services(request).store.delete_child, owner.id, SETTINGS_KIND, setting)
    services(request).diagnostics.forget(owner.id)
    return Response(status_code=200 if deleted else 204)
