"""The Azure Monitor metrics under Prometheus names, for Grafana users (`--metrics-listen`): `azure_openai_…`, each
with the account's id and the dimensions Azurine fills in as labels, in snake case. Counts are counters; latencies,
rates and utilization are histograms, so a dashboard can take their percentiles."""

from __future__ import annotations

import re
from collections.abc import Mapping

from prometheus_client import Counter, Histogram

from azurine.telemetry.azure_metrics import METRICS, RECORDED, MetricSpec

MILLISECONDS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000)
RATE = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
PERCENT = (10, 25, 50, 75, 90, 100, 125, 150, 200)
# Azure's names run words together; Prometheus's are snake case, with the unit at the end
NAMES = {
    "AzureOpenAIRequests": "azure_openai_requests",
    "ProcessedPromptTokens": "azure_openai_processed_prompt_tokens",
    "GeneratedTokens": "azure_openai_generated_tokens",
    "TokenTransaction": "azure_openai_token_transaction",
    "FineTunedTrainingHours": "azure_openai_fine_tuned_training_hours",
    "ActiveTokens": "azure_openai_active_tokens",
    "AzureOpenAITimeToResponse": "azure_openai_time_to_response_milliseconds",
    "AzureOpenAITTLTInMS": "azure_openai_time_to_last_byte_milliseconds",
    "AzureOpenAINormalizedTTFTInMS": "azure_openai_normalized_time_to_first_byte_milliseconds",
    "AzureOpenAINormalizedTBTInMS": "azure_openai_time_between_tokens_milliseconds",
    "AzureOpenAITokenPerSecond": "azure_openai_tokens_per_second",
    "AzureOpenAIProvisionedManagedUtilizationV2": "azure_openai_provisioned_managed_utilization_percent",
    "RAIRejectedRequests": "azure_openai_rai_rejected_requests",
    "RAIHarmfulRequests": "azure_openai_rai_harmful_requests",
    "RAITotalRequests": "azure_openai_rai_total_requests",
}


def label(dimension: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", dimension).lower()


def _labels(spec: MetricSpec) -> list[str]:
    return ["account_id", *(label(d) for d in spec.dimensions if d in RECORDED)]


def _make(spec: MetricSpec) -> Counter | Histogram:
    help_text = f"{spec.display} (Azure Monitor: {spec.name}). {spec.description}"
    if spec.unit == "Count" and spec.aggregations[0] == "Total":
        return Counter(NAMES[spec.name], help_text, _labels(spec))
    buckets = MILLISECONDS if spec.unit == "MilliSeconds" else PERCENT if spec.unit == "Percent" else RATE
    return Histogram(NAMES[spec.name], help_text, _labels(spec), buckets=buckets)


MIRRORED = {spec.name: (_make(spec), spec) for spec in METRICS}


def observe(account_id: str, metric: str, value: float, dimensions: Mapping[str, str | None]) -> None:
    instrument, spec = MIRRORED[metric]
    values = {"account_id": account_id,
              **{label(d): str(dimensions.get(d) or "") for d in spec.dimensions if d in RECORDED}}
    child = instrument.labels(**values)
    if isinstance(child, Counter):
        child.inc(value)
    else:
        child.observe(value)
