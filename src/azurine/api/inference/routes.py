"""Inference routes. Each handler is the request pipeline, top to bottom:
api-version → account → identity → deployment → body → quota → content filter → serve.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from azurine.api.context import (
    authenticate,
    find_deployment,
    parse_body,
    require_model_field,
    resolve_account,
    services,
)
from azurine.api.errors import resource_not_found
from azurine.api.inference.admission import admit, chat_cost, completion_cost, embeddings_cost
from azurine.api.inference.content_filter import PromptText, chat_prompt_text, screen_prompts
from azurine.api.inference.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingsRequest
from azurine.api.inference.serving_chat import serve_chat
from azurine.api.inference.serving_completions import completion_prompts, serve_completions
from azurine.api.inference.serving_embeddings import serve_embeddings
from azurine.api.network_stage import check_network
from azurine.api.sse import AzureJSONResponse
from azurine.api.versions import check_classic, check_v1
from azurine.catalog import ModelSpec
from azurine.storage.state import DeploymentRecord

router = APIRouter()
ApiVersion = Query(None, alias="api-version")


def completion_texts(body: CompletionRequest) -> list[PromptText]:
    """Each prompt as the filters read it (they read text: a prompt of token ids goes unread)."""
    return [PromptText(p.text, p.text, param="prompt") for p in completion_prompts(body)]


# the dated surface: /openai/deployments/{deployment-id}/…?api-version=YYYY-MM-DD ---------------------------

@router.post("/openai/deployments/{deployment_id}/chat/completions")
async def chat_completions(deployment_id: str, request: Request, api_version: str | None = ApiVersion) -> Response:
    api_version = check_classic(api_version)
    account = await resolve_account(request)
    check_network(request, account)
    await authenticate(request, account, bearer_keys=False)
    target = await find_deployment(request, account, deployment_id, "chat")
    body = await parse_body(request, ChatCompletionRequest)
    ticket = await admit(request, account, target, chat_cost(body, target), "chat", api_version)
    guard = await ticket.check(screen_prompts(request, account, target, [chat_prompt_text(body.messages)],
                                              api_version))
    return await ticket.serve(serve_chat(request, target, body, ticket, guard))


@router.post("/openai/deployments/{deployment_id}/completions")
async def completions(deployment_id: str, request: Request, api_version: str | None = ApiVersion) -> Response:
    api_version = check_classic(api_version)
    account = await resolve_account(request)
    check_network(request, account)
    await authenticate(request, account, bearer_keys=False)
    target = await find_deployment(request, account, deployment_id, "completion")
    body = await parse_body(request, CompletionRequest)
    ticket = await admit(request, account, target, completion_cost(body), "completion", api_version)
    guard = await ticket.check(screen_prompts(request, account, target, completion_texts(body), api_version))
    return await ticket.serve(serve_completions(request, target, body, ticket, guard))


@router.post("/openai/deployments/{deployment_id}/embeddings")
async def embeddings(deployment_id: str, request: Request, api_version: str | None = ApiVersion) -> Response:
    api_version = check_classic(api_version)
    account = await resolve_account(request)
    check_network(request, account)
    await authenticate(request, account, bearer_keys=False)
    target = await find_deployment(request, account, deployment_id, "embeddings")
    body = await parse_body(request, EmbeddingsRequest)
    ticket = await admit(request, account, target, embeddings_cost(body), "embeddings", api_version)
    return await ticket.serve(serve_embeddings(target, body, ticket))


# the v1 surface: /openai/v1/…, body `model` names the deployment -------------------------------------------

@router.post("/openai/v1/chat/completions")
async def v1_chat_completions(request: Request, api_version: str | None = ApiVersion) -> Response:
    version = check_v1(api_version)
    account = await resolve_account(request)
    check_network(request, account)
    await authenticate(request, account, bearer_keys=True)
    body = await parse_body(request, ChatCompletionRequest)
    target = await find_deployment(request, account, require_model_field(body.model), "chat")
    ticket = await admit(request, account, target, chat_cost(body, target), "chat", version)
    guard = await ticket.check(screen_prompts(request, account, target, [chat_prompt_text(body.messages)],
                                              version))
    return await ticket.serve(serve_chat(request, target, body, ticket, guard))


@router.post("/openai/v1/completions")
async def v1_completions(request: Request, api_version: str | None = ApiVersion) -> Response:
    version = check_v1(api_version)
    account = await resolve_account(request)
    check_network(request, account)
    await authenticate(request, account, bearer_keys=True)
    body = await parse_body(request, CompletionRequest)
    target = await find_deployment(request, account, require_model_field(body.model), "completion")
    ticket = await admit(request, account, target, completion_cost(body), "completion", version)
    guard = await ticket.check(screen_prompts(request, account, target, completion_texts(body), version))
    return await ticket.serve(serve_completions(request, target, body, ticket, guard))


@router.post("/openai/v1/embeddings")
async def v1_embeddings(request: Request, api_version: str | None = ApiVersion) -> Response:
    version = check_v1(api_version)
    account = await resolve_account(request)
    check_network(request, account)
    await authenticate(request, account, bearer_keys=True)
    body = await parse_body(request, EmbeddingsRequest)
    target = await find_deployment(request, account, require_model_field(body.model), "embeddings")
    ticket = await admit(request, account, target, embeddings_cost(body), "embeddings", version)
    return await ticket.serve(serve_embeddings(target, body, ticket))


# models and deployments ------------------------------------------------------------------------------------

def azure_model(model: ModelSpec, created: int) -> dict[str, Any]:
    """Azure's model object, with OpenAI's `created` and `owned_by` so either client can read it."""
    return {
        "capabilities": {
            "chat_completion": model.can("chat"), "completion": model.can("completion"),
            "embeddings": model.can("embeddings"), "fine_tune": False, "inference": True,
        },
        "created": created, "created_at": created,
        "deprecation": {"inference": created + 10 * 365 * 24 * 3600},
        "id": model.response_model, "lifecycle_status": "generally-available", "object": "model",
        "owned_by": model.publisher, "status": "succeeded",
    }


# the catalog ships with the package: its models exist since the package was built
CATALOG_CREATED = 1764115200


def _model_list(request: Request) -> dict[str, Any]:
    return {"data": [azure_model(m, CATALOG_CREATED) for m in services(request).catalog], "object": "list"}


def _model_by_id(request: Request, model_id: str) -> dict[str, Any]:
    for model in services(request).catalog:
        if model.response_model == model_id.lower():
            return azure_model(model, CATALOG_CREATED)
    raise resource_not_found()


@router.get("/openai/models")
async def list_models(request: Request, api_version: str | None = ApiVersion) -> Response:
    check_classic(api_version)
    account = await resolve_account(request)
    check_network(request, account)
    await authenticate(request, account, bearer_keys=False)
    return AzureJSONResponse(_model_list(request))


@router.get("/openai/models/{model_id}")
async def get_model(model_id: str, request: Request, api_version: str | None = ApiVersion) -> Response:
    check_classic(api_version)
    account = await resolve_account(request)
    check_network(request, account)
    await authenticate(request, account, bearer_keys=False)
    return AzureJSONResponse(_model_by_id(request, model_id))


@router.get("/openai/v1/models")
async def v1_list_models(request: Request, api_version: str | None = ApiVersion) -> Response:
    check_v1(api_version)
    account = await resolve_account(request)
    check_network(request, account)
    await authenticate(request, account, bearer_keys=True)
    return AzureJSONResponse(_model_list(request))


@router.get("/openai/v1/models/{model_id}")
async def v1_get_model(model_id: str, request: Request, api_version: str | None = ApiVersion) -> Response:
    check_v1(api_version)
    account = await resolve_account(request)
    check_network(request, account)
    await authenticate(request, account, bearer_keys=True)
    return AzureJSONResponse(_model_by_id(request, model_id))


def deployment_object(deployment: DeploymentRecord) -> dict[str, Any]:
    """The deployment as the dated data plane listed it (`/openai/deployments`, api-version ≤ 2023-05-15)."""
    return {
        "created_at": int(deployment.created_at), "id": deployment.name, "model": deployment.model_name,
        "object": "deployment", "owner": "organization-owner",
        "scale_settings": {"scale_type": "standard"}, "status": "succeeded",
        "updated_at": int(deployment.updated_at),
    }


@router.get("/openai/deployments")
async def list_deployments(request: Request, api_version: str | None = ApiVersion) -> Response:
    check_classic(api_version)
    account = await resolve_account(request)
    check_network(request, account)
    await authenticate(request, account, bearer_keys=False)
    rows = await run_in_threadpool(services(request).store.deployments, account.id)
    return AzureJSONResponse({"data": [deployment_object(d) for d in rows], "object": "list"})


@router.get("/openai/deployments/{deployment_id}")
async def get_deployment(deployment_id: str, request: Request, api_version: str | None = ApiVersion) -> Response:
    check_classic(api_version)
    account = await resolve_account(request)
    check_network(request, account)
    await authenticate(request, account, bearer_keys=False)
    row = await run_in_threadpool(services(request).store.deployment, account.id, deployment_id)
    if row is None:
        raise resource_not_found()
    return AzureJSONResponse(deployment_object(row))
