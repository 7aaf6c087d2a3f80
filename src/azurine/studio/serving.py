"""The Studio's bundle at `/studio`, as static files under headers that keep the page to its own origin.

The bundle is built from `studio/` at the repository's root by `./scripts/setup.sh` into `dist/` here. Until it is,
`/studio/` answers a short page saying so (503), never an error from a missing directory. The Studio calls only the
public APIs every client calls, so nothing here but files.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

DIST = Path(__file__).resolve().parent / "dist"
PREFIX = "/studio"
# no inline script or style, nothing from another origin, never framed; `x-content-type-options: nosniff` is on
# every answer already (api/middleware.py's AzureHeadersMiddleware)
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
                           "form-action 'self'; frame-ancestors 'none'")
HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
# Vite names every asset by its content's hash: they never change, while index.html must be fetched afresh
IMMUTABLE = b"public, max-age=31536000, immutable"
REVALIDATE = b"no-cache"

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Azurine Studio is not built</title></head>
<body><h1>Azurine Studio is not built</h1>
<p>Build it with <code>./scripts/setup.sh</code> at the repository's root (it needs Node.js 20 and npm), then
reload this page.</p></body></html>
"""


class StudioFiles:
    """The bundle's files, or the page saying it is not built, with the Studio's headers on every answer."""

    def __init__(self, directory: Path = DIST) -> None:
        self.directory = directory
        self.files: StaticFiles | None = None

    def built(self) -> bool:
        return (self.directory / "index.html").is_file()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                path = scope.get("path", "")
                cache = IMMUTABLE if "/assets/" in path and message["status"] == 200 else REVALIDATE
                message = {**message, "headers": [*message.get("headers", []), *HEADERS, (b"cache-control", cache)]}
            await send(message)

        if not self.built():  # checked on each request: a build that ends after the server started is served
            await HTMLResponse(NOT_BUILT, status_code=503)(scope, receive, with_headers)
            return
        if self.files is None:
            self.files = StaticFiles(directory=self.directory, html=True)
        await self.files(scope, receive, with_headers)


async def to_studio(_: Request) -> Response:
    return RedirectResponse(f"{PREFIX}/", status_code=307, headers=dict((k.decode(), v.decode()) for k, v in HEADERS))


def mount_studio(app: FastAPI, directory: Path = DIST) -> None:
    """`/studio/…` serves the bundle; `/studio` itself goes to `/studio/`."""
    app.add_route(PREFIX, to_studio, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount(PREFIX, StudioFiles(directory), name="studio")
