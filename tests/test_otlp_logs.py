"""Resource logs to a Log Analytics workspace, which is the operator's OpenTelemetry collector: a real server sends
each record its diagnostic setting wants to a real OTLP/HTTP receiver as an OpenTelemetry log record (Azure's record
as the body, the account, category, operation and workspace as attributes, the severity from its level), never with
what was said; and a setting may name a workspace only where a collector is configured and the caller may use it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from azurine.identity.tokens import issue_token
from azurine.storage.database import make_engine
from azurine.storage.state import StateStore
from azurine.telemetry import otlp_logs
from conftest import API_KEY, API_VERSION, Server, start_server, stop
from otlp_receiver import OtlpReceiver

SECRET = "The harbour code of the red project is 5523."
SETTINGS_API = {"api-version": "2021-05-01-preview"}
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"


def attributes(record: Any) -> dict[str, Any]:
    return {kv.key: kv.value.string_value for kv in record.attributes}


@dataclass
class Collected:
    server: Server
    store: StateStore
    resource: str
    workspace: str
    receiver: OtlpReceiver

    def admin(self, principal: str | None = None) -> httpx.Client:
        token = issue_token(self.store, object_id=principal, name=principal or "admin")[0]
        return httpx.Client(base_url=self.server.url, timeout=60, headers={"Authorization": f"Bearer {token}"})

    def setting(self, name: str, properties: dict[str, Any], principal: str | None = None) -> httpx.Response:
        return self.admin(principal).put(
            f"{self.resource}/providers/Microsoft.Insights/diagnosticSettings/{name}", params=SETTINGS_API,
            json={"properties": properties})

    def received(self, category: str, operation: str) -> list[Any]:
        return [r for r in self.receiver.log_records if attributes(r).get("azure.category") == category
                and attributes(r).get("azure.operation_name", "").lower().endswith(operation.lower())]


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collected]:
    receiver = OtlpReceiver()
    server = start_server(Path(tmp_path_factory.mktemp("otlp-logs")) / "data", env={
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": f"{receiver.url}/v1/logs", "OTEL_BLRP_SCHEDULE_DELAY": "100"})
    try:
        store = StateStore(make_engine(f"sqlite:///{server.data_dir / 'azurine.db'}"))
        account = store.first_account()
        assert account is not None
        subscription = account.subscription_id
        resource = (f"/subscriptions/{subscription}/resourceGroups/{account.resource_group}/providers/"
                    f"Microsoft.CognitiveServices/accounts/{account.name}")
        workspace = (f"/subscriptions/{subscription}/resourceGroups/logs/providers/"
                     "Microsoft.OperationalInsights/workspaces/azurine-logs")
        found = Collected(server, store, resource, workspace, receiver)
        created = found.setting("to-collector", {"workspaceId": workspace,
                                                 "logs": [{"categoryGroup": "allLogs", "enabled": True}]})
        assert created.status_code == 200, created.text
        client = openai.AzureOpenAI(azure_endpoint=server.url, api_key=API_KEY, api_version=API_VERSION,
                                    max_retries=0)
        client.chat.completions.create(model="chat-small", max_tokens=2, messages=[{"role": "user",
                                                                                    "content": SECRET}])
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="no-such-deployment", max_tokens=2,
                                           messages=[{"role": "user", "content": SECRET}])
        keys = found.admin().post(f"{resource}/listKeys", params={"api-version": "2025-09-01"})
        assert keys.status_code == 200
        for _ in range(100):  # written once a second, exported every 100 ms
            if (len(found.received("RequestResponse", "ChatCompletions_Create")) >= 2
                    and found.received("Audit", "listKeys/action")):
                break
            time.sleep(0.1)
        yield found
    finally:
        stop(server.process)
        receiver.close()


def test_each_call_is_a_log_record_with_azures_record_as_its_body(collected: Collected) -> None:
    chat = collected.received("RequestResponse", "ChatCompletions_Create")
    assert len(chat) == 2, [attributes(r) for r in collected.receiver.log_records]
    bodies = sorted((json.loads(r.body.string_value) for r in chat), key=lambda b: b["resultSignature"])
    assert [b["resultSignature"] for b in bodies] == ["200", "404"]
    for body in bodies:
        assert body["category"] == "RequestResponse" and body["resourceId"] == collected.resource.upper()
    for record in chat:
        assert attributes(record) == {"azure.resource_id": collected.resource.upper(),
                                      "azure.category": "RequestResponse",
                                      "azure.operation_name": "ChatCompletions_Create",
                                      "azure.workspace_id": collected.workspace}
        assert record.severity_text == "Informational" and record.severity_number == 9  # INFO
        assert record.time_unix_nano > 0 and record.observed_time_unix_nano >= record.time_unix_nano
    served = bodies[0]
    assert served["properties"]["modelDeploymentName"] == "chat-small" and served["correlationId"]
    assert served["properties"]["completionTokens"] == 2
    assert set(collected.receiver.paths) == {"/v1/logs"}


def test_management_actions_are_audit_records(collected: Collected) -> None:
    [audited] = collected.received("Audit", "listKeys/action")
    assert attributes(audited)["azure.workspace_id"] == collected.workspace
    assert json.loads(audited.body.string_value)["resultSignature"] == "Allowed"


def test_no_record_holds_what_was_said(collected: Collected) -> None:
    assert collected.receiver.raw and not any(b"harbour code" in raw or b"5523" in raw
                                              for raw in collected.receiver.raw)


def test_the_setting_reads_back_with_its_workspace(collected: Collected) -> None:
    read = collected.admin().get(f"{collected.resource}/providers/Microsoft.Insights/diagnosticSettings/"
                                 "to-collector", params=SETTINGS_API).json()
    assert read["properties"]["workspaceId"] == collected.workspace
    assert read["properties"]["storageAccountId"] is None


def test_a_workspace_is_checked_as_azure_checks_it(collected: Collected) -> None:
    refused = collected.setting("bad", {"workspaceId": "/subscriptions/s/resourceGroups/g/providers/"
                                        "Microsoft.OperationalInsights/workspaces/x",
                                        "logs": [{"category": "Audit", "enabled": True}]})
    assert refused.status_code == 400 and "'workspaceId' is the id" in refused.json()["error"]["message"]
    # Contributor on the account may write its settings, but not send its logs into a workspace it has no right to
    principal = str(uuid.uuid4())
    assigned = collected.admin().put(
        f"{collected.resource}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
        params={"api-version": "2022-04-01"}, json={"properties": {
            "roleDefinitionId": f"/subscriptions/{collected.resource.split('/')[2]}/providers/"
                                f"Microsoft.Authorization/roleDefinitions/{CONTRIBUTOR}", "principalId": principal}})
    assert assigned.status_code == 201, assigned.text
    time.sleep(1.2)  # role assignments are cached for a second
    linked = collected.setting("theirs", {"workspaceId": collected.workspace,
                                          "logs": [{"category": "Audit", "enabled": True}]}, principal)
    assert linked.status_code == 403, linked.text
    error = linked.json()["error"]
    assert error["code"] == "LinkedAuthorizationFailed"
    assert "Microsoft.OperationalInsights/workspaces/sharedKeys/action" in error["message"]
    storage = (f"/subscriptions/{collected.resource.split('/')[2]}/resourceGroups/logs/providers/"
               "Microsoft.Storage/storageAccounts/theirlogs")
    assert collected.setting("theirs", {"storageAccountId": storage, "logs": [{"category": "Audit",
                                                                               "enabled": True}]},
                             principal).status_code == 200


def test_a_collector_is_named_by_either_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert not otlp_logs.configured() and otlp_logs.OtlpLogs.from_environment() is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert otlp_logs.configured()
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://127.0.0.1:4318/v1/logs")
    assert otlp_logs.configured()
