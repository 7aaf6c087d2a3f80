"""The quota stage of the pipeline: charge a request's estimate against its deployment's limits.

Standard-family deployments (Standard, GlobalStandard, DataZoneStandard, DeveloperTier) get `capacity`
requests per 10 seconds and `capacity × 1000` tokens per minute. A refusal is Azure's 429 with the
headers the official SDK paces its retries by; an admitted answer carries what remains.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from azurine.api.context import Target, services
from azurine.api.errors import AzureError
from azurine.api.inference.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingsRequest
from azurine.api.inference.serving_completions import completion_prompts
from azurine.api.inference.serving_embeddings import embedding_inputs
from azurine.quota.capacity import STANDARD
from azurine.quota.estimate import chat_estimate, completion_estimate, embeddings_estimate
from azurine.quota.limiter import Admission, LimiterUnavailable, Limits, ceil_seconds
from azurine.storage.state import AccountRecord
from azurine.telemetry.metrics import RATE_LIMITED

OPERATIONS = {"chat": "ChatCompletions_Create", "completion": "Completions_Create", "embeddings": "Embeddings_Create"}


def limits_for(target: Target) -> Limits | None:
    deployment = target.deployment
    if deployment.sku_name not in STANDARD:
        return None
    return Limits(requests=deployment.sku_capacity, tokens=deployment.sku_capacity * 1000)


def _headers(admission: Admission, limits: Limits) -> dict[str, str]:
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


async def admit(request: Request, account: AccountRecord, target: Target, estimate: int, operation: str,
                api_version: str) -> dict[str, str]:
    """Charge the estimate or refuse with 429; the headers an admitted answer carries."""
    limits = limits_for(target)
    if limits is None:
        return {}
    try:
        admission = await services(request).limiter.admit(target.deployment.id, limits, estimate)
    except LimiterUnavailable as error:
        # fail closed: without the shared counters no replica can know what the others admitted
        raise AzureError(503, "ServiceUnavailable", "The rate limiter's shared store cannot be reached, so "
                         "requests are refused until it is back. Please retry shortly.",
                         headers={"retry-after": "1"}) from error
    if not admission.admitted:
        RATE_LIMITED.labels(target.deployment.name, admission.limited_by or "requests").inc()
        raise too_many_requests(admission, limits, account, operation, api_version)
    return _headers(admission, limits)


def chat_cost(body: ChatCompletionRequest, target: Target) -> int:
    return chat_estimate([m.model_dump(exclude_none=True) for m in body.messages],
                         [t.model_dump(exclude_none=True) for t in body.tools] if body.tools else None,
                         body.max_completion_tokens or body.max_tokens, body.n or 1, target.model.context_length)


def completion_cost(body: CompletionRequest) -> int:
    prompts = [list(p.tokens) if p.tokens is not None else p.text for p in completion_prompts(body)]
    return completion_estimate(prompts, body.max_tokens, max(body.n or 1, body.best_of or 1))


def embeddings_cost(body: EmbeddingsRequest) -> int:
    return embeddings_estimate(embedding_inputs(body))


def with_headers(response: Response, headers: dict[str, str]) -> Response:
    response.headers.update(headers)
    return response
