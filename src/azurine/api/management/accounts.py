"""`Microsoft.CognitiveServices/accounts`: create, update, read, list, delete; keys."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from azurine.api.context import services
from azurine.api.encryption_stage import data_keys
from azurine.api.errors import AzureError
from azurine.api.management.arm import (
    ACCOUNT_NAME,
    PROVIDER,
    account_id,
    arm_error,
    arm_request,
    async_operation_url,
    check_api_version,
    check_name,
    existing_group,
    iso,
    not_found,
    parse_arm_body,
    system_data,
)
from azurine.api.sse import AzureJSONResponse
from azurine.network import normalized_acls
from azurine.storage.data_keys import DataKeys
from azurine.storage.key_providers import SERVICE, InvalidEncryption, KeyRef, KeyUnavailable
from azurine.storage.state import AccountRecord, Conflict, StateStore

router = APIRouter()
ACCOUNTS = f"/subscriptions/{{subscription}}/resourceGroups/{{group}}/providers/{PROVIDER}/accounts"
KINDS = ("OpenAI", "AIServices")
# what the server computes; a client's values for these are ignored
READ_ONLY = frozenset({
    "provisioningState", "endpoint", "endpoints", "internalId", "capabilities", "dateCreated", "callRateLimit",
    "quotaLimit", "isMigrated", "skuChangeInfo", "privateEndpointConnections", "deletionDate",
    "scheduledPurgeDate", "abusePenalty", "commitmentPlanAssociations", "associatedProjects",
})


class SkuIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    capacity: int | None = None


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    location: str | None = None
    kind: str | None = None
    sku: SkuIn | None = None
    tags: dict[str, str] | None = None
    identity: dict[str, Any] | None = None
    properties: dict[str, Any] | None = None


class RegenerateKeyIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    keyName: str


def endpoint_of(request: Request, account: AccountRecord) -> str:
    return f"{str(request.base_url).rstrip('/')}/accounts/{account.name}/"


def render_account(request: Request, account: AccountRecord) -> dict[str, Any]:
    endpoint = endpoint_of(request, account)
    properties: dict[str, Any] = {"publicNetworkAccess": "Enabled", **account.properties}
    properties.update({
        "provisioningState": "Succeeded",
        "endpoint": endpoint,
        "endpoints": {"OpenAI Language Model Instance API": endpoint, "OpenAI Dall-E API": endpoint,
                      "OpenAI Realtime API": endpoint.replace("http", "ws", 1), "Token Service API": endpoint},
        "internalId": uuid.UUID(account.id).hex,
        "dateCreated": iso(account.created_at),
        "capabilities": [{"name": "VirtualNetworks"}, {"name": "CustomerManagedKey"},
                         {"name": "MaxFineTuneCount", "value": "100"}],
    })
    if account.custom_subdomain:
        properties["customSubDomainName"] = account.custom_subdomain
    body: dict[str, Any] = {
        "etag": account.etag, "id": account_id(account.subscription_id, account.resource_group, account.name),
        "kind": account.kind, "location": account.location, "name": account.name, "properties": properties,
        "sku": {"name": account.sku_name},
        "systemData": system_data(account.created_by, account.created_at, account.updated_by, account.updated_at),
        "tags": account.tags, "type": f"{PROVIDER}/accounts",
    }
    if account.identity:
        body["identity"] = account.identity
    return body


async def find_account(request: Request, subscription: str, group: str, name: str) -> AccountRecord:
    account = await run_in_threadpool(services(request).store.arm_account, subscription, group, name)
    if account is None:
        raise not_found("accounts", name, group)
    return account


def _validated(body: AccountIn, existing: AccountRecord | None) -> tuple[str, str, str, str | None, dict[str, Any]]:
    kind = body.kind or (existing.kind if existing else None)
    location = body.location or (existing.location if existing else None)
    sku = body.sku.name if body.sku else (existing.sku_name if existing else None)
    if not location:
        raise arm_error(400, "LocationRequired", "The location property is required for this definition.")
    if kind not in KINDS:
        raise arm_error(400, "InvalidKind" if kind else "KindRequired",
                        f"The kind '{kind}' is not supported; use one of {', '.join(KINDS)}." if kind
                        else "The kind property is required for this definition.")
    if sku != "S0":
        raise arm_error(400, "InvalidSkuName" if sku else "SkuRequired",
                        f"The SKU '{sku}' is not supported for kind '{kind}'; use S0." if sku
                        else "The sku property is required for this definition.")
    properties = {k: v for k, v in (body.properties or {}).items() if k not in READ_ONLY}
    subdomain = properties.pop("customSubDomainName", None)
    if subdomain is not None:
        if not isinstance(subdomain, str):
            raise arm_error(400, "InvalidResourceProperties", "customSubDomainName must be a string.")
        check_name(subdomain, "customSubDomainName", ACCOUNT_NAME)
    if existing and existing.custom_subdomain and subdomain != existing.custom_subdomain:
        if subdomain is None:
            subdomain = existing.custom_subdomain
        else:
            raise arm_error(400, "SetCustomSubDomainNameNotAllowed",
                            "The customSubDomainName of an account cannot be changed once set.")
    if "publicNetworkAccess" in properties and properties["publicNetworkAccess"] not in ("Enabled", "Disabled"):
        raise arm_error(400, "InvalidResourceProperties", "publicNetworkAccess must be Enabled or Disabled.")
    # rules stored before they were checked must not block an update that leaves them as they are
    if "networkAcls" in properties and (existing is None
                                        or properties["networkAcls"] != existing.properties.get("networkAcls")):
        try:
            properties["networkAcls"] = normalized_acls(properties["networkAcls"])
        except ValueError as error:
            raise arm_error(400, "InvalidResourceProperties", str(error)) from None
    return kind, location, sku, subdomain, properties  # type: ignore[return-value]


def label_in_use(name: str, subdomain: str | None, label: str | None) -> AzureError:
    """409 CustomDomainInUse, as Azure answers for a taken subdomain. Names and subdomains are one namespace,
    compared in any case: `label` is the one another account holds."""
    if label == name.lower() or subdomain is None:
        return arm_error(409, "CustomDomainInUse",
                         f"The account name '{name}' is already in use: account names are endpoints, unique "
                         "across all subscriptions.")
    return arm_error(409, "CustomDomainInUse",
                     f"Please pick a different name. The subdomain name '{subdomain}' is not available as it's "
                     "already used by a resource.")


def _check_labels(store: StateStore, name: str, subdomain: str | None, existing: AccountRecord | None) -> None:
    """Before anything moves: the name and subdomain are free, or already this account's."""
    for label in (name, subdomain):
        holder = store.account_named(label) if label else None
        if holder is not None and (existing is None or holder.id != existing.id):
            raise label_in_use(name, subdomain, label.lower() if label else None)


def _key_change(keys: DataKeys, existing: AccountRecord | None, properties: dict[str, Any]) -> KeyRef | None:
    """The key the account's data key moves to, or None when the setting leaves it where it is. A key being set
    must be usable now, as Azure checks access to a key when it is set."""
    try:
        wanted = keys.providers.ref_for(properties.get("encryption"))
    except InvalidEncryption as error:
        raise arm_error(400, "InvalidResourceProperties", str(error)) from None
    if existing is not None:
        try:
            if keys.providers.ref_for(existing.properties.get("encryption")) == wanted:
                return None
        except InvalidEncryption:  # stored before settings were checked: any valid one replaces it
            pass
    elif wanted.source == SERVICE:
        return None  # made on first use
    if wanted.source != SERVICE:
        try:
            keys.probe(wanted)
        except KeyUnavailable as error:
            raise arm_error(400, "KeyVaultKeyNotAccessible",
                            f"The key cannot be used for encryption: {error}. Check the key and the access of "
                            "the account's identity to it (wrap key, unwrap key, get).") from None
    return wanted


def _move_data_key(keys: DataKeys, account_id: str, to: KeyRef) -> None:
    try:
        keys.configure(account_id, to)
    except KeyUnavailable as error:
        raise arm_error(400, "KeyVaultKeyNotAccessible",
                        f"The account's data key cannot be moved to {to.describe()} because its current key cannot "
                        f"be used: {error}. Restore access to the current key first.") from None


def _save(request: Request, subscription: str, group: str, name: str, kind: str, location: str, sku: str,
          subdomain: str | None, properties: dict[str, Any], tags: dict[str, str],
          identity: dict[str, Any] | None, principal: str,
          existing: AccountRecord | None) -> tuple[AccountRecord, bool]:
    svc = services(request)
    keys = data_keys(request.app)
    _check_labels(svc.store, name, subdomain, existing)
    move_to = _key_change(keys, existing, properties) if keys is not None else None
    if keys is not None and existing is not None and move_to is not None:
        # before the setting is saved: a key that cannot take the data key leaves the account as it was
        _move_data_key(keys, existing.id, move_to)
    try:
        saved = svc.store.put_account(subscription, group, name, kind=kind, location=location, sku_name=sku,
                                      custom_subdomain=subdomain, properties=properties, tags=tags,
                                      identity=identity, principal=principal)
    except Conflict as error:
        if keys is not None and existing is not None and move_to is not None:
            with contextlib.suppress(InvalidEncryption, KeyUnavailable):  # the key it had, if it still can
                keys.configure(existing.id, keys.providers.ref_for(existing.properties.get("encryption")))
        raise label_in_use(name, subdomain, error.label) from error
    if keys is not None and existing is None and move_to is not None:
        _move_data_key(keys, saved[0].id, move_to)
    svc.cache.forget()
    return saved


@router.put(ACCOUNTS + "/{name}")
async def create_account(subscription: str, group: str, name: str, request: Request) -> Response:
    principal = await arm_request(request)
    check_name(name, "accounts", ACCOUNT_NAME)
    body = await parse_arm_body(request, AccountIn)
    existing = await run_in_threadpool(services(request).store.arm_account, subscription, group, name)
    if existing is None:
        await existing_group(request, subscription, group)
    kind, location, sku, subdomain, properties = _validated(body, existing)
    account, created = await run_in_threadpool(
        _save, request, subscription, group, name, kind, location, sku, subdomain, properties,
        body.tags if body.tags is not None else (existing.tags if existing else {}),
        body.identity if body.identity is not None else (existing.identity if existing else None),
        principal.object_id, existing)
    operation = await run_in_threadpool(services(request).store.add_operation, subscription, location,
                                        account_id(subscription, group, name), "Succeeded")
    return AzureJSONResponse(render_account(request, account), status_code=201 if created else 200, headers={
        "Azure-AsyncOperation": async_operation_url(request, subscription, location, operation,
                                                    check_api_version(request))})


@router.patch(ACCOUNTS + "/{name}")
async def update_account(subscription: str, group: str, name: str, request: Request) -> Response:
    principal = await arm_request(request)
    body = await parse_arm_body(request, AccountIn)
    existing = await find_account(request, subscription, group, name)
    if body.location and body.location.lower() != existing.location.lower():
        raise arm_error(400, "LocationNotAvailableForResourceType", "An account's location cannot be changed.")
    merged = AccountIn(kind=body.kind or existing.kind, location=existing.location,
                       sku=body.sku or SkuIn(name=existing.sku_name),
                       properties={**existing.properties, **({"customSubDomainName": existing.custom_subdomain}
                                                             if existing.custom_subdomain else {}),
                                   **(body.properties or {})})
    kind, location, sku, subdomain, properties = _validated(merged, existing)
    account, _ = await run_in_threadpool(
        _save, request, subscription, group, name, kind, location, sku, subdomain, properties,
        {**existing.tags, **(body.tags or {})} if body.tags is not None else existing.tags,
        body.identity if body.identity is not None else existing.identity, principal.object_id, existing)
    return AzureJSONResponse(render_account(request, account))


@router.get(ACCOUNTS + "/{name}")
async def get_account(subscription: str, group: str, name: str, request: Request) -> Response:
    await arm_request(request)
    return AzureJSONResponse(render_account(request, await find_account(request, subscription, group, name)))


@router.delete(ACCOUNTS + "/{name}")
async def delete_account(subscription: str, group: str, name: str, request: Request) -> Response:
    await arm_request(request)
    account = await run_in_threadpool(services(request).store.arm_account, subscription, group, name)
    if account is None:
        return Response(status_code=204)
    await run_in_threadpool(services(request).store.delete_account, account.id)
    services(request).cache.forget()
    return Response(status_code=200)


@router.get(ACCOUNTS)
async def list_accounts_in_group(subscription: str, group: str, request: Request) -> Response:
    await arm_request(request)
    rows = await run_in_threadpool(services(request).store.accounts, subscription, group)
    return AzureJSONResponse({"value": [render_account(request, a) for a in rows]})


@router.get(f"/subscriptions/{{subscription}}/providers/{PROVIDER}/accounts")
async def list_accounts(subscription: str, request: Request) -> Response:
    await arm_request(request)
    rows = await run_in_threadpool(services(request).store.accounts, subscription)
    return AzureJSONResponse({"value": [render_account(request, a) for a in rows]})


@router.post(ACCOUNTS + "/{name}/listKeys")
async def list_keys(subscription: str, group: str, name: str, request: Request) -> Response:
    await arm_request(request)
    account = await find_account(request, subscription, group, name)
    return AzureJSONResponse({"key1": account.key1, "key2": account.key2})


@router.post(ACCOUNTS + "/{name}/regenerateKey")
async def regenerate_key(subscription: str, group: str, name: str, request: Request) -> Response:
    await arm_request(request)
    body = await parse_arm_body(request, RegenerateKeyIn)
    which = {"key1": "key1", "key2": "key2"}.get(body.keyName.lower())
    if which is None:
        raise arm_error(400, "InvalidKeyName", f"The key name '{body.keyName}' is invalid; use Key1 or Key2.")
    account = await find_account(request, subscription, group, name)
    account = await run_in_threadpool(services(request).store.regenerate_key, account.id, which)
    services(request).cache.forget()  # the old key stops working on this replica at once
    return AzureJSONResponse({"key1": account.key1, "key2": account.key2})
