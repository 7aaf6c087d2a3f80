"""Azure Cost Management's Query API, read with the real `azure-mgmt-costmanagement` after known traffic: the cost of
each meter is the price table's arithmetic for the tokens the answers reported, the same at the account, resource
group and subscription scopes, by deployment and by the hour; RBAC on reading it; Azure's 400 for bad queries. The
charges of batch and provisioned deployments, and the pages of a long answer, are checked in-process."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.mgmt.costmanagement import CostManagementClient
from azure.mgmt.costmanagement.models import (
    QueryAggregation,
    QueryComparisonExpression,
    QueryDataset,
    QueryDefinition,
    QueryFilter,
    QueryGrouping,
    QueryTimePeriod,
)

from azurine.identity.tokens import issue_token
from azurine.storage.database import make_engine
from azurine.storage.state import AccountRecord, StateStore, UsageRow
from azurine.usage.cost import Deployed, Period
from azurine.usage.cost_query import PAGE_ROWS, answer, charges, page, parse_query
from azurine.usage.prices import load_prices, read_prices
from conftest import API_KEY, API_VERSION, Server, start_server, stop

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
COST_MANAGEMENT_READER = "72fafb9e-0641-4937-9268-a91bfd8191a3"
SETTLE = 1.2  # role assignments are cached for a second
COST = {"totalCost": QueryAggregation(name="Cost", function="Sum")}


class Credential:
    """Tokens of the built-in issuer for one principal (the administrator by default), as azure-identity's are."""

    def __init__(self, store: StateStore, principal: str | None = None) -> None:
        self.store, self.principal = store, principal

    def get_token(self, *scopes: str, **_: object) -> AccessToken:
        token, expires = issue_token(self.store, object_id=self.principal, name=self.principal or "admin")
        return AccessToken(token, expires)


@dataclass
class Traffic:
    server: Server
    store: StateStore
    account: str  # the account's resource id
    start: datetime
    end: datetime
    chat: tuple[int, int]  # chat-small's prompt and completion tokens, as its answers reported them
    embedded: int  # the embeddings deployment's prompt tokens

    @property
    def subscription(self) -> str:
        return self.account.split("/")[2]

    @property
    def group(self) -> str:
        return "/".join(self.account.split("/")[:5])

    def client(self, principal: str | None = None) -> CostManagementClient:
        return CostManagementClient(Credential(self.store, principal), base_url=self.server.url,
                                    connection_verify=str(self.server.cert))

    def query(self, scope: str | None = None, granularity: str | None = "Daily",
              grouping: list[QueryGrouping] | None = None, filter: QueryFilter | None = None,
              principal: str | None = None) -> list[dict[str, Any]]:
        """Each row of the answer as a dict by column name, over the traffic's window."""
        definition = QueryDefinition(
            type="ActualCost", timeframe="Custom", time_period=QueryTimePeriod(from_property=self.start, to=self.end),
            dataset=QueryDataset(granularity=granularity, aggregation=COST, grouping=grouping, filter=filter))
        result = self.client(principal).query.usage(scope or self.account, definition)
        assert result is not None and result.properties is not None
        names = [column.name for column in result.properties.columns or []]
        assert result.properties.next_link is None
        return [dict(zip(names, row, strict=True)) for row in result.properties.rows or []]


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traffic]:
    server = start_server(tmp_path_factory.mktemp("cost-query") / "data", tls=True)
    try:
        store = StateStore(make_engine(f"sqlite:///{server.data_dir / 'azurine.db'}"))
        account = store.first_account()
        assert account is not None
        resource = (f"/subscriptions/{account.subscription_id}/resourceGroups/{account.resource_group}/providers/"
                    f"Microsoft.CognitiveServices/accounts/{account.name}")
        start = datetime.now(UTC) - timedelta(minutes=5)
        client = openai.AzureOpenAI(azure_endpoint=server.url, api_key=API_KEY, api_version=API_VERSION,
                                    max_retries=0, http_client=httpx.Client(verify=server.trusted()))
        prompt = completion = 0
        for question in ("Say hi.", "Name a colour.", "Count to three."):
            usage = client.chat.completions.create(model="chat-small", max_tokens=4, temperature=0,
                                                   messages=[{"role": "user", "content": question}]).usage
            assert usage is not None
            prompt, completion = prompt + usage.prompt_tokens, completion + usage.completion_tokens
        embedded = sum(client.embeddings.create(model="embeddings", input=text).usage.prompt_tokens
                       for text in ("one", "two words"))
        yield Traffic(server, store, resource, start, datetime.now(UTC) + timedelta(minutes=1), (prompt, completion),
                      embedded)
    finally:
        stop(server.process)


def expected(traffic: Traffic) -> dict[str, float]:
    """Each meter's cost, from the packaged price table: tokens × the GlobalStandard price per million."""
    prices = load_prices()
    small = prices.model("SmolLM2-135M-Instruct").tokens["GlobalStandard"]  # type: ignore[union-attr]
    embeddings = prices.model("all-MiniLM-L6-v2").tokens["GlobalStandard"]  # type: ignore[union-attr]
    return {"SmolLM2-135M-Instruct Inp glbl Tokens": traffic.chat[0] * small.input / 1e6,
            "SmolLM2-135M-Instruct Outp glbl Tokens": traffic.chat[1] * small.output / 1e6,
            "all-MiniLM-L6-v2 Inp glbl Tokens": traffic.embedded * embeddings.input / 1e6}


def test_each_meter_costs_the_price_tables_arithmetic(traffic: Traffic) -> None:
    rows = traffic.query(grouping=[QueryGrouping(type="Dimension", name="Meter")])
    assert {row["Currency"] for row in rows} == {"USD"}
    assert {row["UsageDate"] for row in rows} <= {int(f"{traffic.start:%Y%m%d}"), int(f"{traffic.end:%Y%m%d}")}
    by_meter: dict[str, float] = {}
    for row in rows:
        by_meter[row["Meter"]] = by_meter.get(row["Meter"], 0) + row["Cost"]
    assert by_meter == pytest.approx(expected(traffic), rel=1e-9)
    assert by_meter["SmolLM2-135M-Instruct Inp glbl Tokens"] > 0


def test_every_scope_and_grouping_adds_up_to_the_same_cost(traffic: Traffic) -> None:
    total = sum(expected(traffic).values())
    by_deployment = [QueryGrouping(type="Dimension", name="DeploymentName")]
    # Azure's examples write a scope without its leading slash; the client takes either
    for scope in (traffic.account, traffic.group.lstrip("/"), f"/subscriptions/{traffic.subscription}"):
        rows = traffic.query(scope, granularity=None, grouping=by_deployment)
        assert {row["DeploymentName"] for row in rows} == {"chat-small", "embeddings"}
        assert sum(row["Cost"] for row in rows) == pytest.approx(total, rel=1e-9)
    hourly = traffic.query(granularity="Hourly", grouping=by_deployment)
    assert all(row["UsageDateTime"].endswith(":00:00") for row in hourly)
    assert sum(row["Cost"] for row in hourly) == pytest.approx(total, rel=1e-9)
    by_resource = traffic.query(granularity=None, grouping=[QueryGrouping(type="Dimension", name="ResourceId")])
    assert [row["ResourceId"] for row in by_resource] == [traffic.account.lower()]


def test_a_filter_keeps_the_deployments_it_names(traffic: Traffic) -> None:
    only = QueryFilter(dimensions=QueryComparisonExpression(name="DeploymentName", operator="In",
                                                            values_property=["EMBEDDINGS"]))
    rows = traffic.query(granularity=None, filter=only)
    assert len(rows) == 1
    assert rows[0]["Cost"] == pytest.approx(expected(traffic)["all-MiniLM-L6-v2 Inp glbl Tokens"], rel=1e-9)


def test_reading_cost_needs_a_role_that_reads_it(traffic: Traffic) -> None:
    principal = str(uuid.uuid4())
    with pytest.raises(HttpResponseError) as denied:
        traffic.query(principal=principal)
    assert denied.value.status_code == 403 and denied.value.error is not None
    assert denied.value.error.code == "AuthorizationFailed"
    assert "Microsoft.CostManagement/query/action" in str(denied.value)
    with admin(traffic) as client:
        assigned = client.put(
            f"{traffic.account}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
            params={"api-version": "2022-04-01"}, json={"properties": {
                "roleDefinitionId": f"/subscriptions/{traffic.subscription}/providers/Microsoft.Authorization/"
                                    f"roleDefinitions/{COST_MANAGEMENT_READER}", "principalId": principal}})
    assert assigned.status_code == 201, assigned.text
    time.sleep(SETTLE)
    rows = traffic.query(principal=principal, granularity=None)
    assert sum(row["Cost"] for row in rows) == pytest.approx(sum(expected(traffic).values()), rel=1e-9)
    with pytest.raises(HttpResponseError) as above:  # the assignment is on the account, not its subscription
        traffic.query(f"/subscriptions/{traffic.subscription}", principal=principal)
    assert above.value.status_code == 403


def admin(traffic: Traffic) -> httpx.Client:
    return httpx.Client(base_url=traffic.server.url, verify=traffic.server.trusted(), timeout=60,
                        headers={"Authorization": f"Bearer {issue_token(traffic.store)[0]}"})


AGGREGATE = {"totalCost": {"name": "Cost", "function": "Sum"}}


def body(**dataset: Any) -> dict[str, Any]:
    return {"type": "ActualCost", "timeframe": "MonthToDate", "dataset": {"aggregation": AGGREGATE, **dataset}}


def nested(depth: int) -> dict[str, Any]:
    leaf = {"dimensions": {"name": "Meter", "operator": "In", "values": ["x"]}}
    return leaf if depth == 0 else {"and": [nested(depth - 1), leaf]}


@pytest.mark.parametrize(("sent", "says"), [
    ({}, "'type' is required"),
    ({"type": "ActualCost", "timeframe": "Yesterday", "dataset": {"aggregation": AGGREGATE}}, "timeframe"),
    ({"type": "ActualCost", "timeframe": "Custom", "dataset": {"aggregation": AGGREGATE}}, "needs 'timePeriod'"),
    ({"type": "ActualCost", "timeframe": "Custom", "timePeriod": {"from": "2024-01-01", "to": "2025-06-01"},
      "dataset": {"aggregation": AGGREGATE}}, "a year at most"),
    ({"type": "ActualCost", "timeframe": "Custom", "timePeriod": {"from": "2024-03-01", "to": "2024-01-01"},
      "dataset": {"aggregation": AGGREGATE}}, "before"),
    ({"type": "ActualCost", "timeframe": "Custom", "timePeriod": {"from": "yesterday", "to": "2024-01-01"},
      "dataset": {"aggregation": AGGREGATE}}, "not a date"),
    ({"type": "ActualCost", "timeframe": "Custom", "timePeriod": {"from": "2024-01-01", "to": "2024-03-01"},
      "dataset": {"granularity": "Hourly", "aggregation": AGGREGATE}}, "at most 31 days"),
    (body(granularity="Weekly"), "dataset.granularity"),
    ({"type": "ActualCost", "timeframe": "MonthToDate", "dataset": {}}, "'dataset.aggregation' is required"),
    (body(aggregation={"a": {"name": "Cost", "function": "Avg"}}), "function"),
    (body(aggregation={"a": {"name": "Tokens", "function": "Sum"}}), "dataset.aggregation.a.name"),
    (body(grouping=[{"type": "Dimension", "name": "Meter"}] * 3), "at most 2"),
    (body(grouping=[{"type": "Dimension", "name": "VirtualMachine"}]), "not a dimension"),
    (body(filter={"dimensions": {"name": "Meter", "operator": "Contains", "values": ["x"]}}), "operator"),
    (body(filter={"dimensions": {"name": "Meter", "operator": "In", "values": []}}), "at least one value"),
    (body(filter={"and": [{"dimensions": {"name": "Meter", "operator": "In", "values": ["x"]}}]}), "at least 2"),
    (body(filter=nested(6)), "levels deep"),
    (body(sorting=[{"name": "Cost"}]), "does not know"),
    ([1, 2], "must be a JSON object"),
])
def test_a_bad_query_is_azures_400(traffic: Traffic, sent: Any, says: str) -> None:
    with admin(traffic) as client:
        refused = client.post(f"{traffic.account}/providers/Microsoft.CostManagement/query",
                              params={"api-version": "2023-11-01"}, json=sent)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "BadRequest" and says in error["message"], error


def test_what_is_not_a_query_is_refused_before_it_is_read(traffic: Traffic) -> None:
    path = f"{traffic.account}/providers/Microsoft.CostManagement/query"
    with admin(traffic) as client:
        unversioned = client.post(path, params={"api-version": "2019-01-01"}, json=body())
        assert unversioned.status_code == 400
        assert unversioned.json()["error"]["code"] == "InvalidApiVersionParameter"
        garbled = client.post(path, params={"api-version": "2025-03-01"}, content=b"{not json")
        assert garbled.status_code == 400 and garbled.json()["error"]["code"] == "InvalidRequestContent"
        skipped = client.post(path, params={"api-version": "2024-08-01", "$skiptoken": "bm9wZQ=="}, json=body())
        assert skipped.status_code == 400 and "$skiptoken" in skipped.json()["error"]["message"]
        missing = client.post(path.replace("/accounts/", "/accounts/nobody-"), params={"api-version": "2023-03-01"},
                              json=body())
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceNotFound"
        elsewhere = client.post(f"/subscriptions/{uuid.uuid4()}/providers/Microsoft.CostManagement/query",
                                params={"api-version": "2023-11-01"}, json=body())
        assert elsewhere.status_code == 404 and elsewhere.json()["error"]["code"] == "SubscriptionNotFound"
        unauthenticated = httpx.post(f"{traffic.server.url}{path}", params={"api-version": "2023-11-01"},
                                     json=body(), verify=traffic.server.trusted())
        assert unauthenticated.status_code == 401


# in-process: batch, provisioned and pages ---------------------------------------------------------------------------

PRICES = """
[provisioned.GlobalProvisionedManaged]
hourly = 1.00
minimum = 15
increment = 5

[provisioned.DataZoneProvisionedManaged]
hourly = 1.10
minimum = 15
increment = 5

[provisioned.ProvisionedManaged]
hourly = 2.00
minimum = 50
increment = 50

[[model]]
name = "mini"
tokens.GlobalStandard = { input = 0.15, output = 0.60 }
tokens.DataZoneStandard = { input = 0.165, output = 0.66 }
tokens.Standard = { input = 0.165, output = 0.66 }
"""
ACCOUNT = AccountRecord(id="a", name="contoso", subscription_id="s", resource_group="RG", kind="OpenAI",
                        location="eastus", custom_subdomain=None, key1="", key2="", tags={"team": "search"})
NOW = datetime(2025, 6, 2, 12, 0, 30, tzinfo=UTC)
MINUTE = int(NOW.timestamp() // 60)


def custom(hours: int, granularity: str, grouping: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    return {"type": "AmortizedCost", "timeframe": "Custom",
            "timePeriod": {"from": (NOW - timedelta(hours=hours)).isoformat(), "to": NOW.isoformat()},
            "dataset": {"granularity": granularity, "grouping": grouping,
                        "aggregation": {"cost": {"name": "PreTaxCost", "function": "Sum"},
                                        "quantity": {"name": "UsageQuantity", "function": "Sum"}}, **extra}}


def test_batch_costs_half_and_ptus_cost_their_hours() -> None:
    query = parse_query(custom(3, "Hourly", [{"type": "Dimension", "name": "Meter"}]), NOW)
    assert query.period == Period(MINUTE - 180, MINUTE + 1)
    deployments = {
        ("a", "night"): Deployed("a", "night", "mini", "GlobalBatch", 0, 0),
        # 20 PTUs since 90 minutes ago: an hour and a half of the period, and its current minute
        ("a", "reserved"): Deployed("a", "reserved", "mini", "GlobalProvisionedManaged", 20, MINUTE - 90),
    }
    sums = [UsageRow("a", "night", MINUTE - MINUTE % 60 - 60, 1, 1_000_000, 500_000, 0),
            UsageRow("a", "reserved", MINUTE - MINUTE % 60, 1, 9_000, 9_000, 0)]  # paid by the hour already
    found = charges(query, sums, {"a": ACCOUNT}, deployments, read_prices(PRICES))
    columns, rows = answer(query, found)
    assert [c["name"] for c in columns] == ["PreTaxCost", "UsageQuantity", "Meter", "UsageDateTime", "Currency"]
    by_meter: dict[str, list[float]] = {}
    for cost, quantity, meter, _, _ in rows:
        by_meter.setdefault(meter, [0.0, 0.0])
        by_meter[meter][0] += cost
        by_meter[meter][1] += quantity
    assert by_meter["mini Inp glbl batch Tokens"] == pytest.approx([0.075, 1_000_000])  # half of $0.15
    assert by_meter["mini Outp glbl batch Tokens"] == pytest.approx([0.15, 500_000])  # half of 0.5M × $0.60
    assert by_meter["Provisioned Managed Global Unit"] == pytest.approx([20 * 91 / 60, 20 * 91 / 60])
    assert len(by_meter) == 3


WHISPER = """
[[model]]
name = "whisper"
tokens.GlobalStandard = { input = 0.0, output = 0.0 }
tokens.DataZoneStandard = { input = 0.0, output = 0.0 }
tokens.Standard = { input = 0.0, output = 0.0 }
audio_hour = 0.36
"""


def test_audio_is_a_meter_of_hours_where_the_model_is_priced_by_them() -> None:
    query = parse_query(custom(3, "Hourly", [{"type": "Dimension", "name": "Meter"}]), NOW)
    deployments = {("a", "stt"): Deployed("a", "stt", "whisper", "Standard", 0, 0),
                   ("a", "tts"): Deployed("a", "tts", "mini", "GlobalStandard", 0, 0)}
    hour = MINUTE - MINUTE % 60
    sums = [UsageRow("a", "stt", hour - 60, 4, 0, 500, 0, audio_seconds=5400.0),
            UsageRow("a", "stt", hour, 1, 0, 20, 0, audio_seconds=90.0),
            UsageRow("a", "tts", hour, 1, 1_000, 0, 1_000, audio_seconds=30.0)]  # no audio price: tokens alone
    columns, rows = answer(query, charges(query, sums, {"a": ACCOUNT}, deployments, read_prices(PRICES + WHISPER)))
    by_meter: dict[str, list[float]] = {}
    for cost, quantity, meter, _, _ in rows:
        by_meter.setdefault(meter, [0.0, 0.0])
        by_meter[meter][0] += cost
        by_meter[meter][1] += quantity
    # (5,400 + 90) seconds = 1.525 hours × $0.36
    assert by_meter["whisper Audio regnl Hours"] == pytest.approx([1.525 * 0.36, 1.525])
    assert by_meter["whisper Outp regnl Tokens"] == pytest.approx([0.0, 520])  # its tokens cost nothing
    assert set(by_meter) == {"whisper Audio regnl Hours", "whisper Outp regnl Tokens", "mini Inp glbl Tokens"}


def test_tags_group_and_filter_and_daily_dates_are_numbers() -> None:
    query = parse_query(custom(1, "Daily", [{"type": "TagKey", "name": "Team"}],
                               filter={"or": [{"tags": {"name": "TEAM", "operator": "In", "values": ["Search"]}},
                                              {"dimensions": {"name": "ResourceGroupName", "operator": "In",
                                                              "values": ["nowhere"]}}]}), NOW)
    deployments = {("a", "chat"): Deployed("a", "chat", "mini", "GlobalStandard", 0, 0)}
    sums = [UsageRow("a", "chat", MINUTE - MINUTE % 1440, 1, 2_000_000, 0, 0)]
    columns, rows = answer(query, charges(query, sums, {"a": ACCOUNT}, deployments, read_prices(PRICES)))
    assert [c["name"] for c in columns] == ["PreTaxCost", "UsageQuantity", "TagKey", "TagValue", "UsageDate",
                                            "Currency"]
    assert rows == [[pytest.approx(0.3), 2_000_000, "Team", "search", 20250602, "USD"]]


def test_a_long_answer_comes_in_pages() -> None:
    rows = [[float(i)] for i in range(PAGE_ROWS * 2 + 5)]
    first, token = page(rows, None)
    second, token2 = page(rows, token)
    third, last = page(rows, token2)
    assert len(first) == len(second) == PAGE_ROWS and len(third) == 5 and last is None
    assert first + second + third == rows
    assert json.dumps(first)  # plain JSON values


def test_timeframes_resolve_in_utc() -> None:
    def period(timeframe: str) -> Period:
        return parse_query({"type": "Usage", "timeframe": timeframe, "dataset": {"aggregation": AGGREGATE}},
                           NOW).period

    june = int(datetime(2025, 6, 1, tzinfo=UTC).timestamp() // 60)
    assert period("MonthToDate") == Period(june, MINUTE + 1)
    assert period("TheLastMonth") == Period(int(datetime(2025, 5, 1, tzinfo=UTC).timestamp() // 60), june)
    assert period("WeekToDate") == Period(int(datetime(2025, 6, 2, tzinfo=UTC).timestamp() // 60), MINUTE + 1)
