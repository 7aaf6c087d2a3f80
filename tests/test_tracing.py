"""OpenTelemetry traces, by the GenAI semantic conventions, sent to a real OTLP/HTTP receiver: a span per model call
with its operation, deployment, model and tokens, child spans for the content filter, the wait and the engine, and
no prompt or completion anywhere in them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from conftest import API_KEY, API_VERSION, free_port, start_server, stop

SECRET = "The vault code of the green project is 4410."


class Receiver(BaseHTTPRequestHandler):
    spans: list[Any] = []  # every span received
    raw: list[bytes] = []  # every export as sent

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        export = ExportTraceServiceRequest.FromString(body)
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                Receiver.spans.extend(scope.spans)
        Receiver.raw.append(body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def attributes(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = value.string_value or value.int_value or value.bool_value
    return out


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Any]]:
    port = free_port()
    receiver = ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    server = start_server(Path(tmp_path_factory.mktemp("traced")) / "data", env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_BSP_SCHEDULE_DELAY": "100"})
    try:
        client = openai.AzureOpenAI(azure_endpoint=server.url, api_key=API_KEY, api_version=API_VERSION,
                                    max_retries=0)
        client.chat.completions.create(model="chat-small", max_tokens=2,
                                       messages=[{"role": "user", "content": SECRET}])
        for _ in range(100):
            if any(s.name == "chat chat-small" for s in Receiver.spans):
                break
            time.sleep(0.1)
        yield Receiver.spans
    finally:
        stop(server.process)
        receiver.shutdown()


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


def test_no_span_holds_what_was_said(traced: list[Any]) -> None:
    assert traced and not any(b"vault code" in raw or b"4410" in raw for raw in Receiver.raw)
