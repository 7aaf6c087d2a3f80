"""One data-plane request's Azure Monitor metrics: what the stages learn about it as it goes (`Observation`, kept in
the request's scope), and the metrics it makes: its tokens when its usage settles, and the request and its
latencies once its answer has been sent.

Latencies are measured at Azurine's door, as Azure measures them at its gateway: time to response is the first byte
of the answer, time to last byte the last. The normalized time to first byte is that time per 1,000 prompt tokens
(a long prompt takes longer to read); the time between tokens and the tokens per second are taken over a streamed
answer's span from its first byte to its last.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azurine.safety.screen import Screening
from azurine.telemetry.diagnostic_logs import log_time
from azurine.telemetry.metric_recorder import MetricRecorder

OBSERVATION_KEY = "azurine.observation"
HARMS = ("hate", "sexual", "violence", "self_harm")


@dataclass
class Observation:
    started: float  # time.monotonic() when the request came in
    api_name: str | None = None
    account_id: str | None = None  # set once the account is known, for requests from outside the process
    region: str = ""
    processing_region: str = ""  # where the request ran, where the fleet routed it elsewhere than here
    spillover: bool = False  # a provisioned deployment's request served by its spillover deployment
    deployment: str | None = None
    model: str | None = None
    model_version: str | None = None
    streamed: bool = False
    status: int | None = None
    first_byte: float | None = None
    last_byte: float | None = None
    prompt_tokens: int | None = None  # once the usage has settled
    completion_tokens: int | None = None
    # for the request's resource log
    request_id: str = ""
    method: str = ""
    resource_id: str = ""  # the account's ARM id
    caller_ip: str = ""
    request_bytes: int = 0
    response_bytes: int = 0
    # when its stages ran (time.monotonic()), for its trace; started_ns is `started` on the wall clock
    started_ns: int = 0
    screen_started: float | None = None
    screen_ended: float | None = None
    admitted: float | None = None
    engine_started: float | None = None  # its first engine call began to run
    engine_ended: float | None = None  # its last engine call ended (its usage settled)

    def model_dimensions(self) -> dict[str, str | None]:
        return {"Region": self.region, "ModelDeploymentName": self.deployment, "ModelName": self.model,
                "ModelVersion": self.model_version}

    def request_dimensions(self) -> dict[str, str | None]:
        return {**self.model_dimensions(), "ApiName": self.api_name,
                "StreamType": "Streaming" if self.streamed else "Non-Streaming",
                "StatusCode": str(self.status) if self.status is not None else None,
                # Azure's split of a spillover deployment's requests: those that came by spillover are "True"
                "IsSpillover": "True" if self.spillover else None}


def observation(scope: MutableMapping[str, Any]) -> Observation | None:
    return scope.get("state", {}).get(OBSERVATION_KEY)


def request_log(seen: Observation, at: datetime) -> dict[str, Any]:
    """The request's `RequestResponse` record, in Azure's resource-log shape: what was called and how it went, never
    what was said."""
    duration = ((seen.last_byte or seen.started) - seen.started) * 1000
    return {
        "time": log_time(at), "resourceId": seen.resource_id.upper(),
        "operationName": seen.api_name or "", "category": "RequestResponse", "resultType": "Succeeded"
        if seen.status is not None and seen.status < 400 else "Failed", "resultSignature": str(seen.status or ""),
        "durationMs": int(duration), "callerIpAddress": seen.caller_ip, "correlationId": seen.request_id,
        "level": "Informational", "location": seen.region,
        "properties": {"apiName": seen.api_name, "method": seen.method, "requestLength": seen.request_bytes,
                       "responseLength": seen.response_bytes, "streamType": seen.request_dimensions()["StreamType"],
                       "modelDeploymentName": seen.deployment, "modelName": seen.model,
                       "modelVersion": seen.model_version,
                       "timeToResponseMs": int((seen.first_byte - seen.started) * 1000) if seen.first_byte else None,
                       "promptTokens": seen.prompt_tokens, "completionTokens": seen.completion_tokens,
                       "processingRegion": seen.processing_region or seen.region},
    }


def record_usage(recorder: MetricRecorder, seen: Observation, prompt_tokens: int, completion_tokens: int,
                 cached_tokens: int = 0) -> None:
    """The request's tokens, once its last engine call has ended."""
    seen.prompt_tokens, seen.completion_tokens = prompt_tokens, completion_tokens
    seen.engine_ended = time.monotonic()
    if seen.account_id is None:
        return
    usage = {"ApiName": seen.api_name, "ModelDeploymentName": seen.deployment, "Region": seen.region,
             "ModelVersion": seen.model_version}
    for metric, value in (("ProcessedPromptTokens", prompt_tokens), ("GeneratedTokens", completion_tokens),
                          ("TokenTransaction", prompt_tokens + completion_tokens)):
        recorder.record(seen.account_id, metric, value, usage)
    recorder.record(seen.account_id, "ActiveTokens", prompt_tokens + completion_tokens - cached_tokens,
                    seen.model_dimensions())


def record_answer(recorder: MetricRecorder, seen: Observation) -> None:
    """The request and its latencies, once its answer has been sent."""
    if seen.account_id is None or seen.status is None:
        return
    recorder.record(seen.account_id, "AzureOpenAIRequests", 1, seen.request_dimensions())
    if seen.first_byte is None or seen.last_byte is None or seen.deployment is None:
        return
    to_first, to_last = (seen.first_byte - seen.started) * 1000, (seen.last_byte - seen.started) * 1000
    recorder.record(seen.account_id, "AzureOpenAITimeToResponse", to_first, seen.request_dimensions())
    if seen.status >= 400:
        return
    model = seen.model_dimensions()
    recorder.record(seen.account_id, "AzureOpenAITTLTInMS", to_last, model)
    if seen.prompt_tokens:
        recorder.record(seen.account_id, "AzureOpenAINormalizedTTFTInMS", to_first * 1000 / seen.prompt_tokens,
                        model)
    generating = seen.last_byte - (seen.first_byte if seen.streamed else seen.started)
    if seen.completion_tokens and generating > 0:
        recorder.record(seen.account_id, "AzureOpenAITokenPerSecond", seen.completion_tokens / generating, model)
        if seen.streamed and seen.completion_tokens > 1:
            recorder.record(seen.account_id, "AzureOpenAINormalizedTBTInMS",
                            generating * 1000 / (seen.completion_tokens - 1), model)


def record_utilization(recorder: MetricRecorder, seen: Observation | None, percent: float) -> None:
    """A provisioned deployment's utilization as a request found it on arrival."""
    if seen is None or seen.account_id is None:
        return
    recorder.record(seen.account_id, "AzureOpenAIProvisionedManagedUtilizationV2", percent,
                    {**seen.model_dimensions(), "StreamType": "Streaming" if seen.streamed else "Non-Streaming"})


def record_screening(recorder: MetricRecorder, seen: Observation | None, text_type: str,
                     screenings: list[Screening]) -> None:
    """Text of a request through the content filter, checked, found harmful (by category and severity), blocked:
    its prompts together (`Prompt`), or one of its answers (`Completion`), each counted once in the total."""
    if seen is None or seen.account_id is None:
        return
    safety = {**seen.model_dimensions(), "ApiName": seen.api_name}
    recorder.record(seen.account_id, "RAITotalRequests", 1, safety)
    for screening in screenings:
        for category, result in screening.results.items():
            severity = result.get("severity")
            if (category in HARMS and severity not in (None, "safe")) or result.get("detected"):
                recorder.record(seen.account_id, "RAIHarmfulRequests", 1,
                                {**safety, "TextType": text_type, "Category": category, "Severity": severity})
        if screening.filtered:  # one rejection a text, under the first reason it was filtered for
            reason = screening.reasons[0][0] if screening.reasons else \
                next(f"blocklist:{name}" for name, filtered in screening.blocklists if filtered)
            recorder.record(seen.account_id, "RAIRejectedRequests", 1,
                            {**safety, "TextType": text_type, "Category": reason})
