"""`{accountId}/providers/Microsoft.Insights/diagnosticSettings/{name}`: an account opts in to resource logs.

A setting names the log categories it wants (`RequestResponse`, `Audit`, or the groups `allLogs` and `audit`) and
where they go. Azurine writes them as Azure writes them into a storage account, so `storageAccountId` is the
destination it takes: the storage account's name (3-24 lower-case letters and digits, as Azure's) names a folder
under the server's data directory. Log Analytics workspaces, Event Hubs and partner solutions are Azure services
Azurine cannot reach, and a setting that names one is refused rather than silently dropped. At most five settings
per account, as Azure allows.
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
UNREACHABLE = ("workspaceId", "eventHubAuthorizationRuleId", "serviceBusRuleId", "marketplacePartnerId")


class SettingIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    properties: dict[str, Any] | None = None


def _properties(given: dict[str, Any]) -> dict[str, Any]:
    for field in UNREACHABLE:
        if given.get(field):
            raise arm_error(400, "BadRequest", f"'{field}' names a destination Azurine cannot reach: it writes "
                            "resource logs as Azure writes them into a storage account; give 'storageAccountId'.")
    storage = given.get("storageAccountId")
    if not isinstance(storage, str) or not STORAGE_ACCOUNT.match(storage.strip()):
        raise arm_error(400, "BadRequest", "A diagnostic setting needs a destination: 'storageAccountId', the id of "
                        "a storage account (/subscriptions/{id}/resourceGroups/{group}/providers/Microsoft.Storage/"
                        "storageAccounts/{3-24 lower-case letters and digits}).")
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
    return {"storageAccountId": storage.strip(), "serviceBusRuleId": None, "eventHubAuthorizationRuleId": None,
            "eventHubName": None, "workspaceId": None, "marketplacePartnerId": None,
            "logAnalyticsDestinationType": None, "logs": logs, "metrics": metrics}


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
    properties = _properties(body.properties or {})
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
