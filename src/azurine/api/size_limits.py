"""The sizes a request may have, enforced before any route reads it (and so before authentication).

A body longer than the limit is refused with 413: at once when its `Content-Length` says so, otherwise as soon as
the bytes received pass the limit, so no more than that is ever buffered. An upload (`POST …/files`) has the file
limit instead, which Azure sets at 200 MB for a batch input file; its route streams the parts as they arrive.
Headers larger than their limit are refused with 431 by the HTTP protocol below, before the application sees them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from azurine.api.errors import AzureError

UPLOAD_PATH = re.compile(r"^(/accounts/[^/]+)?/openai(/v1)?/files/?$")
CONTENT_LENGTH = re.compile(rb"[0-9]{1,18}")  # longer is no length any limit allows


def body_too_large(limit: int) -> AzureError:
    return AzureError(413, "RequestEntityTooLarge",
                      f"The request body is larger than the {limit:,} bytes allowed.")


def headers_too_large(limit: int) -> AzureError:
    return AzureError(431, "RequestHeaderFieldsTooLarge",
                      f"The request line and headers are larger than the {limit:,} bytes allowed.")


class BodyLimitMiddleware:
    """Refuses a body over `max_body_bytes` with Azure's 413; a file upload over `upload_bytes` gets the files
    API's own 413, `upload_too_large(size, at_least)`."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, upload_bytes: int,
                 upload_too_large: Callable[[int, bool], AzureError]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.upload_bytes = upload_bytes
        self.upload_too_large = upload_too_large

    def limit(self, scope: Scope) -> tuple[int, Callable[[int, bool], AzureError]]:
        if scope["method"] == "POST" and UPLOAD_PATH.match(scope["path"]):
            return self.upload_bytes, self.upload_too_large
        return self.max_body_bytes, lambda _size, _at_least: body_too_large(self.max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, too_large = self.limit(scope)
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and not CONTENT_LENGTH.fullmatch(declared):
            await error_response(AzureError(400, "BadRequest", "The Content-Length header is not a number of "
                                            "bytes."), send)
            return
        if declared is not None and int(declared) > limit:
            await error_response(too_large(int(declared), False), send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:  # raised where a route reads the body, and answered by the error handler
                raise too_large(received, True)
            return message

        await self.app(scope, counted, send)


async def error_response(error: AzureError, send: Send) -> None:
    body = json.dumps(error.body()).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class HeadTooLarge(Exception):
    """Raised in a parser callback to stop the parse; uvicorn turns it into its 400, answered here with a 431."""


def head_limited_protocol(max_header_bytes: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing a connection with Azure's 431 once a request's line and headers pass
    `max_header_bytes`: llhttp itself sets no limit, and would buffer a header of any size."""

    class HeadLimitedProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._parsed = 0  # of the head being parsed: its line and headers as the parser hands them over
            self._pending = 0  # received while the head was unfinished, so held by the parser or by us
            self._in_head = True  # until the first request's headers end
            self._too_large = False

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self._in_head or self.transport.is_closing():
                return
            # the parser holds a header back until it ends: a chunk that leaves a head unfinished counts whole
            self._pending += len(data)
            if self._pending > max_header_bytes:
                self._refuse()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head, self._parsed, self._pending = True, 0, 0

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)  # ": " and CRLF
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def _count(self, size: int) -> None:
            self._parsed += size
            if self._parsed > max_header_bytes:
                self._too_large = True
                raise HeadTooLarge

        def send_400_response(self, msg: str) -> None:
            if self._too_large:
                self._refuse()
            else:
                super().send_400_response(msg)

        def _refuse(self) -> None:
            error = headers_too_large(max_header_bytes)
            body = json.dumps(error.body()).encode()
            self.transport.write(b"".join([
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
                b"content-type: application/json\r\n", f"content-length: {len(body)}\r\n".encode(),
                b"connection: close\r\n\r\n", body]))
            self.transport.close()

    return HeadLimitedProtocol
