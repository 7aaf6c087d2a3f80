"""The first stages of every inference request: account, identity, deployment."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from azurine.api.errors import (
    bad_request,
    resource_not_found,
    validation_error,
)
from azurine.api.identity_stage import VerifiedTokens
from azurine.api.inference.background_runs import BackgroundRuns
from azurine.api.middleware import ACCOUNT_SCOPE_KEY
from azurine.catalog import Catalog, ModelSpec
from azurine.config import Settings
from azurine.engines.base import Engine
from azurine.fine_tuning.models import AccountModels
from azurine.identity.access import AccessControl
from azurine.identity.directory import Directory
from azurine.identity.issuers import OidcIssuers
from azurine.jobs.batch_runner import BATCH_SCOPE_KEY
from azurine.json_depth import text_too_deep
from azurine.network import NetworkSettings, RulesCache
from azurine.quota.limiter import Limiter
from azurine.safety.compiled_blocklists import CompiledBlocklists
from azurine.safety.screen import Detectors
from azurine.scheduler.registry import EngineRegistry
from azurine.storage.batches import BatchStore
from azurine.storage.cache import StateCache
from azurine.storage.files import FileStore
from azurine.storage.fine_tuning import FineTuningStore
from azurine.storage.image_links import LinkSigner
from azurine.storage.images import ImageStore
from azurine.storage.responses import ResponseStore
from azurine.storage.state import AccountRecord, DeploymentRecord, StateStore
from azurine.telemetry.diagnostic_logs import DiagnosticLogs
from azurine.telemetry.metric_recorder import MetricRecorder
from azurine.telemetry.tracing import Tracing
from azurine.usage.ledger import UsageLedger

Body = TypeVar("Body", bound=BaseModel)


@dataclass
class Services:
    settings: Settings
    store: StateStore
    catalog: Catalog
    engines: EngineRegistry
    cache: StateCache
    limiter: Limiter
    ledger: UsageLedger
    safety: Detectors
    files: FileStore
    batches: BatchStore
    access: AccessControl
    issuers: OidcIssuers
    directory: Directory
    responses: ResponseStore
    fine_tuning: FineTuningStore
    metrics: MetricRecorder  # Azure Monitor's metrics, summed per minute and written once a second
    diagnostics: DiagnosticLogs  # resource logs, for the accounts whose diagnostic settings want them
    images: ImageStore  # generated images, sealed, while their links work
    image_links: LinkSigner  # signs and checks those links
    blocklists: CompiledBlocklists = field(default_factory=CompiledBlocklists)
    # trusted proxies and private listeners: `azurine serve` sets its own; otherwise the environment's proxies
    network: NetworkSettings = field(default_factory=NetworkSettings.from_environment)
    network_rules: RulesCache = field(default_factory=RulesCache)  # each account's rules, parsed once per etag
    verified_tokens: VerifiedTokens = field(default_factory=VerifiedTokens)
    background: BackgroundRuns = field(default_factory=BackgroundRuns)  # the background responses run here
    tracing: Tracing | None = None  # OpenTelemetry traces, when an OTLP collector is configured

    def models_of(self, account_id: str) -> AccountModels:
        """The models the account sees and deploys: the catalog's and its own fine-tuned ones."""
        return AccountModels(self.catalog, self.fine_tuning, account_id, self.settings.data_dir / "adapters")


@dataclass(frozen=True)
class Target:
    """A deployment resolved to the model it serves and the engine that runs it."""

    deployment: DeploymentRecord
    model: ModelSpec
    engine: Engine


def services(request: Request) -> Services:
    return request.app.state.services


def _host_label(request: Request) -> str | None:
    host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]")
    if "." not in host:
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        return host.split(".", 1)[0]


def _lookup_account(store: StateStore, explicit: str | None, host_label: str | None) -> AccountRecord | None:
    if explicit is not None:
        return store.account_named(explicit)
    if host_label is not None:
        by_host = store.account_named(host_label)
        if by_host is not None:
            return by_host
    return store.first_account()


async def resolve_account(request: Request) -> AccountRecord:
    """By `/accounts/{name}` prefix, else by the host's first label, else the default account."""
    svc = services(request)
    explicit = request.scope.get("state", {}).get(ACCOUNT_SCOPE_KEY)
    host = _host_label(request)
    account = await svc.cache.read_through_in_thread(("account", explicit, host),
                                                     lambda: _lookup_account(svc.store, explicit, host))
    if account is None:
        raise resource_not_found()
    return account  # type: ignore[return-value]


def batch_line(request: Request) -> str | None:
    """The batch this request is a line of, when a batch worker of this process sent it (nobody else can)."""
    return request.scope.get("state", {}).get(BATCH_SCOPE_KEY) or None


# bodies larger than this are parsed in a thread: validating megabytes of JSON would hold the event loop
PARSE_ON_LOOP_BYTES = 256 * 1024


async def parse_body(request: Request, model: type[Body]) -> Body:
    raw = await request.body()
    limit = services(request).settings.limits.max_json_depth
    if len(raw) > PARSE_ON_LOOP_BYTES:
        return await run_in_threadpool(_parse, raw, model, limit)
    return _parse(raw, model, limit)


def _parse(raw: bytes, model: type[Body], max_depth: int) -> Body:
    if text_too_deep(raw, max_depth):
        raise bad_request(f"The JSON body nests arrays and objects more than {max_depth} levels deep.", None)
    try:
        return model.model_validate_json(raw or b"")
    except ValidationError as error:
        from fastapi.exceptions import RequestValidationError

        errors = error.errors()
        if errors and errors[0].get("type") == "json_invalid":
            raise validation_error(RequestValidationError(errors)) from None
        if not raw.strip().startswith(b"{"):
            raise bad_request("The request body must be a JSON object.", None) from None
        # the body as sent, so an error's `param` is the path the client wrote
        raise validation_error(RequestValidationError(errors, body=_loaded(raw))) from None


def _loaded(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def require_model_field(model: str | None) -> str:
    if not model:
        raise bad_request("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    return model
