"""JSON bodies and server-sent events as Azure writes them: keys in alphabetical order."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response, StreamingResponse

DONE = b"data: [DONE]\n\n"


def dumps(payload: Any) -> bytes:
    """JSON as the wire needs it: NaN and infinities are not JSON, so a body holding one is an error, never sent."""
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


class AzureJSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def event(payload: Any) -> bytes:
    return b"data: " + dumps(payload) + b"\n\n"


def event_stream(events: AsyncIterator[bytes], headers: dict[str, str] | None = None) -> StreamingResponse:
    return StreamingResponse(
        events, media_type="text/event-stream; charset=utf-8",
        headers={"cache-control": "no-cache, must-revalidate", "x-accel-buffering": "no", **(headers or {})},
    )
