"""What one request may make the server hold is bounded before anyone is authenticated: headers past
`AZURINE_MAX_HEADER_BYTES` get a 431, bodies past `AZURINE_MAX_BODY_BYTES` a 413 (uploads have Azure's file limit
instead), JSON nested past `AZURINE_MAX_JSON_DEPTH` a 400, each in Azure's error envelope. Custom blocklists are
compiled when they change, once per version, never per request, and an account's regexes are capped in total
(`AZURINE_MAX_BLOCKLIST_REGEX_CHARS`) so that compile stays short."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from asgi_app import CHAT, client, in_process_app
from azurine.config import RequestLimits
from conftest import API_KEY, API_VERSION, Server, start_server, stop
from test_management_sdk import AzurineCredential

HEADER_LIMIT = 16 * 1024
FILES = f"/openai/files?api-version={API_VERSION}"
ARM_API = "2025-09-01"


def run(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def send() -> httpx.Response:
        async with client(app) as http:
            return await http.request(method, path, **kwargs)

    return asyncio.run(send())


@pytest.fixture(scope="module")
def small_app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    app, _ = in_process_app(tmp_path_factory.mktemp("limits") / "data", {"AZURINE_MAX_BODY_BYTES": "4KiB"})
    return app


# bodies -------------------------------------------------------------------------------------------------------

def test_a_body_declared_over_the_limit_is_a_413_before_authentication(small_app: Any) -> None:
    response = run(small_app, "POST", CHAT, content=b"x" * 5000, headers={"api-key": "wrong"})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "RequestEntityTooLarge"


def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(small_app: Any) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(1000):
            sent += 1024
            yield b"a" * 1024
        yield b'"}]}'

    response = run(small_app, "POST", CHAT, content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "RequestEntityTooLarge"


def test_a_body_under_the_limit_is_read_as_before(small_app: Any) -> None:
    response = run(small_app, "POST", CHAT, json={"messages": [], "max_tokens": 1})
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages", response.text


def test_uploads_have_the_file_limit_not_the_body_limit(small_app: Any) -> None:
    content = b"a line of text\n" * 1000  # 15 KB: over the 4 KiB body limit, far under Azure's 200 MB for files
    response = run(small_app, "POST", FILES, data={"purpose": "assistants"}, files={"file": ("notes.txt", content)})
    assert response.status_code == 201, response.text
    assert response.json()["bytes"] == len(content)


def test_an_upload_declared_over_the_file_limit_is_a_413_before_authentication(small_app: Any) -> None:
    response = run(small_app, "POST", FILES, headers={"api-key": "wrong", "content-length": str(300 * 2**20),
                                                      "content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "invalidPayload"  # the files API's own answer, as after sign-in


@pytest.mark.parametrize("path", [CHAT, FILES])
def test_a_content_length_that_is_not_a_number_is_a_400_not_a_500(small_app: Any, path: str) -> None:
    response = run(small_app, "POST", path, headers={"content-length": "\u00b2".encode("latin-1"),
                                                     "content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "BadRequest"


# JSON depth ---------------------------------------------------------------------------------------------------

def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("depth", [65, 100_000])
def test_a_body_nested_deeper_than_allowed_is_a_400_that_says_so(tmp_path: Path, depth: int) -> None:
    app, _ = in_process_app(tmp_path / "data")
    body = '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "metadata": ' + nested(depth) + "}"
    response = run(app, "POST", CHAT, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "BadRequest" and "64 levels deep" in error["message"], error


def test_the_limits_are_settings_and_bad_values_stop_the_server() -> None:
    import os
    from unittest import mock

    with mock.patch.dict(os.environ, {"AZURINE_MAX_BODY_BYTES": "32MiB", "AZURINE_MAX_HEADER_BYTES": "8KiB",
                                      "AZURINE_MAX_JSON_DEPTH": "20", "AZURINE_MAX_BLOCKLIST_REGEX_CHARS": "500"}):
        assert RequestLimits.load() == RequestLimits(max_header_bytes=8 * 2**10, max_body_bytes=32 * 2**20,
                                                     max_json_depth=20, max_blocklist_regex_chars=500)
    for name, value in [("AZURINE_MAX_JSON_DEPTH", "\u00b2"), ("AZURINE_MAX_JSON_DEPTH", "0"),
                        ("AZURINE_MAX_BODY_BYTES", "50%")]:
        with mock.patch.dict(os.environ, {name: value}), pytest.raises(ValueError, match=name):
            RequestLimits.load()


# headers, on a real listener ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("limits-server") / "data",
                           env={"AZURINE_MAX_HEADER_BYTES": str(HEADER_LIMIT),
                                "AZURINE_MAX_BLOCKLIST_REGEX_CHARS": "2500"})
    try:
        yield running
    finally:
        stop(running.process)


def raw_request(server: Server, head: bytes, chunk: int = 64 * 1024) -> bytes:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        try:
            for start in range(0, len(head), chunk):
                sock.sendall(head[start:start + chunk])
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused part way: the answer was sent before the connection closed
        answer = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
    return answer


def test_headers_over_the_limit_are_a_431_before_authentication(server: Server) -> None:
    head = (b"GET /openai/models?api-version=" + API_VERSION.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"X-Padding: " + b"a" * (10 * 2**20) + b"\r\n\r\n")
    answer = raw_request(server, head)
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 431"), answer[:300]
    assert b'"code": "RequestHeaderFieldsTooLarge"' in body


def test_many_small_headers_count_together(server: Server) -> None:
    head = (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(400))
            + b"\r\n")
    assert raw_request(server, head).startswith(b"HTTP/1.1 431")


def test_headers_under_the_limit_are_served(server: Server) -> None:
    response = httpx.get(f"{server.url}/openai/models", params={"api-version": API_VERSION},
                         headers={"api-key": API_KEY, "x-padding": "c" * 8000})
    assert response.status_code == 200, response.text


# blocklists ---------------------------------------------------------------------------------------------------

def arm(server: Server) -> httpx.Client:
    token = AzurineCredential(server.data_dir).get_token("https://management.azure.com/.default").token
    account = httpx.get(f"{server.url}/openai/deployments", params={"api-version": "2022-12-01"},
                        headers={"api-key": API_KEY})
    assert account.status_code == 200
    return httpx.Client(base_url=server.url, params={"api-version": ARM_API}, timeout=60,
                        headers={"Authorization": f"Bearer {token}"})


def default_account_path(server: Server) -> str:
    from azurine.api.management.arm import account_id
    from azurine.storage.database import make_engine
    from azurine.storage.state import StateStore

    engine = make_engine(f"sqlite:///{server.data_dir / 'azurine.db'}")
    record = StateStore(engine).first_account()
    engine.dispose()
    assert record is not None
    return account_id(record.subscription_id, record.resource_group, record.name)


def regex_item(length: int) -> dict[str, Any]:
    return {"properties": {"pattern": "x" * (length - 3) + r"\d+", "isRegex": True}}


def test_an_accounts_regexes_are_capped_in_total_with_an_arm_400(server: Server) -> None:
    path = default_account_path(server)
    with arm(server) as http:
        for name in ("first", "second"):
            assert http.put(f"{path}/raiBlocklists/{name}", json={"properties": {}}).status_code in (200, 201)
        assert http.put(f"{path}/raiBlocklists/first/raiBlocklistItems/a", json=regex_item(1000)).status_code == 201
        bulk = [{"name": "b", **regex_item(1000)}, {"name": "term", "properties": {"pattern": "t" * 1000}}]
        assert http.post(f"{path}/raiBlocklists/second/addRaiBlocklistItems", json=bulk).status_code == 200
        # 2,000 of 2,500 characters are regexes; exact terms do not count, and replacing an item counts it once
        assert http.put(f"{path}/raiBlocklists/first/raiBlocklistItems/a", json=regex_item(900)).status_code == 200
        over = http.put(f"{path}/raiBlocklists/second/raiBlocklistItems/c", json=regex_item(700))
        assert over.status_code == 400, over.text
        assert over.json()["error"]["code"] == "RaiBlocklistItemsLimitExceeded"
        bulk_over = http.post(f"{path}/raiBlocklists/first/addRaiBlocklistItems",
                              json=[{"name": "d", **regex_item(400)}, {"name": "e", **regex_item(400)}])
        assert bulk_over.status_code == 400, bulk_over.text
        assert http.get(f"{path}/raiBlocklists/first/raiBlocklistItems").json()["value"][0]["name"] == "a"
        assert len(http.get(f"{path}/raiBlocklists/first/raiBlocklistItems").json()["value"]) == 1


def test_a_blocklist_is_compiled_when_it_changes_and_never_per_request(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import azurine.safety.compiled_blocklists as compiled

    data = tmp_path / "data"
    app, services = in_process_app(data)
    built: list[int] = []
    original = compiled.BlocklistMatcher

    def counted(*args: Any) -> Any:
        built.append(threading.get_ident())
        return original(*args)

    monkeypatch.setattr(compiled, "BlocklistMatcher", counted)
    account = services.store.first_account()
    assert account is not None
    from azurine.api.management.arm import account_id

    path = account_id(account.subscription_id, account.resource_group, account.name)
    token = AzurineCredential(data).get_token("https://management.azure.com/.default").token
    arm_headers = {"Authorization": f"Bearer {token}"}
    policy = {"properties": {"basePolicyName": "Microsoft.DefaultV2", "mode": "Blocking", "contentFilters": [],
                             "customBlocklists": [{"blocklistName": "food", "blocking": True, "source": "Prompt"}]}}

    async def scenario() -> list[int]:
        async with client(app) as http:
            arm_params = {"api-version": ARM_API}
            await http.put(f"{path}/raiBlocklists/food", json={"properties": {}}, params=arm_params,
                           headers=arm_headers)
            added = await http.post(f"{path}/raiBlocklists/food/addRaiBlocklistItems", params=arm_params,
                                    headers=arm_headers,
                                    json=[{"name": "p", "properties": {"pattern": "pizza"}},
                                          {"name": "r", "properties": {"pattern": r"piz+a\d", "isRegex": True}}])
            assert added.status_code == 200, added.text
            compiled_by_management = len(built)
            assert (await http.put(f"{path}/raiPolicies/no-pizza", json=policy, params=arm_params,
                                   headers=arm_headers)).status_code == 201
            chat = services.store.deployment(account.id, "chat")
            assert chat is not None
            services.store.put_deployment(
                account.id, "chat", model_format=chat.model_format, model_name=chat.model_name,
                model_version=chat.model_version, sku_name=chat.sku_name, sku_capacity=chat.sku_capacity,
                rai_policy_name="no-pizza", version_upgrade_option=chat.version_upgrade_option,
                properties=chat.properties, tags=chat.tags, principal="test")
            statuses = []
            for _ in range(3):
                services.cache.forget()  # as when the moment a request's lookups are kept for has passed
                answers = await asyncio.gather(*(http.post(CHAT, json={
                    "messages": [{"role": "user", "content": f"I want pizza number {i}"}], "max_tokens": 1})
                    for i in range(4)))
                statuses += [a.status_code for a in answers]
                assert all(a.json()["error"]["code"] == "content_filter" for a in answers), answers[0].text
            assert len(built) == compiled_by_management == 1, built
            return statuses

    assert asyncio.run(scenario()) == [400] * 12
