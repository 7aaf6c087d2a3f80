"""Azure's resource logs of an account, for the categories its diagnostic settings turn on: `RequestResponse` (one
record per data-plane call) and `Audit` (each management change, key read and denial on it).

A record has Azure's common schema (`time`, `resourceId`, `operationName`, `category`, `resultSignature`,
`durationMs`, `callerIpAddress`, `correlationId`, `level`, `location`, `properties`) and never holds a prompt or a
completion. Records are buffered and written once a second, off the request's path: each setting's storage account
is a folder under the data directory, laid out as Azure lays out the blobs it writes into a storage account
(`insights-logs-<category>/resourceId=/SUBSCRIPTIONS/…/y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json`, JSON lines), and a
setting's Log Analytics workspace is the operator's OpenTelemetry collector (`otlp_logs`).
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from azurine.storage.cache import ExpiringCache
from azurine.storage.flush_loop import flush_until
from azurine.storage.state import StateStore
from azurine.telemetry.metrics import DIAGNOSTIC_LOGS_DROPPED as DROPPED
from azurine.telemetry.otlp_logs import OtlpLogs

CATEGORIES = ("Audit", "RequestResponse")
GROUPS = {"allLogs": frozenset(CATEGORIES), "audit": frozenset({"Audit"})}
SETTINGS_KIND = "diagnosticSettings"
SETTINGS_TTL_S = 5.0  # a changed setting applies within this long on every replica
MAX_PENDING = 100_000  # records held for writing; past this the oldest are dropped, not the service
# one hour's file of one category and account at most: calls that fail before a key is checked are logged too, and
# nobody may fill the server's disk by sending them
MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class LogRecord:
    account_id: str
    category: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Destination:
    """Where one diagnostic setting sends the categories it turns on."""

    categories: frozenset[str]
    folder: str | None = None  # its storage account's, under the data directory
    workspace_id: str | None = None  # its Log Analytics workspace's id: the records go to the OTLP collector


def enabled_categories(properties: dict[str, Any]) -> frozenset[str]:
    """The log categories a diagnostic setting's `logs` turn on."""
    on: set[str] = set()
    for entry in properties.get("logs") or []:
        if entry.get("enabled"):
            on |= {entry["category"]} if entry.get("category") else set(GROUPS.get(entry.get("categoryGroup"), ()))
    return frozenset(on)


def destination(properties: dict[str, Any]) -> Destination:
    storage, workspace = properties.get("storageAccountId"), properties.get("workspaceId")
    return Destination(enabled_categories(properties), storage_folder(storage) if storage else None,
                       workspace or None)


def storage_folder(storage_account_id: str) -> str:
    """The folder a storage account's logs go to: its name, which Azure keeps to 3-24 lower-case letters and digits
    (checked when the setting is stored), so it is one safe path component."""
    return storage_account_id.rstrip("/").rsplit("/", 1)[-1].lower()


def _component(part: str) -> str:
    # an ARM name may hold dots and parentheses; quoted, and never "." or "..", it stays one folder
    quoted = quote(part.upper(), safe="")
    return quoted if quoted.strip(".") else quoted.replace(".", "%2E")


def blob_path(resource_id: str, category: str, at: datetime) -> Path:
    parts = [_component(p) for p in resource_id.strip("/").split("/")]
    return Path(f"insights-logs-{category.lower()}", "resourceId=", *parts, f"y={at:%Y}", f"m={at:%m}",
                f"d={at:%d}", f"h={at:%H}", "m=00", "PT1H.json")


class DiagnosticLogs:
    def __init__(self, store: StateStore, root: Path, flush_every_s: float = 1.0,
                 otlp: OtlpLogs | None = None) -> None:
        """`otlp` is the collector workspaces' records go to; by default the one the environment names, if any."""
        self._store = store
        self.root = root
        self._flush_every_s = flush_every_s
        self.otlp = otlp if otlp is not None else OtlpLogs.from_environment()
        self._lock = threading.Lock()  # the pending records
        self._pending: list[LogRecord] = []
        self._flushing = threading.Lock()
        self._settings: ExpiringCache[str, list[Destination]] = ExpiringCache(SETTINGS_TTL_S)
        self._stopped = asyncio.Event()

    def add(self, record: LogRecord) -> None:
        """Queue a record; never blocks on I/O. Whether the account wants it is decided when it is written."""
        with self._lock:
            self._pending.append(record)
            if len(self._pending) > MAX_PENDING:
                del self._pending[:len(self._pending) - MAX_PENDING]

    def forget(self, account_id: str) -> None:
        """A setting of the account changed: read its settings again before the next write."""
        self._settings.forget(account_id)

    def _destinations(self, account_id: str) -> list[Destination]:
        found = self._settings.read_through(account_id, lambda: [
            destination(s.properties) for s in self._store.children(account_id, SETTINGS_KIND)])
        return found or []

    def flush(self) -> None:
        with self._flushing:
            with self._lock:
                records, self._pending = self._pending, []
            lines: dict[Path, list[str]] = {}
            for record in records:
                at = datetime.fromisoformat(record.body["time"].replace("Z", "+00:00")).astimezone(UTC)
                for to in self._destinations(record.account_id):
                    if record.category not in to.categories:
                        continue
                    if to.folder is not None:
                        path = self.root / to.folder / blob_path(record.body["resourceId"], record.category, at)
                        lines.setdefault(path, []).append(json.dumps(record.body, separators=(",", ":")))
                    if to.workspace_id is not None:
                        self._send(record, to.workspace_id)
            for path, text in lines.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                written = path.stat().st_size if path.exists() else 0
                if written >= MAX_FILE_BYTES:
                    DROPPED.inc(len(text))
                    continue
                with path.open("a", encoding="utf-8") as out:
                    out.write("\n".join(text) + "\n")

    def _send(self, record: LogRecord, workspace_id: str) -> None:
        if self.otlp is None:  # stored while a collector was configured; this process has none
            DROPPED.inc()
            return
        self.otlp.send(record.body, record.category, workspace_id)

    async def run(self) -> None:
        await flush_until(self._stopped, self.flush, self._flush_every_s, "diagnostic logs")

    async def close(self) -> None:
        self._stopped.set()
        await asyncio.to_thread(self.flush)
        if self.otlp is not None:
            await asyncio.to_thread(self.otlp.shutdown)


def log_time(at: datetime) -> str:
    """A record's `time`, as Azure writes it: UTC, to the microsecond."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
