"""Input a caller controls is refused with Azure's 400, never a 500: token ids in `logit_bias` are plain decimal
numbers, JSON nested deeper than the server allows is a bad line or a bad body rather than a crash, and checking
a batch's input file (every line parsed and validated) runs off the event loop, so one large batch never holds up
other requests."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request

import azurine.api.inference.batches as batches
from asgi_app import CHAT, CHAT_SMALL, client, in_process_app
from azurine.api.errors import AzureError
from azurine.api.management.arm import parse_arm_body
from azurine.api.management.rai import PolicyIn
from batch_helpers import BATCH_DEPLOYMENT, add_batch_deployment, chat_lines, sqlite_url
from conftest import API_VERSION

FILES = f"/openai/files?api-version={API_VERSION}"
BATCHES = f"/openai/batches?api-version={API_VERSION}"


@pytest.fixture(scope="module")
def app_and_services(tmp_path_factory: pytest.TempPathFactory) -> Any:
    data = tmp_path_factory.mktemp("bad-input") / "data"
    app, services = in_process_app(data)
    add_batch_deployment(sqlite_url(data))
    return app, services


def post(app: Any, path: str, **kwargs: Any) -> Any:
    async def send() -> Any:
        async with client(app) as http:
            return await http.post(path, **kwargs)

    return asyncio.run(send())


def chat_with_bias(bias: dict[str, int]) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "logit_bias": bias}


@pytest.mark.parametrize("key", ["--1", "\u00b2", "-1", "1\n", " 1", "1" * 5000, "\u0661", "0x10", ""])
def test_a_logit_bias_key_that_is_not_a_token_id_is_a_400_naming_logit_bias(app_and_services: Any, key: str) -> None:
    app, _ = app_and_services
    response = post(app, CHAT, json=chat_with_bias({key: 1}))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "logit_bias" and error["code"] == "invalid_value", error


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def upload(app: Any, content: bytes) -> Any:
    return post(app, FILES, data={"purpose": "batch"}, files={"file": ("batch.jsonl", content)})


@pytest.mark.parametrize("depth", [100_000, 500])
def test_a_batch_line_nested_too_deep_is_refused_as_a_bad_line(app_and_services: Any, depth: int) -> None:
    app, _ = app_and_services
    good = json.loads(chat_lines(1).decode())
    deep = {**good, "custom_id": "deep"}
    line = json.dumps(deep)[:-1] + ', "extra": ' + nested(depth) + "}"
    response = upload(app, chat_lines(1) + line.encode() + b"\n")
    assert response.status_code == 400, response.text[:500]
    error = response.json()["error"]
    assert error["code"] == "jsonlValidationFailed"
    assert [detail["line"] for detail in error["details"]] == [2], error


def test_batch_input_is_parsed_and_validated_off_the_event_loop(app_and_services: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    app, _ = app_and_services
    threads: dict[str, set[int]] = {"validate": set(), "estimate": set()}
    validate, estimate = batches.validate_batch_lines, batches._estimate

    def watched_validate(*args: Any) -> Any:
        threads["validate"].add(threading.get_ident())
        return validate(*args)

    def watched_estimate(*args: Any) -> int:
        threads["estimate"].add(threading.get_ident())
        return estimate(*args)

    monkeypatch.setattr(batches, "validate_batch_lines", watched_validate)
    monkeypatch.setattr(batches, "_estimate", watched_estimate)

    async def create() -> tuple[int, Any]:
        loop_thread = threading.get_ident()
        async with client(app) as http:
            uploaded = await http.post(FILES, data={"purpose": "batch"},
                                       files={"file": ("batch.jsonl", chat_lines(20, BATCH_DEPLOYMENT))})
            assert uploaded.status_code == 201, uploaded.text
            created = await http.post(BATCHES, json={"input_file_id": uploaded.json()["id"],
                                                     "endpoint": "/chat/completions", "completion_window": "24h"})
        return loop_thread, created

    loop_thread, created = asyncio.run(create())
    assert created.status_code == 200 and created.json()["request_counts"]["total"] == 20, created.text
    assert threads["validate"] and threads["estimate"]
    assert loop_thread not in threads["validate"] | threads["estimate"]


def test_a_management_body_nested_too_deep_is_an_arm_400(app_and_services: Any) -> None:
    app, _ = app_and_services
    raw = ('{"properties": {"contentFilters": [], "extra": ' + nested(5000) + "}}").encode()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    request = Request({"type": "http", "method": "PUT", "path": "/", "headers": [], "query_string": b"",
                       "app": app}, receive)
    with pytest.raises(AzureError) as caught:
        asyncio.run(parse_arm_body(request, PolicyIn))
    assert caught.value.status == 400 and caught.value.code == "InvalidRequestContent"
    assert "levels deep" in caught.value.message


def test_the_depth_limit_is_a_setting(tmp_path: Path) -> None:
    app, _ = in_process_app(tmp_path / "data", {"AZURINE_MAX_JSON_DEPTH": "200"})
    body = '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "logit_bias": ' + nested(65) + "}"
    response = post(app, CHAT, content=body, headers={"content-type": "application/json"})
    # 65 levels pass the depth check under a limit of 200, and fail as the wrong type for logit_bias
    assert response.status_code == 400 and response.json()["error"]["param"].startswith("logit_bias"), response.text


@pytest.mark.parametrize("depth", [100_000, 2000])
def test_tool_call_arguments_nested_too_deep_in_the_history_are_no_500(app_and_services: Any, depth: int) -> None:
    """A caller writes the earlier assistant turns, and their tool calls' arguments are JSON text the engine reads
    for the chat template: nested too deep they stay the text they are, as arguments that do not parse do. (On
    `chat-small`, whose template leaves calls out, so that the model does not read 2,000 brackets: the engine parses
    the arguments before any template sees them, whatever the model.)"""
    app, _ = app_and_services
    arguments = "[" * depth + "]" * depth
    messages = [{"role": "user", "content": "What is the weather?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": arguments}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    response = post(app, CHAT_SMALL, json={"messages": messages, "max_tokens": 1})
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:  # a history too long for the model's context, said as Azure says it
        assert response.json()["error"]["code"] == "context_length_exceeded", response.text


def test_a_large_body_is_parsed_off_the_event_loop(app_and_services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Validating megabytes of JSON holds the interpreter for a while: never on the loop that serves everyone."""
    import azurine.api.context as context

    app, _ = app_and_services
    threads: set[int] = set()
    measure = context.text_too_deep

    def watched(*args: Any) -> bool:
        threads.add(threading.get_ident())
        return measure(*args)

    monkeypatch.setattr(context, "text_too_deep", watched)

    async def send() -> tuple[int, Any]:
        async with client(app) as http:
            body = {"messages": [], "max_tokens": 1, "user": "u" * (2 * 2**20)}
            return threading.get_ident(), await http.post(CHAT, json=body)

    loop_thread, response = asyncio.run(send())
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages", response.text
    assert threads and loop_thread not in threads


@pytest.mark.parametrize("limit", ["\u00b2", "1" * 5000, "\u0661\u0660"])
def test_a_files_list_limit_that_is_not_a_whole_number_is_a_400(app_and_services: Any, limit: str) -> None:
    app, _ = app_and_services

    async def send() -> Any:
        async with client(app) as http:
            return await http.get("/openai/files", params={"api-version": API_VERSION, "limit": limit})

    response = asyncio.run(send())
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalidPayload"
