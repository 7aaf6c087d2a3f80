"""One batch line through the same pipeline as an online request, inside the process.

A line is sent to the ASGI application itself (no socket, no key): the scope carries the batch it belongs
to, which the pipeline takes as the caller's identity on that account and which only code in this process
can set. So a batch line is validated, filtered, scheduled and answered exactly as the same request sent
online, at the batch deployment's (lowest) priority.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from azurine.storage.batches import BatchRecord, ClaimedLine, LineResult

BATCH_SCOPE_KEY = "azurine.batch"
# the dated API version batch lines are served under; their shapes are the stable ones
LINE_API_VERSION = "2024-10-21"


class _BatchCaller:
    """Marks every request it passes on as a line of a batch of one account."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        batch = dict(scope["headers"]).get(b"x-azurine-batch-id", b"").decode()
        scope = {**scope, "state": {**scope.get("state", {}), BATCH_SCOPE_KEY: batch}}
        await self.app(scope, receive, send)


class LineDeferred(Exception):
    """No place could run the line now (a 503 with `retry-after`: every model server its deployment type allows is
    down): it stays pending and runs again once its lease runs out, as a line whose run failed does."""


@dataclass(frozen=True)
class LineOutcome:
    result: LineResult
    prompt_tokens: int
    completion_tokens: int


class LineRunner:
    def __init__(self, app: ASGIApp) -> None:
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=_BatchCaller(app)),
                                         base_url="http://batch.azurine.internal", timeout=None)

    async def run(self, account_name: str, batch: BatchRecord, line: ClaimedLine) -> LineOutcome:
        if line.body.get("stream"):
            return _error(line, "invalid_request", "Streaming is not available in batch requests: remove 'stream'.")
        path = (f"/accounts/{account_name}/openai/deployments/{batch.deployment}{batch.endpoint}"
                f"?api-version={LINE_API_VERSION}")
        response = await self._client.post(path, json=line.body, headers={"x-azurine-batch-id": batch.id})
        if response.status_code == 503 and "retry-after" in response.headers:
            raise LineDeferred(f"batch {batch.id} line {line.line}: no server can run it now")
        try:
            body: Any = response.json()
        except json.JSONDecodeError:
            body = {"error": {"code": "internal_error", "message": response.text[:1000]}}
        output = {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": line.custom_id,
                  "response": {"status_code": response.status_code,
                               "request_id": response.headers.get("apim-request-id", ""), "body": body},
                  "error": None}
        usage = body.get("usage") if isinstance(body, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        return LineOutcome(LineResult(line.line, line.custom_id, response.status_code == 200, output),
                           int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))

    async def close(self) -> None:
        await self._client.aclose()


def _error(line: ClaimedLine, code: str, message: str) -> LineOutcome:
    output = {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": line.custom_id, "response": None,
              "error": {"code": code, "message": message}}
    return LineOutcome(LineResult(line.line, line.custom_id, False, output), 0, 0)
