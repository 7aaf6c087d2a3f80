"""The Azure Monitor metrics an Azure OpenAI account has, by Azure's names, units and dimensions.

Names, display names, categories, units, aggregations, dimensions and descriptions are those of Azure's generated
"Supported metrics for Microsoft.CognitiveServices/accounts" page. Azurine records the dimensions it knows a value
for (those in `RECORDED`); the others are defined, so a filter on them is valid, but hold no values. Every metric
is kept at one-minute grain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Aggregation = Literal["Total", "Count", "Average", "Minimum", "Maximum"]
NAMESPACE = "microsoft.cognitiveservices/accounts"
TIME_GRAINS = ("PT1M", "PT5M", "PT15M", "PT30M", "PT1H", "PT6H", "PT12H", "P1D")
RETENTION = "P93D"
# the dimensions Azurine fills in (IsSpillover only on requests that spilled over); Azure's others (OperationName,
# FeatureName, ServiceTier…) stay empty
RECORDED = frozenset({"ApiName", "ModelDeploymentName", "ModelName", "ModelVersion", "Region", "StatusCode",
                      "StreamType", "TextType", "Category", "Severity", "IsSpillover"})


@dataclass(frozen=True)
class MetricSpec:
    name: str
    display: str
    category: str
    unit: Literal["Count", "MilliSeconds", "Percent"]
    aggregations: tuple[Aggregation, ...]  # the first is the primary one
    dimensions: tuple[str, ...]
    description: str


_REQUEST_DIMENSIONS = ("ApiName", "OperationName", "Region", "StreamType", "ModelDeploymentName", "ModelName",
                       "ModelVersion", "StatusCode")
_USAGE_DIMENSIONS = ("ApiName", "ModelDeploymentName", "FeatureName", "UsageChannel", "Region", "ModelVersion")
_MODEL_DIMENSIONS = ("Region", "ModelDeploymentName", "ModelName", "ModelVersion")
_SAFETY_DIMENSIONS = ("Region", "ModelDeploymentName", "ModelName", "ModelVersion", "ApiName")
_LATENCY = ("Average", "Minimum", "Maximum")
_BREAKDOWN = ("To breakdown this metric, you can add a filter or apply splitting by the following dimensions: "
              "ModelDeploymentName and ModelName.")

METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("AzureOpenAIRequests", "Azure OpenAI Requests", "Azure OpenAI - HTTP Requests", "Count", ("Total",),
               (*_REQUEST_DIMENSIONS, "IsSpillover", "ServiceTierRequest", "ServiceTierResponse"),
               "Number of calls made to the Azure OpenAI API over a period of time. Applies to PTU, PTU-Managed and "
               "Pay-as-you-go deployments. To breakdown API requests, you can add a filter or apply splitting by the "
               "following dimensions: ModelDeploymentName, ModelName, ModelVersion, StatusCode (successful, "
               "clienterrors, server errors), IsSpillover for spillover information, ServiceTier, StreamType "
               "(Streaming vs non-streaming requests) and operation."),
    MetricSpec("ProcessedPromptTokens", "Processed Prompt Tokens", "Azure OpenAI - Usage", "Count", ("Total",),
               _USAGE_DIMENSIONS,
               "Number of prompt tokens processed (input) on an OpenAI model. Applies to PTU, PTU-Managed and "
               "Pay-as-you-go deployments. " + _BREAKDOWN),
    MetricSpec("GeneratedTokens", "Generated Completion Tokens", "Azure OpenAI - Usage", "Count", ("Total",),
               _USAGE_DIMENSIONS,
               "Number of tokens generated (output) from an OpenAI model. Applies to PTU, PTU-Managed and "
               "Pay-as-you-go deployments. " + _BREAKDOWN),
    # the generated page's REST name; Azure OpenAI's monitoring reference heads it ProcessedFineTunedTrainingHours.
    # Its hours are a job's billed training (`fine_tuning/worker.py`); a job is on no deployment, so it has no values
    # for its dimensions
    MetricSpec("FineTunedTrainingHours", "Processed FineTuned Training Hours", "Azure OpenAI - Usage", "Count",
               ("Total",), ("ApiName", "ModelDeploymentName", "FeatureName", "UsageChannel", "Region"),
               "Number of Training Hours Processed on an OpenAI FineTuned Model"),
    MetricSpec("TokenTransaction", "Processed Inference Tokens", "Azure OpenAI - Usage", "Count", ("Total",),
               _USAGE_DIMENSIONS,
               "Number of inference tokens processed on an OpenAI model. Calculated as prompt tokens (input) plus "
               "generated tokens (output). Applies to PTU, PTU-Managed and Pay-as-you-go deployments. " + _BREAKDOWN),
    MetricSpec("ActiveTokens", "Active Tokens", "Azure OpenAI - Usage", "Count",
               ("Total", "Average", "Minimum", "Maximum"), _MODEL_DIMENSIONS,
               "Total tokens minus cached tokens over a period of time. Applies to PTU and PTU-managed deployments. "
               "Use this metric to understand your TPS or TPM based utilization for PTUs and compare to your "
               "benchmarks for target TPS or TPM for your scenarios. To breakdown API requests, you can add a "
               "filter or apply splitting by the following dimensions: ModelDeploymentName, ModelName, and "
               "ModelVersion."),
    MetricSpec("AzureOpenAITimeToResponse", "Time to Response", "Azure OpenAI - Latency", "MilliSeconds", _LATENCY,
               _REQUEST_DIMENSIONS,
               "Recommended latency (responsiveness) measure for streaming requests. Applies to PTU, PTU-managed and "
               "Pay-as-you-go deployments. Calculated as time taken for the first response to appear after a user "
               "sends a prompt, as measured by the API gateway. This number increases as the prompt size increases "
               "and/or cache hit size reduces. To breakdown time to response metric, you can add a filter or apply "
               "splitting by the following dimensions: ModelDeploymentName, ModelName, and ModelVersion."),
    MetricSpec("AzureOpenAITTLTInMS", "Time to Last Byte", "Azure OpenAI - Latency", "MilliSeconds", _LATENCY,
               _MODEL_DIMENSIONS,
               "For streaming and non-streaming requests; time it takes for last byte of response data to be "
               "received after request is made by model. Applies to PTU, PTU-managed, and Pay-as-you-go "
               "deployments."),
    MetricSpec("AzureOpenAINormalizedTTFTInMS", "Normalized Time to First Byte", "Azure OpenAI - Latency",
               "MilliSeconds", _LATENCY, _MODEL_DIMENSIONS,
               "For streaming and non-streaming requests; time it takes for first byte of response data to be "
               "received after request is made by model, normalized by token. Applies to PTU, PTU-managed, and "
               "Pay-as-you-go deployments."),
    MetricSpec("AzureOpenAINormalizedTBTInMS", "Time Between Token", "Azure OpenAI - Latency", "MilliSeconds",
               _LATENCY, _MODEL_DIMENSIONS,
               "For streaming requests; model token generation rate, measured in milliseconds. Applies to PTU, "
               "PTU-managed and Pay-as-you-go deployments."),
    MetricSpec("AzureOpenAITokenPerSecond", "Tokens Per Second", "Azure OpenAI - Latency", "Count", _LATENCY,
               _MODEL_DIMENSIONS,
               "Enumerates the generation speed for a given Azure OpenAI model response. The total tokens generated "
               "is divided by the time to generate the tokens, in seconds. Applies to PTU, PTU-managed and "
               "Pay-as-you-go deployments."),
    MetricSpec("AzureOpenAIProvisionedManagedUtilizationV2", "Provisioned-managed Utilization V2",
               "Azure OpenAI - Usage", "Percent", _LATENCY,
               ("Region", "StreamType", "ModelDeploymentName", "ModelName", "ModelVersion"),
               "Utilization % for a provisoned-managed deployment, calculated as (PTUs consumed / PTUs deployed) x "
               "100. When utilization is greater than or equal to 100%, calls are throttled and error code 429 "
               "returned. To breakdown this metric, you can add a filter or apply splitting by the following "
               "dimensions: ModelDeploymentName, ModelName, ModelVersion and StreamType (Streaming vs non-streaming "
               "requests)"),
    MetricSpec("RAIRejectedRequests", "Blocked Volume", "ContentSafety - Risks&Safety", "Count", ("Total",),
               (*_SAFETY_DIMENSIONS, "TextType", "Category"),
               "Number of calls made to Azure OpenAI API and rejected by content filter applied over a period of "
               "time. You can add a filter or apply splitting by the following dimensions: ModelDeploymentName, "
               "ModelName and TextType."),
    MetricSpec("RAIHarmfulRequests", "Harmful Volume Detected", "ContentSafety - Risks&Safety", "Count", ("Total",),
               (*_SAFETY_DIMENSIONS, "TextType", "Category", "Severity"),
               "Number of calls made to Azure OpenAI API and detected as harmful(both block model and annotate mode) "
               "by content filter applied over a period of time. You can add a filter or apply splitting by the "
               "following dimensions: ModelDeploymentName, ModelName and TextType."),
    MetricSpec("RAITotalRequests", "Total Volume Sent For Safety Check", "ContentSafety - Risks&Safety", "Count",
               ("Total",), _SAFETY_DIMENSIONS,
               "Number of calls made to Azure OpenAI API and detected by content filter applied over a period of "
               "time. You can add a filter or apply splitting by the following dimensions: ModelDeploymentName, "
               "ModelName."),
)
BY_NAME = {metric.name.lower(): metric for metric in METRICS}
