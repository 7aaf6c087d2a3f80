"""A deployment served by another OpenAI-compatible server: here a real `python -m llama_cpp.server`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from azurine.catalog import load_catalog
from azurine.config import default_models_dir
from azurine.storage.database import make_engine
from azurine.storage.state import StateStore
from conftest import Server, free_port, stop, wait_for_http


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


def add_deployment(server: Server, name: str, url: str) -> None:
    store = StateStore(make_engine(f"sqlite:///{Path(server.data_dir) / 'azurine.db'}"))
    account = store.first_account()
    assert account is not None
    if store.deployment(account.id, name) is None:
        store.create_deployment(account.id, name, model_name="SmolLM2-135M-Instruct", model_version="1",
                                model_format="HuggingFace", sku_name="GlobalStandard", sku_capacity=100,
                                upstream_url=url, upstream_model="smol")


@pytest.fixture(scope="module")
def upstream(server: Server, llama_server: str) -> str:
    add_deployment(server, "upstream-chat", llama_server)
    return "upstream-chat"


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
    with pytest.raises(openai.InternalServerError) as caught:
        azure.chat.completions.create(model="upstream-gone", messages=[{"role": "user", "content": "hi"}],
                                      max_tokens=2)
    assert caught.value.status_code == 503
