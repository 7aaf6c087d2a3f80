"""A deployment served by another OpenAI-compatible server: here a real `python -m llama_cpp.server`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from azurine.catalog import load_catalog
from azurine.config import default_models_dir
from azurine.storage.database import make_engine
from azurine.storage.state import StateStore
from conftest import API_VERSION, Server, free_port, start_server, stop, wait_for_http
from loopback_http import LoopbackHttp, QuietHandler


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    spec = load_catalog().get("SmolLM2-135M-Instruct")
    assert spec is not None
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(spec.path_in(default_models_dir())),
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--model_alias", "smol"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v1/models", process, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(process)


def _store(server: Server) -> StateStore:
    return StateStore(make_engine(f"sqlite:///{Path(server.data_dir) / 'azurine.db'}"))


def add_deployment(server: Server, name: str, url: str, sku: str = "GlobalStandard") -> None:
    store = _store(server)
    account = store.first_account()
    assert account is not None
    if store.deployment(account.id, name) is None:
        store.create_deployment(account.id, name, model_name="SmolLM2-135M-Instruct", model_version="1",
                                model_format="HuggingFace", sku_name=sku, sku_capacity=100,
                                upstream_url=url, upstream_model="smol")


def remove_deployment(server: Server, name: str) -> None:
    """The session's shared server lists only its own deployments to the tests that run after this module."""
    store = _store(server)
    account = store.first_account()
    assert account is not None
    store.delete_deployment(account.id, name)


@pytest.fixture(scope="module")
def upstream(server: Server, llama_server: str) -> Iterator[str]:
    add_deployment(server, "upstream-chat", llama_server)
    yield "upstream-chat"
    remove_deployment(server, "upstream-chat")


def test_chat_through_the_upstream(azure: openai.AzureOpenAI, upstream: str) -> None:
    result = azure.chat.completions.create(model=upstream, messages=[{"role": "user", "content": "Say hi"}],
                                           max_tokens=8, temperature=0)
    assert result.choices[0].message.content
    assert result.model == "smollm2-135m-instruct"
    assert result.usage.prompt_tokens > 0 and 0 < result.usage.completion_tokens <= 8


def test_upstream_answers_match_the_local_engine(azure: openai.AzureOpenAI, upstream: str) -> None:
    kwargs = dict(messages=[{"role": "user", "content": "Name three fruits."}], max_tokens=12, temperature=0)
    local = azure.chat.completions.create(model="chat-small", **kwargs)
    remote = azure.chat.completions.create(model=upstream, **kwargs)
    assert remote.choices[0].message.content == local.choices[0].message.content
    assert remote.usage.prompt_tokens == local.usage.prompt_tokens


def test_streaming_through_the_upstream(azure: openai.AzureOpenAI, upstream: str) -> None:
    chunks = list(azure.chat.completions.create(
        model=upstream, messages=[{"role": "user", "content": "Say hi"}], max_tokens=6, temperature=0, stream=True))
    assert chunks[0].choices == []  # Azure's opening chunk, from Azurine not the upstream
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_completions_through_the_upstream(azure: openai.AzureOpenAI, upstream: str) -> None:
    result = azure.completions.create(model=upstream, prompt="The sky is", max_tokens=4, temperature=0)
    assert result.choices[0].text


def test_json_mode_through_the_upstream(azure: openai.AzureOpenAI, upstream: str) -> None:
    result = azure.chat.completions.create(
        model=upstream, messages=[{"role": "user", "content": "Give a person's name as JSON."}], max_tokens=30,
        temperature=0, response_format={"type": "json_object"},
    )
    if result.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(result.choices[0].message.content or ""), dict)


def test_upstream_refusals_keep_their_status(azure: openai.AzureOpenAI, upstream: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        azure.chat.completions.create(model=upstream, messages=[{"role": "user", "content": "word " * 5000}],
                                      max_tokens=2)
    assert caught.value.status_code == 400


def test_an_unreachable_upstream_is_503_not_500(server: Server, azure: openai.AzureOpenAI) -> None:
    add_deployment(server, "upstream-gone", f"http://127.0.0.1:{free_port()}/v1")
    try:
        with pytest.raises(openai.InternalServerError) as caught:
            azure.chat.completions.create(model="upstream-gone", messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=2)
    finally:
        remove_deployment(server, "upstream-gone")
    assert caught.value.status_code == 503


# scheduling by class at the upstream server ------------------------------------------------------------------------

class RecordingProxy(LoopbackHttp):
    """Passes requests on to the upstream server and notes, in the order they reach it, each request's last message
    and the `priority` it carried: what the upstream server was asked, and when."""

    def __init__(self, upstream: str) -> None:
        root = upstream.removesuffix("/v1")
        self.seen: list[tuple[str, int | None]] = []
        lock = self.lock = threading.Lock()
        seen = self.seen

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                body = json.loads(raw)
                with lock:
                    seen.append((body["messages"][-1]["content"], body.get("priority")))
                answer = httpx.post(root + self.path, content=raw, headers={"content-type": "application/json"},
                                    timeout=600)
                self.send_response(answer.status_code)
                self.send_header("content-type", answer.headers.get("content-type", "application/json"))
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

        super().__init__(Handler)
        self.url = self.v1_url()

    def arrivals(self) -> list[tuple[str, int | None]]:
        with self.lock:
            return list(self.seen)


CAP = 1  # requests in flight to the upstream server
FLOOD = 6
NO_END = {"0": -100, "2": -100}  # SmolLM2's <|endoftext|> and <|im_end|>: every answer runs to max_tokens


def queue_depth(server: Server, scheduler: str, priority: str) -> float:
    text = httpx.get(server.metrics_url).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "azurine_queue_depth" and sample.labels == {"scheduler": scheduler,
                                                                         "priority": priority}:
                return sample.value
    return 0.0


def wait_until(condition: Callable[[], bool], what: str, deadline_s: float = 120) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.02)


def ask(server: Server, deployment: str, content: str) -> int:
    response = httpx.post(
        f"{server.url}/openai/deployments/{deployment}/chat/completions?api-version={API_VERSION}",
        headers={"api-key": server.key}, timeout=600,
        json={"messages": [{"role": "user", "content": content}], "max_tokens": 32, "temperature": 0,
              "logit_bias": NO_END})
    return response.status_code


def test_a_provisioned_deployment_goes_before_a_flood_on_the_same_upstream_server(
        llama_server: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    proxy = RecordingProxy(llama_server)
    server = start_server(tmp_path_factory.mktemp("upstream-classes") / "data",
                          env={"AZURINE_UPSTREAM_CONCURRENCY": str(CAP), "AZURINE_UPSTREAM_PRIORITY": proxy.url})
    try:
        add_deployment(server, "flood", proxy.url)
        add_deployment(server, "reserved", proxy.url, sku="ProvisionedManaged")
        gate = f"upstream {proxy.url}"
        reserved_prompt = "Write about the number 99."
        with ThreadPoolExecutor(FLOOD + 1) as pool:
            flood = [pool.submit(ask, server, "flood", f"Write about the number {i}.") for i in range(FLOOD)]
            wait_until(lambda: queue_depth(server, gate, "standard") == FLOOD - CAP, "the flood queued up")
            reserved = pool.submit(ask, server, "reserved", reserved_prompt)
            wait_until(lambda: queue_depth(server, gate, "provisioned") == 1
                       or any(c == reserved_prompt for c, _ in proxy.arrivals()), "the provisioned request came")
            # standard requests already sent upstream by now; any sent after this went in after the provisioned one
            sent_before = sum(1 for c, _ in proxy.arrivals() if c != reserved_prompt)
            statuses = [f.result() for f in [*flood, reserved]]
        assert statuses == [200] * (FLOOD + 1)
        arrivals = proxy.arrivals()
        order = [content for content, _ in arrivals]
        assert len(order) == FLOOD + 1
        # none of the standard requests still waiting when it came went before it: it waited for the ones in flight
        assert order.index(reserved_prompt) <= sent_before < FLOOD
        # and each carried its class as vLLM's priority (provisioned 0, standard 1)
        assert {content: priority for content, priority in arrivals}[reserved_prompt] == 0
        assert all(priority == 1 for content, priority in arrivals if content != reserved_prompt)
    finally:
        stop(server.process)
        proxy.close()
