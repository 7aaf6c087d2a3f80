"""ARM's platform around the resource provider, in-process: cloud metadata, subscriptions and tenants as each
principal may see them, resource groups, the provider's registration, SKUs and domain checks, api-versions, the
operator's `azurine subscription` commands and the migration that gives existing installs their groups."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from typer.testing import CliRunner

from asgi_app import admin_token, in_process_app, principal_token
from azurine.api.context import Services
from azurine.api.management.api_versions import COGNITIVE_SERVICES
from azurine.cli.main import app as cli_app
from azurine.identity.tokens import TENANT_ID
from azurine.storage.database import make_engine
from azurine.storage.subscriptions import DEFAULT_SUBSCRIPTION, SubscriptionStore
from migrating import migrate_to

TEAM = "5e1f7a2c-0c4d-4b8e-9a55-2d1b6c7e8f90"
CS = "?api-version=2026-05-15-preview"
RES = "?api-version=2024-11-01"
SUBS = "?api-version=2022-12-01"
ACCOUNT_BODY = {"kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus"}


@dataclass
class Platform:
    app: FastAPI
    services: Services
    data_dir: Path

    def call(self, method: str, path: str, token: str | None = None, body: Any = None) -> httpx.Response:
        """One request; the path goes to the app as it is, double slashes and all."""
        headers = {"Authorization": f"Bearer {token or self.admin}"}

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="https://azurine.test:8443") as http:
                request = http.build_request(method, "https://azurine.test:8443/", json=body, headers=headers)
                request.url = request.url.copy_with(raw_path=path.encode())
                return await http.send(request)

        return asyncio.run(send())

    @property
    def admin(self) -> str:
        return admin_token(self.services)

    def principal(self, role: str | None = None, scope: str | None = None) -> str:
        return principal_token(self.services, role, scope)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    data_dir = tmp_path_factory.mktemp("platform") / "data"
    app, services = in_process_app(data_dir)
    SubscriptionStore(services.store.engine).add_subscription(TEAM, "Team", TENANT_ID)
    yield Platform(app, services, data_dir)


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def test_metadata_names_the_server_for_every_endpoint_it_serves(platform: Platform) -> None:
    for path in ("/metadata/endpoints?api-version=2022-09-01", "//metadata/endpoints?api-version=2022-09-01"):
        found = platform.call("GET", path)
        assert found.status_code == 200, path
        body = found.json()
        assert body["resourceManager"] == "https://azurine.test:8443/"
        assert body["authentication"]["loginEndpoint"] == "https://azurine.test:8443/"
        assert body["authentication"]["audiences"][0] == "https://management.core.windows.net/"
        assert body["name"] == "Azurine" and body["suffixes"] == {}


def test_subscriptions_are_shown_to_who_holds_a_role_in_them(platform: Platform) -> None:
    listed = platform.call("GET", f"/subscriptions{SUBS}").json()["value"]
    assert {s["subscriptionId"] for s in listed} == {DEFAULT_SUBSCRIPTION, TEAM}
    team = next(s for s in listed if s["subscriptionId"] == TEAM)
    assert team == {"id": f"/subscriptions/{TEAM}", "authorizationSource": "RoleBased", "managedByTenants": [],
                    "subscriptionId": TEAM, "tenantId": TENANT_ID, "displayName": "Team", "state": "Enabled",
                    "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01",
                                             "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"},
                    "tags": {}}

    # a role on a resource group shows the subscription above it, and nothing else
    member = platform.principal("Reader", f"/subscriptions/{TEAM}/resourceGroups/anything")
    assert [s["subscriptionId"] for s in platform.call("GET", f"/subscriptions{SUBS}", member).json()["value"]] == [
        TEAM]
    assert platform.call("GET", f"/subscriptions/{TEAM.upper()}{SUBS}", member).json()["subscriptionId"] == TEAM
    hidden = platform.call("GET", f"/subscriptions/{DEFAULT_SUBSCRIPTION}{SUBS}", member)
    assert hidden.status_code == 404 and error_code(hidden) == "SubscriptionNotFound"

    stranger = platform.principal()
    assert platform.call("GET", f"/subscriptions{SUBS}", stranger).json()["value"] == []
    unknown = platform.call("GET", f"/subscriptions/{uuid.uuid4()}{SUBS}")
    assert unknown.status_code == 404 and error_code(unknown) == "SubscriptionNotFound"
    anonymous = platform.call("GET", f"/subscriptions{SUBS}", token="not-a-token")
    assert anonymous.status_code == 401


def test_tenants_and_locations(platform: Platform) -> None:
    tenants = platform.call("GET", f"/tenants{SUBS}").json()["value"]
    assert [(t["tenantId"], t["id"], t["tenantCategory"]) for t in tenants] == [
        (TENANT_ID, f"/tenants/{TENANT_ID}", "Home")]
    locations = platform.call("GET", f"/subscriptions/{TEAM}/locations{SUBS}").json()["value"]
    assert [loc["name"] for loc in locations] == [platform.services.settings.region]


def test_platform_calls_take_their_own_api_versions(platform: Platform) -> None:
    wrong = platform.call("GET", f"/subscriptions{CS}")
    assert wrong.status_code == 400 and error_code(wrong) == "InvalidApiVersionParameter"
    missing = platform.call("GET", f"/subscriptions/{TEAM}/resourcegroups")
    assert missing.status_code == 400 and error_code(missing) == "MissingApiVersionParameter"


def test_every_published_provider_version_is_accepted_and_others_are_refused(platform: Platform) -> None:
    path = f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.CognitiveServices/accounts"
    assert {"2026-05-15-preview", "2024-10-01", "2026-09-01", "2016-02-01-preview"} <= COGNITIVE_SERVICES
    for version in sorted(COGNITIVE_SERVICES):
        assert platform.call("GET", f"{path}?api-version={version}").status_code == 200, version
    for version in ("2026-05-16-preview", "2024-10-02", "latest"):
        refused = platform.call("GET", f"{path}?api-version={version}")
        assert refused.status_code == 400 and error_code(refused) == "InvalidApiVersionParameter", version


def test_resource_groups_hold_accounts_and_take_them_when_deleted(platform: Platform) -> None:
    groups = f"/subscriptions/{TEAM}/resourcegroups"
    accounts = f"/subscriptions/{TEAM}/resourceGroups/rg-team/providers/Microsoft.CognitiveServices/accounts"
    no_group = platform.call("PUT", f"{accounts}/team-ai{CS}", body=ACCOUNT_BODY)
    assert no_group.status_code == 404 and error_code(no_group) == "ResourceGroupNotFound"

    made = platform.call("PUT", f"{groups}/rg-team{RES}", body={"location": "eastus", "tags": {"team": "a"}})
    assert made.status_code == 201
    assert made.json() == {"id": f"/subscriptions/{TEAM}/resourceGroups/rg-team", "name": "rg-team",
                           "type": "Microsoft.Resources/resourceGroups", "location": "eastus",
                           "properties": {"provisioningState": "Succeeded"}, "tags": {"team": "a"}}
    again = platform.call("PUT", f"/subscriptions/{TEAM}/resourceGroups/RG-TEAM{RES}", body={"location": "eastus"})
    assert again.status_code == 200 and again.json()["name"] == "rg-team" and again.json()["tags"] == {"team": "a"}
    moved = platform.call("PUT", f"{groups}/rg-team{RES}", body={"location": "westus"})
    assert moved.status_code == 409 and error_code(moved) == "InvalidResourceGroupLocation"
    assert platform.call("HEAD", f"{groups}/rg-team{RES}").status_code == 204
    assert platform.call("HEAD", f"{groups}/rg-none{RES}").status_code == 404
    tagged = platform.call("PATCH", f"{groups}/rg-team{RES}", body={"tags": {"team": "b"}})
    assert tagged.json()["tags"] == {"team": "b"} and tagged.json()["location"] == "eastus"
    assert "rg-team" in [g["name"] for g in platform.call("GET", f"{groups}{RES}").json()["value"]]

    assert platform.call("PUT", f"{accounts}/team-ai{CS}", body=ACCOUNT_BODY).status_code == 201
    assert platform.call("DELETE", f"{groups}/rg-team{RES}").status_code == 200
    assert platform.call("GET", f"{accounts}/team-ai{CS}").status_code == 404
    assert platform.services.store.account_named("team-ai") is None
    gone = platform.call("GET", f"{groups}/rg-team{RES}")
    assert gone.status_code == 404 and error_code(gone) == "ResourceGroupNotFound"


def test_groups_are_checked_as_arm_checks_them(platform: Platform) -> None:
    groups = f"/subscriptions/{TEAM}/resourcegroups"
    for name, body, code in (("bad name!", {"location": "eastus"}, "InvalidResourceGroup"),
                             ("ends-with-dot.", {"location": "eastus"}, "InvalidResourceGroup"),
                             ("x" * 91, {"location": "eastus"}, "InvalidResourceGroup"),
                             ("no-location", {}, "LocationRequired"),
                             ("many-tags", {"location": "eastus", "tags": {str(i): "v" for i in range(51)}},
                              "InvalidTag")):
        refused = platform.call("PUT", f"{groups}/{name}{RES}", body=body)
        assert refused.status_code == 400 and error_code(refused) == code, name
    elsewhere = platform.call("PUT", f"/subscriptions/{uuid.uuid4()}/resourcegroups/rg{RES}", body={"location": "x"})
    assert elsewhere.status_code == 404 and error_code(elsewhere) == "SubscriptionNotFound"
    malformed = platform.call("PUT", f"{groups}/rg-json{RES}", body="[")
    assert malformed.status_code == 400 and error_code(malformed) == "InvalidRequestContent"


def test_roles_decide_who_manages_groups(platform: Platform) -> None:
    groups = f"/subscriptions/{TEAM}/resourcegroups"
    assert platform.call("PUT", f"{groups}/rg-roles{RES}", body={"location": "eastus"}).status_code == 201
    reader = platform.principal("Reader", f"/subscriptions/{TEAM}/resourceGroups/rg-roles")
    assert platform.call("GET", f"{groups}/rg-roles{RES}", reader).status_code == 200
    assert [g["name"] for g in platform.call("GET", f"{groups}{RES}", reader).json()["value"]] == ["rg-roles"]
    denied = platform.call("DELETE", f"{groups}/rg-roles{RES}", reader)
    assert denied.status_code == 403 and error_code(denied) == "AuthorizationFailed"
    writer = platform.principal("Contributor", f"/subscriptions/{TEAM}")
    assert platform.call("PUT", f"{groups}/rg-made{RES}", writer, {"location": "eastus"}).status_code == 201


def test_the_provider_is_registered_with_its_types_and_versions(platform: Platform) -> None:
    providers = f"/subscriptions/{TEAM}/providers"
    shown = platform.call("GET", f"{providers}/microsoft.cognitiveservices{RES}").json()
    assert shown["namespace"] == "Microsoft.CognitiveServices" and shown["registrationState"] == "Registered"
    types = {t["resourceType"]: t for t in shown["resourceTypes"]}
    assert {"accounts", "accounts/deployments", "locations/models", "skus"} <= set(types)
    assert set(types["accounts"]["apiVersions"]) == COGNITIVE_SERVICES
    registered = platform.call("POST", f"{providers}/Microsoft.CognitiveServices/register{RES}")
    assert registered.status_code == 200 and registered.json()["registrationState"] == "Registered"
    assert [p["namespace"] for p in platform.call("GET", f"{providers}{RES}").json()["value"]] == [
        "Microsoft.CognitiveServices"]
    other = platform.call("GET", f"{providers}/Microsoft.Compute{RES}")
    assert other.status_code == 404 and error_code(other) == "InvalidResourceNamespace"


def test_skus_and_domain_availability(platform: Platform) -> None:
    base = f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.CognitiveServices"
    skus = platform.call("GET", f"{base}/skus{CS}").json()["value"]
    assert {(s["kind"], s["name"], s["resourceType"]) for s in skus} == {("OpenAI", "S0", "accounts"),
                                                                       ("AIServices", "S0", "accounts")}
    check = f"{base}/checkDomainAvailability{CS}"
    kind = "Microsoft.CognitiveServices/accounts"
    taken = platform.call("POST", check, body={"subdomainName": "DEFAULT", "type": kind}).json()
    assert taken["isSubdomainAvailable"] is False and "reason" in taken
    free = platform.call("POST", check, body={"subdomainName": f"free-{uuid.uuid4().hex[:8]}", "type": kind}).json()
    assert free["isSubdomainAvailable"] is True
    assert platform.call("POST", check, body={"type": kind}).status_code == 400


def test_operators_manage_subscriptions(platform: Platform) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(platform.data_dir)]
    wanted = str(uuid.uuid4())
    made = runner.invoke(cli_app, ["subscription", "create", "--name", "Ops", "--id", wanted.upper(), *data])
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["id"] == wanted
    assert runner.invoke(cli_app, ["subscription", "create", "--name", "Ops", "--id", wanted, *data]).exit_code == 1
    listed = runner.invoke(cli_app, ["subscription", "list", "--output", "json", *data])
    assert {s["id"] for s in json.loads(listed.output)} >= {DEFAULT_SUBSCRIPTION, TEAM, wanted}
    assert wanted in [s["subscriptionId"] for s in platform.call("GET", f"/subscriptions{SUBS}").json()["value"]]

    platform.call("PUT", f"/subscriptions/{wanted}/resourcegroups/rg-ops{RES}", body={"location": "eastus"})
    in_use = runner.invoke(cli_app, ["subscription", "delete", "--id", wanted, *data])
    assert in_use.exit_code == 1 and "resource groups" in in_use.output
    platform.call("DELETE", f"/subscriptions/{wanted}/resourcegroups/rg-ops{RES}")
    assert runner.invoke(cli_app, ["subscription", "delete", "--id", wanted, *data]).exit_code == 0
    assert runner.invoke(cli_app, ["subscription", "delete", "--id", DEFAULT_SUBSCRIPTION, *data]).exit_code == 1
    assert runner.invoke(cli_app, ["subscription", "create", "--name", "x", "--id", "nope", *data]).exit_code == 2


def test_existing_installs_get_the_subscriptions_and_groups_their_accounts_are_in(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate_to(engine, "0012")
    with engine.begin() as connection:
        placed = ((DEFAULT_SUBSCRIPTION, "azurine", "local"),
                  ("AAAA0000-0000-0000-0000-000000000001", "RG-A", "eastus"),
                  ("aaaa0000-0000-0000-0000-000000000001", "rg-a", "westus"))
        for i, (subscription, group, location) in enumerate(placed):
            connection.execute(text(
                "INSERT INTO accounts (id, name, subscription_id, resource_group, kind, location, sku_name, key1, "
                "key2, properties, tags, etag, created_by, updated_by, created_at, updated_at) VALUES (:id, :name, "
                ":s, :g, 'OpenAI', :l, 'S0', 'k', 'k', '{}', '{}', '', '', '', :at, :at)"),
                {"id": f"a{i}", "name": f"n{i}", "s": subscription, "g": group, "l": location,
                 "at": f"2026-01-0{i + 1}"})
        connection.execute(text(
            "INSERT INTO role_assignments (id, scope, role_definition_id, principal_id, principal_tenant, "
            "principal_type, created_by, created_at) VALUES ('r', '/subscriptions/bbbb/resourceGroups/rg-b', 'x', "
            "'p', 't', 'User', '', '2026-01-01')"))
    migrate_to(engine, "head")
    store = SubscriptionStore(engine)
    assert {s.id for s in store.subscriptions()} == {DEFAULT_SUBSCRIPTION, "aaaa0000-0000-0000-0000-000000000001",
                                                     "bbbb"}
    assert [(g.name, g.location) for g in store.groups(DEFAULT_SUBSCRIPTION)] == [("azurine", "local")]
    assert [(g.name, g.location) for g in store.groups("AAAA0000-0000-0000-0000-000000000001")] == [("RG-A", "eastus")]
    assert [g.name for g in store.groups("bbbb")] == ["rg-b"]


def test_a_subdomain_that_is_not_text_is_refused_not_a_500(platform: Platform) -> None:
    account = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/azurine/providers/" \
              "Microsoft.CognitiveServices/accounts/odd-subdomain"
    for value in (True, 7, ["a"], {"a": 1}):
        body = {**ACCOUNT_BODY, "properties": {"customSubDomainName": value}}
        refused = platform.call("PUT", f"{account}{CS}", body=body)
        assert refused.status_code == 400 and error_code(refused) == "InvalidResourceProperties", refused.text
