"""The built-in issuer against running servers: azure-identity's credentials sign in through its OpenID discovery
and token endpoints, the official SDKs use the tokens on both planes, and another Azurine trusts it as an OpenID
issuer across a signing-key rotation."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import openai
import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import ClientSecretCredential, ManagedIdentityCredential, get_bearer_token_provider
from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient

from azurine.identity.tokens import TENANT_ID, issue_token
from azurine.storage.access import AccessStore
from azurine.storage.database import make_engine
from azurine.storage.state import StateStore
from conftest import API_VERSION, Server, start_server, stop

COGNITIVE_SCOPE = "https://cognitiveservices.azure.com/.default"
OPENAI_USER = "Cognitive Services OpenAI User"
FAST_CACHES = {"AZURINE_TOKEN_CACHE_SECONDS": "1", "AZURINE_JWKS_REFETCH_SECONDS": "1"}
SETTLE = 1.3  # role assignments and verified tokens are cached for about a second here


def azurine(server: Server, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "azurine", *args, "--data-dir", str(server.data_dir)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def admin_token(server: Server) -> str:
    return issue_token(StateStore(make_engine(f"sqlite:///{server.data_dir / 'azurine.db'}")))[0]


def account_scope(server: Server) -> tuple[str, str, str]:
    store = StateStore(make_engine(f"sqlite:///{server.data_dir / 'azurine.db'}"))
    account = store.first_account()
    assert account is not None
    scope = (f"/subscriptions/{account.subscription_id}/resourceGroups/{account.resource_group}/providers/"
             f"Microsoft.CognitiveServices/accounts/{account.name}")
    return scope, account.resource_group, account.name


def assign(server: Server, principal: str, role: str, tenant: str | None = None) -> None:
    scope, _, _ = account_scope(server)
    args = ["role", "assignment", "create", "--assignee", principal, "--role", role, "--scope", scope,
            "--endpoint", server.url, *(["--assignee-tenant", tenant] if tenant else [])]
    if server.cert:
        args += ["--ca-bundle", str(server.cert)]
    azurine(server, *args)


def chat(server: Server, token: str) -> httpx.Response:
    return httpx.post(f"{server.url}/openai/deployments/embeddings/embeddings?api-version={API_VERSION}",
                      headers={"Authorization": f"Bearer {token}"}, json={"input": "hello"},
                      verify=server.trusted(), timeout=60)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("issuer") / "data", env=FAST_CACHES, tls=True)
    try:
        yield running
    finally:
        stop(running.process)


@pytest.fixture()
def trust_server_cert(issuer: Server, monkeypatch: pytest.MonkeyPatch) -> Path:
    """azure-identity's HTTP goes through requests, which trusts this bundle for every https call."""
    assert issuer.cert is not None
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(issuer.cert))
    return issuer.cert


def service_principal(server: Server) -> dict[str, str]:
    return json.loads(azurine(server, "principal", "create", f"app-{uuid.uuid4().hex[:8]}"))


def test_discovery_names_the_issuer_its_token_endpoint_and_keys(issuer: Server) -> None:
    with httpx.Client(verify=issuer.trusted(), timeout=30) as http:
        configuration = http.get(f"{issuer.url}/{TENANT_ID}/v2.0/.well-known/openid-configuration").json()
        assert configuration["issuer"] == f"{issuer.url}/{TENANT_ID}/v2.0"
        assert configuration["token_endpoint"] == f"{issuer.url}/{TENANT_ID}/oauth2/v2.0/token"
        keys = http.get(configuration["jwks_uri"]).json()["keys"]
        assert keys and all(k["kty"] == "EC" and k["crv"] == "P-256" and k["use"] == "sig" for k in keys)
        unknown = http.get(f"{issuer.url}/{uuid.uuid4()}/v2.0/.well-known/openid-configuration")
        assert unknown.status_code == 400
        assert unknown.json()["error"] == "invalid_tenant"
        assert unknown.json()["error_codes"] == [90002]


def test_a_service_principal_signs_in_with_azure_identity_and_needs_a_role(issuer: Server,
                                                                             trust_server_cert: Path) -> None:
    sp = service_principal(issuer)
    credential = ClientSecretCredential(TENANT_ID, sp["appId"], sp["password"], authority=issuer.url,
                                        disable_instance_discovery=True)
    token = credential.get_token(COGNITIVE_SCOPE)
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert claims["iss"] == f"{issuer.url}/{TENANT_ID}/v2.0"
    assert claims["aud"] == "https://cognitiveservices.azure.com"
    assert (claims["oid"], claims["appid"], claims["idtyp"]) == (sp["id"], sp["appId"], "app")
    assert token.expires_on > time.time() + 3000

    client = openai.AzureOpenAI(azure_endpoint=issuer.url, api_version=API_VERSION, max_retries=0,
                                azure_ad_token_provider=get_bearer_token_provider(credential, COGNITIVE_SCOPE),
                                http_client=httpx.Client(verify=issuer.trusted()))
    with pytest.raises(openai.AuthenticationError) as denied:
        client.embeddings.create(model="embeddings", input="hello")
    assert denied.value.code == "PermissionDenied"

    assign(issuer, sp["id"], OPENAI_USER)
    time.sleep(SETTLE)
    vectors = client.embeddings.create(model="embeddings", input="hello")
    assert len(vectors.data[0].embedding) == 384

    # the same credential on the management plane: the role reads the account but not its keys
    scope, group, name = account_scope(issuer)
    management = CognitiveServicesManagementClient(credential, scope.split("/")[2], base_url=issuer.url)
    assert management.accounts.get(group, name).name == name
    with pytest.raises(HttpResponseError) as forbidden:
        management.accounts.list_keys(group, name)
    assert forbidden.value.status_code == 403
    assert forbidden.value.error is not None and forbidden.value.error.code == "AuthorizationFailed"


def test_wrong_client_credentials_get_entra_errors(issuer: Server, trust_server_cert: Path) -> None:
    sp = service_principal(issuer)
    wrong_secret = ClientSecretCredential(TENANT_ID, sp["appId"], "not-the-secret", authority=issuer.url,
                                          disable_instance_discovery=True)
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        wrong_secret.get_token(COGNITIVE_SCOPE)
    unknown_app = ClientSecretCredential(TENANT_ID, str(uuid.uuid4()), sp["password"], authority=issuer.url,
                                         disable_instance_discovery=True)
    with pytest.raises(ClientAuthenticationError, match="AADSTS700016"):
        unknown_app.get_token(COGNITIVE_SCOPE)

    endpoint = f"{issuer.url}/{TENANT_ID}/oauth2/v2.0/token"
    with httpx.Client(verify=issuer.trusted(), timeout=30) as http:
        no_default = http.post(endpoint, data={"grant_type": "client_credentials", "client_id": sp["appId"],
                                               "client_secret": sp["password"],
                                               "scope": "https://cognitiveservices.azure.com"})
        assert (no_default.status_code, no_default.json()["error"]) == (400, "invalid_scope")
        password = http.post(endpoint, data={"grant_type": "password", "client_id": sp["appId"]})
        assert (password.status_code, password.json()["error_codes"]) == (400, [70003])
        basic = http.post(endpoint, auth=(sp["appId"], sp["password"]),
                          data={"grant_type": "client_credentials", "scope": COGNITIVE_SCOPE})
        assert basic.status_code == 200 and basic.json()["token_type"] == "Bearer"

    azurine(issuer, "principal", "disable", sp["appId"])
    with httpx.Client(verify=issuer.trusted(), timeout=30) as http:
        disabled = http.post(endpoint, auth=(sp["appId"], sp["password"]),
                             data={"grant_type": "client_credentials", "scope": COGNITIVE_SCOPE})
    assert (disabled.status_code, disabled.json()["error_codes"]) == (400, [7000112])

    log = AccessStore(make_engine(f"sqlite:///{issuer.data_dir / 'azurine.db'}"))
    denied = [e for e in log.audit_events(outcome="denied", limit=1000)
              if e.action == "Azurine.Directory/tokens/clientCredentials" and e.principal == sp["appId"]]
    assert {e.detail.split()[1] for e in denied} >= {"AADSTS7000215", "AADSTS1002012", "AADSTS7000112"}
    changes = {e.action for e in log.audit_events(limit=1000)}
    assert {"Azurine.Directory/servicePrincipals/create", "Azurine.Directory/principals/disable"} <= changes


def test_a_managed_identity_gets_tokens_from_the_identity_endpoint(issuer: Server, trust_server_cert: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    identity = json.loads(azurine(issuer, "principal", "create", f"workload-{uuid.uuid4().hex[:8]}",
                                  "--kind", "managed-identity", "--endpoint", issuer.url))
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity["IDENTITY_ENDPOINT"])
    monkeypatch.setenv("IDENTITY_HEADER", identity["IDENTITY_HEADER"])
    credential = ManagedIdentityCredential()
    assign(issuer, identity["principalId"], OPENAI_USER)
    time.sleep(SETTLE)
    token = credential.get_token(COGNITIVE_SCOPE).token
    assert jwt.decode(token, options={"verify_signature": False})["oid"] == identity["principalId"]
    assert chat(issuer, token).status_code == 200

    monkeypatch.setenv("IDENTITY_HEADER", "not-the-header")
    with pytest.raises(ClientAuthenticationError):
        ManagedIdentityCredential().get_token(COGNITIVE_SCOPE)


def test_another_server_trusts_this_one_across_a_signing_key_rotation(issuer: Server, tmp_path: Path) -> None:
    assert issuer.cert is not None
    relying = start_server(tmp_path / "relying", env={
        **FAST_CACHES, "AZURINE_TRUSTED_ISSUERS": f"{issuer.url}/{TENANT_ID}/v2.0",
        "SSL_CERT_FILE": str(issuer.cert)})
    try:
        sp = service_principal(issuer)
        assign(issuer, sp["id"], OPENAI_USER)
        # the relying server's own RBAC decides what the token may do, for the issuer's principal of that id
        assign(relying, sp["id"], OPENAI_USER, tenant=f"{issuer.url}/{TENANT_ID}/v2.0")
        endpoint = f"{issuer.url}/{TENANT_ID}/oauth2/v2.0/token"
        form = {"grant_type": "client_credentials", "client_id": sp["appId"], "client_secret": sp["password"],
                "scope": COGNITIVE_SCOPE}

        def new_token() -> str:
            response = httpx.post(endpoint, data=form, verify=issuer.trusted(), timeout=30)
            assert response.status_code == 200, response.text
            return response.json()["access_token"]

        before = new_token()
        time.sleep(SETTLE)
        assert chat(relying, before).status_code == 200

        azurine(issuer, "token", "rotate-key")
        published = httpx.get(f"{issuer.url}/{TENANT_ID}/discovery/v2.0/keys", verify=issuer.trusted()).json()
        assert jwt.get_unverified_header(before)["kid"] in {k["kid"] for k in published["keys"]}
        assert len(published["keys"]) >= 2  # the new key and the one rotated out, until it retires
        after = new_token()
        assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
        time.sleep(SETTLE)  # past the relying server's minimum time between fetches of the issuer's keys
        assert chat(relying, after).status_code == 200  # the new key is fetched when a token names it
        assert chat(relying, before).status_code == 200  # the old one verifies until its tokens expire
        assert chat(issuer, before).status_code == 200

        azurine(issuer, "token", "rotate-key", "--retire-now")  # as for a leaked key
        time.sleep(SETTLE)
        for token in (before, after):
            refused = chat(issuer, token)
            assert refused.status_code == 401
            assert "invalid" in refused.json()["error"]["message"].lower()
        assert chat(issuer, new_token()).status_code == 200
    finally:
        stop(relying.process)
