"""Image generation, written once and mounted on both surfaces (`azurine.api.mounting`), and the signed links its
images are fetched by.

`images/generations` is the request pipeline, top to bottom, after the caller's stages (api-version → account →
network → encryption → identity): deployment and body → the whole request checked (DALL-E 3's fields) → quota
(requests per minute) → content filter on the prompt (a blocked one is DALL-E's `content_policy_violation`) → the
engine under its scheduler (an upstream image server's gate, or a compute thread of the pipeline's own) → content
filter on the prompt the image was drawn from (`revised_prompt`) → the image, inline (`b64_json`) or stored sealed
and linked (`url`); metering settles once the engine's call is over.

A link (`GET /accounts/{account}/openai/images/generated/{id}.png?se=…&sig=…`) goes through the account, network and
encryption stages; its signature stands in for identity, as a SAS token does on Azure's blob link.
"""

from __future__ import annotations

import base64
import re
import time
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from azurine import settings_table
from azurine.api.caller import Caller
from azurine.api.context import Target, resolve_account, services
from azurine.api.deployment_stage import target_and_body
from azurine.api.encryption_stage import check_key
from azurine.api.errors import AzureError, bad_request, resource_not_found
from azurine.api.inference.admission import admit
from azurine.api.inference.content_filter import screen_prompts
from azurine.api.inference.protocol_images import (
    ImageGenerationRequest,
    filtered_image,
    image_ask,
    rejected_prompt,
)
from azurine.api.inference.ticket import Ticket
from azurine.api.mounting import mount
from azurine.api.network_stage import check_network
from azurine.api.sse import AzureJSONResponse
from azurine.engines.base import EngineError
from azurine.engines.diffusers_images import bounds_of
from azurine.engines.images import ImageAsk, ImageGenerator, image_units
from azurine.quota.estimate import Estimate, text_tokens
from azurine.safety.guard import ContentGuard, PromptText
from azurine.storage.state import AccountRecord
from azurine.telemetry.metrics import IMAGES_GENERATED
from azurine.telemetry.request_metrics import observation

router = APIRouter()

# what Azure's DALL-E answers carry of the filter's results (the spec's dalleFilterResults, dalleContentFilterResults)
PROMPT_RESULTS = ("hate", "self_harm", "sexual", "violence", "profanity", "jailbreak", "custom_blocklists")
IMAGE_RESULTS = ("hate", "self_harm", "sexual", "violence", "custom_blocklists")
LINK_PATH = "/openai/images/generated/{image_id}.png"
IMAGE_ID = re.compile(r"^img_[0-9a-f]{32}$")


def _kept(annotations: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: annotations[key] for key in keys if key in annotations}


async def image_generations(request: Request, caller: Caller) -> Response:
    target, body = await target_and_body(request, caller, ImageGenerationRequest, "image_generation")
    if not isinstance(target.engine, ImageGenerator):
        raise bad_request(f"The deployment '{target.deployment.name}' does not serve images.", None,
                          "OperationNotSupported")
    # an upstream server bounds its own work; a local pipeline's is the deployment's, never the caller's
    bounds = None if target.deployment.upstream_url else bounds_of(target.model, target.deployment.engine_options)
    ask, response_format = image_ask(body, bounds)
    estimate = Estimate(text_tokens(ask.prompt), image_units(ask.size, ask.quality))
    ticket = await admit(request, caller, target, estimate, "image_generation")
    guard = await ticket.check(screen_prompts(request, caller, target, [PromptText(ask.prompt, ask.prompt,
                                                                                   param="prompt")],
                                              refusal=rejected_prompt))
    return await ticket.serve(serve_image(request, caller, target, ask, response_format, ticket, guard))


async def serve_image(request: Request, caller: Caller, target: Target, ask: ImageAsk, response_format: str,
                      ticket: Ticket, guard: ContentGuard) -> Response:
    engine = cast(ImageGenerator, target.engine)
    try:
        made = await engine.generate(ask, ticket.order())
    except EngineError as error:
        if error.code == "content_policy_violation":  # the upstream server's own filter refused the prompt
            raise rejected_prompt({}) from None
        raise
    check = await guard.check_answer(made.revised_prompt)
    image_results = _kept(check.annotations, IMAGE_RESULTS)
    if made.flagged:  # a Stable Diffusion pipeline's checker tells "not safe for work", and no more
        image_results["sexual"] = {"filtered": True, "severity": "high"}
    if check.filtered or made.flagged:
        raise filtered_image(image_results, made.revised_prompt)
    IMAGES_GENERATED.labels(target.deployment.name, ask.size, ask.quality).inc()
    prompt_results = guard.prompt_filter_results()
    item: dict[str, Any] = {
        "revised_prompt": made.revised_prompt,
        "content_filter_results": image_results,
        "prompt_filter_results": _kept(prompt_results[0]["content_filter_results"], PROMPT_RESULTS)
        if prompt_results else {},
    }
    if response_format == "b64_json":
        item = {"b64_json": base64.b64encode(made.png).decode(), **item}
    else:
        item = {"url": await store_and_link(request, caller.account, made.png), **item}
    return AzureJSONResponse({"created": int(time.time()), "data": [item]})


async def store_and_link(request: Request, account: AccountRecord, png: bytes) -> str:
    """Keep the image sealed until its link expires; the link, at the address the client reached (or the operator's
    `AZURINE_PUBLIC_URL`), naming the account so that it reaches the same account by any host."""
    svc = services(request)
    now = int(time.time())
    expires_at = now + svc.settings.image_link_seconds
    image_id = await run_in_threadpool(svc.images.put, account.id, png, now, expires_at)
    signature = svc.image_links.sign(image_id, account.id, expires_at)
    base = (settings_table.read("AZURINE_PUBLIC_URL", "").strip() or str(request.base_url)).rstrip("/")
    path = LINK_PATH.format(image_id=image_id)
    return f"{base}/accounts/{quote(account.name)}{path}?se={expires_at}&sig={signature}"


def _link_refused(message: str) -> AzureError:
    return AzureError(403, "AuthenticationFailed", message)


async def generated_image(image_id: str, request: Request) -> Response:
    """An image by its signed link: account → network → encryption → the link's signature and expiry."""
    account = await resolve_account(request)
    svc = services(request)
    seen = observation(request.scope)
    if seen is not None:
        seen.api_name, seen.account_id, seen.region = "GeneratedImages_Get", account.id, account.location
    check_network(request, account, svc.network_rules, svc.network)
    await check_key(request, account)
    expires, signature = request.query_params.get("se", ""), request.query_params.get("sig", "")
    if not IMAGE_ID.match(image_id) or not expires.isascii() or not expires.isdigit() or len(expires) > 12 \
            or not svc.image_links.verify(image_id, account.id, int(expires), signature):
        raise _link_refused("Server failed to authenticate the request. Make sure the link is whole, as it was "
                            "given, and for this account.")
    now = time.time()
    if int(expires) <= now:
        shown = datetime.fromtimestamp(int(expires), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        raise _link_refused(f"The link expired at {shown}.")
    png = await run_in_threadpool(svc.images.get, account.id, image_id, now)
    if png is None:
        raise resource_not_found()
    return Response(png, media_type="image/png",
                    headers={"cache-control": f"private, max-age={max(0, int(int(expires) - now))}"})


mount(router, "POST", "{deployment}/images/generations", image_generations, "ImageGenerations_Create")
router.add_api_route(LINK_PATH, generated_image, methods=["GET"], name="generated_image")
