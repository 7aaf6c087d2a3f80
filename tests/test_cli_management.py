"""`azurine account|usage|rai-policy`, run as commands against a real Azurine over TLS."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

import test_management_sdk
from azurine.storage.bootstrap import DEFAULT_DEPLOYMENTS
from conftest import API_KEY, API_VERSION, ROOT, free_port, provision
from test_management_sdk import TlsServer

DEFAULT_NAMES = {d.name for d in DEFAULT_DEPLOYMENTS}

# the module-scoped fixture, bound here so that this module gets a server of its own
tls_server = test_management_sdk.tls_server

SUBSCRIPTION = "22222222-3333-4444-5555-666666666666"
GROUP = "rg-cli"
# settings a developer's shell may hold that would steer the commands away from the test server
STEERING = ("AZURINE_ENDPOINT", "AZURINE_SUBSCRIPTION", "AZURINE_TOKEN", "AZURINE_CA_BUNDLE", "AZURINE_DATA_DIR",
            "AZURINE_DATABASE_URL")


@pytest.fixture(scope="module", autouse=True)
def cli_subscription(tls_server: TlsServer) -> None:
    provision(tls_server.data_dir, SUBSCRIPTION, GROUP)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in STEERING}
    return subprocess.run([sys.executable, "-m", "azurine", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**clean, **(env or {})}, timeout=300)


def cli(server: TlsServer, *args: str) -> subprocess.CompletedProcess[str]:
    return run(*args, "--endpoint", server.url, "--ca-bundle", str(server.cert), "--data-dir", str(server.data_dir),
               "--subscription", SUBSCRIPTION)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    return result


def cli_json(server: TlsServer, *args: str) -> Any:
    return json.loads(ok(cli(server, *args)).stdout)


def failed(result: subprocess.CompletedProcess[str], code: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith(f"ERROR: ({code}) "), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def create_account(server: TlsServer, name: str, location: str = "eastus") -> dict[str, Any]:
    account: dict[str, Any] = cli_json(server, "account", "create", "-n", name, "-g", GROUP, "--kind", "OpenAI",
                                       "--sku", "S0", "-l", location)
    return account


def azure_openai(server: TlsServer, endpoint: str, key: str) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(azure_endpoint=endpoint, api_key=key, api_version=API_VERSION, max_retries=0,
                              http_client=httpx.Client(verify=ssl.create_default_context(cafile=str(server.cert))))


def chat(client: openai.AzureOpenAI, deployment: str) -> str:
    answer = client.chat.completions.create(model=deployment, messages=[{"role": "user", "content": "hi"}],
                                            max_tokens=2)
    return answer.choices[0].finish_reason


def test_account_and_deployment_lifecycle(tls_server: TlsServer) -> None:
    name = unique("cli-life")
    # a location of its own, so the quota it reads counts only this test's deployment
    location = "westeurope"
    account = cli_json(tls_server, "account", "create", "-n", name, "-g", GROUP, "--kind", "OpenAI", "--sku", "S0",
                       "-l", location, "--custom-domain", name, "--tags", "team=infra", "--tags", "cost=ml")
    assert account["id"] == (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/"
                             f"Microsoft.CognitiveServices/accounts/{name}")
    assert (account["kind"], account["sku"], account["location"]) == ("OpenAI", {"name": "S0"}, location)
    assert account["tags"] == {"team": "infra", "cost": "ml"}
    assert account["properties"]["customSubDomainName"] == name
    endpoint = account["properties"]["endpoint"]
    assert endpoint == f"{tls_server.url}/accounts/{name}/"

    assert cli_json(tls_server, "account", "show", "-n", name, "-g", GROUP)["id"] == account["id"]
    assert name in [a["name"] for a in cli_json(tls_server, "account", "list", "-g", GROUP)]
    assert name in [a["name"] for a in cli_json(tls_server, "account", "list")]
    assert name in ok(cli(tls_server, "account", "show", "-n", name, "-g", GROUP, "--output", "table")).stdout
    listed = ok(cli(tls_server, "account", "list", "-g", GROUP, "-o", "table")).stdout
    assert name in listed and endpoint in listed

    deployment = cli_json(tls_server, "account", "deployment", "create", "-n", name, "-g", GROUP,
                          "--deployment-name", "small", "--model-name", "SmolLM2-135M-Instruct", "--model-version",
                          "1", "--model-format", "HuggingFace", "--sku-name", "GlobalStandard", "--sku-capacity", "5")
    assert deployment["sku"] == {"name": "GlobalStandard", "capacity": 5}
    assert deployment["properties"]["model"] == {"format": "HuggingFace", "name": "SmolLM2-135M-Instruct",
                                                 "version": "1"}
    assert deployment["properties"]["provisioningState"] == "Succeeded"
    assert [d["name"] for d in cli_json(tls_server, "account", "deployment", "list", "-n", name, "-g", GROUP)] == [
        "small"]
    shown = cli_json(tls_server, "account", "deployment", "show", "-n", name, "-g", GROUP, "--deployment-name", "small")
    assert shown["id"] == deployment["id"]

    keys = cli_json(tls_server, "account", "keys", "list", "-n", name, "-g", GROUP)
    assert chat(azure_openai(tls_server, endpoint, keys["key1"]), "small")

    fresh = cli_json(tls_server, "account", "keys", "regenerate", "-n", name, "-g", GROUP, "--key-name", "key1")
    assert fresh["key1"] != keys["key1"] and fresh["key2"] == keys["key2"]
    with pytest.raises(openai.AuthenticationError):
        chat(azure_openai(tls_server, endpoint, keys["key1"]), "small")
    assert chat(azure_openai(tls_server, endpoint, fresh["key1"]), "small")

    models = cli_json(tls_server, "account", "list-models", "-n", name, "-g", GROUP)
    smol = next(m for m in models if m["name"] == "SmolLM2-135M-Instruct")
    assert "GlobalStandard" in {s["name"] for s in smol["skus"]}
    usages = {u["name"]["value"]: u for u in cli_json(tls_server, "usage", "list", "-l", location)}
    assert usages["OpenAI.GlobalStandard.smollm2-135m-instruct"]["currentValue"] == 5
    assert "OpenAI.GlobalStandard.smollm2-135m-instruct" in ok(
        cli(tls_server, "usage", "list", "-l", location, "-o", "table")).stdout

    assert ok(cli(tls_server, "account", "deployment", "delete", "-n", name, "-g", GROUP, "--deployment-name",
                  "small")).stdout == ""
    assert cli_json(tls_server, "account", "deployment", "list", "-n", name, "-g", GROUP) == []
    with pytest.raises(openai.NotFoundError):
        chat(azure_openai(tls_server, endpoint, fresh["key1"]), "small")

    assert ok(cli(tls_server, "account", "delete", "-n", name, "-g", GROUP)).stdout == ""
    gone = cli(tls_server, "account", "show", "-n", name, "-g", GROUP)
    failed(gone, "ResourceNotFound")
    assert name in gone.stderr


def test_settings_from_the_environment_and_a_given_token(tls_server: TlsServer) -> None:
    minted = run("token", "get", "--data-dir", str(tls_server.data_dir))
    token = json.loads(ok(minted).stdout)["accessToken"]
    # no --data-dir and no --subscription: the token and the default subscription are enough
    env = {"AZURINE_ENDPOINT": tls_server.url, "AZURINE_CA_BUNDLE": str(tls_server.cert), "AZURINE_TOKEN": token}
    default = json.loads(ok(run("account", "show", "-n", "default", "-g", "azurine", env=env)).stdout)
    assert default["id"].startswith("/subscriptions/00000000-0000-0000-0000-000000000000/")
    keys = json.loads(ok(run("account", "keys", "list", "-n", "default", "-g", "azurine", env=env)).stdout)
    assert keys["key1"] == API_KEY
    names = {d["name"] for d in json.loads(ok(run("account", "deployment", "list", "-n", "default", "-g", "azurine",
                                                  env=env)).stdout)}
    assert names == DEFAULT_NAMES


def test_an_unsupported_model_is_refused(tls_server: TlsServer) -> None:
    name = unique("cli-bad")
    create_account(tls_server, name)
    refused = cli(tls_server, "account", "deployment", "create", "-n", name, "-g", GROUP, "--deployment-name", "x",
                  "--model-name", "gpt-99", "--model-version", "1", "--model-format", "OpenAI",
                  "--sku-name", "Standard", "--sku-capacity", "1")
    failed(refused, "DeploymentModelNotSupported")
    ok(cli(tls_server, "account", "delete", "-n", name, "-g", GROUP))


def test_an_unreachable_endpoint_is_one_clear_line(tls_server: TlsServer) -> None:
    nobody = f"https://127.0.0.1:{free_port()}"
    result = run("account", "list", "--endpoint", nobody, "--ca-bundle", str(tls_server.cert),
                 "--data-dir", str(tls_server.data_dir))
    assert result.returncode == 1
    assert result.stderr.startswith(f"ERROR: Cannot reach Azurine at {nobody}: ")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_an_untrusted_certificate_names_the_way_out(tls_server: TlsServer) -> None:
    result = run("account", "list", "--endpoint", tls_server.url, "--data-dir", str(tls_server.data_dir))
    assert result.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr and "--ca-bundle" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_garbage_token_is_refused(tls_server: TlsServer) -> None:
    result = run("account", "list", "--endpoint", tls_server.url, "--ca-bundle", str(tls_server.cert),
                 "--token", "garbage")
    failed(result, "InvalidAuthenticationToken")


def test_no_token_and_no_database_says_what_to_do(tls_server: TlsServer, tmp_path: Path) -> None:
    result = run("account", "list", "--endpoint", tls_server.url, "--ca-bundle", str(tls_server.cert),
                 "--data-dir", str(tmp_path / "empty"))
    assert result.returncode == 1
    assert result.stderr.startswith("ERROR: No token: pass --token") and "Traceback" not in result.stderr
    assert not (tmp_path / "empty").exists()


@pytest.mark.parametrize("args", [
    ("account", "show", "-n", "x"),
    ("account", "create", "-n", "x", "-g", "g", "-l", "eastus", "--kind", "Speech"),
    ("account", "keys", "regenerate", "-n", "x", "-g", "g", "--key-name", "key3"),
    ("account", "list", "--output", "yaml"),
    ("account", "create", "-n", "x", "-g", "g", "-l", "eastus", "--tags", "=v"),
    ("account", "deployment", "create", "-n", "x", "-g", "g", "--deployment-name", "d", "--model-name", "m",
     "--model-version", "1", "--model-format", "f", "--sku-capacity", "0"),
    ("rai-policy", "create", "-n", "x", "-g", "g", "--policy-name", "p", "--policy-file", "/nonexistent.json"),
])
def test_bad_arguments_exit_2(args: tuple[str, ...]) -> None:
    result = run(*args, "--endpoint", "http://127.0.0.1:9", "--token", "unused")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


STRICT_POLICY = {"properties": {
    "mode": "Blocking",
    "basePolicyName": "Microsoft.DefaultV2",
    "contentFilters": [
        {"name": "Hate", "enabled": True, "severityThreshold": "Low", "blocking": True, "source": "Prompt"},
        {"name": "Violence", "enabled": True, "severityThreshold": "High", "blocking": False, "source": "Completion"},
    ],
    "customBlocklists": [],
}}


def test_rai_policy_lifecycle(tls_server: TlsServer, tmp_path: Path) -> None:
    name = unique("cli-rai")
    create_account(tls_server, name)
    policy_file = tmp_path / "strict.json"
    policy_file.write_text(json.dumps(STRICT_POLICY))

    created = cli_json(tls_server, "rai-policy", "create", "-n", name, "-g", GROUP, "--policy-name", "strict",
                       "--policy-file", str(policy_file))
    assert created["name"] == "strict" and created["type"] == "Microsoft.CognitiveServices/accounts/raiPolicies"
    assert created["properties"]["mode"] == "Blocking"
    assert created["properties"]["basePolicyName"] == "Microsoft.DefaultV2"
    assert {(f["name"], f["severityThreshold"], f["blocking"]) for f in created["properties"]["contentFilters"]} == {
        ("Hate", "Low", True), ("Violence", "High", False)}
    assert "strict" in [p["name"] for p in cli_json(tls_server, "rai-policy", "list", "-n", name, "-g", GROUP)]
    assert "strict" in ok(cli(tls_server, "rai-policy", "list", "-n", name, "-g", GROUP, "-o", "table")).stdout
    shown = cli_json(tls_server, "rai-policy", "show", "-n", name, "-g", GROUP, "--policy-name", "strict")
    assert shown["id"] == created["id"]

    deployment = cli_json(tls_server, "account", "deployment", "create", "-n", name, "-g", GROUP,
                          "--deployment-name", "filtered", "--model-name", "SmolLM2-135M-Instruct", "--model-version",
                          "1", "--model-format", "HuggingFace", "--sku-name", "GlobalStandard", "--sku-capacity", "1",
                          "--rai-policy-name", "strict")
    assert deployment["properties"]["raiPolicyName"] == "strict"
    ok(cli(tls_server, "account", "deployment", "delete", "-n", name, "-g", GROUP, "--deployment-name", "filtered"))

    assert ok(cli(tls_server, "rai-policy", "delete", "-n", name, "-g", GROUP, "--policy-name", "strict")).stdout == ""
    failed(cli(tls_server, "rai-policy", "show", "-n", name, "-g", GROUP, "--policy-name", "strict"),
           "ResourceNotFound")
    ok(cli(tls_server, "account", "delete", "-n", name, "-g", GROUP))


def test_resource_groups_hold_the_accounts_made_in_them(tls_server: TlsServer) -> None:
    group = unique("rg")
    name = unique("grouped")
    refused = cli(tls_server, "account", "create", "-n", name, "-g", group, "--kind", "OpenAI", "-l", "eastus")
    failed(refused, "ResourceGroupNotFound")
    made = cli_json(tls_server, "group", "create", "-n", group, "-l", "eastus", "--tags", "team=cli")
    assert made["id"] == f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}" and made["tags"] == {"team": "cli"}
    assert cli_json(tls_server, "group", "show", "-n", group)["location"] == "eastus"
    assert group in ok(cli(tls_server, "group", "list", "-o", "table")).stdout
    account = cli_json(tls_server, "account", "create", "-n", name, "-g", group, "--kind", "OpenAI", "-l", "eastus")
    assert account["id"].startswith(made["id"] + "/providers/")
    ok(cli(tls_server, "group", "delete", "-n", group, "--yes"))
    failed(cli(tls_server, "account", "show", "-n", name, "-g", group), "ResourceNotFound")
    failed(cli(tls_server, "group", "show", "-n", group), "ResourceGroupNotFound")
