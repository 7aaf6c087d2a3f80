"""The deployment stage: the deployment a request addresses, the model it serves and the engine that runs it."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel
from starlette.requests import Request

from azurine.api.caller import Caller
from azurine.api.context import Target, parse_body, require_model_field, services
from azurine.api.errors import bad_request, deployment_not_found, operation_not_supported
from azurine.catalog import ModelSpec
from azurine.fine_tuning.models import AccountModels
from azurine.fleet.placement import placed
from azurine.quota.capacity import BATCH
from azurine.storage.state import DeploymentRecord
from azurine.telemetry.request_metrics import observation

Body = TypeVar("Body", bound=BaseModel)


async def target_and_body(request: Request, caller: Caller, model: type[Body], capability: str) -> tuple[Target, Body]:
    """The deployment and the parsed body. On the dated surface the path names the deployment, which is found
    first; on v1 the body's `model` does, so the body is read first."""
    if caller.surface.deployment_in_path:
        target = await find_deployment(request, caller, str(request.path_params["deployment_id"]), capability)
        body = await parse_body(request, model)
    else:
        body = await parse_body(request, model)
        target = await find_deployment(request, caller, require_model_field(getattr(body, "model", None)),
                                       capability)
    seen = observation(request.scope)
    if seen is not None:
        seen.streamed = bool(getattr(body, "stream", False))
    return target, body


async def cached_deployment(request: Request, account_id: str, name: str) -> DeploymentRecord | None:
    """The account's deployment of that name, kept for the cache's moment; None where there is none."""
    svc = services(request)
    found = await svc.cache.read_through_in_thread(("deployment", account_id, name),
                                                   lambda: svc.store.deployment(account_id, name))
    return found if isinstance(found, DeploymentRecord) else None


async def find_deployment(request: Request, caller: Caller, name: str, capability: str) -> Target:
    svc, account = services(request), caller.account
    deployment = await cached_deployment(request, account.id, name)
    if deployment is None:
        raise deployment_not_found()
    if deployment.sku_name in BATCH and caller.online:
        raise bad_request(f"The deployment '{name}' is a {deployment.sku_name} deployment: it runs batch jobs "
                          "(/openai/batches), not online requests.", None, "OperationNotSupported")
    models = svc.models_of(account.id)
    model = await deployed_model(request, models, deployment)
    if model is None:
        raise deployment_not_found()
    if not model.can(capability):  # type: ignore[arg-type]
        raise operation_not_supported(capability, name)
    seen = observation(request.scope)
    if seen is not None:
        seen.deployment, seen.model, seen.model_version = deployment.name, model.name, model.version
    adapter = models.adapter(model)
    engine = svc.engines.engine_for(model, deployment.upstream_url, deployment.upstream_model,
                                    deployment.upstream_api_key, deployment.model_path, adapter)
    engine = placed(request, account, deployment, model, engine, adapter is not None, svc.settings.models_dir)
    return Target(deployment=deployment, model=model, engine=engine)


async def deployed_model(request: Request, models: AccountModels, deployment: DeploymentRecord) -> ModelSpec | None:
    """The model the deployment serves: a catalog model at once, one of the account's fine-tuned models from the
    database (kept for the cache's moment, as the deployment is)."""
    found = models.catalog.get(deployment.model_name, deployment.model_version)
    if found is not None:
        return found
    svc = services(request)
    key = ("model", models.account_id, deployment.model_name.lower(), deployment.model_version)
    found = await svc.cache.read_through_in_thread(
        key, lambda: models.get(deployment.model_name, deployment.model_version))
    return found if isinstance(found, ModelSpec) else None
