"""`accounts/raiPolicies`, `accounts/raiBlocklists` and their items, stored with Azure's shapes.

This is their management plane. The data plane enforces them: its content-filter stage
(`api/inference/content_filter.py`, calling `azurine.safety.guard`) screens each prompt and answer under the policy
its deployment names (`raiPolicyName`), with the policy's blocklists compiled from these items.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, RootModel
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from azurine.api.context import Services, services
from azurine.api.errors import AzureError
from azurine.api.management.accounts import ACCOUNTS, find_account
from azurine.api.management.arm import (
    PROVIDER,
    account_id,
    arm_error,
    arm_request,
    async_operation_url,
    check_api_version,
    check_name,
    not_found,
    parse_arm_body,
    system_data,
)
from azurine.api.management.deployment_service import BUILT_IN_POLICIES
from azurine.api.sse import AzureJSONResponse
from azurine.safety.blocklists import regex_problem
from azurine.safety.policy import BUILT_IN_PROPERTIES, HARM_FILTER_NAMES
from azurine.safety.resolution import compiled_blocklist
from azurine.storage.state import AccountRecord, ChildRecord, StateStore

router = APIRouter()
POLICIES = ACCOUNTS + "/{account}/raiPolicies"
BLOCKLISTS = ACCOUNTS + "/{account}/raiBlocklists"
ITEMS = BLOCKLISTS + "/{blocklist}/raiBlocklistItems"
CONTENT_FILTERS = f"/subscriptions/{{subscription}}/providers/{PROVIDER}/locations/{{location}}/raiContentFilters"

MODES = ("Default", "Deferred", "Blocking", "Asynchronous_filter")
SOURCES = ("Prompt", "Completion")
SEVERITIES = ("Low", "Medium", "High")
MAX_ITEMS = 10_000
MAX_PATTERN = 1_000


@dataclass(frozen=True)
class ContentFilterKind:
    name: str
    sources: tuple[str, ...]
    graded: bool  # the harm categories take a severityThreshold; the detectors are on or off

    @property
    def resource_name(self) -> str:
        return self.name.replace(" ", "")  # the SDK's filterName pattern admits no spaces


HARM_CATEGORIES = HARM_FILTER_NAMES
CONTENT_FILTERS_CATALOGUE = (
    *(ContentFilterKind(name, SOURCES, True) for name in HARM_CATEGORIES),
    ContentFilterKind("Jailbreak", ("Prompt",), False),
    ContentFilterKind("Indirect Attack", ("Prompt",), False),
    ContentFilterKind("Protected Material Text", ("Completion",), False),
    ContentFilterKind("Protected Material Code", ("Completion",), False),
    ContentFilterKind("Profanity", SOURCES, False),
    ContentFilterKind("Personally Identifiable Information", SOURCES, False),
)
# what a filter does when it fires, beyond Azure's blocking true/false: PII on completions can be redacted
ACTIONS = ("Redact",)


def _key(name: str) -> str:
    """How filter names compare: case, spaces, underscores and hyphens aside ('self_harm' is 'Selfharm')."""
    return re.sub(r"[\s_-]", "", name).lower()


FILTER_BY_KEY = {_key(kind.name): kind for kind in CONTENT_FILTERS_CATALOGUE}


# deployments check raiPolicyName against BUILT_IN_POLICIES: the two lists must not drift apart
assert tuple(BUILT_IN_PROPERTIES) == BUILT_IN_POLICIES


# request bodies ----------------------------------------------------------------------------------------


class ContentFilterIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str | None = None
    source: str | None = None
    severityThreshold: str | None = None
    allowedContentLevel: str | None = None  # what 2023-10-01-preview called severityThreshold
    enabled: bool | None = None
    blocking: bool | None = None
    action: str | None = None


class BlocklistReferenceIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    blocklistName: str | None = None
    blocking: bool | None = None
    source: str | None = None


class PolicyPropertiesIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    mode: str | None = None
    basePolicyName: str | None = None
    contentFilters: list[ContentFilterIn] | None = None
    customBlocklists: list[BlocklistReferenceIn] | None = None
    # the 2024-04-01-preview docs' spelling of customBlocklists, one array per source
    promptBlocklists: list[BlocklistReferenceIn] | None = None
    completionBlocklists: list[BlocklistReferenceIn] | None = None
    customTopics: list[dict[str, Any]] | None = None


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    properties: PolicyPropertiesIn | None = None
    tags: dict[str, str] | None = None


class BlocklistPropertiesIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    description: str | None = None


class BlocklistIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    properties: BlocklistPropertiesIn | None = None
    tags: dict[str, str] | None = None


class ItemPropertiesIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    pattern: str | None = None
    isRegex: bool | None = None


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    properties: ItemPropertiesIn | None = None
    tags: dict[str, str] | None = None


class BulkItemIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str | None = None
    properties: ItemPropertiesIn | None = None


class BulkItemsIn(RootModel[list[BulkItemIn]]):
    pass


class ItemNamesIn(RootModel[list[str]]):
    pass


# validation --------------------------------------------------------------------------------------------


def invalid(message: str) -> AzureError:
    return arm_error(400, "InvalidResourceProperties", message)


def _choice(value: str | None, allowed: tuple[str, ...], field: str, default: str | None = None) -> str:
    """`value` spelled as Azure spells it, matched without regard to case."""
    if value is None:
        if default is None:
            raise invalid(f"The property '{field}' is required; use one of {', '.join(allowed)}.")
        return default
    for option in allowed:
        if option.lower() == value.lower():
            return option
    raise invalid(f"The value '{value}' of '{field}' is invalid; use one of {', '.join(allowed)}.")


def _content_filter(index: int, given: ContentFilterIn) -> dict[str, Any]:
    field = f"properties.contentFilters[{index}]"
    if not given.name:
        raise invalid(f"The property '{field}.name' is required.")
    kind = FILTER_BY_KEY.get(_key(given.name))
    if kind is None:
        raise invalid(f"The content filter name '{given.name}' in '{field}.name' is invalid; use one of "
                      f"{', '.join(k.name for k in CONTENT_FILTERS_CATALOGUE)}.")
    source = _choice(given.source, SOURCES, f"{field}.source")
    if source not in kind.sources:
        raise invalid(f"The content filter '{kind.name}' applies to {' and '.join(kind.sources)} only, "
                      f"not to {source}.")
    severity = _choice(given.severityThreshold or given.allowedContentLevel, SEVERITIES,
                       f"{field}.severityThreshold", "Medium")
    found: dict[str, Any] = {"blocking": True if given.blocking is None else given.blocking,
                             "enabled": True if given.enabled is None else given.enabled,
                             "name": kind.name, "source": source}
    if kind.graded:
        found["severityThreshold"] = severity
    if given.action is not None:
        found["action"] = _choice(given.action, ACTIONS, f"{field}.action")
        if kind.name != "Personally Identifiable Information" or source != "Completion":
            raise invalid(f"The action '{found['action']}' in '{field}.action' applies to the Personally "
                          "Identifiable Information filter on Completion only.")
    return found


def _blocklist_references(props: PolicyPropertiesIn, blocklists: dict[str, str]) -> list[dict[str, Any]]:
    """customBlocklists, with the older per-source arrays folded in; `blocklists` maps lower-case names."""
    given = [(f"properties.customBlocklists[{i}]", ref, ref.source) for i, ref in
             enumerate(props.customBlocklists or [])]
    given += [(f"properties.promptBlocklists[{i}]", ref, "Prompt") for i, ref in
              enumerate(props.promptBlocklists or [])]
    given += [(f"properties.completionBlocklists[{i}]", ref, "Completion") for i, ref in
              enumerate(props.completionBlocklists or [])]
    found: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for field, ref, source in given:
        if not ref.blocklistName:
            raise invalid(f"The property '{field}.blocklistName' is required.")
        name = blocklists.get(ref.blocklistName.lower())
        if name is None:
            raise invalid(f"The blocklist '{ref.blocklistName}' named in '{field}' was not found in this account.")
        source = _choice(source, SOURCES, f"{field}.source")
        if (name.lower(), source) in seen:
            raise invalid(f"The blocklist '{name}' is listed twice for source {source}.")
        seen.add((name.lower(), source))
        found.append({"blocking": True if ref.blocking is None else ref.blocking, "blocklistName": name,
                      "source": source})
    return found


def _policy_properties(props: PolicyPropertiesIn, blocklists: dict[str, str]) -> dict[str, Any]:
    if props.customTopics:
        raise invalid("Custom topics are not supported by this server; leave 'properties.customTopics' empty.")
    filters = [_content_filter(i, f) for i, f in enumerate(props.contentFilters or [])]
    pairs = [(f["name"], f["source"]) for f in filters]
    for pair in pairs:
        if pairs.count(pair) > 1:
            raise invalid(f"The content filter '{pair[0]}' is listed twice for source {pair[1]}.")
    return {
        "basePolicyName": _choice(props.basePolicyName, BUILT_IN_POLICIES, "properties.basePolicyName",
                                  "Microsoft.DefaultV2"),
        "contentFilters": filters,
        "customBlocklists": _blocklist_references(props, blocklists),
        "mode": _choice(props.mode, MODES, "properties.mode", "Default"),
    }


def _item_properties(props: ItemPropertiesIn | None, field: str) -> dict[str, Any]:
    pattern = props.pattern if props else None
    is_regex = bool(props and props.isRegex)
    if not pattern or not pattern.strip():
        raise invalid(f"The property '{field}.pattern' is required.")
    if len(pattern) > MAX_PATTERN:
        raise invalid(f"The pattern in '{field}.pattern' has {len(pattern)} characters; the most is {MAX_PATTERN}.")
    problem = regex_problem(pattern) if is_regex else None
    if problem is not None:
        raise invalid(f"The pattern in '{field}.pattern' is not a valid regular expression: {problem}.")
    return {"isRegex": is_regex, "pattern": pattern}


def _built_in(name: str) -> str | None:
    return next((p for p in BUILT_IN_POLICIES if p.lower() == name.lower()), None)


# rendering ---------------------------------------------------------------------------------------------


def _resource(owner: AccountRecord, record: ChildRecord, path: str, resource_type: str,
              properties: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "etag": record.etag,
        "id": f"{account_id(owner.subscription_id, owner.resource_group, owner.name)}/{path}",
        "name": record.name, "properties": properties,
        "systemData": system_data(record.created_by, record.created_at, record.updated_by, record.updated_at),
        "type": f"{PROVIDER}/accounts/{resource_type}",
    }
    if record.tags:
        body["tags"] = record.tags
    return body


def render_policy(owner: AccountRecord, record: ChildRecord) -> dict[str, Any]:
    return _resource(owner, record, f"raiPolicies/{record.name}", "raiPolicies",
                     {**record.properties, "type": "UserManaged"})


def render_built_in(owner: AccountRecord, name: str) -> dict[str, Any]:
    created = system_data("Microsoft", owner.created_at, "Microsoft", owner.created_at)
    created.update(createdByType="Application", lastModifiedByType="Application")
    return {
        "etag": f'"{uuid.uuid5(uuid.NAMESPACE_URL, f"{owner.id}/raiPolicies/{name}")}"',
        "id": f"{account_id(owner.subscription_id, owner.resource_group, owner.name)}/raiPolicies/{name}",
        "name": name, "properties": {**BUILT_IN_PROPERTIES[name], "type": "SystemManaged"},
        "systemData": created, "type": f"{PROVIDER}/accounts/raiPolicies",
    }


def render_blocklist(owner: AccountRecord, record: ChildRecord) -> dict[str, Any]:
    return _resource(owner, record, f"raiBlocklists/{record.name}", "raiBlocklists", record.properties)


def render_item(owner: AccountRecord, record: ChildRecord) -> dict[str, Any]:
    return _resource(owner, record, f"raiBlocklists/{record.parent}/raiBlocklistItems/{record.name}",
                     "raiBlocklists/raiBlocklistItems", record.properties)


def render_content_filter(subscription: str, location: str, kind: ContentFilterKind) -> dict[str, Any]:
    properties: dict[str, Any] = {"isMultiLevelFilter": kind.graded, "name": kind.name}
    if len(kind.sources) == 1:  # the harm categories and profanity apply to both sides
        properties["source"] = kind.sources[0]
    return {"id": f"/subscriptions/{subscription}/providers/{PROVIDER}/locations/{location}/raiContentFilters/"
                  f"{kind.resource_name}",
            "name": kind.resource_name, "properties": properties, "type": f"{PROVIDER}/locations/raiContentFilters"}


# shared steps ------------------------------------------------------------------------------------------


def _store(request: Request) -> StateStore:
    return services(request).store


async def _deleted(request: Request, subscription: str, owner: AccountRecord, resource: str) -> Response:
    """202 with an operation that has already succeeded: the SDK takes only 202 or 204 from these deletes,
    and 204 means there was nothing to delete."""
    services(request).cache.forget()
    operation = await run_in_threadpool(_store(request).add_operation, subscription, owner.location, resource,
                                        "Succeeded")
    url = async_operation_url(request, subscription, owner.location, operation, check_api_version(request))
    return Response(status_code=202, headers={"Azure-AsyncOperation": url, "Location": url})


async def _find_blocklist(request: Request, owner: AccountRecord, name: str) -> ChildRecord:
    record = await run_in_threadpool(_store(request).child, owner.id, "raiBlocklists", name)
    if record is None:
        raise not_found("accounts/raiBlocklists", f"{owner.name}/{name}", owner.resource_group)
    return record


def _policies_using(store: StateStore, owner_id: str, blocklist: str) -> list[str]:
    return [policy.name for policy in store.children(owner_id, "raiPolicies")
            if any(ref.get("blocklistName", "").lower() == blocklist.lower()
                   for ref in policy.properties.get("customBlocklists", []))]


def _check_room(store: StateStore, owner_id: str, blocklist: str, names: list[str]) -> None:
    existing = {item.name.lower() for item in store.children(owner_id, "raiBlocklistItems", blocklist)}
    added = len({n.lower() for n in names} - existing)
    if len(existing) + added > MAX_ITEMS:
        raise arm_error(400, "RaiBlocklistItemsLimitExceeded",
                        f"The blocklist '{blocklist}' would hold {len(existing) + added} items; the most is "
                        f"{MAX_ITEMS}.")


def _check_regex_room(store: StateStore, owner_id: str, blocklist: str, items: list[tuple[str, dict[str, Any]]],
                      limit: int) -> None:
    """The regexes of all the account's lists, with `items` written to `blocklist`, stay within `limit` characters:
    a list's regexes are compiled together, and compiling grows faster than their length."""
    replaced = {name.lower() for name, _ in items}
    total = sum(len(props["pattern"]) for _, props in items if props.get("isRegex"))
    for listed in store.children(owner_id, "raiBlocklists"):
        total += sum(len(item.properties.get("pattern", "")) for item in
                     store.children(owner_id, "raiBlocklistItems", listed.name)
                     if item.properties.get("isRegex") and not (listed.name.lower() == blocklist.lower()
                                                                and item.name.lower() in replaced))
    if total > limit:
        raise arm_error(400, "RaiBlocklistItemsLimitExceeded",
                        f"The blocklists of this account would hold {total:,} characters of regular expressions; "
                        f"the most is {limit:,}. Use exact terms where a regex is not needed.")


def _items_changed(svc: Services, owner_id: str, blocklist: ChildRecord, principal: str) -> ChildRecord:
    """A new etag for the list whose items changed, and the list compiled at it here, not on a request."""
    record, _ = svc.store.put_child(owner_id, "raiBlocklists", blocklist.name, properties=blocklist.properties,
                                    tags=blocklist.tags, principal=principal)
    compiled_blocklist(svc.store, svc.blocklists, owner_id, record)
    svc.cache.forget()
    return record


def _put_items(store: StateStore, owner_id: str, blocklist: str, items: list[tuple[str, dict[str, Any]]],
               principal: str, regex_limit: int) -> None:
    _check_room(store, owner_id, blocklist, [name for name, _ in items])
    _check_regex_room(store, owner_id, blocklist, items, regex_limit)
    for name, properties in items:
        existing = store.child(owner_id, "raiBlocklistItems", name, blocklist)
        store.put_child(owner_id, "raiBlocklistItems", name, properties=properties,
                        tags=existing.tags if existing else {}, principal=principal, parent=blocklist)


# raiPolicies -------------------------------------------------------------------------------------------


@router.get(POLICIES)
async def list_policies(subscription: str, group: str, account: str, request: Request) -> Response:
    await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    rows = await run_in_threadpool(_store(request).children, owner.id, "raiPolicies")
    return AzureJSONResponse({"value": [*(render_built_in(owner, name) for name in BUILT_IN_POLICIES),
                                        *(render_policy(owner, row) for row in rows)]})


@router.get(POLICIES + "/{name}")
async def get_policy(subscription: str, group: str, account: str, name: str, request: Request) -> Response:
    await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    built_in = _built_in(name)
    if built_in is not None:
        return AzureJSONResponse(render_built_in(owner, built_in))
    record = await run_in_threadpool(_store(request).child, owner.id, "raiPolicies", name)
    if record is None:
        raise not_found("accounts/raiPolicies", f"{account}/{name}", group)
    return AzureJSONResponse(render_policy(owner, record))


@router.put(POLICIES + "/{name}")
async def put_policy(subscription: str, group: str, account: str, name: str, request: Request) -> Response:
    principal = await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    check_name(name, "raiPolicies")
    built_in = _built_in(name)
    if built_in is not None:
        raise arm_error(400, "SystemManagedRaiPolicyUpdateNotAllowed",
                        f"The RAI policy '{built_in}' is system-managed and cannot be changed; create a policy "
                        "of your own with it as basePolicyName.")
    body = await parse_arm_body(request, PolicyIn)
    store = _store(request)
    blocklists = await run_in_threadpool(store.children, owner.id, "raiBlocklists")
    properties = _policy_properties(body.properties or PolicyPropertiesIn(),
                                    {b.name.lower(): b.name for b in blocklists})
    existing = await run_in_threadpool(store.child, owner.id, "raiPolicies", name)
    tags = body.tags if body.tags is not None else (existing.tags if existing else {})
    record, created = await run_in_threadpool(
        lambda: store.put_child(owner.id, "raiPolicies", name, properties=properties, tags=tags,
                                principal=principal.object_id))
    services(request).cache.forget()
    return AzureJSONResponse(render_policy(owner, record), status_code=201 if created else 200)


@router.delete(POLICIES + "/{name}")
async def delete_policy(subscription: str, group: str, account: str, name: str, request: Request) -> Response:
    await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    built_in = _built_in(name)
    if built_in is not None:
        raise arm_error(400, "SystemManagedRaiPolicyDeletionNotAllowed",
                        f"The RAI policy '{built_in}' is system-managed and cannot be deleted.")
    store = _store(request)
    record = await run_in_threadpool(store.child, owner.id, "raiPolicies", name)
    if record is None:
        return Response(status_code=204)
    deployments = await run_in_threadpool(store.deployments, owner.id)
    users = [d.name for d in deployments if d.rai_policy_name.lower() == record.name.lower()]
    if users:
        raise arm_error(400, "RaiPolicyInUse",
                        f"The RAI policy '{record.name}' is used by the deployments {', '.join(users)}; give them "
                        "another raiPolicyName before deleting it.")
    await run_in_threadpool(store.delete_child, owner.id, "raiPolicies", record.name)
    return await _deleted(request, subscription, owner, render_policy(owner, record)["id"])


# raiBlocklists -----------------------------------------------------------------------------------------


@router.get(BLOCKLISTS)
async def list_blocklists(subscription: str, group: str, account: str, request: Request) -> Response:
    await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    rows = await run_in_threadpool(_store(request).children, owner.id, "raiBlocklists")
    return AzureJSONResponse({"value": [render_blocklist(owner, row) for row in rows]})


@router.get(BLOCKLISTS + "/{name}")
async def get_blocklist(subscription: str, group: str, account: str, name: str, request: Request) -> Response:
    await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    return AzureJSONResponse(render_blocklist(owner, await _find_blocklist(request, owner, name)))


@router.put(BLOCKLISTS + "/{name}")
async def put_blocklist(subscription: str, group: str, account: str, name: str, request: Request) -> Response:
    principal = await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    check_name(name, "raiBlocklists")
    body = await parse_arm_body(request, BlocklistIn)
    description = body.properties.description if body.properties else None
    store = _store(request)
    existing = await run_in_threadpool(store.child, owner.id, "raiBlocklists", name)
    tags = body.tags if body.tags is not None else (existing.tags if existing else {})
    record, created = await run_in_threadpool(
        lambda: store.put_child(owner.id, "raiBlocklists", name, tags=tags, principal=principal.object_id,
                                properties={} if description is None else {"description": description}))
    services(request).cache.forget()
    return AzureJSONResponse(render_blocklist(owner, record), status_code=201 if created else 200)


@router.delete(BLOCKLISTS + "/{name}")
async def delete_blocklist(subscription: str, group: str, account: str, name: str, request: Request) -> Response:
    await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    store = _store(request)
    record = await run_in_threadpool(store.child, owner.id, "raiBlocklists", name)
    if record is None:
        return Response(status_code=204)
    users = await run_in_threadpool(_policies_using, store, owner.id, record.name)
    if users:
        raise arm_error(400, "RaiBlocklistInUse",
                        f"The blocklist '{record.name}' is used by the RAI policies {', '.join(users)}; remove it "
                        "from them before deleting it.")
    await run_in_threadpool(store.delete_child, owner.id, "raiBlocklists", record.name)
    services(request).blocklists.forget(owner.id, record.name)
    return await _deleted(request, subscription, owner, render_blocklist(owner, record)["id"])


# raiBlocklistItems -------------------------------------------------------------------------------------


@router.get(ITEMS)
async def list_items(subscription: str, group: str, account: str, blocklist: str, request: Request) -> Response:
    await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    parent = await _find_blocklist(request, owner, blocklist)
    rows = await run_in_threadpool(_store(request).children, owner.id, "raiBlocklistItems", parent.name)
    return AzureJSONResponse({"value": [render_item(owner, row) for row in rows]})


async def _find_item(request: Request, owner: AccountRecord, parent: ChildRecord, name: str) -> ChildRecord:
    record = await run_in_threadpool(_store(request).child, owner.id, "raiBlocklistItems", name, parent.name)
    if record is None:
        raise not_found("accounts/raiBlocklists/raiBlocklistItems", f"{owner.name}/{parent.name}/{name}",
                        owner.resource_group)
    return record


@router.get(ITEMS + "/{name}")
async def get_item(subscription: str, group: str, account: str, blocklist: str, name: str,
                   request: Request) -> Response:
    await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    parent = await _find_blocklist(request, owner, blocklist)
    return AzureJSONResponse(render_item(owner, await _find_item(request, owner, parent, name)))


@router.put(ITEMS + "/{name}")
async def put_item(subscription: str, group: str, account: str, blocklist: str, name: str,
                   request: Request) -> Response:
    principal = await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    parent = await _find_blocklist(request, owner, blocklist)
    check_name(name, "raiBlocklistItems")
    body = await parse_arm_body(request, ItemIn)
    properties = _item_properties(body.properties, "properties")
    store = _store(request)
    regex_limit = services(request).settings.limits.max_blocklist_regex_chars

    def save() -> tuple[ChildRecord, bool]:
        existing = store.child(owner.id, "raiBlocklistItems", name, parent.name)
        if existing is None:
            _check_room(store, owner.id, parent.name, [name])
        _check_regex_room(store, owner.id, parent.name, [(name, properties)], regex_limit)
        tags = body.tags if body.tags is not None else (existing.tags if existing else {})
        return store.put_child(owner.id, "raiBlocklistItems", name, properties=properties, tags=tags,
                               principal=principal.object_id, parent=parent.name)

    record, created = await run_in_threadpool(save)
    await run_in_threadpool(_items_changed, services(request), owner.id, parent, principal.object_id)
    return AzureJSONResponse(render_item(owner, record), status_code=201 if created else 200)


@router.delete(ITEMS + "/{name}")
async def delete_item(subscription: str, group: str, account: str, blocklist: str, name: str,
                      request: Request) -> Response:
    principal = await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    parent = await _find_blocklist(request, owner, blocklist)
    store = _store(request)
    record = await run_in_threadpool(store.child, owner.id, "raiBlocklistItems", name, parent.name)
    if record is None:
        return Response(status_code=204)
    await run_in_threadpool(store.delete_child, owner.id, "raiBlocklistItems", record.name, parent.name)
    await run_in_threadpool(_items_changed, services(request), owner.id, parent, principal.object_id)
    return await _deleted(request, subscription, owner, render_item(owner, record)["id"])


@router.post(BLOCKLISTS + "/{blocklist}/addRaiBlocklistItems")
async def add_items(subscription: str, group: str, account: str, blocklist: str, request: Request) -> Response:
    principal = await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    parent = await _find_blocklist(request, owner, blocklist)
    body = await parse_arm_body(request, BulkItemsIn)
    items: list[tuple[str, dict[str, Any]]] = []
    for index, item in enumerate(body.root):
        if not item.name:
            raise invalid(f"The property '[{index}].name' is required.")
        check_name(item.name, "raiBlocklistItems")
        if any(item.name.lower() == seen.lower() for seen, _ in items):
            raise invalid(f"The item name '{item.name}' appears twice in the request.")
        items.append((item.name, _item_properties(item.properties, f"[{index}].properties")))
    # everything is checked before anything is written, so a bad item leaves the list as it was
    svc = services(request)
    await run_in_threadpool(_put_items, svc.store, owner.id, parent.name, items, principal.object_id,
                            svc.settings.limits.max_blocklist_regex_chars)
    changed = await run_in_threadpool(_items_changed, svc, owner.id, parent, principal.object_id)
    return AzureJSONResponse(render_blocklist(owner, changed))


@router.post(BLOCKLISTS + "/{blocklist}/deleteRaiBlocklistItems")
async def delete_items(subscription: str, group: str, account: str, blocklist: str, request: Request) -> Response:
    principal = await arm_request(request)
    owner = await find_account(request, subscription, group, account)
    parent = await _find_blocklist(request, owner, blocklist)
    body = await parse_arm_body(request, ItemNamesIn)
    store = _store(request)

    def delete_all() -> None:
        for name in body.root:
            store.delete_child(owner.id, "raiBlocklistItems", name, parent.name)

    await run_in_threadpool(delete_all)
    await run_in_threadpool(_items_changed, services(request), owner.id, parent, principal.object_id)
    return Response(status_code=204)  # the only status the SDK's batch_delete accepts


# raiContentFilters, per location -----------------------------------------------------------------------


@router.get(CONTENT_FILTERS)
async def list_content_filters(subscription: str, location: str, request: Request) -> Response:
    await arm_request(request)
    return AzureJSONResponse({"value": [render_content_filter(subscription, location, kind)
                                        for kind in CONTENT_FILTERS_CATALOGUE]})


@router.get(CONTENT_FILTERS + "/{name}")
async def get_content_filter(subscription: str, location: str, name: str, request: Request) -> Response:
    await arm_request(request)
    kind = FILTER_BY_KEY.get(_key(name))
    if kind is None:
        raise arm_error(404, "ResourceNotFound",
                        f"The RAI content filter '{name}' was not found in location '{location}'; the filters are "
                        f"{', '.join(k.resource_name for k in CONTENT_FILTERS_CATALOGUE)}.")
    return AzureJSONResponse(render_content_filter(subscription, location, kind))
