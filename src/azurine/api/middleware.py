"""ASGI middleware: Azure's headers on every answer, and accounts addressed by path prefix."""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ACCOUNT_PREFIX = re.compile(r"^/accounts/(?P<name>[A-Za-z0-9][A-Za-z0-9-]{0,63})(?P<rest>/.*)$")
ACCOUNT_SCOPE_KEY = "azurine.account"
REQUEST_ID_SCOPE_KEY = "azurine.request_id"
REGION_SCOPE_KEY = "azurine.region"


class ServedRegion:
    """Where the request ran, for `x-ms-region`: the server's region unless a stage routed it elsewhere (`fleet/`).
    An object in the scope's state, so that a stage below writes what this middleware reads."""

    def __init__(self, shown: str) -> None:
        self.shown = shown


class AccountPrefixMiddleware:
    """`/accounts/{name}/openai/…` is `/openai/…` on account `name`, so an `azure_endpoint` can carry it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            match = ACCOUNT_PREFIX.match(scope["path"])
            if match:
                scope = dict(scope)
                scope["path"] = match["rest"]
                scope["raw_path"] = match["rest"].encode()
                scope.setdefault("state", {})
                scope["state"] = {**scope["state"], ACCOUNT_SCOPE_KEY: match["name"]}
        await self.app(scope, receive, send)


class AzureHeadersMiddleware:
    """`apim-request-id`, `x-request-id` and `x-ms-region` on every answer, errors included."""

    def __init__(self, app: ASGIApp, region: str) -> None:
        self.app = app
        self.region = region

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        client_request_id = next(
            (v for k, v in scope["headers"] if k == b"x-ms-client-request-id"), request_id.encode()
        )
        scope = dict(scope)
        served = ServedRegion(self.region)
        scope["state"] = {**scope.get("state", {}), REQUEST_ID_SCOPE_KEY: request_id, REGION_SCOPE_KEY: served}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"apim-request-id", request_id.encode()),
                    (b"x-request-id", request_id.encode()),
                    (b"x-ms-client-request-id", client_request_id),
                    (b"x-ms-region", served.shown.encode()),
                    (b"x-content-type-options", b"nosniff"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
