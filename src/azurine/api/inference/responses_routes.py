"""The Responses API's routes: `/openai/v1/responses…` and the dated `/openai/responses…?api-version=<preview>`.

Each operation is written once and mounted on both surfaces. Create is the inference pipeline, top to bottom, as
chat's routes are, after the caller's stages (api-version → account → network → encryption → identity): body →
deployment (the body's `model`) → the conversation it continues (its images read, `vision_input`) → quota → images
given by URL downloaded → content filter (prompt) → serve. The other operations read the account's stored
responses. A response of another account, or one past its retention, is not found.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from azurine.api.caller import Caller
from azurine.api.context import services
from azurine.api.deployment_stage import target_and_body
from azurine.api.errors import AzureError, bad_request
from azurine.api.inference.admission import admit_or_spill, chat_cost
from azurine.api.inference.content_filter import screen_prompts
from azurine.api.inference.protocol_responses import MAX_ID_CHARS, ResponsesRequest
from azurine.api.inference.responses_render import deleted_object, item_list, response_error, with_status
from azurine.api.inference.responses_turn import INTERRUPTED, fitted, new_turn
from azurine.api.inference.serving_chat import check_content_types
from azurine.api.inference.serving_responses import serve_response
from azurine.api.inference.vision_input import read_images
from azurine.api.mounting import mount
from azurine.api.sse import AzureJSONResponse, event_stream
from azurine.api.surface import DATED_RESPONSES, V1
from azurine.safety.guard import chat_prompt_text
from azurine.storage.responses import ACTIVE, MAX_CHAIN, ChainTooLong, ResponseRecord
from azurine.storage.state import AccountRecord

router = APIRouter()
WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")
MAX_PAGE = 100
DEFAULT_PAGE = 20


def response_not_found(response_id: str) -> AzureError:
    return AzureError(404, "not_found", f"Response with id '{response_id}' not found.",
                      error_type="invalid_request_error", include_openai_fields=True)


def previous_not_found(response_id: str) -> AzureError:
    return AzureError(404, "previous_response_not_found", f"Previous response with id '{response_id}' not found.",
                      param="previous_response_id", error_type="invalid_request_error")


def plausible_id(response_id: str) -> bool:
    # a NUL or an id longer than any stored one names nothing; PostgreSQL would refuse to compare a NUL
    return 0 < len(response_id) <= MAX_ID_CHARS and "\x00" not in response_id


# the pipeline ------------------------------------------------------------------------------------------------

async def create_response(request: Request, caller: Caller) -> Response:
    target, body = await target_and_body(request, caller, ResponsesRequest, "chat")
    earlier = await _previous(request, caller.account, body)
    turn = fitted(new_turn(body, target.model.response_model, earlier), target.model.context_length)
    check_content_types(turn.chat, target)
    images = await read_images(turn.chat, services(request).settings.images, bool(target.deployment.upstream_url))
    target, ticket = await admit_or_spill(request, caller, target, chat_cost(turn.chat, target.model), "responses")
    await ticket.check(images.download())
    images.apply(turn.chat)
    turn = replace(turn, images=images)
    prompt = replace(chat_prompt_text(turn.chat.messages), param="input")
    guard = await ticket.check(screen_prompts(request, caller, target, [prompt]))
    return await ticket.serve(serve_response(request, caller.account, target, turn, ticket, guard))


async def _previous(request: Request, account: AccountRecord, body: ResponsesRequest) -> list[dict[str, Any]]:
    """What the response continued read and said, its chain before it included; nothing when it continues none."""
    if body.previous_response_id is None:
        return []
    record = await _stored(request, account, body.previous_response_id)
    if record is None:
        raise previous_not_found(body.previous_response_id)
    try:
        earlier = await run_in_threadpool(services(request).responses.conversation, account.id, record.id,
                                          time.time(), with_output=True, longest=MAX_CHAIN - 1)
    except ChainTooLong:
        raise bad_request(f"Invalid 'previous_response_id': a conversation may hold at most {MAX_CHAIN} responses, "
                          "and this one would hold more. Start a new one, giving the items to keep as 'input'.",
                          "previous_response_id", "invalid_value") from None
    if earlier is None:  # deleted meanwhile
        raise previous_not_found(body.previous_response_id)
    return earlier


async def _stored(request: Request, account: AccountRecord, response_id: str) -> ResponseRecord | None:
    """The account's response, as it stands now: one whose background runner is gone is failed."""
    if not plausible_id(response_id):
        return None
    store, at = services(request).responses, time.time()
    record = await run_in_threadpool(store.get, account.id, response_id, at)
    if record is None or record.status not in ACTIVE or record.lease_until is None or record.lease_until >= at:
        return record
    failed = with_status(record.body, "failed", error=response_error("server_error", INTERRUPTED))
    await run_in_threadpool(store.update, account.id, failed, only_from=ACTIVE)
    return await run_in_threadpool(store.get, account.id, response_id, at)


async def _found(request: Request, account: AccountRecord, response_id: str) -> ResponseRecord:
    record = await _stored(request, account, response_id)
    if record is None:
        raise response_not_found(response_id)
    return record


def _starting_after(request: Request) -> int:
    given = request.query_params.get("starting_after")
    if given is None:
        return -1
    if not WHOLE_NUMBER.fullmatch(given):
        raise bad_request("Invalid 'starting_after': expected the sequence number of an event, a whole number.",
                          "starting_after", "invalid_value")
    return int(given)


async def get_response(response_id: str, request: Request, caller: Caller) -> Response:
    record = await _found(request, caller.account, response_id)
    if (request.query_params.get("stream") or "").lower() != "true":
        return AzureJSONResponse(record.body)
    # a background response created as a stream is followed again from its log, on the server that runs it
    log = services(request).background.log(response_id)
    if log is None:
        raise bad_request("This response's events cannot be streamed: only a response created with 'background' and "
                          "'stream' can be, on the server that runs it, while it runs and for ten minutes after. "
                          "Retrieve it without 'stream'.", "stream", "invalid_value")
    return event_stream(log.follow(_starting_after(request)))


async def delete_response(response_id: str, request: Request, caller: Caller) -> Response:
    account = caller.account
    deleted = plausible_id(response_id) and await run_in_threadpool(
        services(request).responses.delete, account.id, response_id, time.time())
    if not deleted:
        raise response_not_found(response_id)
    services(request).background.cancel(response_id)
    return AzureJSONResponse(deleted_object(response_id))


async def cancel_response(response_id: str, request: Request, caller: Caller) -> Response:
    account = caller.account
    record = await _found(request, account, response_id)
    if not record.background:
        raise bad_request("Only responses created with background mode can be cancelled.", None, "invalid_value")
    if record.status in ACTIVE:
        cancelled = with_status(record.body, "cancelled")
        if await run_in_threadpool(services(request).responses.update, account.id, cancelled, only_from=ACTIVE):
            services(request).background.cancel(response_id)
            return AzureJSONResponse(cancelled)
        record = await _found(request, account, response_id)  # it ended meanwhile
    if record.status == "cancelled":
        return AzureJSONResponse(record.body)
    raise bad_request(f"Cannot cancel a response that has already ended: its status is '{record.status}'.", None,
                      "invalid_value")


def _page_query(request: Request) -> tuple[int, str, str | None, str | None]:
    params = request.query_params
    raw = params.get("limit")
    limit = DEFAULT_PAGE
    if raw is not None:
        if not WHOLE_NUMBER.fullmatch(raw) or not 1 <= int(raw) <= MAX_PAGE:
            raise bad_request(f"Invalid 'limit': it must be a whole number from 1 to {MAX_PAGE}, not '{raw[:64]}'.",
                              "limit", "invalid_value")
        limit = int(raw)
    order = params.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise bad_request(f"Invalid 'order': it must be 'asc' or 'desc', not '{order[:64]}'.", "order",
                          "invalid_value")
    cursors = [params.get(name) or None for name in ("after", "before")]
    for name, cursor in zip(("after", "before"), cursors, strict=True):
        if cursor is not None and not plausible_id(cursor):
            raise bad_request(f"Invalid '{name}': it must be the id of an item.", name, "invalid_value")
    return limit, order, cursors[0], cursors[1]


async def input_items(response_id: str, request: Request, caller: Caller) -> Response:
    limit, order, after, before = _page_query(request)
    page = plausible_id(response_id) and await run_in_threadpool(
        services(request).responses.page, caller.account.id, response_id, time.time(), limit=limit,
        order=order, after=after, before=before)  # type: ignore[arg-type]
    if not page:
        raise response_not_found(response_id)
    return AzureJSONResponse(item_list(page.items, page.has_more))


# the dated surface is `/openai/responses?api-version=<a preview with the Responses API>`
SURFACES = (DATED_RESPONSES, V1)
mount(router, "POST", "/responses", create_response, "Responses_Create", SURFACES)
mount(router, "GET", "/responses/{response_id}", get_response, "Responses_Get", SURFACES)
mount(router, "DELETE", "/responses/{response_id}", delete_response, "Responses_Delete", SURFACES)
mount(router, "POST", "/responses/{response_id}/cancel", cancel_response, "Responses_Cancel", SURFACES)
mount(router, "GET", "/responses/{response_id}/input_items", input_items, "Responses_ListInputItems", SURFACES)
