"""The Metrics API's query and answer over stored minutes: Azure's parameters, its `$filter` grammar, series split
by dimension, buckets by interval, and its error for a metric the resource does not have."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from azurine.storage.metrics import MetricPoint
from azurine.telemetry.azure_metrics import METRICS
from azurine.telemetry.metrics_query import MetricsQueryError, answer, definitions, duration_text, parse_query

NOW = datetime(2026, 12, 4, 10, 30, 20, tzinfo=UTC)
START = int(datetime(2026, 12, 4, 10, 0, tzinfo=UTC).timestamp()) // 60
RESOURCE = "/subscriptions/s/resourceGroups/g/providers/Microsoft.CognitiveServices/accounts/a"


def point(metric: str, minute: int, value: float, **dimensions: str) -> MetricPoint:
    return MetricPoint("acct", metric, START + minute, dimensions, 1, value, value, value)


def test_a_bare_query_is_the_last_hour_of_requests_by_the_minute() -> None:
    query = parse_query({"api-version": "2024-02-01"}, NOW)
    assert (query.start, query.end) == (datetime(2026, 12, 4, 9, 31, tzinfo=UTC), datetime(2026, 12, 4, 10, 31,
                                                                                            tzinfo=UTC))
    assert [m.name for m in query.metrics] == ["AzureOpenAIRequests"] and query.interval.total_seconds() == 60


def test_an_unknown_metric_is_azures_400_naming_the_valid_ones() -> None:
    with pytest.raises(MetricsQueryError) as refused:
        parse_query({"metricnames": "AzureOpenAIRequests,Percentage CPU"}, NOW)
    assert refused.value.code == "BadRequest"
    assert refused.value.message.startswith("Failed to find metric configuration for provider: "
                                            "microsoft.cognitiveservices, resource Type: accounts, metric: "
                                            "Percentage CPU, Valid metrics: AzureOpenAIRequests,")


@pytest.mark.parametrize(("text", "parsed"), [
    ("ModelDeploymentName eq '*' and StatusCode eq '200'", {"modeldeploymentname": ("*",), "statuscode": ("200",)}),
    ("StatusCode eq '200' or StatusCode eq '429'", {"statuscode": ("200", "429")}),
    ("ApiName eq 'Chat''s'", {"apiname": ("Chat's",)}),
])
def test_filters_read_as_azure_writes_them(text: str, parsed: dict[str, tuple[str, ...]]) -> None:
    assert parse_query({"$filter": text}, NOW).filters == parsed


@pytest.mark.parametrize("text", ["StatusCode eq '200' or ModelName eq 'x'", "StatusCode = '200'",
                                  "NoSuchDimension eq '1'"])
def test_a_filter_azure_refuses_is_a_400(text: str) -> None:
    with pytest.raises(MetricsQueryError):
        parse_query({"$filter": text}, NOW)


def test_points_fall_into_buckets_from_the_start_and_empty_ones_carry_no_average() -> None:
    query = parse_query({"timespan": "2026-12-04T10:00:00Z/2026-12-04T10:03:00Z", "interval": "PT1M",
                         "metricnames": "AzureOpenAIRequests,AzureOpenAITimeToResponse",
                         "aggregation": "Total,Average,Count"}, NOW)
    points = [point("AzureOpenAIRequests", 0, 1), point("AzureOpenAIRequests", 0, 1),
              point("AzureOpenAIRequests", 2, 1), point("AzureOpenAITimeToResponse", 0, 100),
              point("AzureOpenAITimeToResponse", 0, 300)]
    shown = answer(query, points, RESOURCE, "eastus")
    assert shown["timespan"] == "2026-12-04T10:00:00Z/2026-12-04T10:03:00Z" and shown["interval"] == "PT1M"
    requests, latency = shown["value"]
    assert requests["id"] == f"{RESOURCE}/providers/Microsoft.Insights/metrics/AzureOpenAIRequests"
    assert requests["timeseries"][0]["metadatavalues"] == []
    assert [d.get("total") for d in requests["timeseries"][0]["data"]] == [2, 0, 1]
    assert latency["timeseries"][0]["data"][0] == {"timeStamp": "2026-12-04T10:00:00Z", "total": 400.0,
                                                   "average": 200.0, "count": 2.0}
    assert latency["timeseries"][0]["data"][1] == {"timeStamp": "2026-12-04T10:01:00Z", "total": 0.0, "count": 0.0}


def test_a_wildcard_splits_one_series_per_value_at_most_top_ordered() -> None:
    query = parse_query({"timespan": "2026-12-04T10:00:00Z/PT10M", "interval": "FULL",
                         "$filter": "ModelDeploymentName eq '*'", "top": "2", "orderby": "Total desc"}, NOW)
    points = [point("AzureOpenAIRequests", m, 1, ModelDeploymentName=name)
              for name, count in (("chat", 3), ("embeddings", 5), ("tiny", 1)) for m in range(count)]
    series = answer(query, points, RESOURCE, "eastus")["value"][0]["timeseries"]
    assert [(s["metadatavalues"][0]["value"], s["data"][0]["total"]) for s in series] == [("embeddings", 5),
                                                                                           ("chat", 3)]
    assert series[0]["metadatavalues"][0]["name"] == {"value": "modeldeploymentname",
                                                      "localizedValue": "modeldeploymentname"}
    assert answer(query, points, RESOURCE, "eastus")["interval"] == "PT10M"


def test_a_value_filter_keeps_only_its_values() -> None:
    query = parse_query({"timespan": "2026-12-04T10:00:00Z/PT5M", "interval": "FULL",
                         "$filter": "StatusCode eq '429'"}, NOW)
    points = [point("AzureOpenAIRequests", 1, 1, StatusCode="200"), point("AzureOpenAIRequests", 2, 1,
                                                                          StatusCode="429")]
    assert answer(query, points, RESOURCE, "eastus")["value"][0]["timeseries"][0]["data"][0]["total"] == 1


def test_metadata_only_lists_the_series_without_data() -> None:
    query = parse_query({"$filter": "ApiName eq '*'", "resultType": "Metadata"}, NOW)
    shown = answer(query, [point("AzureOpenAIRequests", 20, 1, ApiName="ChatCompletions_Create")], RESOURCE, "x")
    assert "interval" not in shown
    assert shown["value"][0]["timeseries"] == [{"metadatavalues": [
        {"name": {"value": "apiname", "localizedValue": "apiname"}, "value": "ChatCompletions_Create"}]}]


def test_definitions_name_every_metric_with_its_unit_and_dimensions() -> None:
    shown = definitions(RESOURCE)["value"]
    assert [d["name"]["value"] for d in shown] == [m.name for m in METRICS]
    requests = shown[0]
    assert requests["unit"] == "Count" and requests["primaryAggregationType"] == "Total"
    assert {"value": "StatusCode", "localizedValue": "StatusCode"} in requests["dimensions"]


@pytest.mark.parametrize(("seconds", "text"), [(60, "PT1M"), (3600, "PT1H"), (86400, "P1D"), (16200, "PT4H30M")])
def test_durations_are_written_as_azure_writes_them(seconds: int, text: str) -> None:
    from datetime import timedelta

    assert duration_text(timedelta(seconds=seconds)) == text


def test_a_query_of_more_values_than_a_week_by_the_minute_is_refused() -> None:
    with pytest.raises(MetricsQueryError) as refused:
        parse_query({"timespan": "2026-10-01T00:00:00Z/2026-12-01T00:00:00Z", "interval": "PT1M"}, NOW)
    assert "larger interval" in refused.value.message
    assert parse_query({"timespan": "2026-10-01T00:00:00Z/2026-12-01T00:00:00Z", "interval": "PT1H"}, NOW).interval
