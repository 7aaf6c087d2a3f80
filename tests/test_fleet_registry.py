"""The fleet's rules in-process: residency per deployment type, the router's choice, the breaker, and the registry
as ARM serves it (who may call it, what it refuses, the key sealed at rest)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from asgi_app import admin_token, in_process_app, principal_token
from azurine.api.context import Services
from azurine.fleet.health import Breaker, Circuit
from azurine.fleet.member import Place
from azurine.fleet.regions import allows
from azurine.fleet.router import Affinity, chat_prefix, pick
from azurine.storage.subscriptions import DEFAULT_SUBSCRIPTION, SubscriptionStore

VERSION = "?api-version=2025-06-01"
SERVERS = f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Azurine.Fleet/modelServers"
SECRET = "sk-fleet-secret-0123456789"


def server_body(**changes: Any) -> dict[str, Any]:
    properties = {"baseUrl": "http://10.0.0.5:8000/v1", "kind": "vLLM", "apiKey": SECRET,
                  "models": [{"name": "SmolLM2-135M-Instruct", "servedName": "smol"}], "region": "westeurope",
                  "capacity": 8, "priority": True}
    properties.update(changes)
    return {"properties": properties}


# residency -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("sku", "account", "server", "allowed"), [
    ("Standard", "westeurope", "westeurope", True),
    ("Standard", "westeurope", "northeurope", False),
    ("ProvisionedManaged", "eastus", "eastus2", False),
    ("DataZoneStandard", "westeurope", "swedencentral", True),
    ("DataZoneStandard", "westeurope", "eastus", False),
    ("DataZoneProvisionedManaged", "eastus", "westus3", True),
    ("DataZoneBatch", "eastus", "francecentral", False),
    ("DataZoneStandard", "japaneast", "japaneast", True),
    ("DataZoneStandard", "japaneast", "koreacentral", False),  # outside both zones: its own region only
    ("GlobalStandard", "westeurope", "eastus", True),
    ("GlobalBatch", "eastus", "japaneast", True),
])
def test_a_deployment_type_allows_only_its_residency(sku: str, account: str, server: str, allowed: bool) -> None:
    assert allows(sku, account, server) is allowed


# the router ----------------------------------------------------------------------------------------------------

def test_the_router_takes_the_least_loaded_place_weighted_by_capacity() -> None:
    big, small = Place("big", "eastus", "East US", 8, outstanding=3), Place("small", "westus", "West US", 1)
    assert pick([big, small], None) is big  # 4/8 beats 1/1
    small.capacity = 16
    assert pick([big, small], None) is small


def test_equal_places_share_the_load() -> None:
    places = [Place(f"p{i}", "eastus", "East US", 2) for i in range(3)]
    rng = random.Random(7)
    chosen = {pick(places, None, rng).key for _ in range(60)}  # type: ignore[union-attr]
    assert chosen == {"p0", "p1", "p2"}


def test_a_shared_prefix_goes_back_to_its_warm_place_while_it_has_room() -> None:
    warm, cold = Place("warm", "eastus", "East US", 2, outstanding=1), Place("cold", "westus", "West US", 2)
    affinity = Affinity()
    system = {"role": "system", "content": "You are a careful assistant. " * 20}
    first = chat_prefix("m", [system, {"role": "user", "content": "one"}])
    affinity.remember(first, "warm")
    later = chat_prefix("m", [system, {"role": "user", "content": "two"}, {"role": "assistant", "content": "x"}])
    assert later == first
    assert pick([warm, cold], affinity.hint(later)) is warm
    warm.outstanding = 2  # full: the hint gives way to the load
    assert pick([warm, cold], affinity.hint(later)) is cold


def test_the_affinity_hints_are_bounded() -> None:
    affinity = Affinity(entries=3)
    for i in range(10):
        affinity.remember(f"k{i}", "p")
    assert [affinity.hint(f"k{i}") for i in range(10)] == [None] * 7 + ["p"] * 3


def test_no_routable_place_is_no_choice() -> None:
    class Down(Place):
        @property
        def routable(self) -> bool:
            return False

    assert pick([Down("d", "eastus", "East US", 1)], None) is None


# the breaker ---------------------------------------------------------------------------------------------------

def test_the_breaker_opens_after_three_failures_and_closes_after_two_good_probes() -> None:
    breaker = Breaker()
    breaker.failed()
    breaker.failed()
    assert breaker.circuit is Circuit.CLOSED and breaker.routable
    breaker.failed()
    assert breaker.circuit is Circuit.OPEN and not breaker.routable
    breaker.probe_succeeded()
    assert breaker.circuit is Circuit.HALF_OPEN and breaker.routable
    breaker.probe_succeeded()
    assert breaker.circuit is Circuit.CLOSED


def test_a_half_open_breaker_opens_again_at_the_first_failure() -> None:
    breaker = Breaker()
    for _ in range(3):
        breaker.failed()
    breaker.probe_succeeded()
    breaker.failed()
    assert breaker.circuit is Circuit.OPEN
    breaker.probe_succeeded()
    breaker.request_succeeded()
    assert breaker.circuit is Circuit.CLOSED and breaker.failures == 0


# the registry over ARM -----------------------------------------------------------------------------------------

class Registry:
    def __init__(self, app: FastAPI, services: Services) -> None:
        self.app, self.services = app, services

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="https://azurine.test") as http:
                return await http.request(method, path, json=body,
                                          headers={"Authorization": f"Bearer {token or self.admin}"})

        return asyncio.run(send())

    @property
    def admin(self) -> str:
        return admin_token(self.services)

    def principal(self, role: str, scope: str) -> str:
        return principal_token(self.services, role, scope)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    data_dir: Path = tmp_path_factory.mktemp("fleet-registry") / "data"
    app, services = in_process_app(data_dir)
    SubscriptionStore(services.store.engine).put_group(DEFAULT_SUBSCRIPTION, "ops", "eastus", None)
    yield Registry(app, services)


def test_the_operator_registers_a_model_server_and_its_key_is_never_shown(registry: Registry) -> None:
    created = registry.call("PUT", f"{SERVERS}/vllm-weu{VERSION}", server_body())
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["type"] == "Azurine.Fleet/modelServers" and body["name"] == "vllm-weu"
    assert body["properties"]["dataZone"] == "EU" and body["properties"]["hasApiKey"] is True
    assert SECRET not in created.text
    again = registry.call("PUT", f"{SERVERS}/vllm-weu{VERSION}", server_body(capacity=4))
    assert again.status_code == 200 and again.json()["properties"]["capacity"] == 4
    listed = registry.call("GET", f"{SERVERS}{VERSION}").json()["value"]
    assert [s["name"] for s in listed] == ["vllm-weu"]
    assert SECRET not in registry.call("GET", f"{SERVERS}/VLLM-WEU{VERSION}").text


def test_the_key_is_sealed_at_rest(registry: Registry) -> None:
    registry.call("PUT", f"{SERVERS}/sealed{VERSION}", server_body())
    with registry.services.store.engine.connect() as connection:
        raw = connection.execute(text("SELECT sealed_key, spec FROM model_servers WHERE name_key = 'sealed'")).one()
    assert SECRET.encode() not in bytes(raw[0]) and SECRET not in str(raw[1])
    assert registry.services.store.engine is not None
    store = registry.app.state.fleet.store
    assert store.get(DEFAULT_SUBSCRIPTION, "sealed").api_key == SECRET


@pytest.mark.parametrize(("changes", "field"), [
    ({"baseUrl": "ftp://10.0.0.5/v1"}, "baseUrl"),
    ({"baseUrl": "file:///etc/passwd"}, "baseUrl"),
    ({"baseUrl": "http://user:pass@10.0.0.5/v1"}, "baseUrl"),
    ({"baseUrl": "http://10.0.0.5/v1?x=1"}, "baseUrl"),
    ({"baseUrl": "http://" + "a" * 2100 + ".test/v1"}, "baseUrl"),
    ({"baseUrl": "http://10.0.0.5:99999/v1"}, "baseUrl"),
    ({"kind": "Ollama"}, "kind"),
    ({"region": "moon"}, "region"),
    ({"region": "eastus", "dataZone": "EU"}, "dataZone"),
    ({"region": "japaneast", "dataZone": "US"}, "dataZone"),
    ({"capacity": 0}, "capacity"),
    ({"capacity": 100_000}, "capacity"),
    ({"capacity": True}, "capacity"),
    ({"models": []}, "models"),
    ({"models": [{"name": f"m{i}"} for i in range(65)]}, "models"),
    ({"models": [{"name": "bad name"}]}, "models"),
    ({"apiKey": "k" * 5000}, "apiKey"),
    ({"healthProbe": {"intervalSeconds": 0}}, "healthProbe"),
    ({"healthProbe": {"path": "health"}}, "healthProbe"),
])
def test_a_bad_description_is_a_400_naming_the_property(registry: Registry, changes: dict[str, Any],
                                                        field: str) -> None:
    answer = registry.call("PUT", f"{SERVERS}/bad{VERSION}", server_body(**changes))
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "InvalidRequestContent" and field in error["message"]


def test_a_bad_name_or_version_is_refused(registry: Registry) -> None:
    assert registry.call("PUT", f"{SERVERS}/-bad-{VERSION}", server_body()).json()["error"]["code"] == \
        "InvalidResourceName"
    answer = registry.call("GET", f"{SERVERS}?api-version=2024-01-01")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "InvalidApiVersionParameter"
    missing = registry.call("GET", f"/subscriptions/{uuid.uuid4()}/providers/Azurine.Fleet/modelServers{VERSION}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "SubscriptionNotFound"


def test_only_the_operator_or_a_subscription_owner_may_call_the_registry(registry: Registry) -> None:
    subscription = f"/subscriptions/{DEFAULT_SUBSCRIPTION}"
    for role, scope in (("Contributor", subscription), ("Owner", f"{subscription}/resourceGroups/ops"),
                        ("Reader", subscription)):
        token = registry.principal(role, scope)
        for method, body in (("GET", None), ("PUT", server_body())):
            answer = registry.call(method, f"{SERVERS}/denied{VERSION}", body, token=token)
            assert answer.status_code == 403, (role, scope, method)
            assert answer.json()["error"]["code"] == "AuthorizationFailed"
    owner = registry.principal("Owner", subscription)
    assert registry.call("PUT", f"{SERVERS}/owned{VERSION}", server_body(), token=owner).status_code == 201
    assert registry.call("DELETE", f"{SERVERS}/owned{VERSION}", token=owner).status_code == 200
    assert registry.call("DELETE", f"{SERVERS}/owned{VERSION}", token=owner).status_code == 204
    assert registry.call("GET", f"{SERVERS}/owned{VERSION}", token=owner).status_code == 404


def test_without_a_serving_server_the_deployment_runs_where_it_always_did(registry: Registry) -> None:
    """The registry holds servers for SmolLM2 only: the default path of other models is untouched."""
    fleet = registry.app.state.fleet
    asyncio.run(fleet.refresh())
    qwen = registry.services.catalog.get("Qwen2.5-Coder-0.5B-Instruct")
    assert qwen is not None
    sentinel: Any = object()
    assert fleet.route(DEFAULT_SUBSCRIPTION, "westeurope", "GlobalStandard", qwen, sentinel, lambda: True,
                       lambda _: None) is None
    smol = registry.services.catalog.get("SmolLM2-135M-Instruct")
    assert smol is not None
    assert fleet.route(str(uuid.uuid4()), "westeurope", "GlobalStandard", smol, sentinel, lambda: True,
                       lambda _: None) is None  # another subscription's servers are not this one's
    assert fleet.route(DEFAULT_SUBSCRIPTION, "westeurope", "GlobalStandard", smol, sentinel, lambda: True,
                       lambda _: None) is not None


# batch lines -----------------------------------------------------------------------------------------------------

def _answering(status: int, headers: list[tuple[bytes, bytes]]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), *headers]})
        await send({"type": "http.response.body", "body": b'{"error": {"code": "ServiceUnavailable"}}'})
    return app


def test_a_batch_line_no_server_can_run_stays_pending_for_its_lease() -> None:
    from azurine.jobs.batch_runner import LineDeferred, LineRunner
    from azurine.storage.batches import BatchRecord, ClaimedLine

    batch = BatchRecord("batch_1", "account", "eu-batch", "/chat/completions", "file-1", "24h", "in_progress", 0, 0)
    line = ClaimedLine("batch_1", 3, "task-3", {"messages": [{"role": "user", "content": "hi"}]})

    async def run(app: Any) -> Any:
        runner = LineRunner(app)
        try:
            return await runner.run("acct", batch, line)
        finally:
            await runner.close()

    with pytest.raises(LineDeferred):
        asyncio.run(run(_answering(503, [(b"retry-after", b"4")])))
    # any other failure is the line's result, as before
    outcome = asyncio.run(run(_answering(503, [])))
    assert outcome.result.succeeded is False and outcome.result.output["response"]["status_code"] == 503


def test_the_request_log_records_where_the_request_ran() -> None:
    from datetime import UTC, datetime

    from azurine.telemetry.request_metrics import Observation, request_log

    routed = Observation(started=0.0, region="westeurope", processing_region="swedencentral", status=200)
    assert request_log(routed, datetime.now(UTC))["properties"]["processingRegion"] == "swedencentral"
    here = Observation(started=0.0, region="westeurope", status=200)
    assert request_log(here, datetime.now(UTC))["properties"]["processingRegion"] == "westeurope"
