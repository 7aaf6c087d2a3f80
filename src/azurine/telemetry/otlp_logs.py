"""Resource logs sent to the operator's OpenTelemetry collector over OTLP/HTTP: where a diagnostic setting names a
Log Analytics workspace (`workspaceId`), its records go there, as Azure sends them to the workspace.

On when `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the endpoint the traces use);
the OTLP exporter reads these and the other standard `OTEL_EXPORTER_OTLP_*` settings itself, and the batch
processor its `OTEL_BLRP_*` ones (its queue is bounded: past it, records are dropped, never the service). Each
record is one OpenTelemetry log record: its body the Azure record as JSON, its attributes the account's resource
id, the category, the operation and the workspace, its severity from the record's `level`. Records reach the
processor from the resource logs' flush, which runs off the request's path, and are exported in batches from the
processor's own thread.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

# Azure's `level` of a resource-log record as OpenTelemetry's severity number
SEVERITIES = {"Verbose": 5, "Informational": 9, "Warning": 13, "Error": 17, "Critical": 21}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def configured() -> bool:
    """Whether the operator named an OTLP collector for logs."""
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


class OtlpLogs:
    def __init__(self, provider: Any) -> None:
        self._provider = provider
        self._logger = provider.get_logger("azurine.resource_logs")

    @classmethod
    def from_environment(cls) -> OtlpLogs | None:
        if not configured():
            return None
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.resources import Resource

        provider = LoggerProvider(resource=Resource.create({"service.name": "azurine"}))
        provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
        return cls(provider)

    def send(self, record: dict[str, Any], category: str, workspace_id: str) -> None:
        """Queue one Azure record for the collector; never blocks on the network."""
        from opentelemetry._logs import SeverityNumber

        level = str(record.get("level") or "Informational")
        self._logger.emit(
            timestamp=_nanoseconds(record.get("time")), observed_timestamp=time.time_ns(),
            severity_number=SeverityNumber(SEVERITIES.get(level, SEVERITIES["Informational"])), severity_text=level,
            body=json.dumps(record, separators=(",", ":")),
            attributes={"azure.resource_id": str(record.get("resourceId") or ""), "azure.category": category,
                        "azure.operation_name": str(record.get("operationName") or ""),
                        "azure.workspace_id": workspace_id})

    def shutdown(self) -> None:
        """Export what is queued (within the exporter's timeout) and stop."""
        self._provider.shutdown()


def _nanoseconds(written: Any) -> int:
    try:
        at = datetime.fromisoformat(str(written).replace("Z", "+00:00"))
        return (at - EPOCH) // timedelta(microseconds=1) * 1000
    except (TypeError, ValueError):
        return time.time_ns()
