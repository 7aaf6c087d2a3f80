"""OpenTelemetry traces of data-plane calls, by the GenAI semantic conventions, sent to an OTLP collector.

On when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; the OTLP exporter reads it and the other standard `OTEL_*` settings
itself. A call is one span (`chat chat-small`: the operation and the deployment) with a child span for each stage it
went through: the content filter, the wait for the engine, the engine. The spans are made when the call has ended,
from the times its stages noted in its `Observation`, so nothing of OpenTelemetry runs on a request's way. No span
holds a prompt or a completion.
"""

from __future__ import annotations

import os
from typing import Any

from azurine.telemetry.request_metrics import Observation

# gen_ai.operation.name by the spec's operation id
OPERATIONS = {"ChatCompletions_Create": "chat", "Responses_Create": "chat", "Completions_Create": "text_completion",
              "Embeddings_Create": "embeddings"}


class Tracing:
    def __init__(self, provider: Any) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("azurine")

    @classmethod
    def from_environment(cls) -> Tracing | None:
        if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": "azurine"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider)

    def trace(self, seen: Observation) -> None:
        """The call's spans, if it was a model call on a deployment."""
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        operation = OPERATIONS.get(seen.api_name or "")
        if operation is None or seen.deployment is None or seen.status is None:
            return

        def at(moment: float | None) -> int | None:
            return None if moment is None else seen.started_ns + int((moment - seen.started) * 1e9)

        end = at(seen.last_byte) or at(seen.engine_ended) or at(seen.started)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation, "gen_ai.provider.name": "azure.ai.openai",
            "gen_ai.request.model": seen.deployment, "gen_ai.response.model": seen.model or "",
            "http.response.status_code": seen.status, "azure.resource_provider.namespace":
                "Microsoft.CognitiveServices", "azurine.api_name": seen.api_name or "",
            "azurine.stream": seen.streamed,
        }
        if seen.prompt_tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = seen.prompt_tokens
            attributes["gen_ai.usage.output_tokens"] = seen.completion_tokens or 0
        if seen.status >= 400:
            attributes["error.type"] = str(seen.status)
        root = self._tracer.start_span(f"{operation} {seen.deployment}", kind=SpanKind.SERVER,
                                       start_time=seen.started_ns, attributes=attributes)
        if seen.status >= 500:
            root.set_status(Status(StatusCode.ERROR))
        context = trace.set_span_in_context(root)
        stages = (("content_filter", seen.screen_started, seen.screen_ended),
                  ("queue", seen.admitted, seen.engine_started),
                  ("engine", seen.engine_started, seen.engine_ended))
        for name, first, last in stages:
            if first is not None and last is not None:
                self._tracer.start_span(f"azurine.{name}", context=context, start_time=at(first),
                                        attributes={"azurine.stage": name}).end(end_time=at(last))
        root.end(end_time=end)

    def shutdown(self) -> None:
        self._provider.shutdown()
