"""How an operation, written once as a handler that takes a `Caller`, is routed on each surface."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from azurine.api.caller import Caller, admit_caller
from azurine.api.surface import BOTH, Surface
from azurine.telemetry.request_metrics import observation

Handler = Callable[..., Awaitable[Response]]


def mount(router: APIRouter, method: str, path: str, handler: Handler, api_name: str,
          surfaces: Iterable[Surface] = BOTH) -> None:
    """Route `method path` on each surface to `handler`, whose `caller` parameter gets that surface's `Caller`.
    `{deployment}` in the path stands for the dated surface's `/deployments/{deployment_id}`. `api_name` is the
    operation's id in Azure's spec, which its metrics carry (`ApiName`)."""
    for surface in surfaces:
        router.add_api_route(surface.path(path), _endpoint(handler, surface, api_name), methods=[method],
                             name=f"{surface.name}_{handler.__name__}")


def _endpoint(handler: Handler, surface: Surface, api_name: str) -> Handler:
    async def caller_on_surface(request: Request) -> Caller:
        seen = observation(request.scope)
        if seen is not None:
            seen.api_name = api_name
        return await admit_caller(request, surface)

    async def endpoint(**arguments: Any) -> Response:
        return await handler(**arguments)

    # FastAPI reads the parameters from the signature: the handler's own, its `caller` resolved by this surface
    signature = inspect.signature(handler, eval_str=True)
    endpoint.__signature__ = signature.replace(parameters=[  # type: ignore[attr-defined]
        p.replace(default=Depends(caller_on_surface)) if p.name == "caller" else p
        for p in signature.parameters.values()])
    return endpoint
