"""The Files API through the official openai SDK against a real server: both surfaces, accounts kept apart."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from urllib.parse import urlparse

import openai
import pytest
from openai import AzureOpenAI, OpenAI
from starlette.requests import Request

from azurine.api.errors import AzureError
from azurine.api.inference import files as files_api
from azurine.storage.database import make_engine
from azurine.storage.state import StateStore
from conftest import API_VERSION, Server


def batch_line(custom_id: str, model: str = "chat", url: str = "/chat/completions") -> dict[str, object]:
    return {"custom_id": custom_id, "method": "POST", "url": url,
            "body": {"model": model, "messages": [{"role": "user", "content": f"say {custom_id}"}]}}


def jsonl(*rows: object) -> bytes:
    return ("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n").encode()


GOOD_BATCH = jsonl(batch_line("one"), batch_line("two"), batch_line("three"))


def test_upload_retrieve_download_and_delete_on_the_dated_surface(azure: AzureOpenAI) -> None:
    raw = azure.files.with_raw_response.create(file=("input.jsonl", GOOD_BATCH), purpose="batch")
    assert raw.status_code == 201
    uploaded = raw.parse()
    location = raw.headers["location"]
    assert urlparse(location).path == f"/openai/files/{uploaded.id}" and f"api-version={API_VERSION}" in location
    assert uploaded.id.startswith("file-") and len(uploaded.id) == 37
    assert (uploaded.object, uploaded.bytes, uploaded.filename, uploaded.purpose, uploaded.status) == (
        "file", len(GOOD_BATCH), "input.jsonl", "batch", "processed")
    assert uploaded.status_details is None

    fetched = azure.files.retrieve(uploaded.id)
    assert fetched.model_dump() == uploaded.model_dump()
    content = azure.files.with_raw_response.content(uploaded.id)
    assert content.headers["content-type"] == "application/octet-stream"
    assert azure.files.content(uploaded.id).read() == GOOD_BATCH

    deleted = azure.files.delete(uploaded.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (uploaded.id, True, "file")
    with pytest.raises(openai.NotFoundError) as missing:
        azure.files.retrieve(uploaded.id)
    assert missing.value.code == "notFound" and uploaded.id in missing.value.message
    with pytest.raises(openai.NotFoundError):
        azure.files.content(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        azure.files.delete(uploaded.id)


def test_list_filters_by_purpose_and_pages(azure: AzureOpenAI) -> None:
    made = [azure.files.create(file=(f"train-{i}.jsonl", b'{"messages": []}\n'), purpose="fine-tune")
            for i in range(5)]
    batch = azure.files.create(file=("input.jsonl", GOOD_BATCH), purpose="batch")
    first_page = azure.files.list(purpose="fine-tune", limit=2)
    assert len(first_page.data) == 2 and first_page.has_more is True
    every = [f.id for f in azure.files.list(purpose="fine-tune", limit=2)]  # the SDK follows `after`
    assert len(every) == len(set(every))
    assert [i for i in every if i in {m.id for m in made}] == [m.id for m in reversed(made)]
    assert batch.id not in every
    oldest_first = [f.id for f in azure.files.list(purpose="fine-tune", order="asc")]
    assert [i for i in oldest_first if i in {m.id for m in made}] == [m.id for m in made]
    assert batch.id in [f.id for f in azure.files.list(purpose="batch")]
    assert {"fine-tune", "batch"} <= {f.purpose for f in azure.files.list()}


def test_a_malformed_batch_file_is_refused_line_by_line(azure: AzureOpenAI) -> None:
    bad = jsonl(batch_line("a"), "{oops", batch_line("a"), {"custom_id": "d", "method": "POST", "url": "/x",
                                                            "body": {"model": "chat"}},
                batch_line("e", model="other"))
    with pytest.raises(openai.BadRequestError) as refused:
        azure.files.create(file=("bad.jsonl", bad), purpose="batch")
    error = refused.value
    assert error.code == "jsonlValidationFailed"
    assert isinstance(error.body, dict)
    details = error.body["details"]
    assert [(d["line"], d["code"]) for d in details] == [
        (2, "invalid_json_line"), (3, "duplicate_custom_id"), (4, "url_mismatch"), (5, "model_mismatch")]
    assert [d["target"] for d in details] == ["line 2", "line 3", "line 4", "line 5"]
    for line in (2, 3, 4, 5):
        assert f"Line {line} " in error.message
    with pytest.raises(openai.BadRequestError) as empty:
        azure.files.create(file=("empty.jsonl", b""), purpose="batch")
    assert empty.value.code == "jsonlValidationFailed" and "no requests" in empty.value.message


def test_an_unknown_purpose_and_bad_queries_are_400(azure: AzureOpenAI, server: Server) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        azure.files.create(file=("x.txt", b"x"), purpose="vision-tune")  # type: ignore[arg-type]
    assert refused.value.code == "invalidPayload" and "'vision-tune'" in refused.value.message
    with pytest.raises(openai.BadRequestError) as output:
        azure.files.create(file=("x.txt", b"x"), purpose="batch_output")  # type: ignore[arg-type]
    assert "'batch_output'" in output.value.message
    with server.http() as http:
        headers = {"api-key": server.key}
        params = {"api-version": API_VERSION}
        for query, named in (({"limit": "0"}, "limit"), ({"limit": "ten"}, "limit"),
                             ({"order": "up"}, "order"), ({"purpose": "nope"}, "purpose")):
            answer = http.get("/openai/files", params={**params, **query}, headers=headers)
            assert answer.status_code == 400 and answer.json()["error"]["target"] == named
        missing_file = http.post("/openai/files", params=params, headers=headers, data={"purpose": "batch"})
        assert missing_file.status_code == 400 and "'file'" in missing_file.json()["error"]["message"]
        not_form = http.post("/openai/files", params=params, headers=headers, content=b"{}")
        assert not_form.status_code == 400
        broken = http.post("/openai/files", params=params, content=b"--x\r\nnonsense",
                           headers={**headers, "content-type": "multipart/form-data; boundary=x"})
        assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalidPayload"
        assert http.get("/openai/files", headers=headers).status_code == 404  # no api-version
        assert http.get("/openai/files", params=params).status_code == 401
        unknown = http.get("/openai/files/file-" + "0" * 32, params=params, headers=headers)
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "notFound"
        assert http.get("/openai/files/file-%00", params=params, headers=headers).status_code == 404
        assert http.get("/openai/files/" + "x" * 500, params=params, headers=headers).status_code == 404


def test_an_upload_over_200_mb_is_refused_before_it_is_read(server: Server) -> None:
    host, port = urlparse(server.url).hostname, urlparse(server.url).port
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall(f"POST /openai/files?api-version={API_VERSION} HTTP/1.1\r\nHost: {host}\r\n"
                     f"api-key: {server.key}\r\ncontent-type: multipart/form-data; boundary=x\r\n"
                     f"content-length: {300 * 1024 * 1024}\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    error = json.loads(body)["error"]
    assert error["code"] == "invalidPayload" and "200 MB" in error["message"]


def test_the_v1_surface_with_a_bearer_key(server: Server) -> None:
    client = server.v1()  # OpenAI's client sends the key as `Authorization: Bearer`
    raw = client.files.with_raw_response.create(file=("v1.jsonl", GOOD_BATCH), purpose="batch")
    assert raw.status_code == 200
    uploaded = raw.parse()
    assert client.files.retrieve(uploaded.id).filename == "v1.jsonl"
    assert uploaded.id in [f.id for f in client.files.list(purpose="batch")]
    assert client.files.content(uploaded.id).read() == GOOD_BATCH
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=("bad.jsonl", jsonl(batch_line("a"), "[]")), purpose="batch")
    assert [d["line"] for d in refused.value.body["details"]] == [2]  # type: ignore[index]
    assert client.files.delete(uploaded.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)
    # a file uploaded on one surface is the same file on the other
    dated = server.azure().files.create(file=("dated.jsonl", GOOD_BATCH), purpose="batch")
    assert client.files.retrieve(dated.id).id == dated.id
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=f"{server.url}/openai/v1/", api_key="0" * 32, max_retries=0).files.list()


def test_another_accounts_key_cannot_see_the_file(azure: AzureOpenAI, server: Server) -> None:
    name = f"files-{uuid.uuid4().hex[:8]}"
    other = StateStore(make_engine(f"sqlite:///{server.data_dir / 'azurine.db'}")).create_account(
        name, location="local", subscription_id="00000000-0000-0000-0000-000000000000", resource_group="azurine")
    theirs = AzureOpenAI(azure_endpoint=f"{server.url}/accounts/{name}", api_key=other.key1,
                         api_version=API_VERSION, max_retries=0)
    mine = azure.files.create(file=("mine.jsonl", GOOD_BATCH), purpose="batch")
    with pytest.raises(openai.NotFoundError):
        theirs.files.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        theirs.files.content(mine.id)
    with pytest.raises(openai.NotFoundError):
        theirs.files.delete(mine.id)
    assert mine.id not in [f.id for f in theirs.files.list()]
    raw = theirs.files.with_raw_response.create(file=("theirs.jsonl", GOOD_BATCH), purpose="batch")
    their_file = raw.parse()
    assert urlparse(raw.headers["location"]).path == f"/accounts/{name}/openai/files/{their_file.id}"
    assert [f.id for f in theirs.files.list()] == [their_file.id]
    assert their_file.id not in [f.id for f in azure.files.list()]
    with pytest.raises(openai.AuthenticationError):  # my key is no key of theirs
        AzureOpenAI(azure_endpoint=f"{server.url}/accounts/{name}", api_key=server.key, api_version=API_VERSION,
                    max_retries=0).files.list()
    assert azure.files.retrieve(mine.id).id == mine.id


def test_an_upload_without_a_length_is_cut_off_once_it_outgrows_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    limit = 16 * 1024 * 1024  # the same check as at 200 MB, with less to write
    monkeypatch.setattr(files_api, "MAX_UPLOAD_BYTES", limit)
    chunk = b"x" * (1024 * 1024)
    sent = 0

    async def receive() -> dict[str, object]:
        nonlocal sent
        sent += 1
        if sent == 1:
            return {"type": "http.request", "body": b"--b\r\nContent-Disposition: form-data; name=\"file\"; "
                                                    b"filename=\"big.jsonl\"\r\n\r\n", "more_body": True}
        return {"type": "http.request", "body": chunk, "more_body": sent < 100}

    request = Request({"type": "http", "method": "POST", "path": "/openai/files", "query_string": b"",
                       "headers": [(b"content-type", b"multipart/form-data; boundary=b")]}, receive)
    with pytest.raises(AzureError) as refused:
        asyncio.run(files_api.read_upload(request))
    assert refused.value.status == 413 and "limited to 16 MB" in refused.value.message
    assert sent < 20  # it stopped reading soon after the limit
