"""Azure Monitor's Metrics API on an account: `{accountId}/providers/Microsoft.Insights/metrics` and
`…/metricDefinitions`, as `azure-mgmt-monitor`'s `MonitorManagementClient` calls them.

RBAC applies as on any ARM read: `Microsoft.Insights/metrics/read` (Reader, Monitoring Reader and Cognitive Services
Contributor hold it) on the account or a scope above it. Azure answers a bad query with a flat `{code, message}`
body, not ARM's `error` envelope, and so does this.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from azurine.api.context import services
from azurine.api.management.accounts import ACCOUNTS, find_account
from azurine.api.management.arm import account_id, arm_request
from azurine.api.sse import AzureJSONResponse
from azurine.telemetry.metrics_query import MetricsQueryError, answer, definitions, parse_query

router = APIRouter()
# specification/monitor/resource-manager/Microsoft.Insights/stable/<version>/metrics_API.json (and
# metricDefinitions_API.json) since the API took its current shape
MONITOR_VERSIONS = frozenset({"2018-01-01", "2021-05-01", "2023-10-01", "2024-02-01"})
INSIGHTS = ACCOUNTS + "/{name}/providers/Microsoft.Insights"


@router.get(INSIGHTS + "/metrics")
async def list_metrics(subscription: str, group: str, name: str, request: Request) -> Response:
    await arm_request(request, MONITOR_VERSIONS)
    account = await find_account(request, subscription, group, name)
    try:
        query = parse_query(request.query_params, datetime.now(UTC))
    except MetricsQueryError as error:
        return AzureJSONResponse({"code": error.code, "message": error.message}, status_code=400)
    svc = services(request)
    await run_in_threadpool(svc.metrics.flush)  # what this replica saw until now counts
    points = await run_in_threadpool(
        svc.metrics.store.points, account.id, [m.name for m in query.metrics], int(query.start.timestamp()) // 60,
        -(-int(query.end.timestamp()) // 60))
    resource = account_id(account.subscription_id, account.resource_group, account.name)
    return AzureJSONResponse(answer(query, points, resource, account.location))


@router.get(INSIGHTS + "/metricDefinitions")
async def list_metric_definitions(subscription: str, group: str, name: str, request: Request) -> Response:
    await arm_request(request, MONITOR_VERSIONS)
    account = await find_account(request, subscription, group, name)
    return AzureJSONResponse(definitions(account_id(account.subscription_id, account.resource_group, account.name)))
