"""Whatever a caller sends to the management plane, the built-in issuer's token endpoint or the Batches API, the
answer is a success or that surface's own error, never a 500: ARM's and the data plane's `{"error": {"code",
"message"}}`, OAuth2's `{"error", "error_description"}` at the token endpoint.

The bodies are fuzzed from a valid one (Hypothesis), on one app in this process, so the examples are cheap;
`AZURINE_FUZZ_EXAMPLES` multiplies them for a deeper search by hand."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgi_app import in_process_app
from azurine.api.context import Services
from azurine.api.encryption_stage import data_keys
from azurine.api.management.rai import CONTENT_FILTERS_CATALOGUE
from azurine.identity.roles import BUILT_IN_ROLES
from azurine.identity.tokens import MANAGEMENT_AUDIENCES, TENANT_ID, issue_token
from azurine.quota.capacity import SKU_NAMES
from azurine.storage.state import AccountRecord
from conftest import API_KEY, API_VERSION
from test_fuzzed_bodies import BASES, json_values

SCALE = int(os.environ.get("AZURINE_FUZZ_EXAMPLES", 60)) / 60  # the body fuzz's knob, read as a multiple here


def examples(count: int) -> Any:
    return settings(max_examples=max(1, int(count * SCALE)), deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


ARM = "?api-version=2025-09-01"
AUTHZ = "?api-version=2022-04-01"
TOKEN = f"/{TENANT_ID}/oauth2/v2.0/token"
BATCH_CHAT, BATCH_EMBEDDINGS, DEPLOYMENT, BLOCKLIST = "fuzz-batch", "fuzz-batch-embed", "fuzz-dep", "fuzz-list"
PATCHED = "fuzz-patched"  # the account the account fuzz updates
MODELS = (("HuggingFace", "SmolLM2-135M-Instruct"), ("SentenceTransformers", "all-MiniLM-L6-v2"),
          ("Alibaba", "Qwen2.5-Coder-0.5B-Instruct"))
_addresses = itertools.count(1)


@dataclass
class App:
    app: FastAPI
    services: Services
    account: AccountRecord
    client_id: str
    client_secret: str

    @property
    def group(self) -> str:
        return f"/subscriptions/{self.account.subscription_id}/resourceGroups/{self.account.resource_group}"

    @property
    def account_path(self) -> str:
        return f"{self.group}/providers/Microsoft.CognitiveServices/accounts/{self.account.name}"

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request from an address of its own, so the token endpoint's limit on failures never answers
        in place of the code under test."""
        address = next(_addresses)
        peer = f"10.{address >> 16 & 255}.{address >> 8 & 255}.{address & 255}"

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=(peer, 40000), raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://azurine.test", timeout=120) as http:
                return await http.request(method, path, **kwargs)

        return asyncio.run(send())

    def arm(self, method: str, path: str, body: object) -> httpx.Response:
        token = issue_token(self.services.store, MANAGEMENT_AUDIENCES[0])[0]
        return self.call(method, path, json=body, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> App:
    app, services = in_process_app(tmp_path_factory.mktemp("fuzz") / "data")
    account = services.store.first_account()
    assert account is not None
    for name, (publisher, model), sku in ((BATCH_CHAT, MODELS[0], "GlobalBatch"),
                                         (BATCH_EMBEDDINGS, MODELS[1], "GlobalBatch"),
                                         (DEPLOYMENT, MODELS[0], "Standard")):
        services.store.put_deployment(account.id, name, model_format=publisher, model_name=model, model_version="1",
                                      sku_name=sku, sku_capacity=1000 if "batch" in name else 1,
                                      rai_policy_name="Microsoft.DefaultV2", version_upgrade_option="NoAutoUpgrade",
                                      properties={}, tags={}, principal="test")
    services.store.put_child(account.id, "raiBlocklists", BLOCKLIST, properties={}, tags={}, principal="test")
    keys = data_keys(app)
    assert keys is not None
    keys.providers.local.create("k")  # the customer-managed key the account bodies name
    principal, secret = services.directory.create_service_principal("fuzz")
    services.store.put_account(account.subscription_id, account.resource_group, PATCHED, kind="OpenAI",
                               location="eastus", sku_name="S0", custom_subdomain=None, properties={}, tags={},
                               identity=None, principal="test")
    return App(app, services, account, principal.app_id, secret)


def assert_azure_shaped(response: httpx.Response, sent: object) -> None:
    assert response.status_code < 500, (sent, response.status_code, response.text[:2000])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str), (sent, response.text)


# strategies -----------------------------------------------------------------------------------------------------
#
# A body is a valid one with one to three of its values changed: a value this field may hold or nearly hold (its
# pool), any JSON value, or nothing (the field removed). Fields a valid body leaves out are among those changed, so
# every field a route reads is reached at some depth.

junk = json_values
DELETE = object()
# integers of any size: a capacity or a count far past what a database column holds
numbers = (st.integers() | st.integers(-3, 3) | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=4) | st.just([1]))
short_text = st.text(max_size=12)
# names as a path segment carries them (no "/", "?" or "#"), often valid, in several cases
names = (st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9-]{1,8}", fullmatch=True)
         | st.sampled_from(["fuzz-a", "FUZZ-A", "Fuzz-A", "fuzz-b", "default", "DEFAULT"])
         | st.text(st.characters(blacklist_characters="/?#%\\", blacklist_categories=("Cs", "Cc")), min_size=1,
                   max_size=12))
FieldPath = tuple[str | int, ...]


def _paths(document: object, prefix: FieldPath = ()) -> list[FieldPath]:
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += _paths(value, (*prefix, index))
    return found


def _changed(base: object, changes: list[tuple[FieldPath, object]]) -> object:
    document = json.loads(json.dumps(base))
    for path, value in changes:
        if not path:
            document = value
            continue
        parent = document
        for key in path[:-1]:
            if isinstance(parent, dict):
                if not isinstance(parent.get(key), (dict, list)):
                    parent[key] = {}
                parent = parent[key]
            elif isinstance(parent, list) and isinstance(key, int) and key < len(parent):
                parent = parent[key]
            else:
                break
        else:
            last = path[-1]
            if isinstance(parent, dict) and value is DELETE:
                parent.pop(last, None)
            elif isinstance(parent, dict):
                parent[last] = value
            elif isinstance(parent, list) and isinstance(last, int) and value is not DELETE:
                parent[last:last + 1] = [value]
    return document


def mutated(base: object, pools: dict[str, st.SearchStrategy[Any]], extra: tuple[FieldPath, ...] = ()
            ) -> st.SearchStrategy[Any]:
    """`base` with one to three values changed; `pools` by the field's path (list indices as `*`, keys joined by
    dots) or its last key; `extra` are paths `base` leaves out."""
    def values(path: FieldPath) -> st.SearchStrategy[Any]:
        dotted = ".".join("*" if isinstance(k, int) else k for k in path)
        pool = pools.get(dotted, pools.get(str(path[-1]) if path else "", None))
        others = [junk, st.just(DELETE)] if path else [junk]
        # one_of picks its branches evenly: the pool, where there is one, is weighted by sampling it by index
        choices = ([pool] * 4 if pool is not None else []) + others
        return st.integers(0, len(choices) - 1).flatmap(lambda index: choices[index])

    def pooled(path: FieldPath) -> bool:
        dotted = ".".join("*" if isinstance(k, int) else k for k in path)
        return bool(path) and (dotted in pools or str(path[-1]) in pools)

    every = _paths(base) + list(extra) + [(*p, "unknownField") for p in _paths(base) if
                                           isinstance(_value_at(base, p), dict)]
    every += [path for path in every if pooled(path)] * 3  # the fields with pools of their own, more often
    change = st.sampled_from(every).flatmap(lambda path: st.tuples(st.just(path), values(path)))
    return st.lists(change, min_size=1, max_size=3).map(lambda changes: _changed(base, changes))


def _value_at(document: object, path: FieldPath) -> object:
    for key in path:
        document = document[key]  # type: ignore[index]
    return document


tags = st.dictionaries(short_text, short_text | junk, max_size=3)
sku_names = st.sampled_from([*SKU_NAMES, "S0", "s0", "F0"])
vault_uris = st.sampled_from(["https://keys.azurine.local/", "https://contoso.vault.azure.net/", "https://[",
                              "http://[::1", "https://[v1.x]/", "https://a:b@keys.azurine.local:99999/", "ftp://x",
                              "", "https://", "https://KEYS.azurine.local"])
ip_values = st.sampled_from(["203.0.113.0/24", "203.0.113.7", "::1/200", "1.2.3.4/33", "300.1.1.1", "10.0.0.0/8",
                             "0.0.0.0/0", "fe80::1%eth0", " 1.2.3.4"]) | short_text
# no customSubDomainName: one account holds a subdomain, and every other account that names it stops at 409
ACCOUNT = {"location": "eastus", "kind": "OpenAI", "sku": {"name": "S0"}, "tags": {"a": "b"}, "properties": {
    "publicNetworkAccess": "Enabled",
    "networkAcls": {"defaultAction": "Allow", "ipRules": [{"value": "203.0.113.0/24"}], "virtualNetworkRules": []},
    "encryption": {"keySource": "Microsoft.KeyVault", "keyVaultProperties": {
        "keyName": "k", "keyVersion": "", "keyVaultUri": "https://keys.azurine.local/", "identityClientId": ""}}}}
accounts = mutated(ACCOUNT, {
    "location": st.sampled_from(["eastus", "EastUS", "westus", ""]), "kind": st.sampled_from(["OpenAI", "AIServices",
                                                                                               "openai"]),
    "sku.name": sku_names, "sku.capacity": numbers, "tags": tags, "identity": st.fixed_dictionaries(
        {"type": st.sampled_from(["SystemAssigned", "None", "UserAssigned"])}),
    "customSubDomainName": names, "publicNetworkAccess": st.sampled_from(["Enabled", "Disabled", "enabled"]),
    "defaultAction": st.sampled_from(["Allow", "Deny", "deny"]), "value": ip_values,
    "ipRules": st.lists(st.fixed_dictionaries({"value": ip_values}), max_size=3),
    "keySource": st.sampled_from(["Microsoft.KeyVault", "Microsoft.CognitiveServices", "x"]),
    "keyName": st.sampled_from(["k", "../k", "a" * 200, "k\x00", "k/1"]) | short_text,
    "keyVersion": st.sampled_from(["", "1", "../1", "0" * 40]) | short_text, "keyVaultUri": vault_uris,
    "identityClientId": st.uuids().map(str) | short_text,
}, extra=(("properties", "customSubDomainName"), ("properties", "disableLocalAuth"),
          ("properties", "networkAcls", "bypass"), ("sku", "capacity"),
          ("identity",)))

model_fields: dict[str, st.SearchStrategy[Any]] = {
    "format": st.sampled_from([m[0] for m in MODELS] + ["OpenAI", "huggingface"]),
    "properties.model.name": st.sampled_from([m[1] for m in MODELS] + ["gpt-4o"]),
    "version": st.sampled_from(["1", "2", ""]), "sku.name": sku_names, "capacity": numbers,
    "raiPolicyName": st.sampled_from(["Microsoft.DefaultV2", "Microsoft.Default", "microsoft.default", "nope"]),
    "versionUpgradeOption": st.sampled_from(["NoAutoUpgrade", "OnceCurrentVersionExpired", "x"]), "tags": tags,
}
DEPLOYMENT_BODY = {"sku": {"name": "Standard", "capacity": 1}, "properties": {
    "model": {"format": MODELS[0][0], "name": MODELS[0][1], "version": "1"}, "raiPolicyName": "Microsoft.DefaultV2",
    "versionUpgradeOption": "NoAutoUpgrade"}, "tags": {}}
# before `sku`, a deployment's capacity was `properties.scaleSettings.capacity`: both forms are still read
deployments = (mutated(DEPLOYMENT_BODY, model_fields, extra=(("sku", "tier"), ("properties", "scaleSettings")))
               | mutated({"properties": {**DEPLOYMENT_BODY["properties"], "scaleSettings": {"capacity": 1}}},
                         model_fields, extra=(("properties", "scaleSettings", "scaleType"), ("sku",))))

filter_names = st.sampled_from([k.name for k in CONTENT_FILTERS_CATALOGUE] + ["hate", "self_harm", "Nope"])
sources = st.sampled_from(["Prompt", "Completion", "completion", "Both"])
references = st.lists(st.fixed_dictionaries({"blocklistName": st.sampled_from([BLOCKLIST, BLOCKLIST.upper(), "x"]),
                                             "blocking": st.booleans(), "source": sources}), max_size=2)
POLICY = {"properties": {"basePolicyName": "Microsoft.DefaultV2", "mode": "Default", "contentFilters": [
    {"name": "Hate", "source": "Prompt", "severityThreshold": "Medium", "blocking": True, "enabled": True},
    {"name": "Personally Identifiable Information", "source": "Completion", "blocking": True, "enabled": True,
     "action": "Redact"}],
    "customBlocklists": [{"blocklistName": BLOCKLIST, "blocking": True, "source": "Prompt"}]}, "tags": {}}
policies = mutated(POLICY, {
    "mode": st.sampled_from(["Default", "Deferred", "Blocking", "Asynchronous_filter", "x"]),
    "basePolicyName": st.sampled_from(["Microsoft.Default", "Microsoft.DefaultV2", "mine"]),
    "properties.contentFilters.*.name": filter_names, "source": sources,
    "severityThreshold": st.sampled_from(["Low", "Medium", "High", "None"]),
    "allowedContentLevel": st.sampled_from(["Low", "High"]), "enabled": st.booleans(), "blocking": st.booleans(),
    "action": st.sampled_from(["Redact", "Annotate", "redact"]),
    "blocklistName": st.sampled_from([BLOCKLIST, BLOCKLIST.upper(), "missing"]),
    "contentFilters": st.lists(st.fixed_dictionaries({"name": filter_names, "source": sources}), max_size=3),
    "customBlocklists": references, "promptBlocklists": references, "completionBlocklists": references,
    "customTopics": st.lists(junk, max_size=1), "tags": tags,
}, extra=(("properties", "promptBlocklists"), ("properties", "completionBlocklists"),
          ("properties", "customTopics"), ("properties", "contentFilters", 0, "allowedContentLevel")))
blocklists = mutated({"properties": {"description": "words"}, "tags": {}},
                     {"description": short_text, "tags": tags})

# regexes as a tenant may write them: pieces that stdlib `re` and the `regex` package read differently, repeat
# counts past what either holds, nesting past the parser's recursion
regex_pieces = st.sampled_from(["a", "(", ")", "[", "]", "[[:alpha:]]", "[[:foo:]]", "{2,1}", "{4294967296}",
                                "\\p{L}", "\\p{Foo}", "(?i)", "(?|", "\\N{DASH}", "(?P<n>", "(?P<1>", "*", "+?",
                                "\\", "|", "^", "$", ".", "(?<=a+)", "\\b", "(?:", "[^", "\\d{0,99999}"])
patterns = (st.lists(regex_pieces, min_size=1, max_size=6).map("".join)
            | st.sampled_from(["a{4294967296}", "[[:foo:]]", "[[:alpha:]]+", "(?P<1>a)", "a{2,1}", "\\p{Foo}"])
            | st.integers(1, 500).map(lambda depth: "(" * depth + "a" + ")" * depth)
            | st.text(max_size=20) | st.just("x" * 1001))
items = mutated({"properties": {"pattern": "bad", "isRegex": True}, "tags": {}},
                {"pattern": patterns, "isRegex": st.booleans(), "tags": tags})
# a few names, so items replace each other and the account's regexes stay within their limit
item_names = st.sampled_from(["i1", "i2", "I2", "i3"]) | names

role_ids = st.sampled_from(sorted(BUILT_IN_ROLES))
assignments = mutated({"properties": {
    "roleDefinitionId": f"/providers/Microsoft.Authorization/roleDefinitions/{sorted(BUILT_IN_ROLES)[0]}",
    "principalId": str(uuid.UUID(int=1)), "principalType": "User", "principalTenantId": TENANT_ID}}, {
    "roleDefinitionId": st.builds(lambda scope, role: f"{scope}/providers/Microsoft.Authorization/roleDefinitions/"
                                                      f"{role}", st.sampled_from(["", "/subscriptions/x"]), role_ids)
    | role_ids | short_text,
    "principalId": st.uuids().map(str) | st.text(max_size=70),
    "principalType": st.sampled_from(["User", "Group", "ServicePrincipal", "Robot"]),
    "principalTenantId": st.sampled_from([TENANT_ID, "https://issuer.example", ""]) | st.uuids().map(str)},
    extra=(("properties", "condition"), ("properties", "scope")))


# ARM ------------------------------------------------------------------------------------------------------------

# the default account stays as it is: the batch fuzz uses its key
account_names = names.filter(lambda name: name.lower() != "default")


@examples(250)
@given(name=account_names, body=accounts, patch=st.booleans())
def test_fuzzed_account_bodies_never_get_a_500(fuzzed: App, name: str, body: object, patch: bool) -> None:
    name = PATCHED if patch else name  # an update needs an account to update
    path = f"{fuzzed.group}/providers/Microsoft.CognitiveServices/accounts/{name}{ARM}"
    assert_azure_shaped(fuzzed.arm("PATCH" if patch else "PUT", path, body), body)


@examples(250)
@given(name=names.filter(lambda name: name.lower() not in (BATCH_CHAT, BATCH_EMBEDDINGS)) | st.just(DEPLOYMENT),
       body=deployments, patch=st.booleans())
def test_fuzzed_deployment_bodies_never_get_a_500(fuzzed: App, name: str, body: object, patch: bool) -> None:
    path = f"{fuzzed.account_path}/deployments/{DEPLOYMENT if patch else name}{ARM}"
    assert_azure_shaped(fuzzed.arm("PATCH" if patch else "PUT", path, body), body)


@examples(200)
@given(name=names, body=policies)
def test_fuzzed_rai_policy_bodies_never_get_a_500(fuzzed: App, name: str, body: object) -> None:
    assert_azure_shaped(fuzzed.arm("PUT", f"{fuzzed.account_path}/raiPolicies/{name}{ARM}", body), body)


@examples(40)
@given(name=names, body=blocklists)
def test_fuzzed_blocklist_bodies_never_get_a_500(fuzzed: App, name: str, body: object) -> None:
    assert_azure_shaped(fuzzed.arm("PUT", f"{fuzzed.account_path}/raiBlocklists/{name}{ARM}", body), body)


@examples(250)
@given(name=item_names, body=items, bulk=st.booleans())
def test_fuzzed_blocklist_item_bodies_never_get_a_500(fuzzed: App, name: str, body: Any, bulk: bool) -> None:
    lists = f"{fuzzed.account_path}/raiBlocklists/{BLOCKLIST}"
    if bulk:
        sent = [{**body, "name": name} if isinstance(body, dict) else body]
        response = fuzzed.arm("POST", f"{lists}/addRaiBlocklistItems{ARM}", sent)
    else:
        sent, response = body, fuzzed.arm("PUT", f"{lists}/raiBlocklistItems/{name}{ARM}", body)
    assert_azure_shaped(response, sent)


@examples(120)
@given(scope=st.sampled_from(["account", "group", "subscription", "/subscriptions", "/nowhere"]),
       name=st.uuids().map(str) | names, body=assignments)
def test_fuzzed_role_assignment_bodies_never_get_a_500(fuzzed: App, scope: str, name: str, body: object) -> None:
    where = {"account": fuzzed.account_path, "group": fuzzed.group,
             "subscription": f"/subscriptions/{fuzzed.account.subscription_id}"}.get(scope, scope)
    path = f"{where}/providers/Microsoft.Authorization/roleAssignments/{name}{AUTHZ}"
    assert_azure_shaped(fuzzed.arm("PUT", path, body), body)


# the token endpoint ---------------------------------------------------------------------------------------------

SCOPES = ["https://cognitiveservices.azure.com/.default", "https://management.azure.com/.default",
          "https://cognitiveservices.azure.com/.default openid profile", "https://example.com/.default", ".default",
          "https://cognitiveservices.azure.com"]


def form_fields(app_id: Callable[[], str], secret: Callable[[], str]) -> st.SearchStrategy[dict[str, str]]:
    text = st.text(max_size=40)
    return st.fixed_dictionaries({}, optional={
        "grant_type": st.sampled_from(["client_credentials", "", "password", "CLIENT_CREDENTIALS"]) | text,
        "client_id": st.sampled_from(["APP", "app"]).map(lambda _: app_id()) | st.uuids().map(str) | text,
        "client_secret": st.just("SECRET").map(lambda _: secret()) | text,
        "scope": st.sampled_from(SCOPES) | text, "resource": st.sampled_from(SCOPES) | text,
        "client_assertion": text, "junk\x00field": text})


@examples(150)
@given(data=st.data(), basic=st.none() | st.binary(max_size=40) | st.sampled_from([b"APP:SECRET", b"APP:", b":"]),
       tenant=st.sampled_from([TENANT_ID, "common", "organizations"]))
def test_fuzzed_token_requests_get_a_token_or_an_oauth_error(fuzzed: App, data: st.DataObject, basic: bytes | None,
                                                             tenant: str) -> None:
    fields = data.draw(form_fields(lambda: fuzzed.client_id, lambda: fuzzed.client_secret))
    headers = {}
    if basic is not None:
        credentials = basic.replace(b"APP", fuzzed.client_id.encode()).replace(b"SECRET", fuzzed.client_secret.encode())
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
    response = fuzzed.call("POST", f"/{tenant}/oauth2/v2.0/token", data=fields, headers=headers)
    assert response.status_code < 500, (fields, response.text)
    answer = response.json()
    if response.status_code == 200:
        assert isinstance(answer["access_token"], str) and answer["token_type"] == "Bearer"
    else:
        assert isinstance(answer["error"], str) and isinstance(answer["error_description"], str), answer


# batches --------------------------------------------------------------------------------------------------------

LINE_URLS = ["/chat/completions", "/v1/chat/completions", "/embeddings", "/completions", "/v1/embeddings", "/x"]
BATCH_ENDPOINTS = ["/chat/completions", "/v1/chat/completions", "/embeddings", "/completions", "/responses"]


def batch_line(operation: str) -> st.SearchStrategy[Any]:
    path, base, fields = BASES[operation]
    deployment = BATCH_EMBEDDINGS if operation == "embeddings" else BATCH_CHAT
    line = {"custom_id": "task", "method": "POST", "url": f"/{path}", "body": {**base, "model": deployment}}
    return mutated(line, {"custom_id": short_text | st.just("task"), "method": st.sampled_from(["POST", "post", "GET"]),
                          "url": st.sampled_from(LINE_URLS),
                          "model": st.sampled_from([deployment, BATCH_CHAT, DEPLOYMENT, "missing"])},
                   extra=tuple(("body", field) for field in fields))


batch_lines = st.sampled_from(sorted(BASES)).flatmap(lambda operation: st.lists(batch_line(operation), min_size=1,
                                                                                max_size=3))
batch_creations = mutated({"endpoint": "/chat/completions", "completion_window": "24h"}, {
    "endpoint": st.sampled_from(BATCH_ENDPOINTS), "completion_window": st.sampled_from(["24h", "48h"]),
    "metadata": st.dictionaries(short_text, short_text, max_size=17)},
    extra=(("metadata",), ("input_file_id",)))


def jsonl(lines: list[object], raw: list[bytes]) -> bytes:
    """The lines, each with its own custom id where it has one, and the raw lines among them."""
    out = []
    for number, line in enumerate(lines):
        if isinstance(line, dict) and line.get("custom_id") == "task":
            line = {**line, "custom_id": f"task-{number}"}
        out.append(json.dumps(line).encode())
    return b"\n".join(out + raw) + b"\n"


@examples(150)
@given(lines=batch_lines, create=batch_creations, raw=st.lists(
    st.binary(max_size=20) | st.sampled_from([b"", b"{", b"[]", b"\xef\xbb\xbf{}", b"null", b"\xff"]), max_size=1))
def test_fuzzed_batch_lines_never_get_a_500(fuzzed: App, lines: list[object], raw: list[bytes], create: Any) -> None:
    content = jsonl(lines, raw)
    headers = {"api-key": API_KEY}
    uploaded = fuzzed.call("POST", f"/openai/files?api-version={API_VERSION}", headers=headers,
                           data={"purpose": "batch"}, files={"file": ("batch.jsonl", content)})
    assert_azure_shaped(uploaded, content)
    if uploaded.status_code >= 400:
        return
    # a fuzzed input_file_id, where there is one, stands in place of the file's
    body = {"input_file_id": uploaded.json()["id"], **create} if isinstance(create, dict) else create
    created = fuzzed.call("POST", f"/openai/batches?api-version={API_VERSION}", headers=headers, json=body)
    assert_azure_shaped(created, (content, body))


def test_the_fuzz_reaches_past_validation(fuzzed: App) -> None:
    """The fuzz's valid bodies are valid: each surface it drives accepts the body its strategies start from."""
    account = fuzzed.arm("PUT", f"{fuzzed.group}/providers/Microsoft.CognitiveServices/accounts/fuzz-valid{ARM}",
                         ACCOUNT)
    assert account.status_code in (200, 201), account.text
    deployment = fuzzed.arm("PUT", f"{fuzzed.account_path}/deployments/fuzz-valid{ARM}", {
        "sku": {"name": "Standard", "capacity": 1}, "properties": {"model": {"format": MODELS[0][0],
                                                                             "name": MODELS[0][1], "version": "1"}}})
    assert deployment.status_code in (200, 201), deployment.text
    policy = fuzzed.arm("PUT", f"{fuzzed.account_path}/raiPolicies/fuzz-valid{ARM}",
                        {"properties": {"basePolicyName": "Microsoft.DefaultV2", "mode": "Default"}})
    assert policy.status_code in (200, 201), policy.text
    granted = fuzzed.call("POST", TOKEN, data={"grant_type": "client_credentials", "client_id": fuzzed.client_id,
                                               "client_secret": fuzzed.client_secret, "scope": SCOPES[0]})
    assert granted.status_code == 200, granted.text
    content = jsonl([{"custom_id": "task", "method": "POST", "url": "/chat/completions",
                      "body": {**BASES["chat"][1], "model": BATCH_CHAT}}], [])
    uploaded = fuzzed.call("POST", f"/openai/files?api-version={API_VERSION}", headers={"api-key": API_KEY},
                           data={"purpose": "batch"}, files={"file": ("batch.jsonl", content)})
    assert uploaded.status_code == 201, uploaded.text
    created = fuzzed.call("POST", f"/openai/batches?api-version={API_VERSION}", headers={"api-key": API_KEY},
                          json={"input_file_id": uploaded.json()["id"], "endpoint": "/chat/completions",
                                "completion_window": "24h"})
    assert created.status_code == 200 and created.json()["status"] != "failed", created.text


# what the fuzz found ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", ["[[:foo:]]", "a{4294967296}", "(" * 400 + "a" + ")" * 400])
def test_a_blocklist_regex_the_matcher_cannot_compile_is_refused_with_a_400(fuzzed: App, pattern: str) -> None:
    """Valid to Python's `re` or not: a pattern is checked by the compiler that will match it, and a repeat count
    or nesting too large for it is a bad pattern, not a crash."""
    lists = f"{fuzzed.account_path}/raiBlocklists/{BLOCKLIST}"
    item = {"properties": {"pattern": pattern, "isRegex": True}}
    one = fuzzed.arm("PUT", f"{lists}/raiBlocklistItems/found{ARM}", item)
    bulk = fuzzed.arm("POST", f"{lists}/addRaiBlocklistItems{ARM}", [{**item, "name": "found"}])
    for response in (one, bulk):
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "InvalidResourceProperties" and "regular expression" in error["message"], error


@pytest.mark.parametrize("capacity", ["x", [1], {"units": 1}, 1.5, True])
def test_a_scale_settings_capacity_that_is_not_a_whole_number_is_refused_with_a_400(fuzzed: App,
                                                                                   capacity: object) -> None:
    model = {"format": MODELS[0][0], "name": MODELS[0][1], "version": "1"}
    response = fuzzed.arm("PUT", f"{fuzzed.account_path}/deployments/fuzz-scale{ARM}",
                          {"properties": {"model": model, "scaleSettings": {"capacity": capacity}}})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "InvalidCapacity" and "capacity" in error["message"], error


@pytest.mark.parametrize("uri", ["https://[", "http://[::1", "https://[v1.x]/"])
def test_a_key_vault_uri_that_is_no_url_is_refused_with_a_400(fuzzed: App, uri: str) -> None:
    body = {**ACCOUNT, "properties": {"encryption": {"keySource": "Microsoft.KeyVault", "keyVaultProperties": {
        "keyName": "k", "keyVaultUri": uri}}}}
    response = fuzzed.arm("PUT", f"{fuzzed.group}/providers/Microsoft.CognitiveServices/accounts/fuzz-uri{ARM}", body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "InvalidResourceProperties" and "keyVaultUri" in error["message"], error
