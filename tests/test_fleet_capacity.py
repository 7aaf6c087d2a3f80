"""What the fleet can serve, checked by ARM in-process: a deployment needs a place in its residency, a Standard one's
tokens a minute fit what its places process, and a provisioned one's PTUs are reserved on servers, whose sum of
reservations never exceeds what they carry; a server change that would break a reservation is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from asgi_app import in_process_app
from azurine.api.context import Services
from azurine.fleet.capacity import Reservation, pack
from azurine.fleet.servers import server_spec
from azurine.identity.tokens import MANAGEMENT_AUDIENCES, issue_token
from azurine.storage.subscriptions import DEFAULT_SUBSCRIPTION, SubscriptionStore

SMALL = "SmolLM2-135M-Instruct"  # 1 PTU: 1,000 input tokens a minute
QWEN = "Qwen2.5-Coder-0.5B-Instruct"
SERVERS = f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Azurine.Fleet/modelServers"
FLEET_VERSION = "?api-version=2025-06-01"
ARM_VERSION = "?api-version=2024-10-01"
GROUP = "capacity"


def spec(region: str, **ptus: int) -> Any:
    return server_spec(base_url="http://10.0.0.9:8000/v1", kind="vLLM",
                       models=[(name, None, n) for name, n in ptus.items()], region=region, data_zone=None,
                       capacity=8, priority=False, probe_path=None, probe_interval=None, probe_timeout=None)


# the packing ---------------------------------------------------------------------------------------------------

def test_a_server_of_two_models_is_shared_between_their_reservations() -> None:
    servers = [("both", spec("westeurope", a=10, b=20))]
    half = Reservation("x/a", "a", "GlobalProvisionedManaged", "westeurope", 5)
    assert pack([half, Reservation("x/b", "b", "GlobalProvisionedManaged", "westeurope", 10)], servers).unplaced \
        is None
    over = pack([half, Reservation("x/b", "b", "GlobalProvisionedManaged", "westeurope", 11)], servers)
    assert over.unplaced is not None and over.short_by == 1  # the larger placed first, the other a PTU short


def test_a_reservation_spans_servers_of_its_residency_only() -> None:
    servers = [("weu", spec("westeurope", a=6)), ("sec", spec("swedencentral", a=6)), ("eus", spec("eastus", a=50))]
    zone = pack([Reservation("x/z", "a", "DataZoneProvisionedManaged", "westeurope", 12)], servers)
    assert zone.unplaced is None and zone.placed["x/z"] == {"weu": 6, "sec": 6}
    assert pack([Reservation("x/z", "a", "DataZoneProvisionedManaged", "westeurope", 13)], servers).short_by == 1
    # the narrowest residency is placed first, so a Global reservation leaves it the region it needs
    first = [Reservation("x/g", "a", "GlobalProvisionedManaged", "eastus", 56),
             Reservation("x/r", "a", "ProvisionedManaged", "westeurope", 6)]
    packing = pack(first, servers)
    assert packing.unplaced is None and packing.placed["x/r"] == {"weu": 6}
    assert sum(packing.placed["x/g"].values()) == 56 and "weu" not in packing.placed["x/g"]


# ARM ------------------------------------------------------------------------------------------------------------

class Arm:
    def __init__(self, app: FastAPI, services: Services) -> None:
        self.app, self.services = app, services

    def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="https://azurine.test") as http:
                token = issue_token(self.services.store, MANAGEMENT_AUDIENCES[0])[0]
                return await http.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})

        return asyncio.run(send())

    def account(self, name: str, location: str) -> None:
        self.services.store.put_account(DEFAULT_SUBSCRIPTION, GROUP, name, kind="OpenAI", location=location,
                                        sku_name="S0", custom_subdomain=None, properties={}, tags={}, identity=None,
                                        principal="test")

    def deploy(self, account: str, name: str, sku: str, capacity: int, model: str = SMALL) -> httpx.Response:
        return self.call("PUT", f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{GROUP}/providers/"
                                f"Microsoft.CognitiveServices/accounts/{account}/deployments/{name}{ARM_VERSION}",
                         {"sku": {"name": sku, "capacity": capacity}, "properties": {"model": {"name": model}}})

    def undeploy(self, account: str, name: str) -> None:
        answer = self.call("DELETE", f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{GROUP}/providers/"
                                     f"Microsoft.CognitiveServices/accounts/{account}/deployments/{name}{ARM_VERSION}")
        assert answer.status_code in (200, 204), answer.text

    def register(self, name: str, region: str, ptus: int | None) -> httpx.Response:
        model: dict[str, Any] = {"name": SMALL, **({"ptus": ptus} if ptus is not None else {})}
        return self.call("PUT", f"{SERVERS}/{name}{FLEET_VERSION}",
                         {"properties": {"baseUrl": f"http://{name}.example:8000/v1", "kind": "vLLM",
                                         "region": region, "capacity": 8, "models": [model]}})


@pytest.fixture(scope="module")
def arm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arm]:
    root: Path = tmp_path_factory.mktemp("fleet-capacity")
    (root / "models").mkdir()  # nothing installed here: the gateway serves no model itself
    app, services = in_process_app(root / "data", {"AZURINE_MODELS_DIR": str(root / "models"),
                                                   "AZURINE_REGION": "brazilsouth"})
    SubscriptionStore(services.store.engine).put_group(DEFAULT_SUBSCRIPTION, GROUP, "eastus", None)
    yield Arm(app, services)


def made(response: httpx.Response) -> None:
    assert response.status_code in (200, 201), response.text


def refused(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "InvalidCapacity" and all(w in error["message"] for w in words), error


def test_without_a_server_for_the_model_deployments_are_written_as_before(arm: Arm) -> None:
    arm.account("before", "eastus")
    made(arm.deploy("before", "ptu", "ProvisionedManaged", 6, model=QWEN))
    made(arm.deploy("before", "std", "Standard", 900, model=QWEN))


def test_the_fleet_checks_residency_throughput_and_reservations(arm: Arm) -> None:
    arm.account("weu", "westeurope")
    arm.account("eus", "eastus")
    made(arm.register("weu-1", "westeurope", 10))
    # no server where a Standard deployment of an East US account may run; a Global one may use West Europe
    refused(arm.deploy("eus", "std", "Standard", 1), "No model server", "eastus", "West Europe")
    made(arm.deploy("eus", "global", "GlobalStandard", 10))
    # 10 PTUs of SmolLM2 process 10,000 tokens a minute: a Standard deployment of 11K cannot be served
    refused(arm.deploy("weu", "std", "Standard", 11), "11K tokens per minute", "at most 10K")
    made(arm.deploy("weu", "std", "Standard", 10))
    # PTUs are reserved: 6, then 5 more do not fit on 10, 4 do
    made(arm.deploy("weu", "ptu-a", "DataZoneProvisionedManaged", 6))
    refused(arm.deploy("weu", "ptu-b", "DataZoneProvisionedManaged", 5), "reserve 5 PTUs", "carry 10 PTUs of it, 4 of "
            "them free")
    made(arm.deploy("weu", "ptu-b", "DataZoneProvisionedManaged", 4))
    # resizing counts the deployment once
    made(arm.deploy("weu", "ptu-b", "DataZoneProvisionedManaged", 3))
    # a second server in the data zone makes room
    made(arm.register("sec-1", "swedencentral", 10))
    made(arm.deploy("weu", "ptu-c", "DataZoneProvisionedManaged", 8))
    # a server that states no PTUs takes no reservation
    made(arm.register("neu-1", "northeurope", None))
    refused(arm.deploy("weu", "ptu-d", "DataZoneProvisionedManaged", 4), "reserve 4 PTUs", "3 of them free")


def test_a_server_change_that_would_leave_reservations_without_room_is_refused(arm: Arm) -> None:
    arm.account("jpe", "japaneast")
    made(arm.register("jpe-1", "japaneast", 8))
    made(arm.register("jpe-2", "japaneast", 8))
    made(arm.deploy("jpe", "ptu", "ProvisionedManaged", 12))
    for answer, short in ((arm.call("DELETE", f"{SERVERS}/jpe-1{FLEET_VERSION}"), 4),
                          (arm.register("jpe-2", "japaneast", 3), 1)):
        assert answer.status_code == 409, answer.text
        error = answer.json()["error"]
        assert error["code"] == "Conflict" and f"{short} of the 12 PTUs of jpe/ptu" in error["message"]
    made(arm.register("jpe-2", "japaneast", 4))  # 8 + 4 still carry 12
    arm.undeploy("jpe", "ptu")
    assert arm.call("DELETE", f"{SERVERS}/jpe-1{FLEET_VERSION}").status_code == 200
