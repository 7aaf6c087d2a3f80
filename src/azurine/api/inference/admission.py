"""The quota stage of the pipeline: charge a request's estimate against its deployment's limits.

Standard-family deployments (Standard, GlobalStandard, DataZoneStandard, DeveloperTier) get `capacity`
requests per 10 seconds and `capacity × 1000` tokens per minute. A refusal is Azure's 429 with the
headers the official SDK paces its retries by; an admitted answer carries what remains.

Provisioned deployments have no such counters: each is a leaky bucket of weighted tokens (PTUs × what
the catalog says one PTU processes), refused while above 100% and corrected by the actual cost once the
request is over. Their answers carry `azure-openai-deployment-utilization` instead. One that names a spillover
deployment (`quota/spillover.py`) sends a request it would refuse there instead: the rest of the request is that
deployment's (its limits, content filter, placement and usage), and the answer says so in Azure's headers.
"""

from __future__ import annotations

import logging
import math
import time

from starlette.requests import Request

from azurine.api.caller import Caller
from azurine.api.context import Services, Target, services
from azurine.api.deployment_stage import cached_deployment, find_deployment
from azurine.api.errors import AzureError, bad_request
from azurine.api.inference.metering import settlement, weighted
from azurine.api.inference.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingsRequest
from azurine.api.inference.ticket import Ticket
from azurine.catalog import ModelSpec
from azurine.quota import spillover
from azurine.quota.capacity import BATCH, PROVISIONED, STANDARD
from azurine.quota.estimate import Estimate, chat_estimate, completion_estimate, embeddings_estimate
from azurine.quota.limiter import Admission, LimiterUnavailable, Limits, Throughput, ceil_seconds
from azurine.scheduler.priority import Priority
from azurine.storage.state import AccountRecord
from azurine.telemetry.metrics import RATE_LIMITED
from azurine.telemetry.request_metrics import Observation, observation, record_utilization

log = logging.getLogger("azurine")
UTILIZATION_HEADER = "azure-openai-deployment-utilization"

OPERATIONS = {"chat": "ChatCompletions_Create", "completion": "Completions_Create", "embeddings": "Embeddings_Create",
              "responses": "Responses_Create", "transcription": "Transcriptions_Create",
              "translation": "Translations_Create", "speech": "GenerateSpeechFromText",
              "image_generation": "ImageGenerations_Create"}
CAPABILITIES = {"responses": "chat"}  # an operation's capability, where the two are named apart
# a model whose capacity is requests a minute (Whisper, TTS, DALL-E) has no token limit; this many tokens never runs out
UNLIMITED_TOKENS = 2**31 - 1


def limits_for(target: Target) -> Limits | None:
    deployment = target.deployment
    if deployment.sku_name not in STANDARD:
        return None
    if target.model.rate_limit == "requests":  # as Azure limits Whisper and TTS: capacity is requests a minute
        return Limits(requests=deployment.sku_capacity, tokens=UNLIMITED_TOKENS, request_window_s=60)
    return Limits(requests=deployment.sku_capacity, tokens=deployment.sku_capacity * 1000)


def _headers(admission: Admission, limits: Limits) -> dict[str, str]:
    if limits.tokens == UNLIMITED_TOKENS:
        return {"x-ratelimit-limit-requests": str(limits.requests),
                "x-ratelimit-remaining-requests": str(admission.remaining_requests)}
    return {
        "x-ratelimit-limit-requests": str(limits.requests),
        "x-ratelimit-limit-tokens": str(limits.tokens),
        "x-ratelimit-remaining-requests": str(admission.remaining_requests),
        "x-ratelimit-remaining-tokens": str(admission.remaining_tokens),
    }


def too_many_requests(admission: Admission, limits: Limits, account: AccountRecord, operation: str,
                      api_version: str) -> AzureError:
    wait = ceil_seconds(admission.retry_after_s)
    which = "token" if admission.limited_by == "tokens" else "call"
    message = (
        f"Requests to the {OPERATIONS[operation]} Operation under Azure OpenAI API version {api_version} have "
        f"exceeded {which} rate limit of your current {account.kind} S0 pricing tier. Please retry after {wait} "
        "seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the "
        "default rate limit."
    )
    headers = {
        **_headers(admission, limits),
        "retry-after": str(wait),
        "retry-after-ms": str(max(1, int(admission.retry_after_s * 1000))),
        f"x-ratelimit-reset-{admission.limited_by or 'requests'}": str(wait),
        "policy-id": "DeploymentRatelimit-Token" if which == "token" else "DeploymentRatelimit-Request",
    }
    return AzureError(429, "429", message, headers=headers)


async def admit(request: Request, caller: Caller, target: Target, estimate: Estimate, operation: str) -> Ticket:
    """Charge the estimate or refuse with 429; the ticket the rest of the request settles its usage on."""
    svc, account, api_version = services(request), caller.account, caller.version
    deployment = target.deployment
    throughput = throughput_for(target)
    try:
        if throughput is not None:
            headers = await _admit_provisioned(svc, account, target, throughput, estimate, operation, api_version,
                                               observation(request.scope))
        else:
            headers = await _admit_standard(svc, account, target, estimate, operation, api_version)
    except LimiterUnavailable as error:
        # fail closed: without the shared counters no replica can know what the others admitted
        raise AzureError(503, "ServiceUnavailable", "The rate limiter's shared store cannot be reached, so "
                         "requests are refused until it is back. Please retry shortly.",
                         headers={"retry-after": "1"}) from error
    seen = observation(request.scope)
    if seen is not None:
        seen.admitted = time.monotonic()
    return Ticket(account_id=account.id, deployment=deployment.name, queue=deployment.id,
                  priority=priority_for(deployment.sku_name), estimate=estimate, headers=headers,
                  settle=settlement(svc, caller, target, throughput, seen), observation=seen)


class AtThroughput(AzureError):
    """A provisioned deployment's 429: its utilization is above 100%."""


async def admit_or_spill(request: Request, caller: Caller, target: Target, estimate: Estimate,
                         operation: str) -> tuple[Target, Ticket]:
    """`admit`, where a provisioned deployment at its throughput hands the request to its spillover deployment: the
    target the rest of the request runs on, and its ticket."""
    try:
        return target, await admit(request, caller, target, estimate, operation)
    except AtThroughput:
        spill_to = await _spillover_target(request, caller, target, operation)
        if spill_to is None:
            raise
    told = {spillover.FROM_HEADER: target.deployment.name, spillover.DEPLOYMENT_HEADER: spill_to.deployment.name,
            spillover.ERROR_HEADER: "429"}
    seen = observation(request.scope)
    if seen is not None:
        seen.spillover = True  # counted on the spillover deployment, as Azure counts it (IsSpillover)
    try:
        ticket = await admit(request, caller, spill_to, estimate, operation)
    except AzureError as error:  # the spillover deployment's own refusal, still saying where it came from
        error.headers = {**error.headers, **told}
        raise
    ticket.headers.update(told)
    return spill_to, ticket


async def _spillover_target(request: Request, caller: Caller, target: Target, operation: str) -> Target | None:
    """The deployment a refused provisioned request spills to: the deployment's `spilloverDeploymentName`, else the
    request's `x-ms-spillover-deployment` header (Azure's order). A header naming a deployment that cannot take it
    is the caller's mistake, a 400; a property whose deployment has changed since ARM checked it spills nowhere."""
    deployment = target.deployment
    named = deployment.properties.get(spillover.PROPERTY)
    by_header = named is None
    if by_header:
        named = request.headers.get(spillover.REQUEST_HEADER)
    if named is None:
        return None
    wrong = spillover.check_name(named)
    if wrong is None:
        found = await cached_deployment(request, caller.account.id, named)
        wrong = spillover.problem(spillover.Source.of(deployment), named, found)
    if wrong is not None:
        if by_header:
            raise bad_request(f"The {spillover.REQUEST_HEADER} header: {wrong}", None, "InvalidSpilloverDeployment")
        log.warning("deployment %s: no spillover: %s", deployment.name, wrong)
        return None
    return await find_deployment(request, caller, named, CAPABILITIES.get(operation, operation))


def priority_for(sku: str) -> Priority:
    if sku in PROVISIONED:
        return Priority.PROVISIONED
    if sku in BATCH:
        return Priority.BATCH
    return Priority.STANDARD


async def _admit_standard(svc: Services, account: AccountRecord, target: Target, estimate: Estimate,
                          operation: str, api_version: str) -> dict[str, str]:
    limits = limits_for(target)
    if limits is None:
        return {}
    admission = await svc.limiter.admit(target.deployment.id, limits, estimate.total)
    if not admission.admitted:
        RATE_LIMITED.labels(target.deployment.name, admission.limited_by or "requests").inc()
        raise too_many_requests(admission, limits, account, operation, api_version)
    return _headers(admission, limits)


# provisioned: a leaky bucket of weighted tokens instead of request and token counters -----------------

def throughput_for(target: Target) -> Throughput | None:
    deployment, model = target.deployment, target.model
    if deployment.sku_name not in PROVISIONED:
        return None
    return Throughput(per_minute=deployment.sku_capacity * max(1, model.ptu_input_tpm))


def utilization_header(percent: float) -> dict[str, str]:
    return {UTILIZATION_HEADER: f"{percent:.1f}%"}


async def _admit_provisioned(svc: Services, account: AccountRecord, target: Target, throughput: Throughput,
                             estimate: Estimate, operation: str, api_version: str,
                             seen: Observation | None) -> dict[str, str]:
    cost = weighted(target.model, estimate.prompt, estimate.completion)
    check = await svc.limiter.admit_provisioned(target.deployment.id, throughput, cost)
    record_utilization(svc.metrics, seen, check.utilization)
    if check.admitted:
        return utilization_header(check.utilization)
    RATE_LIMITED.labels(target.deployment.name, "utilization").inc()
    wait_ms = max(1, math.ceil(check.retry_after_s * 1000))
    wait = ceil_seconds(wait_ms / 1000)
    message = (
        f"Requests to the {OPERATIONS[operation]} Operation under Azure OpenAI API version {api_version} have "
        f"exceeded the provisioned throughput of deployment {target.deployment.name} of your current "
        f"{account.kind} S0 pricing tier (utilization {check.utilization:.1f}%). Please retry after {wait} "
        "seconds, or add throughput units to the deployment."
    )
    raise AtThroughput(429, "429", message, headers={
        **utilization_header(check.utilization), "retry-after": str(wait),
        "retry-after-ms": str(wait_ms),
    })


def chat_cost(body: ChatCompletionRequest, model: ModelSpec) -> Estimate:
    return chat_estimate([m.model_dump(exclude_none=True) for m in body.messages],
                         [t.model_dump(exclude_none=True) for t in body.tools] if body.tools else None,
                         body.max_completion_tokens or body.max_tokens, body.n or 1, model.context_length,
                         body.image_tokens())


def completion_cost(body: CompletionRequest) -> Estimate:
    prompts = [list(p.tokens) if p.tokens is not None else p.text for p in body.prompts()]
    return completion_estimate(prompts, body.max_tokens, max(body.n or 1, body.best_of or 1))


def embeddings_cost(body: EmbeddingsRequest) -> Estimate:
    return embeddings_estimate(body.inputs())
