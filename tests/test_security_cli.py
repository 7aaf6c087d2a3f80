"""The command line holds to the management plane's rules: a deployment made by `azurine deployments create` passes
the same checks as an ARM PUT (name, model, deployment type, capacity, quota), is refused with the same code and
message, and is written to the audit log. `azurine serve` shows an account's key whole only on the start that
created it, so the logs of later starts do not hold it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from starlette.testclient import TestClient
from typer.testing import CliRunner

from azurine.api.app import build_services, create_app
from azurine.catalog import load_catalog
from azurine.cli.main import app as cli_app
from azurine.config import Settings
from azurine.identity.directory import OPERATOR, new_secret
from azurine.identity.tokens import issue_token
from azurine.quota.capacity import usage_name
from azurine.storage.access import AccessStore
from azurine.storage.state import AccountRecord, StateStore
from conftest import API_KEY, ROOT

MODEL = "SmolLM2-135M-Instruct"


@dataclass
class Local:
    data_dir: Path
    store: StateStore
    account: AccountRecord
    arm: TestClient
    token: str

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AZURINE_") or k == "AZURINE_SERVICE_KEY"}
        return subprocess.run([sys.executable, "-m", "azurine", *args, "--data-dir", str(self.data_dir)],
                              capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)

    def arm_put(self, name: str, body: dict[str, object]) -> dict[str, object]:
        account = self.account
        path = (f"/subscriptions/{account.subscription_id}/resourceGroups/{account.resource_group}/providers/"
                f"Microsoft.CognitiveServices/accounts/{account.name}/deployments/{name}?api-version=2025-09-01")
        return self.arm.put(path, json=body, headers={"Authorization": f"Bearer {self.token}"}).json()


@pytest.fixture()
def local(tmp_path: Path) -> Iterator[Local]:
    """A data directory as a first start leaves it, and ARM on it in this process (no lifespan: no models)."""
    services, account = build_services(Settings.load(tmp_path / "data"))
    assert account is not None
    yield Local(tmp_path / "data", services.store, account, TestClient(create_app(services)),
                issue_token(services.store)[0])


def body(sku: str = "GlobalStandard", capacity: int = 100, model: str = MODEL) -> dict[str, object]:
    return {"sku": {"name": sku, "capacity": capacity}, "properties": {"model": {"name": model}}}


def same_refusal(local: Local, name: str, args: list[str], arm_body: dict[str, object], code: str) -> None:
    """The command fails as the ARM PUT of the same deployment does: exit 1, ARM's code and message, nothing
    written."""
    arm = local.arm_put(name, arm_body)
    assert arm["error"]["code"] == code, arm  # type: ignore[index]
    result = local.cli("deployments", "create", name, *args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip() == f"ERROR: ({code}) {arm['error']['message']}"  # type: ignore[index]
    assert "Traceback" not in result.stderr
    assert local.store.deployment(local.account.id, name) is None


def test_capacity_beyond_the_quota_is_refused_as_arm_refuses_it(local: Local) -> None:
    spec = load_catalog().get(MODEL)
    assert spec is not None
    local.store.set_quota_limit(local.account.subscription_id, local.account.location,
                                usage_name("GlobalStandard", spec), 260)  # chat-small already holds 250
    same_refusal(local, "over-quota", ["--model", MODEL, "--capacity", "100"], body(capacity=100),
                 "InsufficientQuota")


def test_an_unknown_deployment_type_is_refused_as_arm_refuses_it(local: Local) -> None:
    same_refusal(local, "bad-sku", ["--model", MODEL, "--sku", "Premium"], body(sku="Premium"),
                 "InvalidResourceProperties")


def test_a_capacity_below_one_is_refused_as_arm_refuses_it(local: Local) -> None:
    same_refusal(local, "no-capacity", ["--model", MODEL, "--capacity", "0"], body(capacity=0), "InvalidCapacity")


def test_an_unknown_model_is_refused_as_arm_refuses_it(local: Local) -> None:
    same_refusal(local, "no-model", ["--model", "gpt-99"], body(model="gpt-99"), "DeploymentModelNotSupported")


def test_an_invalid_name_is_refused_as_arm_refuses_it(local: Local) -> None:
    same_refusal(local, "bad name!", ["--model", MODEL], body(), "InvalidResourceName")


def test_a_deployment_made_on_the_command_line_is_audited(local: Local) -> None:
    made = local.cli("deployments", "create", "audited", "--model", MODEL, "--sku", "Standard", "--capacity", "5",
                     "--upstream-url", "http://127.0.0.1:9/v1", "--upstream-model", "smol")
    assert made.returncode == 0, made.stdout + made.stderr
    deployment = local.store.deployment(local.account.id, "audited")
    assert deployment is not None and deployment.sku_capacity == 5 and deployment.created_by == OPERATOR
    assert (deployment.upstream_url, deployment.upstream_model) == ("http://127.0.0.1:9/v1", "smol")
    events = AccessStore(local.store.engine).audit_events()
    writes = [e for e in events if e.scope.endswith(f"/accounts/{local.account.name}/deployments/audited")]
    assert [(e.principal, e.action, e.outcome) for e in writes] == [
        (OPERATOR, "Microsoft.CognitiveServices/accounts/deployments/write", "allowed")]


# finding: the key in every start's output ---------------------------------------------------------------------------


def serve_output(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """What `azurine serve` prints before it listens (the listening itself is left out)."""
    monkeypatch.setattr(uvicorn, "run", lambda *_, **__: None)
    monkeypatch.setenv("AZURINE_API_KEY", API_KEY)
    result = CliRunner().invoke(cli_app, ["serve", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    return result.output


def test_serve_prints_the_key_whole_only_on_the_start_that_created_it(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    first = serve_output(tmp_path / "data", monkeypatch)
    assert API_KEY in first
    again = serve_output(tmp_path / "data", monkeypatch)
    assert API_KEY not in again and API_KEY[:8] not in again
    assert f"********{API_KEY[-4:]}" in again


def test_a_client_secret_never_starts_with_a_dash() -> None:
    """A command line takes `-Xy…` for an option: `az login --password -Xy…` fails with "expected one argument". One
    secret in 64 started so; of 2,000, about 31 would."""
    assert not [secret for secret in (new_secret() for _ in range(2000)) if secret.startswith("-")]
