"""Resource logs on disk: Azure's storage-account layout, only for the categories an account's settings turn on,
never outside the logs' folder whatever an ARM name holds, and never more than an hour's file may hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from azurine.storage.database import make_engine, migrate
from azurine.storage.state import StateStore
from azurine.telemetry import diagnostic_logs
from azurine.telemetry.diagnostic_logs import DiagnosticLogs, LogRecord, blob_path, enabled_categories

STORAGE = "/subscriptions/s/resourceGroups/logs/providers/Microsoft.Storage/storageAccounts/azurinelogs"
AT = datetime(2026, 12, 4, 23, 15, tzinfo=UTC)


def logs_for(tmp_path: Path, logs: list[dict[str, object]]) -> tuple[DiagnosticLogs, str]:
    engine = make_engine(f"sqlite:///{tmp_path / 'azurine.db'}")
    migrate(engine)
    store = StateStore(engine)
    account = store.create_account("a", location="eastus", subscription_id="s", resource_group="g")
    store.put_child(account.id, "diagnosticSettings", "to-files", properties={"storageAccountId": STORAGE,
                                                                              "logs": logs}, tags={}, principal="p")
    return DiagnosticLogs(store, tmp_path / "diagnostics"), account.id


def record(account_id: str, category: str, resource: str = "/subscriptions/s/resourceGroups/g/providers/"
           "Microsoft.CognitiveServices/accounts/a") -> LogRecord:
    return LogRecord(account_id, category, {"time": "2026-12-04T23:15:00.000000Z", "resourceId": resource.upper(),
                                            "category": category})


def test_azures_layout_and_only_the_categories_turned_on(tmp_path: Path) -> None:
    logs, account = logs_for(tmp_path, [{"category": "Audit", "enabled": True},
                                        {"category": "RequestResponse", "enabled": False}])
    logs.add(record(account, "Audit"))
    logs.add(record(account, "RequestResponse"))
    logs.add(record("another-account", "Audit"))
    logs.flush()
    written = sorted(p.relative_to(tmp_path / "diagnostics").as_posix()
                     for p in (tmp_path / "diagnostics").rglob("PT1H.json"))
    assert written == ["azurinelogs/insights-logs-audit/resourceId=/SUBSCRIPTIONS/S/RESOURCEGROUPS/G/PROVIDERS/"
                       "MICROSOFT.COGNITIVESERVICES/ACCOUNTS/A/y=2026/m=12/d=04/h=23/m=00/PT1H.json"]
    assert json.loads((tmp_path / "diagnostics" / written[0]).read_text())["category"] == "Audit"


def test_groups_name_their_categories() -> None:
    assert enabled_categories({"logs": [{"categoryGroup": "allLogs", "enabled": True}]}) == {"Audit",
                                                                                            "RequestResponse"}
    assert enabled_categories({"logs": [{"categoryGroup": "audit", "enabled": True}]}) == {"Audit"}


def test_a_name_of_dots_stays_one_folder() -> None:
    path = blob_path("/subscriptions/s/resourceGroups/../providers/x/accounts/..", "Audit", AT)
    assert ".." not in path.parts and path.parts[:2] == ("insights-logs-audit", "resourceId=")


def test_an_hours_file_stops_growing_at_its_limit(tmp_path: Path, monkeypatch) -> None:
    logs, account = logs_for(tmp_path, [{"category": "Audit", "enabled": True}])
    monkeypatch.setattr(diagnostic_logs, "MAX_FILE_BYTES", 200)
    for _ in range(3):
        logs.add(record(account, "Audit"))
        logs.flush()
    [path] = (tmp_path / "diagnostics").rglob("PT1H.json")
    assert len(path.read_text().splitlines()) < 3


def test_a_setting_stored_while_its_account_is_read_applies_at_once(tmp_path: Path, monkeypatch) -> None:
    logs, account = logs_for(tmp_path, [{"category": "Audit", "enabled": False}])
    store, read = logs._store, logs._store.children

    def overtaken(*args: object, **kwargs: object) -> object:
        before = read(*args, **kwargs)  # the settings as they were; a new one is stored before this read returns
        store.put_child(account, "diagnosticSettings", "to-files", tags={}, principal="p", properties={
            "storageAccountId": STORAGE, "logs": [{"category": "Audit", "enabled": True}]})
        logs.forget(account)
        return before

    monkeypatch.setattr(store, "children", overtaken)
    logs.add(record(account, "Audit"))
    logs.flush()
    monkeypatch.setattr(store, "children", read)
    logs.add(record(account, "Audit"))
    logs.flush()
    assert len(list((tmp_path / "diagnostics").rglob("PT1H.json"))) == 1


WORKSPACE = "/subscriptions/s/resourceGroups/logs/providers/Microsoft.OperationalInsights/workspaces/azurine-logs"


class Collector:
    """Stands for the OTLP collector: what the resource logs sent it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, object]]] = []

    def send(self, record: dict[str, object], category: str, workspace_id: str) -> None:
        self.sent.append((category, workspace_id, record))


def test_a_workspace_gets_the_categories_its_setting_turns_on_beside_the_files(tmp_path: Path) -> None:
    logs, account = logs_for(tmp_path, [{"category": "Audit", "enabled": True}])
    collector = Collector()
    logs.otlp = collector  # type: ignore[assignment]
    logs._store.put_child(account, "diagnosticSettings", "to-collector", properties={
        "storageAccountId": None, "workspaceId": WORKSPACE, "logs": [{"categoryGroup": "allLogs", "enabled": True}]},
        tags={}, principal="p")
    logs.add(record(account, "Audit"))
    logs.add(record(account, "RequestResponse"))
    logs.add(record("another-account", "Audit"))
    logs.flush()
    assert sorted((c, w) for c, w, _ in collector.sent) == [("Audit", WORKSPACE), ("RequestResponse", WORKSPACE)]
    written = [p.relative_to(tmp_path / "diagnostics").parts[:2] for p in (tmp_path / "diagnostics").rglob("*.json")]
    assert written == [("azurinelogs", "insights-logs-audit")]  # the other setting's storage account, as before


def test_a_workspace_without_a_collector_is_counted_as_dropped(tmp_path: Path, monkeypatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    logs, account = logs_for(tmp_path, [{"category": "Audit", "enabled": True}])
    assert logs.otlp is None
    logs._store.put_child(account, "diagnosticSettings", "to-collector", properties={
        "workspaceId": WORKSPACE, "logs": [{"category": "Audit", "enabled": True}]}, tags={}, principal="p")
    dropped = diagnostic_logs.DROPPED._value.get()
    logs.add(record(account, "Audit"))
    logs.flush()
    assert diagnostic_logs.DROPPED._value.get() == dropped + 1
    assert len(list((tmp_path / "diagnostics").rglob("PT1H.json"))) == 1  # the storage account's still written
