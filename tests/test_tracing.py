"""OpenTelemetry traces, by the GenAI semantic conventions, sent to a real OTLP/HTTP receiver: a span per model call
with its operation, deployment, model and tokens, child spans for the content filter, the wait and the engine, and
no prompt or completion anywhere in them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from conftest import API_KEY, API_VERSION, start_server, stop
from otlp_receiver import OtlpReceiver

SECRET = "The vault code of the green project is 4410."


def attributes(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = value.string_value or value.int_value or value.bool_value
    return out


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    running = OtlpReceiver()
    yield running
    running.close()


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver) -> Iterator[list[Any]]:
    server = start_server(Path(tmp_path_factory.mktemp("traced")) / "data", env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"})
    try:
        client = openai.AzureOpenAI(azure_endpoint=server.url, api_key=API_KEY, api_version=API_VERSION,
                                    max_retries=0)
        client.chat.completions.create(model="chat-small", max_tokens=2,
                                       messages=[{"role": "user", "content": SECRET}])
        for _ in range(100):
            if any(s.name == "chat chat-small" for s in receiver.spans):
                break
            time.sleep(0.1)
        yield receiver.spans
    finally:
        stop(server.process)


def test_a_chat_call_is_a_server_span_by_the_genai_conventions(traced: list[Any]) -> None:
    [root] = [s for s in traced if s.name == "chat chat-small"]
    found = attributes(root)
    assert found["gen_ai.operation.name"] == "chat" and found["gen_ai.request.model"] == "chat-small"
    assert found["gen_ai.provider.name"] == "azure.ai.openai" and found["http.response.status_code"] == 200
    assert found["gen_ai.usage.output_tokens"] == 2 and found["gen_ai.usage.input_tokens"] > 0
    assert root.end_time_unix_nano > root.start_time_unix_nano


def test_its_stages_are_child_spans_within_it(traced: list[Any]) -> None:
    [root] = [s for s in traced if s.name == "chat chat-small"]
    children = {s.name: s for s in traced if s.parent_span_id == root.span_id}
    assert set(children) == {"azurine.content_filter", "azurine.queue", "azurine.engine"}
    for child in children.values():
        assert child.trace_id == root.trace_id
        assert root.start_time_unix_nano <= child.start_time_unix_nano <= child.end_time_unix_nano
        assert child.end_time_unix_nano <= root.end_time_unix_nano


def test_no_span_holds_what_was_said(traced: list[Any], receiver: OtlpReceiver) -> None:
    assert traced and not any(b"vault code" in raw or b"4410" in raw for raw in receiver.raw)
