"""Responses: a turn served at once, streamed, or run in the background and stored `queued` until it ends; a
background response asked for as a stream sends its events as they come, and they stay to be read again
(`background_runs.EventLog`): a reader who leaves does not stop the run."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from azurine.api.context import Services, Target, services
from azurine.api.errors import AzureError
from azurine.api.inference.background_runs import EventLog
from azurine.api.inference.render import unless_disconnected
from azurine.api.inference.responses_render import Outcome, response_error
from azurine.api.inference.responses_stream import Sequence, stream_response
from azurine.api.inference.responses_turn import (
    INTERRUPTED,
    LEASE_SECONDS,
    RENEW_SECONDS,
    Turn,
    answer,
    failure,
    finished,
    open_answer,
    store_turn,
)
from azurine.api.inference.ticket import Ticket
from azurine.api.sse import AzureJSONResponse, event_stream
from azurine.engines.base import EngineError
from azurine.safety.guard import ContentGuard
from azurine.storage.responses import ACTIVE
from azurine.storage.state import AccountRecord

log = logging.getLogger("azurine")


# serving -------------------------------------------------------------------------------------------------------

async def serve_response(request: Request, account: AccountRecord, target: Target, turn: Turn, ticket: Ticket,
                         guard: ContentGuard) -> Response:
    svc = services(request)
    if turn.body.background:
        return await start_background(svc, account, target, turn, ticket, guard)
    if turn.body.stream:
        opened, events, first = await open_answer(target, turn, ticket)
        return event_stream(stream_response(svc, account, opened, guard, events, first))
    collected = await unless_disconnected(request, answer(target, turn, ticket))
    outcome = finished(turn, collected, await guard.check_answer(collected.text))
    response = turn.response(outcome)
    if turn.body.stored:  # before answering, so that a request continuing it at once finds it
        await run_in_threadpool(store_turn, svc, account.id, turn, response)
    return AzureJSONResponse(response)


# background ----------------------------------------------------------------------------------------------------

async def start_background(svc: Services, account: AccountRecord, target: Target, turn: Turn, ticket: Ticket,
                           guard: ContentGuard) -> Response:
    """Store the response `queued`, answer with it at once (or, streamed, with its first events), and run it on the
    server; the run holds the ticket, so its usage is settled when it ends."""
    queued = turn.response(Outcome("queued"))
    await run_in_threadpool(store_turn, svc, account.id, turn, queued, background=True,
                            lease_until=time.time() + LEASE_SECONDS)
    ticket.hold()
    if not turn.body.stream:
        svc.background.start(turn.response_id, run_in_background(svc, account, target, turn, ticket, guard))
        return AzureJSONResponse(queued)
    log, send = svc.background.open_log(turn.response_id), Sequence()
    log.add(send("response.created", response=queued))
    log.add(send("response.queued", response=queued))
    svc.background.start(turn.response_id,
                         run_streamed_in_background(svc, account, target, turn, ticket, guard, log, send))
    return event_stream(log.follow())


async def run_in_background(svc: Services, account: AccountRecord, target: Target, turn: Turn, ticket: Ticket,
                            guard: ContentGuard) -> None:
    async def run() -> None:
        collected = await answer(target, turn, ticket)
        outcome = finished(turn, collected, await guard.check_answer(collected.text))
        await _update(svc, account, turn.response(outcome))

    await _run_leased(svc, account, turn, ticket, run)


async def run_streamed_in_background(svc: Services, account: AccountRecord, target: Target, turn: Turn,
                                     ticket: Ticket, guard: ContentGuard, log: EventLog, send: Sequence) -> None:
    async def run() -> None:
        opened, events, first = await open_answer(target, turn, ticket)
        async for frame in stream_response(svc, account, opened, guard, events, first, send=send,
                                           save=lambda response: _update(svc, account, response)):
            log.add(frame)

    def failed(response: dict[str, Any]) -> None:
        log.add(send("response.failed", response=response))

    try:
        await _run_leased(svc, account, turn, ticket, run, failed)
    finally:
        log.end()


async def _update(svc: Services, account: AccountRecord, response: dict[str, Any]) -> None:
    """A running background response's new state, unless it was cancelled or deleted meanwhile."""
    await run_in_threadpool(svc.responses.update, account.id, response, only_from=ACTIVE)


async def _run_leased(svc: Services, account: AccountRecord, turn: Turn, ticket: Ticket,
                      run: Callable[[], Awaitable[None]],
                      failed: Callable[[dict[str, Any]], None] | None = None) -> None:
    """`run` a queued background response under its lease, `in_progress` while it runs; a run that fails leaves it
    `failed` (and told to `failed`); one stopped by the server stopping leaves it failed as interrupted."""
    store = svc.responses
    try:
        started = turn.response(Outcome("in_progress"))
        if not await run_in_threadpool(store.update, account.id, started, only_from=("queued",),
                                       lease_until=time.time() + LEASE_SECONDS):
            return  # cancelled or deleted before it began
        current = asyncio.current_task()
        assert current is not None
        renewing = asyncio.create_task(_renew(svc, account.id, turn.response_id, current))
        try:
            await run()
        finally:
            renewing.cancel()
    except asyncio.CancelledError:
        # a cancel has stored `cancelled` already; anything else cancelling the run is the server stopping
        interrupted = turn.response(Outcome("failed", error=response_error("server_error", INTERRUPTED)))
        await _update(svc, account, interrupted)
        raise
    except Exception as error:
        if not isinstance(error, EngineError | AzureError):
            log.exception("background response %s failed", turn.response_id)
        response = turn.response(Outcome("failed", error=failure(error)))
        await _update(svc, account, response)
        if failed is not None:
            failed(response)
    finally:
        ticket.release()


async def _renew(svc: Services, account_id: str, response_id: str, run: asyncio.Task[Any]) -> None:
    while True:
        await asyncio.sleep(RENEW_SECONDS)
        try:
            status = await run_in_threadpool(svc.responses.renew, account_id, response_id,
                                             time.time() + LEASE_SECONDS)
        except Exception:  # the database is away for a moment: the lease has time to spare
            log.warning("could not renew the lease of background response %s", response_id, exc_info=True)
            continue
        if status not in ACTIVE:  # cancelled (here or elsewhere) or deleted
            run.cancel()
            return

