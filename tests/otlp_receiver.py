"""A real OTLP/HTTP receiver on a free port, for the tests of what Azurine sends to a collector: traces at
`/v1/traces`, logs at `/v1/logs`, each export kept as sent and parsed."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from loopback_http import LoopbackHttp, QuietHandler


class OtlpReceiver:
    def __init__(self) -> None:
        self.spans: list[Any] = []  # every span received
        self.log_records: list[Any] = []  # every log record received
        self.raw: list[bytes] = []  # every export as sent
        self.paths: list[str] = []  # where each was sent
        received = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                received.paths.append(self.path)
                if self.path.endswith("/v1/logs"):
                    for resource in ExportLogsServiceRequest.FromString(body).resource_logs:
                        for scope in resource.scope_logs:
                            received.log_records.extend(scope.log_records)
                else:
                    for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
                        for scope in resource.scope_spans:
                            received.spans.extend(scope.spans)
                received.raw.append(body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

        self._http = LoopbackHttp(Handler)
        self.url = f"http://127.0.0.1:{self._http.port}"

    def close(self) -> None:
        self._http.close()
