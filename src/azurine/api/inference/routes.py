"""Inference routes, each written once and mounted on both surfaces (`azurine.api.mounting`). A handler is the
request pipeline, top to bottom, after the caller's stages (api-version → account → network → encryption →
identity): deployment and body → the whole request checked (a chat's images read and counted, `vision_input`) →
quota → images given by URL downloaded, where the settings say so → content filter → serve.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from azurine.api.caller import Caller
from azurine.api.context import services
from azurine.api.deployment_stage import target_and_body
from azurine.api.errors import resource_not_found
from azurine.api.inference.admission import admit_or_spill, chat_cost, completion_cost, embeddings_cost
from azurine.api.inference.content_filter import screen_prompts
from azurine.api.inference.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingsRequest
from azurine.api.inference.serving_chat import check_content_types, serve_chat
from azurine.api.inference.serving_completions import check_combination, serve_completions
from azurine.api.inference.serving_embeddings import check_dimensions, serve_embeddings
from azurine.api.inference.vision_input import read_images
from azurine.api.mounting import mount
from azurine.api.sse import AzureJSONResponse
from azurine.api.surface import DATED
from azurine.catalog import ModelSpec
from azurine.fine_tuning.models import fine_tuned
from azurine.safety.guard import PromptText, chat_prompt_text
from azurine.storage.state import DeploymentRecord

router = APIRouter()


def completion_texts(body: CompletionRequest) -> list[PromptText]:
    """Each prompt as the filters read it (they read text: a prompt of token ids goes unread)."""
    return [PromptText(p.text, p.text, param="prompt") for p in body.prompts()]


async def chat_completions(request: Request, caller: Caller) -> Response:
    target, body = await target_and_body(request, caller, ChatCompletionRequest, "chat")
    check_content_types(body, target)
    images = await read_images(body, services(request).settings.images, bool(target.deployment.upstream_url))
    target, ticket = await admit_or_spill(request, caller, target, chat_cost(body, target.model), "chat")
    await ticket.check(images.download())
    images.apply(body)
    guard = await ticket.check(screen_prompts(request, caller, target, [chat_prompt_text(body.messages)]))
    return await ticket.serve(serve_chat(request, target, body, ticket, guard))


async def completions(request: Request, caller: Caller) -> Response:
    target, body = await target_and_body(request, caller, CompletionRequest, "completion")
    check_combination(body)
    target, ticket = await admit_or_spill(request, caller, target, completion_cost(body), "completion")
    guard = await ticket.check(screen_prompts(request, caller, target, completion_texts(body)))
    return await ticket.serve(serve_completions(request, target, body, ticket, guard))


async def embeddings(request: Request, caller: Caller) -> Response:
    target, body = await target_and_body(request, caller, EmbeddingsRequest, "embeddings")
    check_dimensions(body, target)
    target, ticket = await admit_or_spill(request, caller, target, embeddings_cost(body), "embeddings")
    return await ticket.serve(serve_embeddings(target, body, ticket))


# models and deployments ------------------------------------------------------------------------------------

# the catalog ships with the package: its models exist since the package was built, and are served for ten years
CATALOG_CREATED = 1764115200
CATALOG_DEPRECATION = CATALOG_CREATED + 10 * 365 * 24 * 3600


def azure_model(model: ModelSpec) -> dict[str, Any]:
    """Azure's model object, with OpenAI's `created` and `owned_by` so either client can read it. A base model
    that takes fine-tuning says so; a fine-tuned model names its base (`model`) and its job (`fine_tune`), and is
    served as long as its base is."""
    tunable = bool(model.extra.get("fine_tune"))
    created = int(model.extra.get("created", CATALOG_CREATED))  # type: ignore[call-overload]
    deprecation: dict[str, int] = {"inference": CATALOG_DEPRECATION}
    if tunable:
        deprecation["fine_tune"] = CATALOG_DEPRECATION
    body: dict[str, Any] = {
        "capabilities": {
            "chat_completion": model.can("chat"), "completion": model.can("completion"),
            "embeddings": model.can("embeddings"), "fine_tune": tunable, "inference": True,
            "vision": model.can("vision"),
        },
        "created": created, "created_at": created, "deprecation": deprecation,
        "id": model.response_model, "lifecycle_status": "generally-available", "object": "model",
        "owned_by": model.publisher, "status": "succeeded",
    }
    if fine_tuned(model):
        body.update(model=str(model.extra["base_model"]).lower(), fine_tune=model.extra["fine_tuning_job"],
                    owned_by="organization-owner")
    return body


async def list_models(request: Request, caller: Caller) -> Response:
    models = await run_in_threadpool(services(request).models_of(caller.account.id).all)
    return AzureJSONResponse({"data": [azure_model(m) for m in models], "object": "list"})


async def get_model(model_id: str, request: Request, caller: Caller) -> Response:
    model = await run_in_threadpool(services(request).models_of(caller.account.id).get, model_id)
    if model is None:
        raise resource_not_found()
    return AzureJSONResponse(azure_model(model))


def deployment_object(deployment: DeploymentRecord) -> dict[str, Any]:
    """The deployment as the dated data plane listed it (`/openai/deployments`, api-version ≤ 2023-05-15)."""
    return {
        "created_at": int(deployment.created_at), "id": deployment.name, "model": deployment.model_name,
        "object": "deployment", "owner": "organization-owner",
        "scale_settings": {"scale_type": "standard"}, "status": "succeeded",
        "updated_at": int(deployment.updated_at),
    }


async def list_deployments(request: Request, caller: Caller) -> Response:
    rows = await run_in_threadpool(services(request).store.deployments, caller.account.id)
    return AzureJSONResponse({"data": [deployment_object(d) for d in rows], "object": "list"})


async def get_deployment(deployment_id: str, request: Request, caller: Caller) -> Response:
    row = await run_in_threadpool(services(request).store.deployment, caller.account.id, deployment_id)
    if row is None:
        raise resource_not_found()
    return AzureJSONResponse(deployment_object(row))


mount(router, "POST", "{deployment}/chat/completions", chat_completions, "ChatCompletions_Create")
mount(router, "POST", "{deployment}/completions", completions, "Completions_Create")
mount(router, "POST", "{deployment}/embeddings", embeddings, "Embeddings_Create")
mount(router, "GET", "/models", list_models, "Models_List")
mount(router, "GET", "/models/{model_id}", get_model, "Models_Get")
# the dated data plane listed deployments until api-version 2023-05-15; v1 has no such route
mount(router, "GET", "/deployments", list_deployments, "Deployments_List", [DATED])
mount(router, "GET", "/deployments/{deployment_id}", get_deployment, "Deployments_Get", [DATED])
