"""The Batches API through the official SDK: a batch runs on a GlobalBatch deployment, every line once, with
OpenAI's output and error files; wrong deployments, bad lines and cancellation answer as Azure does (a batch that
has ended cannot be cancelled: OpenAI's 409)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from azurine.storage.database import make_engine
from azurine.storage.state import StateStore
from batch_helpers import (
    BATCH_DEPLOYMENT,
    add_batch_deployment,
    assert_each_once,
    chat_lines,
    outcomes,
    sqlite_url,
    submit,
    wait_for,
)
from conftest import API_VERSION, Server, start_server, stop


@pytest.fixture(scope="module")
def batch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("batches") / "data"
    running = start_server(data)
    try:
        add_batch_deployment(sqlite_url(data))
        add_batch_deployment(sqlite_url(data), "tiny-batch", capacity=1)  # 1,000 enqueued tokens
        yield running
    finally:
        stop(running.process)


def test_a_batch_runs_every_line_once_and_writes_openais_output(batch_server: Server) -> None:
    client = batch_server.azure()
    created = submit(client, chat_lines(6))
    assert created.status == "in_progress" and created.endpoint == "/chat/completions"
    assert created.request_counts.total == 6 and created.completion_window == "24h"
    assert created.expires_at - created.created_at == 24 * 3600

    batch = wait_for(client, created.id)
    assert batch.status == "completed", batch
    assert batch.request_counts.completed == 6 and batch.request_counts.failed == 0
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at
    assert batch.error_file_id is None
    outputs, errors = outcomes(client, batch)
    assert_each_once(outputs, errors, 6)
    for line in outputs:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        response = line["response"]
        assert response["status_code"] == 200 and response["request_id"]
        assert response["body"]["object"] == "chat.completion" and response["body"]["choices"][0]["message"]
        assert "prompt_filter_results" in response["body"]
    output_file = client.files.retrieve(batch.output_file_id)
    assert output_file.purpose == "batch_output"
    assert created.id in [b.id for b in client.batches.list(limit=50)]


def test_a_line_that_fails_goes_to_the_error_file(batch_server: Server) -> None:
    client = batch_server.azure()
    good = json.loads(chat_lines(1).decode())
    bad = {**good, "custom_id": "task-1", "body": {**good["body"], "max_tokens": -5}}
    content = (json.dumps(good) + "\n" + json.dumps(bad) + "\n").encode()
    batch = wait_for(client, submit(client, content).id)
    assert batch.status == "completed"
    assert (batch.request_counts.completed, batch.request_counts.failed) == (1, 1)
    outputs, errors = outcomes(client, batch)
    assert_each_once(outputs, errors, 2)
    assert errors[0]["custom_id"] == "task-1" and errors[0]["response"]["status_code"] == 400
    assert errors[0]["response"]["body"]["error"]["code"]


def test_a_batch_for_a_standard_deployment_fails_naming_the_line(batch_server: Server) -> None:
    client = batch_server.azure()
    batch = submit(client, chat_lines(2, model="chat-small"))
    assert batch.status == "failed" and batch.failed_at
    error = batch.errors.data[0]
    assert error.code == "invalid_deployment_type" and error.line == 1 and "GlobalBatch" in error.message

    missing = submit(client, chat_lines(2, model="no-such-deployment"))
    assert missing.status == "failed" and missing.errors.data[0].code == "model_not_found"


def test_a_batch_over_its_deployments_enqueued_token_quota_fails(batch_server: Server) -> None:
    client = batch_server.azure()
    batch = submit(client, chat_lines(40, model="tiny-batch", max_tokens=64))
    assert batch.status == "failed" and batch.errors.data[0].code == "token_limit_exceeded"


def test_bad_requests_to_create_are_azure_errors(batch_server: Server) -> None:
    client = batch_server.azure()
    uploaded = client.files.create(file=("in.jsonl", chat_lines(1)), purpose="batch")
    with pytest.raises(openai.BadRequestError) as window:
        client.batches.create(input_file_id=uploaded.id, endpoint="/chat/completions",
                              completion_window="48h")  # type: ignore[arg-type]
    assert window.value.body["param"] == "completion_window"
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=uploaded.id, endpoint="/images/generations",  # type: ignore[arg-type]
                              completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-nope", endpoint="/chat/completions", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")


def test_online_requests_to_a_batch_deployment_are_refused(batch_server: Server) -> None:
    response = httpx.post(f"{batch_server.url}/openai/deployments/{BATCH_DEPLOYMENT}/chat/completions"
                          f"?api-version={API_VERSION}", headers={"api-key": batch_server.key},
                          json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}, timeout=60)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "OperationNotSupported"


def test_cancelling_stops_the_batch_and_accounts_for_every_line(batch_server: Server) -> None:
    client = batch_server.azure()
    created = submit(client, chat_lines(30, max_tokens=24))
    wait_for(client, created.id, at_least=1)
    cancelling = client.batches.cancel(created.id)
    assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at
    batch = wait_for(client, created.id)
    assert batch.status == "cancelled" and batch.cancelled_at
    outputs, errors = outcomes(client, batch)
    assert_each_once(outputs, errors, 30)
    assert outputs and any(e["error"] and e["error"]["code"] == "batch_cancelled" for e in errors)
    assert batch.request_counts.completed == len(outputs)
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(created.id)


def test_cancelling_a_completed_or_failed_batch_is_openais_409(batch_server: Server) -> None:
    client = batch_server.azure()
    completed = wait_for(client, submit(client, chat_lines(1, prefix="done")).id)
    failed = submit(client, chat_lines(1, model="chat-small"))
    for batch, status in ((completed, "completed"), (failed, "failed")):
        assert batch.status == status
        for surface in (client, batch_server.v1()):
            with pytest.raises(openai.ConflictError) as refused:
                surface.batches.cancel(batch.id)
            assert refused.value.body == {"code": "conflict", "message": f"Cannot cancel a batch with status "
                                          f"'{status}'.", "param": None, "type": "invalid_request_error"}
        after = client.batches.retrieve(batch.id)
        assert after.status == status and after.cancelling_at is None


def test_batch_tokens_are_billed_at_half_price(batch_server: Server) -> None:
    client = batch_server.azure()
    batch = wait_for(client, submit(client, chat_lines(3, prefix="billed")).id)
    assert batch.status == "completed"
    outputs, _ = outcomes(client, batch)
    used = sum(line["response"]["body"]["usage"]["total_tokens"] for line in outputs)
    store = StateStore(make_engine(sqlite_url(batch_server.data_dir)))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = [r for r in store.usage(None, 0) if r.deployment == BATCH_DEPLOYMENT]
        if sum(r.prompt_tokens + r.completion_tokens for r in rows) >= used:
            break
        time.sleep(0.3)
    total = sum(r.prompt_tokens + r.completion_tokens for r in rows)
    billed = sum(r.billed_tokens for r in rows)
    # each request's half is rounded half up: at most half a token over per request
    assert total >= used and 0 <= billed - total / 2 <= sum(r.requests for r in rows) / 2


def test_the_v1_surface_runs_batches_too(batch_server: Server) -> None:
    client = batch_server.v1()
    created = submit(client, chat_lines(2, prefix="v1"), endpoint="/v1/chat/completions")
    batch = wait_for(client, created.id)
    assert batch.status == "completed"
    outputs, errors = outcomes(client, batch)
    assert_each_once(outputs, errors, 2, prefix="v1")
