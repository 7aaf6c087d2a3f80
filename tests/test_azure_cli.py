"""The real Azure CLI (`az`, from the package index) against Azurine over TLS, unchanged: cloud registration by
endpoint discovery, a service principal's login, `az account`, `az group`, `az provider` and `az cognitiveservices`,
then a chat completion with the key `az` listed.

`az` is large, so it lives in a virtual environment of its own, made once and reused
(`AZURINE_AZ_VENV`, by default ~/.cache/azurine/az-venv), never in the project's."""

from __future__ import annotations

import fcntl
import json
import os
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from conftest import API_VERSION, ROOT, Server, start_server, stop

AZ_VERSION = "2.91.0"
TENANT = "00000000-0000-0000-0000-00000000a2e0"


def az_venv() -> Path:
    return Path(os.environ.get("AZURINE_AZ_VENV", Path.home() / ".cache" / "azurine" / "az-venv"))


def _installed_version(python: Path) -> str | None:
    if not python.exists():
        return None
    found = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('azure-cli'))"],
                           capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


@pytest.fixture(scope="session")
def az_executable() -> Path:
    """`az` of the pinned version, installed on first use; a lock keeps concurrent test runs from installing it
    twice at once."""
    venv = az_venv()
    python = venv / "bin" / "python"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version(python) != AZ_VERSION:
            if not python.exists():
                subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=600)
            installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                        f"azure-cli=={AZ_VERSION}"], capture_output=True, text=True, timeout=3600)
            assert installed.returncode == 0, installed.stdout[-4000:] + installed.stderr[-4000:]
    return venv / "bin" / "az"


@dataclass
class Az:
    executable: Path
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.executable), *args], capture_output=True, text=True, env=self.env,
                              timeout=600)

    def ok(self, *args: str) -> Any:
        """The command's JSON output (None when it prints nothing); the command must succeed."""
        done = self.run(*args, "--output", "json")
        assert done.returncode == 0, f"az {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return json.loads(done.stdout) if done.stdout.strip() else None


@dataclass
class Cloud:
    server: Server
    subscription: str
    app_id: str
    password: str
    object_id: str


def azurine(server: Server, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "azurine", *args, "--data-dir", str(server.data_dir)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    """A TLS server, a subscription of its own and a service principal that is Owner of it (and of nothing
    else): what an operator sets up for a team."""
    server = start_server(tmp_path_factory.mktemp("az") / "data", tls=True)
    assert server.cert is not None
    try:
        subscription = json.loads(azurine(server, "subscription", "create", "--name", "Team", "--id",
                                          str(uuid.uuid4())))["id"]
        sp = json.loads(azurine(server, "principal", "create", f"ci-{uuid.uuid4().hex[:8]}"))
        azurine(server, "role", "assignment", "create", "--assignee", sp["id"], "--assignee-principal-type",
                "ServicePrincipal", "--role", "Owner", "--scope", f"/subscriptions/{subscription}",
                "--endpoint", server.url, "--ca-bundle", str(server.cert))
        yield Cloud(server, subscription, sp["appId"], sp["password"], sp["id"])
    finally:
        stop(server.process)


@pytest.fixture()
def az(az_executable: Path, cloud: Cloud, tmp_path: Path) -> Az:
    """`az` with a configuration of its own, trusting the server's certificate as any requests client does."""
    assert cloud.server.cert is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "AZURINE_"))}
    env.update({"AZURE_CONFIG_DIR": str(tmp_path / "azure"), "REQUESTS_CA_BUNDLE": str(cloud.server.cert),
                "AZURE_CORE_COLLECT_TELEMETRY": "false", "AZURE_CORE_SURVEY_MESSAGE": "false",
                "AZURE_CORE_NO_COLOR": "true"})
    return Az(az_executable, env)


def test_az_registers_the_cloud_logs_in_and_manages_an_account(az: Az, cloud: Cloud) -> None:
    az.ok("cloud", "register", "--name", "Azurine", "--endpoint-resource-manager", f"{cloud.server.url}/")
    az.ok("cloud", "set", "--name", "Azurine")
    registered = az.ok("cloud", "show", "--name", "Azurine")
    assert registered["endpoints"]["activeDirectory"] == f"{cloud.server.url}/"
    assert registered["endpoints"]["resourceManager"] == f"{cloud.server.url}/"
    az.ok("config", "set", "core.instance_discovery=false")

    logged_in = az.ok("login", "--service-principal", "--username", cloud.app_id, "--password", cloud.password,
                      "--tenant", TENANT)
    # the principal holds a role in its team's subscription only: the default one is not shown to it
    assert [s["id"] for s in logged_in] == [cloud.subscription]
    az.ok("account", "set", "--subscription", cloud.subscription)
    shown = az.ok("account", "show")
    assert (shown["id"], shown["tenantId"], shown["user"]["type"]) == (cloud.subscription, TENANT,
                                                                        "servicePrincipal")
    assert az.ok("provider", "show", "--namespace", "Microsoft.CognitiveServices")["registrationState"] == "Registered"

    group = az.ok("group", "create", "--name", "rg-az", "--location", "eastus")
    assert group["id"] == f"/subscriptions/{cloud.subscription}/resourceGroups/rg-az"
    assert group["properties"]["provisioningState"] == "Succeeded"
    assert "rg-az" in [g["name"] for g in az.ok("group", "list")]

    name = f"az-{uuid.uuid4().hex[:8]}"
    account = az.ok("cognitiveservices", "account", "create", "--name", name, "--resource-group", "rg-az",
                    "--kind", "OpenAI", "--sku", "S0", "--location", "eastus", "--yes")
    assert account["properties"]["provisioningState"] == "Succeeded"
    endpoint = account["properties"]["endpoint"]
    keys = az.ok("cognitiveservices", "account", "keys", "list", "--name", name, "--resource-group", "rg-az")
    models = az.ok("cognitiveservices", "account", "list-models", "--name", name, "--resource-group", "rg-az")
    assert "SmolLM2-135M-Instruct" in {m["name"] for m in models}

    deployment = az.ok("cognitiveservices", "account", "deployment", "create", "--name", name,
                       "--resource-group", "rg-az", "--deployment-name", "small", "--model-name",
                       "SmolLM2-135M-Instruct", "--model-version", "1", "--model-format", "HuggingFace",
                       "--sku-name", "GlobalStandard", "--sku-capacity", "10")
    assert deployment["properties"]["provisioningState"] == "Succeeded"
    listed = az.ok("cognitiveservices", "account", "deployment", "list", "--name", name, "--resource-group", "rg-az")
    assert [d["name"] for d in listed] == ["small"]

    client = openai.AzureOpenAI(azure_endpoint=endpoint, api_key=keys["key1"], api_version=API_VERSION,
                                max_retries=0, http_client=httpx.Client(
                                    verify=ssl.create_default_context(cafile=str(cloud.server.cert))))
    answer = client.chat.completions.create(model="small", messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=2)
    assert answer.choices[0].finish_reason in ("stop", "length")

    az.ok("cognitiveservices", "account", "delete", "--name", name, "--resource-group", "rg-az")
    assert name not in [a["name"] for a in az.ok("cognitiveservices", "account", "list")]
    az.ok("group", "delete", "--name", "rg-az", "--yes")
    assert az.ok("group", "exists", "--name", "rg-az") is False


def test_az_sees_errors_as_arm_words_them(az: Az, cloud: Cloud) -> None:
    az.ok("cloud", "register", "--name", "Azurine", "--endpoint-resource-manager", f"{cloud.server.url}/")
    az.ok("cloud", "set", "--name", "Azurine")
    az.ok("config", "set", "core.instance_discovery=false")
    az.ok("login", "--service-principal", "--username", cloud.app_id, "--password", cloud.password,
          "--tenant", TENANT)
    missing_group = az.run("cognitiveservices", "account", "create", "--name", f"az-{uuid.uuid4().hex[:8]}",
                           "--resource-group", "no-such-group", "--kind", "OpenAI", "--sku", "S0",
                           "--location", "eastus", "--yes")
    assert missing_group.returncode != 0 and "ResourceGroupNotFound" in missing_group.stderr
    unknown = az.run("group", "show", "--name", "no-such-group")
    assert unknown.returncode != 0 and "ResourceGroupNotFound" in unknown.stderr
    bad_version = az.run("rest", "--method", "get", "--url",
                         f"/subscriptions/{cloud.subscription}/providers/Microsoft.CognitiveServices/accounts"
                         "?api-version=2026-05-16-preview")
    assert bad_version.returncode != 0 and "InvalidApiVersionParameter" in bad_version.stderr


def test_az_logs_in_with_a_managed_identity(az: Az, cloud: Cloud) -> None:
    """App Service's protocol: the identity's endpoint and header secret in the environment, as App Service sets
    them for its apps."""
    identity = json.loads(azurine(cloud.server, "principal", "create", f"mi-{uuid.uuid4().hex[:8]}", "--kind",
                                  "managed-identity", "--endpoint", cloud.server.url))
    azurine(cloud.server, "role", "assignment", "create", "--assignee", identity["principalId"],
            "--assignee-principal-type", "ServicePrincipal", "--role", "Reader", "--scope",
            f"/subscriptions/{cloud.subscription}", "--endpoint", cloud.server.url, "--ca-bundle",
            str(cloud.server.cert))
    az.env.update({"IDENTITY_ENDPOINT": identity["IDENTITY_ENDPOINT"], "IDENTITY_HEADER": identity["IDENTITY_HEADER"]})
    az.ok("cloud", "register", "--name", "Azurine", "--endpoint-resource-manager", f"{cloud.server.url}/")
    az.ok("cloud", "set", "--name", "Azurine")
    az.ok("config", "set", "core.instance_discovery=false")
    logged_in = az.ok("login", "--identity")
    assert [s["id"] for s in logged_in] == [cloud.subscription]
    assert isinstance(az.ok("group", "list"), list)
    denied = az.run("group", "create", "--name", "rg-reader", "--location", "eastus")
    assert denied.returncode != 0 and "AuthorizationFailed" in denied.stderr
