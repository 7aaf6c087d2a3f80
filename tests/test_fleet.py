"""A fleet on loopback: two real model servers (`python -m llama_cpp.server` on SmolLM2) registered as servers in
regions of two data zones, behind a gateway in a third region that holds no copy of the model, so every answer comes
from a server and `x-ms-region` says which.

Each scenario has a subscription of its own: a server serves only the accounts of the subscription it is
registered in, so the scenarios' registries do not see each other.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from azurine.catalog import load_catalog
from azurine.cli.main import app as cli_app
from azurine.config import default_models_dir
from azurine.identity.tokens import MANAGEMENT_AUDIENCES, issue_token
from azurine.storage.database import make_engine
from azurine.storage.state import StateStore
from conftest import API_VERSION, Server, free_port, provision, start_server, stop, wait_for_http
from loopback_http import LoopbackHttp, QuietHandler

FLEET = "?api-version=2025-06-01"
MODEL = "SmolLM2-135M-Instruct"
NO_END = {"0": -100, "2": -100}  # SmolLM2's <|endoftext|> and <|im_end|>: every answer runs to max_tokens


@dataclass
class ModelServer:
    """A real llama_cpp.server; `kill` is kill -9, `start` brings it back on the same port."""

    port: int
    log: Path
    threads: int = 1  # decoding threads
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        spec = load_catalog().get(MODEL)
        assert spec is not None
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--model", str(spec.path_in(default_models_dir())),
                 "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "1024", "--n_threads", str(self.threads),
                 "--model_alias", "smol", "--interrupt_requests", "False"],  # a probe must not cut a stream short
                stdout=out, stderr=subprocess.STDOUT)

    def wait(self) -> None:
        assert self.process is not None
        wait_for_http(f"{self.url}/models", self.process, self.log)

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


@contextmanager
def running(servers: Sequence[ModelServer]) -> Iterator[None]:
    """Every server started, and each answering, until the block ends; then all stopped."""
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait()
        yield
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def model_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModelServer, ModelServer]]:
    logs = tmp_path_factory.mktemp("model-servers")
    servers = (ModelServer(free_port(), logs / "a.log"), ModelServer(free_port(), logs / "b.log"))
    with running(servers):
        yield servers


def start_gateway(root: Path) -> Server:
    """A gateway in Brazil South whose models directory holds only the content filter's embedding model: it can
    serve no chat itself."""
    models = root / "models"
    models.mkdir(parents=True)
    for name in ("all-minilm-l6-v2", "all-minilm-l6-v2.verified"):
        if (default_models_dir() / name).exists():
            (models / name).symlink_to(default_models_dir() / name)
    return start_server(root / "data", env={"AZURINE_MODELS_DIR": str(models), "AZURINE_REGION": "brazilsouth",
                                            "AZURINE_REGION_DISPLAY_NAME": "Brazil South"})


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_gateway(tmp_path_factory.mktemp("gateway"))
    try:
        yield running
    finally:
        stop(running.process)


def _store(gateway: Server) -> StateStore:
    return StateStore(make_engine(f"sqlite:///{gateway.data_dir / 'azurine.db'}"))


@dataclass(frozen=True)
class Tenant:
    subscription: str
    account: str
    key: str


def tenant(gateway: Server, location: str, *deployments: tuple[str, str]) -> Tenant:
    """A subscription of its own with one account at `location` and its (name, deployment type) deployments."""
    subscription = str(uuid.uuid4())
    provision(gateway.data_dir, subscription, "rg")
    store = _store(gateway)
    name = f"fleet-{uuid.uuid4().hex[:10]}"
    account = store.create_account(name, location=location, subscription_id=subscription, resource_group="rg")
    for deployment, sku in deployments:
        store.create_deployment(account.id, deployment, model_name=MODEL, model_version="1",
                                model_format="HuggingFace", sku_name=sku, sku_capacity=100)
    return Tenant(subscription, name, account.key1)


def arm(gateway: Server, method: str, path: str, body: Any = None) -> httpx.Response:
    token = issue_token(_store(gateway), MANAGEMENT_AUDIENCES[0])[0]
    return httpx.request(method, gateway.url + path, json=body, headers={"Authorization": f"Bearer {token}"},
                         timeout=60)


def register(gateway: Server, subscription: str, name: str, url: str, region: str, capacity: int = 2,
             ptus: int | None = None) -> None:
    """A model server of SmolLM2 (carrying `ptus` provisioned throughput units of it, if given)."""
    served: dict[str, Any] = {"name": MODEL, "servedName": "smol", **({"ptus": ptus} if ptus is not None else {})}
    answer = arm(gateway, "PUT", f"/subscriptions/{subscription}/providers/Azurine.Fleet/modelServers/{name}{FLEET}",
                 {"properties": {"baseUrl": url, "kind": "OpenAI-compatible", "region": region, "capacity": capacity,
                                 "models": [served],
                                 "healthProbe": {"intervalSeconds": 1, "timeoutSeconds": 2}}})
    assert answer.status_code in (200, 201), answer.text


def health(gateway: Server, subscription: str, name: str) -> dict[str, Any]:
    answer = arm(gateway, "GET", f"/subscriptions/{subscription}/providers/Azurine.Fleet/modelServers/{name}{FLEET}")
    return answer.json()["properties"]["health"]


@dataclass(frozen=True)
class Outcome:
    status: int
    region: str
    text: str = ""
    error: str | None = None  # the error's code: the answer's, or the stream's closing error event's
    done: bool = False  # a stream closed by [DONE]
    retry_after: str | None = None


def ask(gateway: Server, who: Tenant, deployment: str, content: str, stream: bool = False,
        max_tokens: int = 8) -> Outcome:
    url = f"{gateway.url}/accounts/{who.account}/openai/deployments/{deployment}/chat/completions" \
          f"?api-version={API_VERSION}"
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "temperature": 0,
            "logit_bias": NO_END, "stream": stream}
    with httpx.stream("POST", url, json=body, headers={"api-key": who.key}, timeout=600) as response:
        region = response.headers.get("x-ms-region", "")
        raw = response.read().decode()
    if response.status_code != 200:
        return Outcome(response.status_code, region, error=json.loads(raw)["error"]["code"],
                       retry_after=response.headers.get("retry-after"))
    if not stream:
        return Outcome(200, region, text=json.loads(raw)["choices"][0]["message"]["content"] or "")
    text, error, done = "", None, False
    for line in raw.splitlines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            continue
        chunk = json.loads(data)
        if "error" in chunk:
            error = chunk["error"]["code"] or "error"
        for choice in chunk.get("choices") or []:
            text += (choice.get("delta") or {}).get("content") or ""
    return Outcome(200, region, text=text, error=error, done=done)


def wait_until(condition: Callable[[], bool], what: str, deadline_s: float = 120) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.05)


class CountingProxy(LoopbackHttp):
    """Passes requests on to a model server, counting the completions asked of it."""

    def __init__(self, upstream: str) -> None:
        root = upstream.removesuffix("/v1")
        self.completions = 0
        lock = threading.Lock()
        proxy = self

        class Handler(QuietHandler):
            def _forward(self, method: str) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0) or 0))
                if method == "POST":
                    with lock:
                        proxy.completions += 1
                answer = httpx.request(method, root + self.path, content=raw or None, timeout=600,
                                       headers={"content-type": "application/json"})
                self.send_response(answer.status_code)
                self.send_header("content-type", answer.headers.get("content-type", "application/json"))
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

        super().__init__(Handler)
        self.url = self.v1_url()


class CuttingProxy(LoopbackHttp):
    """Passes requests on to a model server, but cuts each streamed answer after its first `lines` data lines: the
    connection closes in the middle of the chunked body, as when the server dies mid-answer."""

    def __init__(self, upstream: str, lines: int) -> None:
        root = upstream.removesuffix("/v1")

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # the health probe
                answer = httpx.get(root + self.path, timeout=30)
                self.send_response(answer.status_code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0) or 0))
                with httpx.stream("POST", root + self.path, content=raw, timeout=600,
                                  headers={"content-type": "application/json"}) as answer:
                    self.send_response(answer.status_code)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    sent = 0
                    for line in answer.iter_lines():
                        piece = (line + "\n").encode()
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                        sent += line.startswith("data:")
                        if sent == lines:
                            break
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)  # no closing chunk: the body is cut short

        super().__init__(Handler)
        self.url = self.v1_url()


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"


def test_a_data_zone_eu_deployment_never_reaches_a_us_server_even_when_every_eu_server_is_down(
        gateway: Server, model_servers: tuple[ModelServer, ModelServer]) -> None:
    us = CountingProxy(model_servers[1].url)
    try:
        who = tenant(gateway, "westeurope", ("eu-zone", "DataZoneStandard"), ("eu-region", "Standard"),
                     ("anywhere", "GlobalStandard"))
        register(gateway, who.subscription, "weu-down", dead_url(), "westeurope")
        register(gateway, who.subscription, "sec-down", dead_url(), "swedencentral")
        register(gateway, who.subscription, "eus-live", us.url, "eastus")
        for deployment in ("eu-zone", "eu-region", "eu-zone"):
            refused = ask(gateway, who, deployment, "Say hi")
            assert (refused.status, refused.error) == (503, "ServiceUnavailable")
            assert refused.retry_after is not None and int(refused.retry_after) >= 1
        assert us.completions == 0
        # the US server was there all along: a Global deployment of the same account reaches it
        served = ask(gateway, who, "anywhere", "Say hi")
        assert (served.status, served.region) == (200, "East US") and served.text
        assert us.completions == 1
    finally:
        us.close()


def test_a_global_deployment_spreads_its_load_over_regions(
        gateway: Server, model_servers: tuple[ModelServer, ModelServer]) -> None:
    who = tenant(gateway, "eastus", ("global", "GlobalStandard"))
    register(gateway, who.subscription, "weu", model_servers[0].url, "westeurope", capacity=1)
    register(gateway, who.subscription, "eus", model_servers[1].url, "eastus", capacity=1)
    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(lambda i: ask(gateway, who, "global", f"Count to {i}."), range(6)))
    assert [o.status for o in outcomes] == [200] * 6
    assert {o.region for o in outcomes} == {"West Europe", "East US"}
    # the usage ledger counts each request in the region it ran in (written within a second or so)
    account = _store(gateway).account_named(who.account)
    assert account is not None

    def by_region() -> dict[str, int]:
        return {row.region: row.requests for row in _store(gateway).usage_by_region(account.id, 0)}

    wait_until(lambda: sum(by_region().values()) == 6, "the ledger counted the six requests")
    shown = {"West Europe": "westeurope", "East US": "eastus"}
    assert by_region() == {shown[region]: sum(o.region == region for o in outcomes) for region in shown}


def test_a_provisioned_deployment_at_full_utilization_spills_to_its_standard_deployment_on_a_server(
        gateway: Server, model_servers: tuple[ModelServer, ModelServer]) -> None:
    who = tenant(gateway, "westeurope")
    register(gateway, who.subscription, "weu-spill", model_servers[0].url, "westeurope", ptus=10)
    account = f"/subscriptions/{who.subscription}/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/" \
              f"{who.account}/deployments"
    for name, sku, capacity, extra in (("paygo", "Standard", 5, {}),
                                       ("ptu", "ProvisionedManaged", 1, {"spilloverDeploymentName": "paygo"})):
        made = arm(gateway, "PUT", f"{account}/{name}?api-version=2024-10-01",
                   {"sku": {"name": sku, "capacity": capacity},
                    "properties": {"model": {"name": MODEL, "version": "1"}, **extra}})
        assert made.status_code in (200, 201), made.text

    def chat(content: str) -> httpx.Response:
        return httpx.post(f"{gateway.url}/accounts/{who.account}/openai/deployments/ptu/chat/completions"
                          f"?api-version={API_VERSION}", headers={"api-key": who.key}, timeout=600,
                          json={"messages": [{"role": "user", "content": content}], "max_tokens": 2})

    # one PTU of SmolLM2 is 1,000 prompt tokens a minute: two long prompts take the deployment past 100%
    long_prompt = " ".join(["word"] * 600)
    for _ in range(2):
        admitted = chat(long_prompt)
        assert admitted.status_code == 200 and "x-ms-spillover-from-deployment" not in admitted.headers, admitted.text
    assert float(admitted.headers["azure-openai-deployment-utilization"].rstrip("%")) > 100
    spilled = chat("Say hi.")
    assert spilled.status_code == 200, spilled.text
    assert spilled.headers["x-ms-spillover-from-deployment"] == "ptu"
    assert spilled.headers["x-ms-deployment-name"] == "paygo"
    # answered by the model server the standard deployment's residency allows
    assert spilled.headers["x-ms-region"] == "West Europe"
    assert spilled.json()["choices"][0]["message"]["content"] is not None


def test_a_stream_cut_mid_answer_ends_with_an_error_event_and_its_usage_is_settled(
        gateway: Server, model_servers: tuple[ModelServer, ModelServer]) -> None:
    cutting = CuttingProxy(model_servers[1].url, lines=6)
    try:
        who = tenant(gateway, "eastus", ("cut", "Standard"))
        register(gateway, who.subscription, "eus-cut", cutting.url, "eastus")
        outcome = ask(gateway, who, "cut", "Write about the sea.", stream=True, max_tokens=24)
    finally:
        cutting.close()
    assert outcome.status == 200 and outcome.error is not None and not outcome.done
    account = _store(gateway).account_named(who.account)
    assert account is not None
    wait_until(lambda: bool(_store(gateway).usage(account.id, 0)), "the cut request's usage was settled")
    [settled] = _store(gateway).usage(account.id, 0)
    # what the server sent before the cut is billed (a token a delta), nothing more than was asked
    assert settled.requests == 1 and settled.prompt_tokens > 0 and 1 <= settled.completion_tokens <= 6


LOAD = 12


def test_a_model_server_killed_mid_load_loses_no_request_and_answers_none_twice(
        gateway: Server, model_servers: tuple[ModelServer, ModelServer]) -> None:
    doomed, survivor = model_servers
    who = tenant(gateway, "westeurope", ("eu", "DataZoneStandard"))
    register(gateway, who.subscription, "a", doomed.url, "westeurope")
    register(gateway, who.subscription, "b", survivor.url, "northeurope")
    with ThreadPoolExecutor(LOAD) as pool:
        futures = [pool.submit(ask, gateway, who, "eu", f"Write about the number {i}.", i % 2 == 1, 24)
                   for i in range(LOAD)]
        wait_until(lambda: health(gateway, who.subscription, "a")["outstanding"] >= 2, "server a took work")
        doomed.kill()
        outcomes = [f.result() for f in futures]
    # every request has one outcome: an answer, or an error (an error response, or a stream's closing error event)
    answered = [o for o in outcomes if o.status == 200 and o.error is None]
    failed = [o for o in outcomes if o.status != 200 or o.error is not None]
    assert len(answered) + len(failed) == LOAD
    assert all(o.status in (200, 503) for o in outcomes)
    # a whole answer failed before its first byte, so it went to the other server: none was lost
    whole = [o for i, o in enumerate(outcomes) if i % 2 == 0]
    assert all(o.status == 200 and o.text for o in whole), whole
    # a stream either closed with [DONE] or with one error event, never both
    streams = [o for i, o in enumerate(outcomes) if i % 2 == 1]
    assert all(o.done != (o.error is not None) for o in streams if o.status == 200), streams
    assert all(o.text for o in answered)
    assert {o.region for o in answered} <= {"West Europe", "North Europe"}
    assert any(o.region == "North Europe" for o in answered)


def test_the_probe_opens_the_breaker_of_a_dead_server_and_closes_it_once_the_server_is_back(
        gateway: Server, model_servers: tuple[ModelServer, ModelServer]) -> None:
    server = model_servers[0]
    who = tenant(gateway, "westeurope", ("eu", "DataZoneStandard"))
    register(gateway, who.subscription, "a", server.url, "westeurope")
    if server.process is None or server.process.poll() is None:
        wait_until(lambda: health(gateway, who.subscription, "a")["lastProbe"] is not None, "a first probe")
        server.kill()
    wait_until(lambda: health(gateway, who.subscription, "a")["circuit"] == "Open", "the breaker opened")
    refused = ask(gateway, who, "eu", "Say hi")
    assert (refused.status, refused.error) == (503, "ServiceUnavailable")
    server.start()
    server.wait()
    wait_until(lambda: health(gateway, who.subscription, "a")["circuit"] == "Closed", "the breaker closed")
    served = ask(gateway, who, "eu", "Say hi")
    assert (served.status, served.region) == (200, "West Europe")


def test_the_cli_registers_lists_and_removes_a_model_server(gateway: Server, tmp_path: Path) -> None:
    runner = CliRunner()
    common = ["--endpoint", gateway.url, "--data-dir", str(gateway.data_dir)]
    created = runner.invoke(cli_app, ["fleet", "server", "create", "-n", "cli-vllm", "--base-url", dead_url(),
                                      "-l", "francecentral", "--model", f"{MODEL}=smol", "--capacity", "4",
                                      *common])
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["properties"]["dataZone"] == "EU"
    listed = runner.invoke(cli_app, ["fleet", "server", "list", "-o", "table", *common])
    assert listed.exit_code == 0 and "cli-vllm" in listed.output and "francecentral" in listed.output
    refused = runner.invoke(cli_app, ["fleet", "server", "create", "-n", "cli-bad", "--base-url", "ftp://x/v1",
                                      "-l", "eastus", "--model", MODEL, *common])
    assert refused.exit_code == 1 and "InvalidRequestContent" in refused.output
    assert runner.invoke(cli_app, ["fleet", "server", "delete", "-n", "cli-vllm", *common]).exit_code == 0
    assert "cli-vllm" not in runner.invoke(cli_app, ["fleet", "server", "list", *common]).output
    # the registry as configuration: what the file lists, with keys from a directory, and nothing else
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "cfg-a").write_text("sk-from-a-secret\n")
    listing = [{"name": name, "properties": {"baseUrl": dead_url(), "kind": "vLLM", "region": "eastus",
                                             "capacity": 2, "models": [{"name": MODEL}]}}
               for name in ("cfg-a", "cfg-b")]
    (tmp_path / "servers.json").write_text(json.dumps(listing))
    applied = runner.invoke(cli_app, ["fleet", "server", "apply", "--file", str(tmp_path / "servers.json"),
                                      "--api-keys-dir", str(tmp_path / "keys"), *common])
    assert applied.exit_code == 0, applied.output
    assert [s["properties"]["hasApiKey"] for s in json.loads(applied.output)] == [True, False]
    (tmp_path / "servers.json").write_text(json.dumps(listing[1:]))
    pruned = runner.invoke(cli_app, ["fleet", "server", "apply", "--file", str(tmp_path / "servers.json"), "--prune",
                                     *common])
    assert pruned.exit_code == 0, pruned.output
    names = [s["name"] for s in json.loads(runner.invoke(cli_app, ["fleet", "server", "list", *common]).output)]
    assert names == ["cfg-b"]
    assert runner.invoke(cli_app, ["fleet", "server", "delete", "-n", "cfg-b", *common]).exit_code == 0
