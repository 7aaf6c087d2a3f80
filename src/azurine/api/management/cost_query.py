"""Azure Cost Management's Query API (`POST {scope}/providers/Microsoft.CostManagement/query`) on the scopes Azurine
has: a subscription, a resource group, and an account, as `azure-mgmt-costmanagement`'s `query.usage` calls it.

Reading cost takes `Microsoft.CostManagement/query/action` or `Microsoft.CostManagement/query/read` on the scope or
one above it: Owner and Contributor hold both, Reader (`*/read`) and Cost Management Reader the read, as on Azure,
where readers see cost. The query itself is `usage/cost_query.py`'s; a bad one is ARM's 400 `BadRequest`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from azurine.api.context import services
from azurine.api.errors import AzureError
from azurine.api.management.accounts import ACCOUNTS, find_account
from azurine.api.management.api_versions import COST_MANAGEMENT
from azurine.api.management.arm import (
    arm_error,
    authenticate,
    authorize,
    check_api_version,
    existing_group,
    platform,
    subscription_not_found,
)
from azurine.api.sse import AzureJSONResponse
from azurine.identity.access import Operation
from azurine.json_depth import text_too_deep
from azurine.storage.state import AccountRecord
from azurine.usage.billed import billed_deployments, hosted_periods
from azurine.usage.cost import Deployed, Hosted, Period
from azurine.usage.cost_query import CostQueryError, answer, charges, page, parse_query
from azurine.usage.prices import PriceFileError, load_prices

log = logging.getLogger("azurine")
router = APIRouter()
QUERY = "/providers/Microsoft.CostManagement/query"
READ = "Microsoft.CostManagement/query/read"
ACTION = "Microsoft.CostManagement/query/action"


@router.post("/subscriptions/{subscription}" + QUERY)
async def query_subscription(subscription: str, request: Request) -> Response:
    async def accounts() -> list[AccountRecord]:
        if await run_in_threadpool(platform(request).subscription, subscription) is None:
            raise subscription_not_found(subscription)
        return await run_in_threadpool(services(request).store.accounts, subscription)

    return await _query(request, f"/subscriptions/{subscription}", accounts)


@router.post("/subscriptions/{subscription}/resourceGroups/{group}" + QUERY)
async def query_resource_group(subscription: str, group: str, request: Request) -> Response:
    async def accounts() -> list[AccountRecord]:
        await existing_group(request, subscription, group)
        return await run_in_threadpool(services(request).store.accounts, subscription, group)

    return await _query(request, f"/subscriptions/{subscription}/resourceGroups/{group}", accounts)


@router.post(ACCOUNTS + "/{name}" + QUERY)
async def query_account(subscription: str, group: str, name: str, request: Request) -> Response:
    async def accounts() -> list[AccountRecord]:
        return [await find_account(request, subscription, group, name)]

    return await _query(request, f"{ACCOUNTS.format(subscription=subscription, group=group)}/{name}", accounts)


async def _authorize(request: Request, scope: str) -> None:
    """The read Reader and Cost Management Reader hold, or the query action; a denial names the action.

    A query changes nothing, so only a denial is audited, as for a GET: the Studio asks every 30 seconds."""
    principal = await authenticate(request)
    access = services(request).access
    for action in (READ, ACTION):
        if await run_in_threadpool(access.allowed, principal, Operation(scope, action, False)):
            return
    await authorize(request, principal, Operation(scope, ACTION, False))  # denied: audited, and Azure's 403


def bad_request(message: str) -> AzureError:
    return arm_error(400, "BadRequest", f"Invalid query definition: {message}")


async def _query(request: Request, scope: str, in_scope: Callable[[], Awaitable[list[AccountRecord]]]) -> Response:
    check_api_version(request, COST_MANAGEMENT)
    await _authorize(request, scope)
    accounts = await in_scope()
    svc = services(request)
    raw = await request.body()
    if text_too_deep(raw, svc.settings.limits.max_json_depth):
        raise arm_error(400, "InvalidRequestContent", "The request content nests arrays and objects more than "
                        f"{svc.settings.limits.max_json_depth} levels deep.")
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise arm_error(400, "InvalidRequestContent",
                        "The request content was invalid and could not be deserialized.") from None
    try:
        query = parse_query(body, datetime.now(UTC))
    except CostQueryError as error:
        raise bad_request(error.message) from None
    try:
        prices = await run_in_threadpool(load_prices)
    except PriceFileError as error:
        log.error("the Cost Management query cannot price usage: %s", error)
        raise arm_error(500, "InternalServerError", "The server's price table cannot be read; its operator finds "
                        "the reason in the server's log.") from None

    try:
        await run_in_threadpool(svc.ledger.flush)  # what this replica settled until now counts
    except Exception:
        log.exception("the usage ledger could not be written before a cost query; it reads what was written")
    ids = [account.id for account in accounts]
    period = query.period
    sums = await run_in_threadpool(svc.store.usage_sums, ids, period.start_minute, period.end_minute, query.unit)
    deployments, hosted = await run_in_threadpool(_deployed, request, ids, period)
    found = charges(query, sums, {account.id: account for account in accounts}, deployments, prices, hosted)
    columns, rows = answer(query, found)
    try:
        shown, following = page(rows, request.query_params.get("$skiptoken"))
    except CostQueryError as error:
        raise bad_request(error.message) from None
    next_link = None
    if following is not None:
        next_link = str(request.url.include_query_params(**{"$skiptoken": following}))
    name = str(uuid.uuid4())
    return AzureJSONResponse({
        "id": f"{scope}/providers/Microsoft.CostManagement/query/{name}", "name": name,
        "type": "Microsoft.CostManagement/query", "location": None, "sku": None, "eTag": None, "tags": None,
        "properties": {"nextLink": next_link, "columns": columns, "rows": shown},
    })


def _deployed(request: Request, account_ids: list[str], period: Period
              ) -> tuple[dict[tuple[str, str], Deployed], list[Hosted]]:
    svc = services(request)
    return (billed_deployments(svc.store, svc.fine_tuning, svc.catalog, account_ids, period),
            hosted_periods(svc.store, account_ids, period))
