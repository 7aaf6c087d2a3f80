"""Provisioned spillover in-process: ARM's checks of `spilloverDeploymentName`, a provisioned deployment's PTU sizes,
and a request to a provisioned deployment above 100% utilization served by its standard deployment instead of a 429,
with Azure's headers and the `IsSpillover` split of Azure Monitor's requests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from asgi_app import client, in_process_app
from azurine.api.context import Services
from azurine.identity.tokens import MANAGEMENT_AUDIENCES, issue_token
from azurine.scheduler.scheduled import ScheduledUpstream
from azurine.scheduler.upstream import UpstreamGate
from azurine.storage.state import AccountRecord
from conftest import API_VERSION
from fake_engine import FakeEngine

SMALL = "SmolLM2-135M-Instruct"  # 1 PTU: 1,000 input tokens a minute
QWEN = "Qwen2.5-Coder-0.5B-Instruct"  # provisioned from 2 PTUs in steps of 2
ARM_VERSION = "?api-version=2024-10-01"
# the fake engine counts a word a token: a prompt this long settles at 3,000 tokens, three minutes of one PTU, so the
# deployment stays above 100% for the rest of the module whatever the clock does
FLOOD = " ".join(["word"] * 3000)


class Azurine:
    def __init__(self, app: FastAPI, services: Services, account: AccountRecord) -> None:
        self.app, self.services, self.account = app, services, account

    def send(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             arm: bool = False) -> httpx.Response:
        async def go() -> httpx.Response:
            async with client(self.app) as http:
                if arm:
                    del http.headers["api-key"]
                    token = issue_token(self.services.store, MANAGEMENT_AUDIENCES[0])[0]
                    http.headers["Authorization"] = f"Bearer {token}"
                return await http.request(method, path, json=body, headers=headers)

        return asyncio.run(go())

    def deploy(self, name: str, sku: str, capacity: int, model: str = SMALL, **properties: Any) -> httpx.Response:
        account = self.account
        path = (f"/subscriptions/{account.subscription_id}/resourceGroups/{account.resource_group}/providers/"
                f"Microsoft.CognitiveServices/accounts/{account.name}/deployments/{name}{ARM_VERSION}")
        return self.send("PUT", path, {"sku": {"name": sku, "capacity": capacity},
                                       "properties": {"model": {"name": model,
                                                                "version": "1"}, **properties}}, arm=True)

    def chat(self, deployment: str, content: str = "Say hi.", headers: dict[str, str] | None = None) -> httpx.Response:
        return self.send("POST", f"/openai/deployments/{deployment}/chat/completions?api-version={API_VERSION}",
                         {"messages": [{"role": "user", "content": content}], "max_tokens": 3}, headers)


@pytest.fixture(scope="module")
def azurine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurine]:
    app, services = in_process_app(tmp_path_factory.mktemp("spillover") / "data")
    for spec in services.catalog:
        services.engines.provide(spec, ScheduledUpstream(FakeEngine(spec), UpstreamGate(spec.name, 8)))
    account = services.store.first_account()
    assert account is not None
    yield Azurine(app, services, account)


def made(response: httpx.Response) -> None:
    assert response.status_code in (200, 201), response.text


def refused(response: httpx.Response, code: str, *words: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code and all(w in error["message"] for w in words), error


# ARM ----------------------------------------------------------------------------------------------------------

def test_arm_takes_a_spillover_deployment_of_the_same_model_and_no_wider_residency(azurine: Azurine) -> None:
    made(azurine.deploy("arm-paygo", "DataZoneStandard", 5))
    written = azurine.deploy("arm-ptu", "DataZoneProvisionedManaged", 1, spilloverDeploymentName="arm-paygo")
    made(written)
    assert written.json()["properties"]["spilloverDeploymentName"] == "arm-paygo"
    made(azurine.deploy("arm-global-ptu", "GlobalProvisionedManaged", 1, spilloverDeploymentName="arm-paygo"))


def test_arm_refuses_a_spillover_deployment_that_cannot_take_the_overflow(azurine: Azurine) -> None:
    made(azurine.deploy("bad-global", "GlobalStandard", 5))
    made(azurine.deploy("bad-ptu-target", "ProvisionedManaged", 1))
    made(azurine.deploy("bad-other-model", "Standard", 5, model=QWEN))
    refused(azurine.deploy("bad", "ProvisionedManaged", 1, spilloverDeploymentName="nowhere"),
            "InvalidResourceProperties", "spilloverDeploymentName", "'nowhere' was not found")
    refused(azurine.deploy("bad", "ProvisionedManaged", 1, spilloverDeploymentName="bad-ptu-target"),
            "InvalidResourceProperties", "ProvisionedManaged deployment", "Standard")
    refused(azurine.deploy("bad", "ProvisionedManaged", 1, spilloverDeploymentName="bad-other-model"),
            "InvalidResourceProperties", "same model and version")
    refused(azurine.deploy("bad", "ProvisionedManaged", 1, spilloverDeploymentName="bad-global"),
            "InvalidResourceProperties", "GlobalStandard", "wider")
    refused(azurine.deploy("bad", "GlobalStandard", 1, spilloverDeploymentName="bad-global"),
            "InvalidResourceProperties", "only provisioned deployments")
    refused(azurine.deploy("bad", "GlobalProvisionedManaged", 1, spilloverDeploymentName="bad"),
            "InvalidResourceProperties", "its own spillover")
    refused(azurine.deploy("bad", "GlobalProvisionedManaged", 1, spilloverDeploymentName=["bad-global"]),
            "InvalidResourceProperties", "not a deployment name")


def test_arm_takes_provisioned_capacity_only_in_the_catalogs_sizes(azurine: Azurine) -> None:
    for capacity in (1, 3):
        refused(azurine.deploy("sized", "ProvisionedManaged", capacity, model=QWEN), "InvalidCapacity",
                f"'{capacity}'", "at least 2 PTUs, in steps of 2")
    made(azurine.deploy("sized", "ProvisionedManaged", 4, model=QWEN))
    made(azurine.deploy("sized-standard", "Standard", 3, model=QWEN))  # a Standard capacity is not PTUs


# the data plane -----------------------------------------------------------------------------------------------

def test_a_provisioned_deployment_at_full_utilization_spills_to_its_standard_deployment(azurine: Azurine) -> None:
    made(azurine.deploy("paygo", "GlobalStandard", 10))
    made(azurine.deploy("ptu", "GlobalProvisionedManaged", 1, spilloverDeploymentName="paygo"))
    first = azurine.chat("ptu", FLOOD)
    # admitted (it found the deployment idle), and takes it past 100%
    assert first.status_code == 200 and float(first.headers["azure-openai-deployment-utilization"][:-1]) > 100
    assert "x-ms-spillover-from-deployment" not in first.headers
    spilled = azurine.chat("ptu")
    assert spilled.status_code == 200, spilled.text
    assert spilled.headers["x-ms-spillover-from-deployment"] == "ptu"
    assert spilled.headers["x-ms-deployment-name"] == "paygo"
    assert spilled.headers["x-ms-spillover-error"] == "429"
    # the standard deployment's limits applied, not the provisioned one's utilization
    assert "x-ratelimit-remaining-tokens" in spilled.headers
    assert spilled.json()["choices"][0]["message"]["content"]
    # Azure Monitor: the spilled request counts on the standard deployment, split as IsSpillover
    account = azurine.account
    metrics = (f"/subscriptions/{account.subscription_id}/resourceGroups/{account.resource_group}/providers/"
               f"Microsoft.CognitiveServices/accounts/{account.name}/providers/Microsoft.Insights/metrics"
               "?api-version=2023-10-01&metricnames=AzureOpenAIRequests&interval=FULL"
               "&$filter=ModelDeploymentName eq '*' and IsSpillover eq '*'")
    answer = azurine.send("GET", metrics, arm=True)
    assert answer.status_code == 200, answer.text
    counted = {tuple(sorted((m["name"]["value"], m["value"]) for m in series["metadatavalues"])):
               sum(point.get("total") or 0 for point in series["data"])
               for series in answer.json()["value"][0]["timeseries"]}
    spill_keys = [k for k in counted if ("isspillover", "True") in {(n.lower(), v) for n, v in k}]
    assert len(spill_keys) == 1 and counted[spill_keys[0]] == 1
    assert ("modeldeploymentname", "paygo") in {(n.lower(), v) for n, v in spill_keys[0]}


def test_the_spillover_header_spills_a_deployment_without_the_property(azurine: Azurine) -> None:
    made(azurine.deploy("header-paygo", "Standard", 10))
    made(azurine.deploy("header-ptu", "ProvisionedManaged", 1))
    made(azurine.deploy("header-global", "GlobalStandard", 10))
    assert azurine.chat("header-ptu", FLOOD).status_code == 200
    at_throughput = azurine.chat("header-ptu")
    assert at_throughput.status_code == 429 and "x-ms-spillover-from-deployment" not in at_throughput.headers
    spilled = azurine.chat("header-ptu", headers={"x-ms-spillover-deployment": "header-paygo"})
    assert spilled.status_code == 200 and spilled.headers["x-ms-deployment-name"] == "header-paygo"
    # a header naming a deployment that cannot take it is the caller's mistake
    for wrong, words in (("header-global", "wider"), (f"gone-{uuid.uuid4().hex[:6]}", "not found"),
                         ("no such name!", "not a deployment name")):
        answer = azurine.chat("header-ptu", headers={"x-ms-spillover-deployment": wrong})
        assert answer.status_code == 400 and words in answer.json()["error"]["message"], answer.text


def test_a_standard_deployment_at_its_own_limit_answers_its_429_saying_it_came_by_spillover(
        azurine: Azurine) -> None:
    made(azurine.deploy("small-paygo", "Standard", 1))  # 1,000 tokens a minute: no room for the flood
    made(azurine.deploy("small-ptu", "ProvisionedManaged", 1, spilloverDeploymentName="small-paygo"))
    assert azurine.chat("small-ptu", FLOOD).status_code == 200
    answer = azurine.chat("small-ptu", FLOOD)
    assert answer.status_code == 429, answer.text
    assert answer.headers["x-ms-spillover-from-deployment"] == "small-ptu"
    assert answer.headers["x-ms-spillover-error"] == "429"
    assert "x-ratelimit-remaining-tokens" in answer.headers  # the standard deployment's refusal


def test_a_spillover_deployment_changed_since_spills_nowhere(azurine: Azurine) -> None:
    made(azurine.deploy("moved-paygo", "Standard", 10))
    made(azurine.deploy("moved-ptu", "ProvisionedManaged", 1, spilloverDeploymentName="moved-paygo"))
    azurine.services.store.delete_deployment(azurine.account.id, "moved-paygo")
    azurine.services.cache.forget()
    assert azurine.chat("moved-ptu", FLOOD).status_code == 200
    assert azurine.chat("moved-ptu").status_code == 429
