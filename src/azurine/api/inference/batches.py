"""The Batches API (`/openai/batches`, `/openai/v1/batches`): jobs of many requests on a Batch deployment.

Creating a batch reads and checks its input file, and stores the batch with every line in one transaction:
from then on nothing of it can be lost, whatever happens to the process. Workers (`azurine.jobs`) run it.
A batch whose file or deployment is wrong is stored as `failed`, with Azure's per-line `errors`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from azurine import settings_table
from azurine.api.caller import Caller
from azurine.api.context import parse_body, services
from azurine.api.errors import AzureError, bad_request
from azurine.api.inference.admission import chat_cost, completion_cost, embeddings_cost
from azurine.api.inference.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingsRequest
from azurine.api.mounting import mount
from azurine.api.sse import AzureJSONResponse
from azurine.catalog import ModelSpec
from azurine.files.batch_input import BatchLine, validate_batch_lines
from azurine.quota.capacity import BATCH
from azurine.storage.batches import BatchNotCancellable, BatchRecord, InputFileMissing, NewLine
from azurine.storage.state import AccountRecord

router = APIRouter()
ENDPOINTS = {"/chat/completions": "chat", "/completions": "completion", "/embeddings": "embeddings"}
COMPLETION_WINDOW = "24h"
MAX_ERRORS = 100


def window_seconds() -> int:
    """24 hours; `AZURINE_BATCH_WINDOW_SECONDS` shortens it (to see expiry happen in a test or a demo)."""
    return int(settings_table.read("AZURINE_BATCH_WINDOW_SECONDS", str(24 * 3600)))


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="allow")
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None


def batch_json(batch: BatchRecord) -> dict[str, Any]:
    times = batch.times
    return {
        "cancelled_at": times.get("cancelled_at"), "cancelling_at": times.get("cancelling_at"),
        "completed_at": times.get("completed_at"), "completion_window": batch.completion_window,
        "created_at": batch.created_at, "endpoint": batch.endpoint, "error_file_id": batch.error_file_id,
        "errors": batch.errors, "expired_at": times.get("expired_at"), "expires_at": batch.expires_at,
        "failed_at": times.get("failed_at"), "finalizing_at": times.get("finalizing_at"), "id": batch.id,
        "in_progress_at": times.get("in_progress_at"), "input_file_id": batch.input_file_id,
        "metadata": batch.metadata, "object": "batch", "output_file_id": batch.output_file_id,
        "request_counts": {"completed": batch.completed, "failed": batch.failed, "total": batch.total},
        "status": batch.status,
    }


def batch_not_found(batch_id: str) -> AzureError:
    return AzureError(404, "notFound", f"Batch '{batch_id}' was not found.")


def input_file_not_found(file_id: str) -> AzureError:
    return AzureError(404, "notFound", f"File '{file_id}' was not found.")


def not_cancellable(status: str) -> AzureError:
    # OpenAI's status and words; its code is null, where Azure's envelope has a string
    return AzureError(409, "conflict", f"Cannot cancel a batch with status '{status}'.",
                      error_type="invalid_request_error", include_openai_fields=True)


def _errors(errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data": errors[:MAX_ERRORS], "object": "list"}


def _error(code: str, message: str, param: str | None = None, line: int | None = None) -> dict[str, Any]:
    return {"code": code, "line": line, "message": message, "param": param}


def _endpoint(value: str) -> str:
    endpoint = value[3:] if value.startswith("/v1/") else value
    if endpoint not in ENDPOINTS:
        raise bad_request(f"Invalid value '{value}' for 'endpoint': use one of {', '.join(ENDPOINTS)}.",
                          "endpoint", "invalid_value")
    return endpoint


def _estimate(endpoint: str, body: dict[str, Any], model: ModelSpec) -> int:
    """The request's estimated tokens, as the rate limiter would charge it (0 for a body that cannot parse:
    that line fails when it runs, with the same 400 an online request gets)."""
    try:
        if endpoint == "/chat/completions":
            return chat_cost(ChatCompletionRequest.model_validate(body), model).total
        if endpoint == "/completions":
            return completion_cost(CompletionRequest.model_validate(body)).total
        return embeddings_cost(EmbeddingsRequest.model_validate(body)).total
    except (ValidationError, AzureError, ValueError, TypeError):
        return 0


async def create_batch(request: Request, account: AccountRecord) -> BatchRecord:
    """Read the input file, check it against the endpoint and the deployment, and store the batch."""
    svc = services(request)
    given = await parse_body(request, BatchCreate)
    endpoint = _endpoint(given.endpoint)
    if given.completion_window != COMPLETION_WINDOW:
        raise bad_request(f"Invalid value '{given.completion_window}' for 'completion_window': only "
                          f"'{COMPLETION_WINDOW}' is supported.", "completion_window", "invalid_value")
    if given.metadata is not None and len(given.metadata) > 16:
        raise bad_request("'metadata' holds at most 16 pairs.", "metadata", "invalid_value")
    record = await run_in_threadpool(svc.files.get, account.id, given.input_file_id)
    if record is None:
        raise input_file_not_found(given.input_file_id)
    if record.purpose != "batch":
        raise bad_request(f"File '{given.input_file_id}' has purpose '{record.purpose}'; a batch's input file "
                          "must have purpose 'batch'.", "input_file_id", "invalid_value")
    content = await run_in_threadpool(svc.files.content, account.id, given.input_file_id)
    # parsing and checking every line of a file of up to 100,000 takes a while: off the event loop, so other
    # requests go on meanwhile
    lines, line_errors = await run_in_threadpool(validate_batch_lines, content or b"",
                                                 svc.settings.limits.max_json_depth)
    errors = [_error(e.code, e.message, None, e.line) for e in line_errors]
    deployment_name = lines[0].body.get("model") if lines else None
    new_lines: list[NewLine] = []
    if not errors:
        errors, new_lines = await _check_lines(svc, account, endpoint, lines, str(deployment_name))
    try:
        return await run_in_threadpool(
            svc.batches.create, account.id, str(deployment_name or ""), endpoint, given.input_file_id,
            given.completion_window, given.metadata, new_lines, window_seconds(), _errors(errors) if errors else None,
            input_file_required=True)
    except InputFileMissing:
        raise input_file_not_found(given.input_file_id) from None


def _new_lines(endpoint: str, lines: list[BatchLine], model: ModelSpec) -> list[NewLine]:
    """Each line with its estimate: every body validated and counted, so run off the event loop."""
    return [NewLine(line.line, line.custom_id, line.body, _estimate(endpoint, line.body, model)) for line in lines]


async def _check_lines(svc: Any, account: AccountRecord, endpoint: str, lines: list[BatchLine],
                       deployment_name: str) -> tuple[list[dict[str, Any]], list[NewLine]]:
    for line in lines:
        if line.url != endpoint:
            return [_error("invalid_url", f"Line {line.line} has url '{line.url}', but the batch's endpoint is "
                           f"'{endpoint}'.", "url", line.line)], []
    deployment = await run_in_threadpool(svc.store.deployment, account.id, deployment_name)
    model = svc.catalog.get(deployment.model_name, deployment.model_version) if deployment is not None else None
    if deployment is None or model is None:
        return [_error("model_not_found", f"The deployment '{deployment_name}' named in 'model' does not exist.",
                       "model", lines[0].line)], []
    if deployment.sku_name not in BATCH:
        return [_error("invalid_deployment_type", f"The deployment '{deployment_name}' has SKU "
                       f"'{deployment.sku_name}'; batch jobs run only on GlobalBatch or DataZoneBatch deployments.",
                       "model", lines[0].line)], []
    if not model.can(ENDPOINTS[endpoint]):  # type: ignore[arg-type]
        return [_error("invalid_endpoint", f"The model of deployment '{deployment_name}' does not serve "
                       f"{endpoint}.", "endpoint", None)], []
    new_lines = await run_in_threadpool(_new_lines, endpoint, lines, model)
    # Batch quota is in enqueued tokens: the deployment's capacity in thousands, over its unfinished batches
    limit = deployment.sku_capacity * 1000
    enqueued = await run_in_threadpool(svc.batches.enqueued_tokens, account.id, deployment.name)
    wanted = sum(line.estimate for line in new_lines)
    if enqueued + wanted > limit:
        return [_error("token_limit_exceeded", f"Enqueued token limit reached for deployment '{deployment_name}': "
                       f"this batch needs {wanted:,} tokens and {enqueued:,} of {limit:,} are already enqueued. "
                       "Retry after some batches finish, or raise the deployment's capacity.", None, None)], []
    return [], new_lines


async def get_batch(request: Request, account: AccountRecord, batch_id: str) -> BatchRecord:
    batch = await run_in_threadpool(services(request).batches.get, account.id, batch_id)
    if batch is None:
        raise batch_not_found(batch_id)
    return batch


async def cancel_batch(request: Request, account: AccountRecord, batch_id: str) -> BatchRecord:
    """Both surfaces' cancel: 409 for a batch that has ended, the batch as it is for one already ending."""
    try:
        batch = await run_in_threadpool(services(request).batches.cancel, account.id, batch_id)
    except BatchNotCancellable as ended:
        raise not_cancellable(ended.status) from None
    if batch is None:
        raise batch_not_found(batch_id)
    return batch


def batch_list(batches: list[BatchRecord], limit: int) -> dict[str, Any]:
    shown = batches[:limit]
    return {"data": [batch_json(b) for b in shown], "first_id": shown[0].id if shown else None,
            "has_more": len(batches) > limit, "last_id": shown[-1].id if shown else None, "object": "list"}


def _limit(limit: int | None) -> int:
    if limit is None:
        return 20
    if not 1 <= limit <= 100:
        raise bad_request("'limit' must be between 1 and 100.", "limit", "invalid_value")
    return limit


# the operations ------------------------------------------------------------------------------------------------

async def batches_create(request: Request, caller: Caller) -> Response:
    return AzureJSONResponse(batch_json(await create_batch(request, caller.account)))


async def batches_list(request: Request, caller: Caller, after: str | None = None,
                       limit: int | None = None) -> Response:
    count = _limit(limit)
    found = await run_in_threadpool(services(request).batches.list, caller.account.id, after, count + 1)
    return AzureJSONResponse(batch_list(found, count))


async def batches_get(batch_id: str, request: Request, caller: Caller) -> Response:
    return AzureJSONResponse(batch_json(await get_batch(request, caller.account, batch_id)))


async def batches_cancel(batch_id: str, request: Request, caller: Caller) -> Response:
    return AzureJSONResponse(batch_json(await cancel_batch(request, caller.account, batch_id)))


mount(router, "POST", "/batches", batches_create, "Batch_Create")
mount(router, "GET", "/batches", batches_list, "Batch_List")
mount(router, "GET", "/batches/{batch_id}", batches_get, "Batch_Get")
mount(router, "POST", "/batches/{batch_id}/cancel", batches_cancel, "Batch_Cancel")
