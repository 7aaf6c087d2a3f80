"""The ASGI application and the services it runs on."""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from azurine import settings_table
from azurine.api.context import Services
from azurine.api.encryption_stage import key_not_accessible
from azurine.api.errors import (
    AzureError,
    azure_error_handler,
    error_response,
    http_error_handler,
    unexpected_error_handler,
    validation_error_handler,
)
from azurine.api.identity_stage import trusted_issuers
from azurine.api.inference.audio_routes import router as audio_router
from azurine.api.inference.batches import router as batches_router
from azurine.api.inference.files import MAX_UPLOAD_BYTES, MULTIPART_OVERHEAD, too_large
from azurine.api.inference.files import router as files_router
from azurine.api.inference.fine_tuning import router as fine_tuning_router
from azurine.api.inference.images_routes import router as images_router
from azurine.api.inference.render import ClientDisconnected
from azurine.api.inference.responses_routes import router as responses_router
from azurine.api.inference.routes import router as inference_router
from azurine.api.issuer import router as issuer_router
from azurine.api.management.accounts import router as accounts_router
from azurine.api.management.authorization import router as authorization_router
from azurine.api.management.cost_query import router as cost_query_router
from azurine.api.management.deployments import router as deployments_router
from azurine.api.management.diagnostic_settings import router as diagnostic_settings_router
from azurine.api.management.fleet import router as fleet_router
from azurine.api.management.locations import router as locations_router
from azurine.api.management.metadata import router as metadata_router
from azurine.api.management.monitor import router as monitor_router
from azurine.api.management.providers import router as providers_router
from azurine.api.management.rai import router as rai_router
from azurine.api.management.resource_groups import router as resource_groups_router
from azurine.api.management.subscriptions import router as subscriptions_router
from azurine.api.metrics_stage import RequestMetricsMiddleware
from azurine.api.middleware import AccountPrefixMiddleware, AzureHeadersMiddleware
from azurine.api.size_limits import BodyLimitMiddleware
from azurine.catalog import load_catalog
from azurine.config import Settings
from azurine.engines.base import EngineError
from azurine.fine_tuning.worker import FineTuningWorker
from azurine.fleet.placement import FLEET_STATE
from azurine.fleet.service import open_fleet
from azurine.identity.access import AccessControl
from azurine.identity.directory import Directory
from azurine.jobs.batch_runner import LineOutcome, LineRunner
from azurine.jobs.batch_worker import BatchWorker
from azurine.jobs.developer_tier import remove_expired_developer_deployments
from azurine.jobs.image_expiry import remove_expired_images
from azurine.jobs.response_retention import remove_expired_responses
from azurine.quota.limiter import make_limiter
from azurine.safety.screen import Detectors
from azurine.scheduler.registry import EngineRegistry
from azurine.storage.access import AccessStore
from azurine.storage.batches import BatchRecord, BatchStore
from azurine.storage.bootstrap import ensure_defaults
from azurine.storage.cache import StateCache
from azurine.storage.database import make_engine, migrate
from azurine.storage.envelope import EnvelopeSealer
from azurine.storage.files import FileStore
from azurine.storage.fine_tuning import FineTuningStore
from azurine.storage.image_links import LinkSigner
from azurine.storage.images import ImageStore
from azurine.storage.key_providers import KeyUnavailable
from azurine.storage.metrics import MetricStore
from azurine.storage.principals import PrincipalStore
from azurine.storage.responses import ResponseStore
from azurine.storage.state import AccountRecord, StateStore
from azurine.studio.serving import mount_studio
from azurine.telemetry.diagnostic_logs import DiagnosticLogs
from azurine.telemetry.metric_recorder import MetricRecorder
from azurine.telemetry.tracing import Tracing
from azurine.usage.ledger import UsageLedger

log = logging.getLogger("azurine")
management_routers = (accounts_router, deployments_router, locations_router, rai_router, authorization_router,
                      metadata_router, subscriptions_router, resource_groups_router, providers_router, monitor_router,
                      diagnostic_settings_router, cost_query_router, fleet_router)


def build_services(settings: Settings) -> tuple[Services, AccountRecord | None]:
    """Open the database, migrate it, and on first start create the defaults (returned then)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    migrate(engine)
    store = StateStore(engine)
    catalog = load_catalog()
    created = ensure_defaults(store, catalog, settings.region)
    access = AccessStore(engine)
    sealer = EnvelopeSealer.open(engine, settings.data_dir)
    return Services(settings=settings, store=store, catalog=catalog,
                    engines=EngineRegistry(settings.models_dir), cache=StateCache(ttl=1.0),
                    limiter=make_limiter(settings.redis_url), ledger=UsageLedger(store),
                    safety=Detectors(), files=FileStore(engine, sealer),
                    batches=BatchStore(engine, sealer), access=AccessControl(access),
                    issuers=trusted_issuers(), directory=Directory(PrincipalStore(engine), store, access),
                    responses=ResponseStore(engine, sealer), fine_tuning=FineTuningStore(engine, sealer),
                    metrics=MetricRecorder(MetricStore(engine)),
                    diagnostics=DiagnosticLogs(store, settings.data_dir / "diagnostics"),
                    images=ImageStore(engine, sealer), image_links=LinkSigner.open(settings.data_dir),
                    tracing=Tracing.from_environment()), created


async def engine_error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, EngineError)
    return error_response(AzureError(exc.status, exc.code, exc.message, param=exc.param, headers=exc.headers,
                                     error_type=exc.error_type, include_openai_fields=exc.status < 500))


async def key_unavailable_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, KeyUnavailable)
    return error_response(key_not_accessible(exc))


async def disconnected_handler(_: Request, __: Exception) -> Response:
    return Response(status_code=499)


async def metrics(_: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def metrics_app() -> Starlette:
    """`/metrics` alone, for the operator's listener (`azurine serve --metrics-listen`): the metrics name every
    account's deployments, so the API's listeners, which tenants reach, never serve them."""
    return Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])


BATCH_PRICE = 0.5  # Azure bills Global and Data Zone Batch tokens at half the standard price
# lines a worker runs at once: twice what an engine decodes together, so that while some lines are in the
# pipeline's other stages (filters, storing results) the engine's gang stays full
BATCH_LINES_IN_FLIGHT = 16


def batch_worker(app: FastAPI, services: Services, name: str) -> BatchWorker:
    names: dict[str, str] = {}

    def account_name(account_id: str) -> str | None:
        if account_id not in names:
            names.update(services.store.account_names())
        return names.get(account_id)

    def record_usage(batch: BatchRecord, outcome: LineOutcome) -> None:
        services.ledger.record(batch.account_id, batch.deployment, outcome.prompt_tokens, outcome.completion_tokens,
                               0, price=BATCH_PRICE)

    # the run's id starts with the stable name, so a restart can drop what the previous run held
    return BatchWorker(services.batches, services.files, LineRunner(app), account_name,
                       f"{name}:{uuid.uuid4().hex[:8]}", record_usage=record_usage,
                       concurrency=BATCH_LINES_IN_FLIGHT)


def fine_tuning_worker(services: Services, name: str) -> FineTuningWorker:
    threads = int(settings_table.read("AZURINE_FINE_TUNING_THREADS", "1"))
    return FineTuningWorker(services.fine_tuning, services.files, services.catalog, services.settings.models_dir,
                            f"{name}:{uuid.uuid4().hex[:8]}", threads=threads, metric=services.metrics)


def create_app(services: Services, batch_worker_name: str | None = None) -> FastAPI:
    """The API; with `batch_worker_name`, a batch worker of that name runs beside it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        flushing = asyncio.create_task(services.ledger.run())
        recording = asyncio.create_task(services.metrics.run())
        writing_logs = asyncio.create_task(services.diagnostics.run())
        try:  # the default policy's detectors, loaded before the first request rather than during it
            await asyncio.to_thread(services.safety.warm)
        except Exception:
            log.exception("the content filters could not load; answers will say they went unfiltered")
        stop = asyncio.Event()
        sweeping = asyncio.create_task(remove_expired_responses(services.responses, stop))
        sweeping_images = asyncio.create_task(remove_expired_images(services.images, stop))
        probing = asyncio.create_task(fleet.run(stop))
        sweeping_developer = asyncio.create_task(
            remove_expired_developer_deployments(services.store, stop, services.cache.forget))
        working = tuning = None
        if batch_worker_name is not None:
            await asyncio.to_thread(services.batches.forget, f"{batch_worker_name}:")
            working = asyncio.create_task(batch_worker(app, services, batch_worker_name).run(stop))
            await asyncio.to_thread(services.fine_tuning.forget, f"{batch_worker_name}:")
            tuning = asyncio.create_task(fine_tuning_worker(services, batch_worker_name).run(stop))
        yield
        stop.set()
        await services.background.close()
        await sweeping
        await sweeping_images
        await probing
        await sweeping_developer
        if working is not None:
            await working
        if tuning is not None:
            await tuning
        await services.engines.close()
        await fleet.close()
        await services.ledger.close()
        await flushing
        await services.metrics.close()
        await recording
        await services.diagnostics.close()
        await writing_logs
        if services.tracing is not None:
            await asyncio.to_thread(services.tracing.shutdown)  # sends the spans still held
        await services.limiter.close()

    app = FastAPI(title="Azurine", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.services = services
    fleet = open_fleet(services.store.engine, services.settings)
    setattr(app.state, FLEET_STATE, fleet)
    mount_studio(app)  # first, so that no route with a path parameter (the issuer's `/{tenant}/…`) can take it
    app.include_router(inference_router)
    app.include_router(audio_router)
    app.include_router(images_router)
    app.include_router(responses_router)
    app.include_router(files_router)
    app.include_router(batches_router)
    app.include_router(fine_tuning_router)
    app.include_router(issuer_router)
    for router in management_routers:
        app.include_router(router)
    app.add_exception_handler(AzureError, azure_error_handler)
    app.add_exception_handler(EngineError, engine_error_handler)
    app.add_exception_handler(KeyUnavailable, key_unavailable_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(ClientDisconnected, disconnected_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    limits = services.settings.limits
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=limits.max_body_bytes,
                       upload_bytes=MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD, upload_too_large=too_large)
    # inside the account prefix's rewriting: it sees paths without /accounts/{name}
    app.add_middleware(RequestMetricsMiddleware, recorder=services.metrics, diagnostics=services.diagnostics,
                       tracing=services.tracing)
    app.add_middleware(AccountPrefixMiddleware)
    app.add_middleware(AzureHeadersMiddleware, region=services.settings.region_display_name)
    return app


def run_worker_only(app: FastAPI) -> None:
    """Run the application's services and batch worker without a listener, until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with app.router.lifespan_context(app):
            await stop.wait()

    asyncio.run(main())
