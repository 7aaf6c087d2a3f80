"""The real `azure-mgmt-cognitiveservices` SDK against a running Azurine, over TLS with Azurine's tokens."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient
from azure.mgmt.cognitiveservices.models import (
    Account,
    AccountProperties,
    Deployment,
    DeploymentModel,
    DeploymentProperties,
    Encryption,
    IpRule,
    KeyVaultProperties,
    NetworkRuleSet,
    PatchResourceTagsAndSku,
    Sku,
)

from azurine.storage.bootstrap import DEFAULT_DEPLOYMENTS
from conftest import API_KEY, API_VERSION, ROOT, provision, start_server, stop

DEFAULT_NAMES = {d.name for d in DEFAULT_DEPLOYMENTS}
SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
GROUP = "rg-infra"


class AzurineCredential:
    """A token credential as azure-identity's are, with tokens from `azurine token get`. Like azure-identity's
    token cache, it keeps a token until five minutes before it expires, here for every credential of the test run
    (each token got so costs a CLI process: 63 of them took 42 s of CPU in a run)."""

    _tokens: dict[tuple[Path, str], AccessToken] = {}

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def get_token(self, *scopes: str, **_: object) -> AccessToken:
        resource = scopes[0].removesuffix(".default") if scopes else "https://management.azure.com/"
        cached = self._tokens.get((self.data_dir, resource))
        if cached is not None and cached.expires_on - time.time() > 300:
            return cached
        out = subprocess.run([sys.executable, "-m", "azurine", "token", "get", "--resource", resource,
                              "--data-dir", str(self.data_dir)], capture_output=True, text=True, check=True, cwd=ROOT)
        token = json.loads(out.stdout)
        got = self._tokens[(self.data_dir, resource)] = AccessToken(token["accessToken"], int(token["expires_on"]))
        return got


@dataclass
class TlsServer:
    url: str
    cert: Path
    data_dir: Path
    process: subprocess.Popen[bytes]

    def trusted(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def mgmt(self) -> CognitiveServicesManagementClient:
        return CognitiveServicesManagementClient(AzurineCredential(self.data_dir), SUBSCRIPTION, base_url=self.url,
                                                 connection_verify=str(self.cert), polling_interval=0.1)

    def openai(self, endpoint: str, key: str) -> openai.AzureOpenAI:
        return openai.AzureOpenAI(azure_endpoint=endpoint, api_key=key, api_version=API_VERSION, max_retries=0,
                                  http_client=httpx.Client(verify=self.trusted()))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    started = start_server(tmp_path_factory.mktemp("arm") / "data", tls=True)
    assert started.cert is not None
    provision(started.data_dir, SUBSCRIPTION, GROUP, "other-group")
    try:
        yield TlsServer(started.url, started.cert, started.data_dir, started.process)
    finally:
        stop(started.process)


def openai_account(location: str = "eastus", subdomain: str | None = None) -> Account:
    return Account(kind="OpenAI", sku=Sku(name="S0"), location=location, tags={"team": "infra"},
                   properties=AccountProperties(custom_sub_domain_name=subdomain, public_network_access="Enabled"))


def smol(capacity: int = 10, sku: str = "GlobalStandard") -> Deployment:
    return Deployment(sku=Sku(name=sku, capacity=capacity), properties=DeploymentProperties(
        model=DeploymentModel(format="HuggingFace", name="SmolLM2-135M-Instruct", version="1")))


def test_full_lifecycle_with_the_sdk(tls_server: TlsServer) -> None:
    client = tls_server.mgmt()
    account = client.accounts.begin_create(GROUP, "contoso-ai", openai_account(subdomain="contoso-ai")).result()
    assert account.properties.provisioning_state == "Succeeded"
    assert account.kind == "OpenAI" and account.sku.name == "S0" and account.tags == {"team": "infra"}
    assert account.id == (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/"
                          "Microsoft.CognitiveServices/accounts/contoso-ai")
    endpoint = account.properties.endpoint
    assert endpoint == f"{tls_server.url}/accounts/contoso-ai/"

    assert [a.name for a in client.accounts.list_by_resource_group(GROUP)] == ["contoso-ai"]
    assert "contoso-ai" in [a.name for a in client.accounts.list()]
    assert client.accounts.get(GROUP, "contoso-ai").properties.custom_sub_domain_name == "contoso-ai"

    deployment = client.deployments.begin_create_or_update(GROUP, "contoso-ai", "small", smol()).result()
    assert deployment.properties.provisioning_state == "Succeeded"
    assert deployment.sku.name == "GlobalStandard" and deployment.sku.capacity == 10
    limits = {r.key: (r.count, r.renewal_period) for r in deployment.properties.rate_limits}
    assert limits == {"request": (10, 10), "token": (10_000, 60)}
    assert deployment.properties.capabilities["chatCompletion"] == "true"
    assert [d.name for d in client.deployments.list(GROUP, "contoso-ai")] == ["small"]

    keys = client.accounts.list_keys(GROUP, "contoso-ai")
    chat = tls_server.openai(endpoint, keys.key1).chat.completions.create(
        model="small", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert chat.choices

    fresh = client.accounts.regenerate_key(GROUP, "contoso-ai", key_name="Key1")
    assert fresh.key1 != keys.key1 and fresh.key2 == keys.key2
    with pytest.raises(openai.AuthenticationError):
        tls_server.openai(endpoint, keys.key1).embeddings.create(model="small", input="x")
    assert tls_server.openai(endpoint, keys.key2).chat.completions.create(
        model="small", messages=[{"role": "user", "content": "hi"}], max_tokens=1).choices

    updated = client.accounts.begin_update(GROUP, "contoso-ai", Account(tags={"team": "ml"})).result()
    assert updated.tags == {"team": "ml"}

    client.deployments.begin_delete(GROUP, "contoso-ai", "small").result()
    with pytest.raises(openai.NotFoundError):
        tls_server.openai(endpoint, keys.key2).chat.completions.create(
            model="small", messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    client.accounts.begin_delete(GROUP, "contoso-ai").result()
    with pytest.raises(ResourceNotFoundError) as caught:
        client.accounts.get(GROUP, "contoso-ai")
    assert caught.value.error.code == "ResourceNotFound"


def test_bad_model_version_and_sku_get_azures_errors(tls_server: TlsServer) -> None:
    client = tls_server.mgmt()
    client.accounts.begin_create(GROUP, "errors-ai", openai_account()).result()
    bad_model = Deployment(sku=Sku(name="Standard", capacity=1), properties=DeploymentProperties(
        model=DeploymentModel(format="OpenAI", name="gpt-99", version="1")))
    with pytest.raises(HttpResponseError) as caught:
        client.deployments.begin_create_or_update(GROUP, "errors-ai", "x", bad_model).result()
    assert caught.value.status_code == 400 and caught.value.error.code == "DeploymentModelNotSupported"
    bad_version = Deployment(sku=Sku(name="Standard", capacity=1), properties=DeploymentProperties(
        model=DeploymentModel(format="HuggingFace", name="SmolLM2-135M-Instruct", version="999")))
    with pytest.raises(HttpResponseError) as caught:
        client.deployments.begin_create_or_update(GROUP, "errors-ai", "x", bad_version).result()
    assert caught.value.error.code == "DeploymentModelNotSupported"
    with pytest.raises(HttpResponseError) as caught:
        client.deployments.begin_create_or_update(GROUP, "errors-ai", "x", smol(sku="RegionalProvisionedManaged"))
    assert caught.value.error.code == "InvalidResourceProperties"
    client.accounts.begin_delete(GROUP, "errors-ai").result()


@pytest.mark.parametrize("sku", ["Standard", "GlobalStandard", "DataZoneStandard", "ProvisionedManaged",
                                 "GlobalProvisionedManaged", "DataZoneProvisionedManaged", "GlobalBatch",
                                 "DataZoneBatch", "DeveloperTier"])
def test_every_deployment_type(tls_server: TlsServer, sku: str) -> None:
    client = tls_server.mgmt()
    client.accounts.begin_create(GROUP, "skus-ai", openai_account()).result()
    deployment = client.deployments.begin_create_or_update(GROUP, "skus-ai", f"d-{sku.lower()}",
                                                           smol(capacity=2, sku=sku)).result()
    assert deployment.sku.name == sku
    has_limits = sku in ("Standard", "GlobalStandard", "DataZoneStandard", "DeveloperTier")
    assert bool(deployment.properties.rate_limits) == has_limits
    client.deployments.begin_delete(GROUP, "skus-ai", f"d-{sku.lower()}").result()


def test_quota_is_consumed_and_enforced(tls_server: TlsServer) -> None:
    client = tls_server.mgmt()
    client.accounts.begin_create(GROUP, "quota-ai", openai_account(location="westus")).result()
    name = "OpenAI.Standard.smollm2-135m-instruct"

    def usage() -> tuple[float, float]:
        found = {u.name.value: u for u in client.usages.list("westus")}
        return found[name].current_value, found[name].limit

    assert usage() == (0, 1000)
    client.deployments.begin_create_or_update(GROUP, "quota-ai", "a", smol(capacity=700, sku="Standard")).result()
    assert usage() == (700, 1000)
    with pytest.raises(HttpResponseError) as caught:
        client.deployments.begin_create_or_update(GROUP, "quota-ai", "b", smol(capacity=400, sku="Standard")).result()
    assert caught.value.error.code == "InsufficientQuota"
    assert "current available capacity 300" in caught.value.error.message
    # resizing a deployment counts only the difference
    client.deployments.begin_create_or_update(GROUP, "quota-ai", "a", smol(capacity=1000, sku="Standard")).result()
    assert usage() == (1000, 1000)
    client.accounts.begin_delete(GROUP, "quota-ai").result()
    assert usage() == (0, 1000)


def test_models_per_location_and_account(tls_server: TlsServer) -> None:
    client = tls_server.mgmt()
    names = {m.model.name for m in client.models.list("eastus")}
    assert {"Qwen2.5-Coder-0.5B-Instruct", "SmolLM2-135M-Instruct", "all-MiniLM-L6-v2"} <= names
    client.accounts.begin_create(GROUP, "models-ai", openai_account()).result()
    account_models = list(client.accounts.list_models(GROUP, "models-ai"))
    qwen = next(m for m in account_models if m.name == "Qwen2.5-Coder-0.5B-Instruct")
    assert {s.name for s in qwen.skus} >= {"GlobalStandard", "ProvisionedManaged", "GlobalBatch"}
    assert qwen.lifecycle_status == "GenerallyAvailable"
    client.accounts.begin_delete(GROUP, "models-ai").result()


def test_arm_refuses_missing_versions_and_tokens(tls_server: TlsServer) -> None:
    path = f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.CognitiveServices/accounts"
    token = AzurineCredential(tls_server.data_dir).get_token("https://management.azure.com/.default").token
    with httpx.Client(base_url=tls_server.url, verify=tls_server.trusted()) as http:
        missing = http.get(path, headers={"Authorization": f"Bearer {token}"})
        unknown = http.get(path + "?api-version=2099-01-01", headers={"Authorization": f"Bearer {token}"})
        anonymous = http.get(path + "?api-version=2025-09-01")
        forged = http.get(path + "?api-version=2025-09-01", headers={"Authorization": f"Bearer {token[:-4]}abcd"})
        data_token = AzurineCredential(tls_server.data_dir).get_token("https://cognitiveservices.azure.com").token
        wrong_audience = http.get(path + "?api-version=2025-09-01", headers={"Authorization": f"Bearer {data_token}"})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "MissingApiVersionParameter"
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "InvalidApiVersionParameter"
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "AuthenticationFailed"
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert wrong_audience.status_code == 401


def test_the_default_account_is_managed_too(tls_server: TlsServer) -> None:
    client = CognitiveServicesManagementClient(AzurineCredential(tls_server.data_dir),
                                               "00000000-0000-0000-0000-000000000000", base_url=tls_server.url,
                                               connection_verify=str(tls_server.cert))
    default = client.accounts.get("azurine", "default")
    assert {d.name for d in client.deployments.list("azurine", "default")} == DEFAULT_NAMES
    assert client.accounts.list_keys("azurine", "default").key1 == API_KEY
    assert default.properties.endpoint.endswith("/accounts/default/")


def test_network_encryption_and_local_auth_settings_are_kept(tls_server: TlsServer) -> None:
    client = tls_server.mgmt()
    # a customer-managed key must exist and be usable when it is set: one of the built-in key store
    subprocess.run([sys.executable, "-m", "azurine", "key-store", "create", "cmk", "--data-dir",
                    str(tls_server.data_dir)], check=True, capture_output=True, cwd=ROOT)
    settings = Account(kind="AIServices", sku=Sku(name="S0"), location="eastus", properties=AccountProperties(
        public_network_access="Disabled", disable_local_auth=True,
        network_acls=NetworkRuleSet(default_action="Deny", ip_rules=[IpRule(value="203.0.113.0/24")]),
        encryption=Encryption(key_source="Microsoft.KeyVault", key_vault_properties=KeyVaultProperties(
            key_name="cmk", key_vault_uri="https://keys.azurine.local/"))))
    account = client.accounts.begin_create(GROUP, "settings-ai", settings).result()
    again = client.accounts.get(GROUP, "settings-ai")
    for found in (account, again):
        assert found.kind == "AIServices"
        assert found.properties.public_network_access == "Disabled"
        assert found.properties.disable_local_auth is True
        assert found.properties.network_acls.default_action == "Deny"
        assert found.properties.network_acls.ip_rules[0].value == "203.0.113.0/24"
        assert found.properties.encryption.key_vault_properties.key_name == "cmk"
    client.accounts.begin_delete(GROUP, "settings-ai").result()


def test_names_and_subdomains_are_unique(tls_server: TlsServer) -> None:
    client = tls_server.mgmt()
    client.accounts.begin_create(GROUP, "unique-ai", openai_account(subdomain="unique-sub")).result()
    with pytest.raises(HttpResponseError) as caught:
        client.accounts.begin_create("other-group", "unique-ai", openai_account()).result()
    assert caught.value.status_code == 409
    with pytest.raises(HttpResponseError) as caught:
        client.accounts.begin_create(GROUP, "another-ai", openai_account(subdomain="unique-sub")).result()
    assert caught.value.status_code == 409 and caught.value.error.code == "CustomDomainInUse"
    with pytest.raises(HttpResponseError) as caught:
        client.accounts.begin_create(GROUP, "bad_name!", openai_account()).result()
    assert caught.value.status_code == 400
    with pytest.raises(HttpResponseError) as caught:
        client.accounts.begin_create(GROUP, "nokind-ai", Account(sku=Sku(name="S0"), location="eastus")).result()
    assert caught.value.error.code == "KindRequired"
    client.accounts.begin_delete(GROUP, "unique-ai").result()


def test_a_deployment_is_resized_in_place(tls_server: TlsServer) -> None:
    client = tls_server.mgmt()
    client.accounts.begin_create(GROUP, "resize-ai", openai_account()).result()
    client.deployments.begin_create_or_update(GROUP, "resize-ai", "d", smol(capacity=3, sku="Standard")).result()
    resized = client.deployments.begin_update(GROUP, "resize-ai", "d", PatchResourceTagsAndSku(
        sku=Sku(name="Standard", capacity=8), tags={"size": "large"})).result()
    assert resized.sku.capacity == 8 and resized.tags == {"size": "large"}
    assert client.deployments.get(GROUP, "resize-ai", "d").properties.rate_limits[0].count == 8
    client.accounts.begin_delete(GROUP, "resize-ai").result()


def test_quota_set_by_the_operator_applies(tls_server: TlsServer) -> None:
    client = tls_server.mgmt()
    client.accounts.begin_create(GROUP, "limited-ai", openai_account(location="northeurope")).result()
    name = "OpenAI.GlobalStandard.smollm2-135m-instruct"
    result = subprocess.run([sys.executable, "-m", "azurine", "quota", "set", name, "4", "--location", "northeurope",
                             "--subscription", SUBSCRIPTION, "--data-dir", str(tls_server.data_dir)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {u.name.value: u.limit for u in client.usages.list("northeurope")}[name] == 4
    with pytest.raises(HttpResponseError) as caught:
        client.deployments.begin_create_or_update(GROUP, "limited-ai", "d", smol(capacity=5)).result()
    assert caught.value.error.code == "InsufficientQuota"
    assert client.deployments.begin_create_or_update(GROUP, "limited-ai", "d", smol(capacity=4)).result()
    client.accounts.begin_delete(GROUP, "limited-ai").result()
