"""The ASGI application and the services it runs on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from azurine.api.context import Services
from azurine.api.errors import (
    AzureError,
    azure_error_handler,
    error_response,
    http_error_handler,
    unexpected_error_handler,
    validation_error_handler,
)
from azurine.api.inference.render import ClientDisconnected
from azurine.api.inference.routes import router as inference_router
from azurine.api.management.accounts import router as accounts_router
from azurine.api.management.deployments import router as deployments_router
from azurine.api.management.locations import router as locations_router
from azurine.api.management.rai import router as rai_router
from azurine.api.middleware import AccountPrefixMiddleware, AzureHeadersMiddleware
from azurine.catalog import load_catalog
from azurine.config import Settings
from azurine.engines.base import EngineError
from azurine.engines.registry import EngineRegistry
from azurine.quota.limiter import make_limiter
from azurine.safety.screen import Detectors
from azurine.storage.bootstrap import ensure_defaults
from azurine.storage.cache import ShortLivedCache
from azurine.storage.database import make_engine, migrate
from azurine.storage.state import AccountRecord, StateStore
from azurine.usage.ledger import UsageLedger

log = logging.getLogger("azurine")
management_routers = (accounts_router, deployments_router, locations_router, rai_router)


def build_services(settings: Settings) -> tuple[Services, AccountRecord | None]:
    """Open the database, migrate it, and on first start create the defaults (returned then)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    migrate(engine)
    store = StateStore(engine)
    catalog = load_catalog()
    created = ensure_defaults(store, catalog, settings.region)
    return Services(settings=settings, store=store, catalog=catalog,
                    engines=EngineRegistry(settings.models_dir), cache=ShortLivedCache(ttl=1.0),
                    limiter=make_limiter(settings.redis_url), ledger=UsageLedger(store),
                    safety=Detectors()), created


async def engine_error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, EngineError)
    return error_response(AzureError(exc.status, exc.code, exc.message, param=exc.param, headers=exc.headers,
                                     error_type=exc.error_type, include_openai_fields=exc.status < 500))


async def disconnected_handler(_: Request, __: Exception) -> Response:
    return Response(status_code=499)


async def metrics(_: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_app(services: Services) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        flushing = asyncio.create_task(services.ledger.run())
        try:  # the default policy's detectors, loaded before the first request rather than during it
            await asyncio.to_thread(services.safety.warm)
        except Exception:
            log.exception("the content filters could not load; answers will say they went unfiltered")
        yield
        await services.engines.close()
        await services.ledger.close()
        await flushing
        await services.limiter.close()

    app = FastAPI(title="Azurine", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.services = services
    app.include_router(inference_router)
    for router in management_routers:
        app.include_router(router)
    app.add_route("/metrics", metrics, methods=["GET"])
    app.add_exception_handler(AzureError, azure_error_handler)
    app.add_exception_handler(EngineError, engine_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(ClientDisconnected, disconnected_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    app.add_middleware(AccountPrefixMiddleware)
    app.add_middleware(AzureHeadersMiddleware, region=services.settings.region_display_name)
    return app
