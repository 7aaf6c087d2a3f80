"""Fine-tuning jobs (`/openai/fine_tuning/jobs`, `/openai/v1/fine_tuning/jobs`): create, list, retrieve, cancel,
pause, resume, delete, and a job's events and checkpoints; and the deletion of the fine-tuned model a job made
(`DELETE /openai/models/{model}`), refused, as a job's deletion is, while a deployment serves the model.

Creating a job stores it `validating_files`, checks its files (`fine_tuning/training_file.py`) and then queues it,
or fails it with Azure's `error` naming the bad lines; the fine-tuning worker (`fine_tuning/worker.py`) trains it.
The model is listed, deployed and served through `fine_tuning/models.py`.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from azurine.api.caller import Caller
from azurine.api.context import parse_body, services
from azurine.api.errors import AzureError, bad_request
from azurine.api.mounting import mount
from azurine.api.sse import AzureJSONResponse
from azurine.catalog import ModelSpec
from azurine.fine_tuning.hyperparameters import resolve
from azurine.fine_tuning.models import adapter_key
from azurine.fine_tuning.tokens import token_counter
from azurine.fine_tuning.training_file import read_examples
from azurine.storage.fine_tuning import CheckpointRecord, EventRecord, JobConflict, JobRecord

router = APIRouter()
SUFFIX = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
Auto = Literal["auto"]


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_epochs: int | Auto | None = None
    batch_size: int | Auto | None = None
    learning_rate_multiplier: float | Auto | None = None


class Supervised(BaseModel):
    hyperparameters: Hyperparameters | None = None


class Method(BaseModel):
    type: Literal["supervised"]
    supervised: Supervised | None = None


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    training_file: str = Field(min_length=1)
    validation_file: str | None = None
    hyperparameters: Hyperparameters | None = None
    suffix: str | None = None
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    method: Method | None = None
    metadata: dict[str, str] | None = None


def job_json(job: JobRecord) -> dict[str, Any]:
    hyper = dict(job.hyperparameters)
    return {
        "object": "fine_tuning.job", "id": job.id, "created_at": job.created_at, "error": job.error,
        "estimated_finish": job.estimated_finish, "fine_tuned_model": job.fine_tuned_model,
        "finished_at": job.finished_at, "hyperparameters": hyper, "integrations": None,
        "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}}, "model": job.model,
        "organization_id": None, "result_files": list(job.result_files), "seed": job.seed, "status": job.status,
        "suffix": job.suffix, "trained_tokens": job.trained_tokens, "training_file": job.training_file,
        "validation_file": job.validation_file,
    }


def event_json(event: EventRecord) -> dict[str, Any]:
    return {"object": "fine_tuning.job.event", "id": event.id, "created_at": event.created_at,
            "level": event.level, "message": event.message, "type": event.type, "data": event.data or {}}


def checkpoint_json(job: JobRecord, checkpoint: CheckpointRecord) -> dict[str, Any]:
    name = f"{job.model.lower()}.ft-{job.id.removeprefix('ftjob-')}:ckpt-step-{checkpoint.step}"
    return {"object": "fine_tuning.job.checkpoint", "id": checkpoint.id, "created_at": checkpoint.created_at,
            "fine_tuned_model_checkpoint": name, "fine_tuning_job_id": job.id, "metrics": checkpoint.metrics,
            "step_number": checkpoint.step}


def job_not_found(job_id: str) -> AzureError:
    return AzureError(404, "notFound", f"Fine-tuning job '{job_id}' was not found.")


def model_not_found(model_id: str) -> AzureError:
    return AzureError(404, "notFound", f"The model '{model_id}' was not found.", error_type="invalid_request_error",
                      include_openai_fields=True)


def conflict(job_id: str, operation: str, status: str) -> AzureError:
    return AzureError(409, "conflict", f"Cannot {operation} fine-tuning job '{job_id}' with status '{status}'.",
                      error_type="invalid_request_error", include_openai_fields=True)


def _invalid(message: str, param: str | None) -> AzureError:
    return bad_request(message, param, "invalidPayload")


def _base_model(request: Request, name: str) -> ModelSpec:
    model = services(request).catalog.get(name)
    if model is None or not model.extra.get("fine_tune"):
        tunable = ", ".join(m.name for m in services(request).catalog if m.extra.get("fine_tune"))
        raise _invalid(f"The model '{name}' does not support fine-tuning; models that do: {tunable}.", "model")
    return model


async def _file_content(request: Request, caller: Caller, file_id: str, param: str) -> bytes:
    svc = services(request)
    record = await run_in_threadpool(svc.files.get, caller.account.id, file_id)
    if record is None:
        raise _invalid(f"The file '{file_id}' named in '{param}' was not found.", param)
    if record.purpose != "fine-tune":
        raise _invalid(f"The file '{file_id}' has purpose '{record.purpose}'; a fine-tuning job's files must have "
                       "purpose 'fine-tune'.", param)
    return await run_in_threadpool(svc.files.content, caller.account.id, file_id) or b""


def _hyperparameters(given: JobCreate) -> Hyperparameters:
    if given.method is not None and given.method.supervised is not None \
            and given.method.supervised.hyperparameters is not None:
        if given.hyperparameters is not None:
            raise _invalid("Give 'hyperparameters' or 'method.supervised.hyperparameters', not both.",
                           "hyperparameters")
        return given.method.supervised.hyperparameters
    return given.hyperparameters or Hyperparameters()


def _check_ranges(hyper: Hyperparameters) -> None:
    if isinstance(hyper.n_epochs, int) and not 1 <= hyper.n_epochs <= 50:
        raise _invalid("'n_epochs' must be between 1 and 50, or 'auto'.", "hyperparameters.n_epochs")
    if isinstance(hyper.batch_size, int) and not 1 <= hyper.batch_size <= 32:
        raise _invalid("'batch_size' must be between 1 and 32, or 'auto'.", "hyperparameters.batch_size")
    rate = hyper.learning_rate_multiplier
    if isinstance(rate, float) and not 0 < rate <= 10:
        raise _invalid("'learning_rate_multiplier' must be above 0 and at most 10, or 'auto'.",
                       "hyperparameters.learning_rate_multiplier")


def _examine(content: bytes, validation: bytes | None, model_path: Any,
             context: int) -> tuple[int, dict[str, Any] | None]:
    """The number of training examples, or the error that fails the job."""
    count = token_counter(model_path)
    examples, problem = read_examples(content, count, context)
    if problem is None and validation is not None:
        _, problem = read_examples(validation, count, context, "invalid_validation_file")
    if problem is not None:
        return 0, {"code": problem.code, "message": problem.message,
                   "param": "training_file" if problem.code == "invalid_training_file" else "validation_file"}
    return len(examples), None


async def create_job(request: Request, caller: Caller) -> JobRecord:
    svc = services(request)
    given = await parse_body(request, JobCreate)
    model = _base_model(request, given.model)
    hyper = _hyperparameters(given)
    _check_ranges(hyper)
    if given.suffix is not None and not SUFFIX.match(given.suffix):
        raise _invalid("'suffix' holds 1 to 40 characters of a-z, A-Z, 0-9, '-' and '_'.", "suffix")
    content = await _file_content(request, caller, given.training_file, "training_file")
    validation = None
    if given.validation_file is not None:
        validation = await _file_content(request, caller, given.validation_file, "validation_file")
    seed = given.seed if given.seed is not None else secrets.randbelow(2**31)
    as_given = {"n_epochs": hyper.n_epochs or "auto", "batch_size": hyper.batch_size or "auto",
                "learning_rate_multiplier": hyper.learning_rate_multiplier or "auto"}
    # stored first, so that the job reads `validating_files` while a large file is checked
    job = await run_in_threadpool(svc.fine_tuning.create, caller.account.id, model.name, given.training_file,
                                  given.validation_file, as_given, given.suffix, seed)
    examples, error = await run_in_threadpool(_examine, content, validation, model.path_in(svc.settings.models_dir),
                                              model.context_length)
    resolved = resolve(hyper.n_epochs, hyper.batch_size, hyper.learning_rate_multiplier, examples)
    checked = await run_in_threadpool(svc.fine_tuning.validated, caller.account.id, job.id, resolved, error)
    return checked or job


async def get_job(request: Request, caller: Caller, job_id: str) -> JobRecord:
    job = await run_in_threadpool(services(request).fine_tuning.get, caller.account.id, job_id)
    if job is None:
        raise job_not_found(job_id)
    return job


def _limit(limit: int | None, default: int = 20) -> int:
    if limit is None:
        return default
    if not 1 <= limit <= 100:
        raise bad_request("'limit' must be between 1 and 100.", "limit", "invalid_value")
    return limit


def _page(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}


# the operations ------------------------------------------------------------------------------------------------

async def jobs_create(request: Request, caller: Caller) -> Response:
    return AzureJSONResponse(job_json(await create_job(request, caller)))


async def jobs_list(request: Request, caller: Caller, after: str | None = None, limit: int | None = None) -> Response:
    count = _limit(limit)
    jobs = await run_in_threadpool(services(request).fine_tuning.list, caller.account.id, after, count + 1)
    return AzureJSONResponse(_page([job_json(job) for job in jobs], count))


async def jobs_get(fine_tuning_job_id: str, request: Request, caller: Caller) -> Response:
    return AzureJSONResponse(job_json(await get_job(request, caller, fine_tuning_job_id)))


async def _change(request: Request, caller: Caller, job_id: str, operation: str) -> Response:
    try:
        job = await run_in_threadpool(services(request).fine_tuning.change, caller.account.id, job_id, operation)
    except JobConflict as error:
        raise conflict(job_id, operation, error.status) from None
    if job is None:
        raise job_not_found(job_id)
    return AzureJSONResponse(job_json(job))


async def jobs_cancel(fine_tuning_job_id: str, request: Request, caller: Caller) -> Response:
    return await _change(request, caller, fine_tuning_job_id, "cancel")


async def jobs_pause(fine_tuning_job_id: str, request: Request, caller: Caller) -> Response:
    return await _change(request, caller, fine_tuning_job_id, "pause")


async def jobs_resume(fine_tuning_job_id: str, request: Request, caller: Caller) -> Response:
    return await _change(request, caller, fine_tuning_job_id, "resume")


async def _refuse_if_deployed(request: Request, caller: Caller, model: str, what: str) -> None:
    """A 409 naming the deployments that serve `model`, if any do: the model must outlive them."""
    deployments = await run_in_threadpool(services(request).store.deployments, caller.account.id)
    using = sorted(d.name for d in deployments if d.model_name.lower() == model.lower())
    if using:
        raise AzureError(409, "conflict", f"Cannot delete {what}: the fine-tuned model '{model}' is deployed "
                         f"({', '.join(using)}). Delete its deployments first.",
                         error_type="invalid_request_error", include_openai_fields=True)


async def jobs_delete(fine_tuning_job_id: str, request: Request, caller: Caller) -> Response:
    job = await get_job(request, caller, fine_tuning_job_id)
    if job.fine_tuned_model:  # the model is stored with its job
        await _refuse_if_deployed(request, caller, job.fine_tuned_model, f"fine-tuning job '{job.id}'")
    try:
        deleted = await run_in_threadpool(services(request).fine_tuning.delete, caller.account.id,
                                          fine_tuning_job_id)
    except JobConflict as error:
        raise conflict(fine_tuning_job_id, "delete", error.status) from None
    if not deleted:
        raise job_not_found(fine_tuning_job_id)
    if job.fine_tuned_model:
        await run_in_threadpool(_forget_model, request, caller, job.fine_tuned_model)
    return Response(status_code=204)


def _forget_model(request: Request, caller: Caller, model: str) -> None:
    """Unload a deleted model's engine (waiting for a load under way: off the event loop), and let no cached
    lookup find it."""
    svc = services(request)
    svc.cache.forget()
    svc.engines.forget_adapter(adapter_key(caller.account.id, model))


async def models_delete(model_id: str, request: Request, caller: Caller) -> Response:
    """Delete a fine-tuned model (a catalog model is no one's to delete); the job that made it stays."""
    svc = services(request)
    if svc.catalog.get(model_id) is not None:
        raise bad_request(f"The model '{model_id}' is a base model; only fine-tuned models can be deleted.",
                          "model", "OperationNotSupported")
    model = await run_in_threadpool(svc.models_of(caller.account.id).get, model_id)
    if model is None:
        raise model_not_found(model_id)
    await _refuse_if_deployed(request, caller, model.name, f"model '{model_id}'")
    if not await run_in_threadpool(svc.fine_tuning.delete_model, caller.account.id, model.name):
        raise model_not_found(model_id)
    await run_in_threadpool(_forget_model, request, caller, model.name)
    return AzureJSONResponse({"id": model.response_model, "object": "model", "deleted": True})


async def jobs_events(fine_tuning_job_id: str, request: Request, caller: Caller, after: str | None = None,
                      limit: int | None = None) -> Response:
    job = await get_job(request, caller, fine_tuning_job_id)
    count = _limit(limit)
    events = await run_in_threadpool(services(request).fine_tuning.events, job.id, after, count + 1)
    return AzureJSONResponse(_page([event_json(e) for e in events], count))


async def jobs_checkpoints(fine_tuning_job_id: str, request: Request, caller: Caller, after: str | None = None,
                           limit: int | None = None) -> Response:
    job = await get_job(request, caller, fine_tuning_job_id)
    count = _limit(limit, 10)
    found = await run_in_threadpool(services(request).fine_tuning.checkpoints, job.id, after, count + 1)
    page = _page([checkpoint_json(job, c) for c in found], count)
    page.update(first_id=page["data"][0]["id"] if page["data"] else None,
                last_id=page["data"][-1]["id"] if page["data"] else None)
    return AzureJSONResponse(page)


mount(router, "POST", "/fine_tuning/jobs", jobs_create, "FineTuning_Create")
mount(router, "GET", "/fine_tuning/jobs", jobs_list, "FineTuning_List")
mount(router, "GET", "/fine_tuning/jobs/{fine_tuning_job_id}", jobs_get, "FineTuning_Get")
mount(router, "DELETE", "/fine_tuning/jobs/{fine_tuning_job_id}", jobs_delete, "FineTuning_Delete")
mount(router, "POST", "/fine_tuning/jobs/{fine_tuning_job_id}/cancel", jobs_cancel, "FineTuning_Cancel")
mount(router, "POST", "/fine_tuning/jobs/{fine_tuning_job_id}/pause", jobs_pause, "FineTuning_Pause")
mount(router, "POST", "/fine_tuning/jobs/{fine_tuning_job_id}/resume", jobs_resume, "FineTuning_Resume")
mount(router, "GET", "/fine_tuning/jobs/{fine_tuning_job_id}/events", jobs_events, "FineTuning_GetEvents")
mount(router, "GET", "/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints", jobs_checkpoints,
      "FineTuning_GetCheckpoints")
mount(router, "DELETE", "/models/{model_id}", models_delete, "Models_Delete")
