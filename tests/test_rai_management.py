"""Content-filter policies and blocklists through the real `azure-mgmt-cognitiveservices` SDK, over TLS."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient
from azure.mgmt.cognitiveservices.models import (
    CustomBlocklistConfig,
    Deployment,
    DeploymentModel,
    DeploymentProperties,
    RaiBlocklist,
    RaiBlocklistItem,
    RaiBlocklistItemBulkRequest,
    RaiBlocklistItemProperties,
    RaiBlocklistProperties,
    RaiPolicy,
    RaiPolicyContentFilter,
    RaiPolicyProperties,
    Sku,
)

import test_management_sdk
from test_management_sdk import GROUP, SUBSCRIPTION, AzurineCredential, TlsServer, openai_account

# the module-scoped server fixture, bound here under the name the tests ask for: this module gets its own server
server = test_management_sdk.tls_server

API = "2025-09-01"


def with_status(response: Any, model: Any, _: Any) -> tuple[int, Any]:
    """A `cls` for SDK calls: the deserialized model and the HTTP status it came with."""
    return response.http_response.status_code, model


def new_account(server: TlsServer, name: str) -> CognitiveServicesManagementClient:
    client = server.mgmt()
    client.accounts.begin_create(GROUP, name, openai_account()).result()
    return client


def strict_policy(blocklist: str | None = None, severity: str = "Low", mode: str = "Blocking") -> RaiPolicy:
    return RaiPolicy(tags={"owner": "safety"}, properties=RaiPolicyProperties(
        mode=mode, base_policy_name="Microsoft.DefaultV2",
        content_filters=[
            RaiPolicyContentFilter(name="hate", enabled=True, severity_threshold=severity, blocking=True,
                                   source="Prompt"),
            RaiPolicyContentFilter(name="Violence", enabled=True, severity_threshold="High", blocking=False,
                                   source="Completion"),
            RaiPolicyContentFilter(name="jailbreak", enabled=True, blocking=True, source="Prompt"),
        ],
        custom_blocklists=[CustomBlocklistConfig(blocklist_name=blocklist, blocking=True, source="Prompt")]
        if blocklist else []))


def rejected(call: Any) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as caught:
        call()
    assert caught.value.status_code == 400, caught.value
    assert caught.value.error is not None and caught.value.error.code
    return caught.value


def arm_http(server: TlsServer) -> httpx.Client:
    token = AzurineCredential(server.data_dir).get_token("https://management.azure.com/.default").token
    return httpx.Client(base_url=server.url, verify=server.trusted(), params={"api-version": API},
                        headers={"Authorization": f"Bearer {token}"})


def account_path(name: str) -> str:
    return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.CognitiveServices/accounts/{name}"


def test_custom_policy_lifecycle(server: TlsServer) -> None:
    client = new_account(server, "rai-policies")
    client.rai_blocklists.create_or_update(GROUP, "rai-policies", "words", RaiBlocklist())

    status, created = client.rai_policies.create_or_update(GROUP, "rai-policies", "strict",
                                                          strict_policy("WORDS"), cls=with_status)
    assert status == 201
    assert created.id == f"{account_path('rai-policies')}/raiPolicies/strict"
    assert created.name == "strict" and created.type == "Microsoft.CognitiveServices/accounts/raiPolicies"
    assert created.etag and created.system_data.created_at and created.tags == {"owner": "safety"}
    props = created.properties
    assert (props.type, props.mode, props.base_policy_name) == ("UserManaged", "Blocking", "Microsoft.DefaultV2")
    assert [(f.name, f.source, f.severity_threshold, f.blocking, f.enabled) for f in props.content_filters] == [
        ("Hate", "Prompt", "Low", True, True), ("Violence", "Completion", "High", False, True),
        ("Jailbreak", "Prompt", None, True, True)]
    assert [(b.blocklist_name, b.source, b.blocking) for b in props.custom_blocklists] == [("words", "Prompt", True)]

    fetched = client.rai_policies.get(GROUP, "rai-policies", "strict")
    assert fetched.as_dict() == created.as_dict()
    assert [p.name for p in client.rai_policies.list(GROUP, "rai-policies")] == [
        "Microsoft.Default", "Microsoft.DefaultV2", "strict"]

    status, updated = client.rai_policies.create_or_update(
        GROUP, "rai-policies", "strict", strict_policy(severity="Medium", mode="Asynchronous_filter"),
        cls=with_status)
    assert status == 200
    assert updated.properties.mode == "Asynchronous_filter" and updated.properties.custom_blocklists == []
    assert updated.properties.content_filters[0].severity_threshold == "Medium"
    assert updated.etag != created.etag

    minimal = client.rai_policies.create_or_update(GROUP, "rai-policies", "minimal", RaiPolicy())
    assert (minimal.properties.mode, minimal.properties.base_policy_name) == ("Default", "Microsoft.DefaultV2")

    client.rai_policies.begin_delete(GROUP, "rai-policies", "minimal").result()
    with pytest.raises(ResourceNotFoundError) as caught:
        client.rai_policies.get(GROUP, "rai-policies", "minimal")
    assert caught.value.error.code == "ResourceNotFound"
    client.rai_policies.begin_delete(GROUP, "rai-policies", "minimal").result()  # already gone: 204
    assert [p.name for p in client.rai_policies.list(GROUP, "rai-policies")][-1] == "strict"


def test_a_deployment_uses_a_custom_policy_which_then_cannot_go(server: TlsServer) -> None:
    client = new_account(server, "rai-deployments")
    client.rai_blocklists.create_or_update(GROUP, "rai-deployments", "names", RaiBlocklist())
    client.rai_policies.create_or_update(GROUP, "rai-deployments", "strict", strict_policy("names"))
    deployment = client.deployments.begin_create_or_update(
        GROUP, "rai-deployments", "guarded", Deployment(sku=Sku(name="GlobalStandard", capacity=1),
                                                        properties=DeploymentProperties(
            model=DeploymentModel(format="HuggingFace", name="SmolLM2-135M-Instruct", version="1"),
            rai_policy_name="strict"))).result()
    assert deployment.properties.rai_policy_name == "strict"

    in_use = rejected(lambda: client.rai_policies.begin_delete(GROUP, "rai-deployments", "strict").result())
    assert in_use.error.code == "RaiPolicyInUse" and "guarded" in in_use.error.message
    listed = rejected(lambda: client.rai_blocklists.begin_delete(GROUP, "rai-deployments", "names").result())
    assert listed.error.code == "RaiBlocklistInUse" and "strict" in listed.error.message

    client.deployments.begin_delete(GROUP, "rai-deployments", "guarded").result()
    client.rai_policies.begin_delete(GROUP, "rai-deployments", "strict").result()
    client.rai_blocklists.begin_delete(GROUP, "rai-deployments", "names").result()
    assert [p.name for p in client.rai_policies.list(GROUP, "rai-deployments")] == [
        "Microsoft.Default", "Microsoft.DefaultV2"]
    assert list(client.rai_blocklists.list(GROUP, "rai-deployments")) == []


def test_built_in_policies_are_listed_and_fixed(server: TlsServer) -> None:
    client = new_account(server, "rai-built-ins")
    found = {p.name: p for p in client.rai_policies.list(GROUP, "rai-built-ins")}
    assert set(found) == {"Microsoft.Default", "Microsoft.DefaultV2"}
    default, v2 = found["Microsoft.Default"].properties, found["Microsoft.DefaultV2"].properties
    assert (default.type, default.mode, v2.type, v2.mode) == ("SystemManaged", "Blocking", "SystemManaged", "Default")
    harm = {(name, source) for name in ("Hate", "Sexual", "Violence", "Selfharm")
            for source in ("Prompt", "Completion")}
    assert {(f.name, f.source) for f in default.content_filters} == harm
    assert all(f.severity_threshold == "Medium" and f.blocking and f.enabled for f in default.content_filters)
    assert {(f.name, f.source) for f in v2.content_filters} == harm | {
        ("Jailbreak", "Prompt"), ("Protected Material Text", "Completion"), ("Protected Material Code", "Completion")}
    assert all(f.blocking and f.enabled for f in v2.content_filters)
    assert found["Microsoft.DefaultV2"].id == f"{account_path('rai-built-ins')}/raiPolicies/Microsoft.DefaultV2"

    assert client.rai_policies.get(GROUP, "rai-built-ins", "Microsoft.DefaultV2").as_dict() == \
        found["Microsoft.DefaultV2"].as_dict()
    refused = rejected(lambda: client.rai_policies.begin_delete(GROUP, "rai-built-ins", "Microsoft.Default").result())
    assert refused.error.code == "SystemManagedRaiPolicyDeletionNotAllowed"
    refused = rejected(lambda: client.rai_policies.create_or_update(GROUP, "rai-built-ins", "Microsoft.DefaultV2",
                                                                    strict_policy()))
    assert refused.error.code == "SystemManagedRaiPolicyUpdateNotAllowed"
    assert client.rai_policies.get(GROUP, "rai-built-ins", "Microsoft.Default").properties.mode == "Blocking"


def test_blocklists_and_their_items(server: TlsServer) -> None:
    client = new_account(server, "rai-blocklists")
    items = client.rai_blocklist_items
    status, blocklist = client.rai_blocklists.create_or_update(
        GROUP, "rai-blocklists", "Terms", RaiBlocklist(properties=RaiBlocklistProperties(description="first")),
        cls=with_status)
    assert status == 201
    assert blocklist.id == f"{account_path('rai-blocklists')}/raiBlocklists/Terms"
    assert blocklist.type == "Microsoft.CognitiveServices/accounts/raiBlocklists"
    assert blocklist.properties.description == "first" and blocklist.etag and blocklist.system_data
    status, blocklist = client.rai_blocklists.create_or_update(
        GROUP, "rai-blocklists", "Terms", RaiBlocklist(properties=RaiBlocklistProperties(description="second")),
        cls=with_status)
    assert status == 200 and blocklist.properties.description == "second"
    assert client.rai_blocklists.get(GROUP, "rai-blocklists", "terms").properties.description == "second"
    assert [b.name for b in client.rai_blocklists.list(GROUP, "rai-blocklists")] == ["Terms"]

    status, item = items.create_or_update(GROUP, "rai-blocklists", "Terms", "swear", RaiBlocklistItem(
        properties=RaiBlocklistItemProperties(pattern="darn", is_regex=False)), cls=with_status)
    assert status == 201
    assert item.id == f"{account_path('rai-blocklists')}/raiBlocklists/Terms/raiBlocklistItems/swear"
    assert item.type == "Microsoft.CognitiveServices/accounts/raiBlocklists/raiBlocklistItems"
    assert (item.properties.pattern, item.properties.is_regex) == ("darn", False)
    status, item = items.create_or_update(GROUP, "rai-blocklists", "Terms", "swear", RaiBlocklistItem(
        properties=RaiBlocklistItemProperties(pattern=r"dar+n\b", is_regex=True)), cls=with_status)
    assert status == 200 and item.properties.is_regex is True
    assert items.get(GROUP, "rai-blocklists", "Terms", "swear").properties.pattern == r"dar+n\b"

    returned = items.batch_add(GROUP, "rai-blocklists", "Terms", [
        RaiBlocklistItemBulkRequest(name=f"bulk{i}", properties=RaiBlocklistItemProperties(pattern=f"word{i}"))
        for i in range(3)])
    assert returned.name == "Terms" and returned.properties.description == "second"
    assert [i.name for i in items.list(GROUP, "rai-blocklists", "Terms")] == ["bulk0", "bulk1", "bulk2", "swear"]
    items.batch_delete(GROUP, "rai-blocklists", "Terms", ["bulk0", "bulk2", "never-there"])
    assert [i.name for i in items.list(GROUP, "rai-blocklists", "Terms")] == ["bulk1", "swear"]

    items.begin_delete(GROUP, "rai-blocklists", "Terms", "swear").result()
    with pytest.raises(ResourceNotFoundError):
        items.get(GROUP, "rai-blocklists", "Terms", "swear")
    items.begin_delete(GROUP, "rai-blocklists", "Terms", "swear").result()  # already gone: 204

    client.rai_blocklists.begin_delete(GROUP, "rai-blocklists", "Terms").result()
    with pytest.raises(ResourceNotFoundError):
        client.rai_blocklists.get(GROUP, "rai-blocklists", "Terms")
    with pytest.raises(ResourceNotFoundError):
        list(items.list(GROUP, "rai-blocklists", "Terms"))
    client.rai_blocklists.create_or_update(GROUP, "rai-blocklists", "Terms", RaiBlocklist())
    assert list(items.list(GROUP, "rai-blocklists", "Terms")) == []  # the old items went with the old list


def test_bad_input_is_refused_with_arm_errors(server: TlsServer) -> None:
    client = new_account(server, "rai-errors")
    client.rai_blocklists.create_or_update(GROUP, "rai-errors", "words", RaiBlocklist())

    def item(pattern: str, is_regex: bool = False) -> RaiBlocklistItem:
        return RaiBlocklistItem(properties=RaiBlocklistItemProperties(pattern=pattern, is_regex=is_regex))

    bad_regex = rejected(lambda: client.rai_blocklist_items.create_or_update(
        GROUP, "rai-errors", "words", "x", item("(unclosed", True)))
    assert bad_regex.error.code == "InvalidResourceProperties" and "regular expression" in bad_regex.error.message
    assert client.rai_blocklist_items.create_or_update(GROUP, "rai-errors", "words", "x",
                                                       item("(unclosed")).properties.pattern == "(unclosed"
    too_long = rejected(lambda: client.rai_blocklist_items.create_or_update(
        GROUP, "rai-errors", "words", "y", item("a" * 1001)))
    assert "1000" in too_long.error.message
    rejected(lambda: client.rai_blocklist_items.create_or_update(GROUP, "rai-errors", "words", "y", item("")))
    bulk = rejected(lambda: client.rai_blocklist_items.batch_add(GROUP, "rai-errors", "words", [
        RaiBlocklistItemBulkRequest(name="fine", properties=RaiBlocklistItemProperties(pattern="ok")),
        RaiBlocklistItemBulkRequest(name="broken", properties=RaiBlocklistItemProperties(pattern="[", is_regex=True))]))
    assert bulk.error.code == "InvalidResourceProperties"
    assert [i.name for i in client.rai_blocklist_items.list(GROUP, "rai-errors", "words")] == ["x"]

    severity = rejected(lambda: client.rai_policies.create_or_update(GROUP, "rai-errors", "p",
                                                                     strict_policy(severity="Extreme")))
    assert severity.error.code == "InvalidResourceProperties" and "Extreme" in severity.error.message
    unknown = rejected(lambda: client.rai_policies.create_or_update(GROUP, "rai-errors", "p",
                                                                    strict_policy("no-such-list")))
    assert "no-such-list" in unknown.error.message
    mode = rejected(lambda: client.rai_policies.create_or_update(GROUP, "rai-errors", "p",
                                                                 strict_policy(mode="Lenient")))
    assert "Lenient" in mode.error.message
    wrong_side = RaiPolicy(properties=RaiPolicyProperties(content_filters=[
        RaiPolicyContentFilter(name="Jailbreak", enabled=True, blocking=True, source="Completion")]))
    assert "Prompt" in rejected(lambda: client.rai_policies.create_or_update(
        GROUP, "rai-errors", "p", wrong_side)).error.message
    no_filter = RaiPolicy(properties=RaiPolicyProperties(content_filters=[
        RaiPolicyContentFilter(name="Gore", enabled=True, blocking=True, source="Prompt")]))
    assert "Gore" in rejected(lambda: client.rai_policies.create_or_update(
        GROUP, "rai-errors", "p", no_filter)).error.message
    assert [p.name for p in client.rai_policies.list(GROUP, "rai-errors")] == ["Microsoft.Default",
                                                                               "Microsoft.DefaultV2"]
    with pytest.raises(ResourceNotFoundError) as caught:
        list(client.rai_policies.list(GROUP, "no-such-account"))
    assert caught.value.error.code == "ResourceNotFound"


def test_older_blocklist_arrays_and_raw_bodies(server: TlsServer) -> None:
    client = new_account(server, "rai-raw")
    client.rai_blocklists.create_or_update(GROUP, "rai-raw", "words", RaiBlocklist())
    policy = f"{account_path('rai-raw')}/raiPolicies/legacy"
    with arm_http(server) as http:
        older = http.put(policy, json={"properties": {
            "mode": "deferred", "basePolicyName": "microsoft.default",
            "contentFilters": [{"name": "self_harm", "allowedContentLevel": "high", "blocking": True,
                                "enabled": True, "source": "completion"}],
            "promptBlocklists": [{"blocklistName": "words", "blocking": True}],
            "completionBlocklists": [{"blocklistName": "words", "blocking": False}]}})
        malformed = http.put(policy, content=b'{"properties": {', headers={"content-type": "application/json"})
        wrong_type = http.put(policy, json={"properties": {"contentFilters": "Hate"}})
        not_a_list = http.post(f"{account_path('rai-raw')}/raiBlocklists/words/addRaiBlocklistItems",
                               json={"name": "x"})
        bad_item = http.put(f"{account_path('rai-raw')}/raiBlocklists/words/raiBlocklistItems/x",
                            content=b"not json")
        missing_list = http.get(f"{account_path('rai-raw')}/raiBlocklists/nope/raiBlocklistItems")
        anonymous = httpx.get(f"{server.url}{policy}?api-version={API}", verify=server.trusted())
    assert older.status_code == 201, older.text
    properties = older.json()["properties"]
    assert (properties["mode"], properties["basePolicyName"], properties["type"]) == (
        "Deferred", "Microsoft.Default", "UserManaged")
    assert properties["contentFilters"] == [{"blocking": True, "enabled": True, "name": "Selfharm",
                                             "severityThreshold": "High", "source": "Completion"}]
    assert properties["customBlocklists"] == [{"blocking": True, "blocklistName": "words", "source": "Prompt"},
                                              {"blocking": False, "blocklistName": "words", "source": "Completion"}]
    assert "promptBlocklists" not in properties
    for response in (malformed, wrong_type, not_a_list, bad_item):
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "InvalidRequestContent"
    assert missing_list.status_code == 404 and missing_list.json()["error"]["code"] == "ResourceNotFound"
    assert anonymous.status_code == 401
    assert client.rai_policies.get(GROUP, "rai-raw", "legacy").properties.mode == "Deferred"


def test_location_content_filters(server: TlsServer) -> None:
    client = server.mgmt()
    filters = {f.name: f for f in client.rai_content_filters.list("eastus")}
    assert set(filters) == {"Hate", "Sexual", "Violence", "Selfharm", "Jailbreak", "IndirectAttack",
                            "ProtectedMaterialText", "ProtectedMaterialCode", "Profanity",
                            "PersonallyIdentifiableInformation"}
    assert filters["Hate"].properties.is_multi_level_filter is True
    assert (filters["Jailbreak"].properties.source, filters["Jailbreak"].properties.is_multi_level_filter) == (
        "Prompt", False)
    assert filters["ProtectedMaterialCode"].properties.name == "Protected Material Code"
    assert filters["ProtectedMaterialCode"].properties.source == "Completion"
    assert filters["Hate"].id == (f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.CognitiveServices/locations/"
                                  "eastus/raiContentFilters/Hate")
    one = client.rai_content_filters.get("eastus", "IndirectAttack")
    assert one.as_dict() == filters["IndirectAttack"].as_dict()
    with pytest.raises(ResourceNotFoundError):
        client.rai_content_filters.get("eastus", "Gore")
