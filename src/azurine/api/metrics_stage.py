"""Every data-plane request (`/openai/…`) carries an `Observation` that the stages fill in as they learn about it
(account, deployment, model, API); this middleware times its answer at the door and, once the answer has been sent
(or the request is over, whatever ended it), records its metrics and queues its `RequestResponse` resource log."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from azurine.api.middleware import REQUEST_ID_SCOPE_KEY
from azurine.telemetry.diagnostic_logs import DiagnosticLogs, LogRecord
from azurine.telemetry.metric_recorder import MetricRecorder
from azurine.telemetry.request_metrics import OBSERVATION_KEY, Observation, record_answer, request_log
from azurine.telemetry.tracing import Tracing


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp, recorder: MetricRecorder, diagnostics: DiagnosticLogs,
                 tracing: Tracing | None) -> None:
        self.app = app
        self.recorder = recorder
        self.diagnostics = diagnostics
        self.tracing = tracing

    def _ended(self, seen: Observation) -> None:
        record_answer(self.recorder, seen)
        if self.tracing is not None:
            self.tracing.trace(seen)
        if seen.account_id is not None and seen.status is not None:
            self.diagnostics.add(LogRecord(seen.account_id, "RequestResponse", request_log(seen, datetime.now(UTC))))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/openai/"):
            await self.app(scope, receive, send)
            return
        state = scope.get("state", {})
        length = next((v for k, v in scope["headers"] if k == b"content-length"), b"0")
        seen = Observation(started=time.monotonic(), started_ns=time.time_ns(),
                           request_id=state.get(REQUEST_ID_SCOPE_KEY, ""),
                           method=scope["method"],
                           request_bytes=int(length) if length.isdigit() and len(length) <= 18 else 0)
        scope = {**scope, "state": {**scope.get("state", {}), OBSERVATION_KEY: seen}}
        recorded = False

        async def observed(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start":
                seen.status = message["status"]
            elif message["type"] == "http.response.body" and message.get("body"):
                seen.response_bytes += len(message["body"])
                seen.last_byte = time.monotonic()
                seen.first_byte = seen.first_byte or seen.last_byte
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False) and not recorded:
                recorded = True
                self._ended(seen)

        try:
            await self.app(scope, receive, observed)
        finally:
            if not recorded:  # the client went away before the end of its answer: what was sent counts
                recorded = True
                self._ended(seen)
