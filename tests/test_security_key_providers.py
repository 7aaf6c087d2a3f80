"""Customer-managed key settings are tenant input, and the key stores they name are reached with the server's own
credentials. So: a key name or version that is not one the store's naming rules allow is refused on the ARM
request (400 `InvalidResourceProperties`) before any request to a key store; every path segment sent to a store
is quoted; an Azure key vault (and a managed identity for it) is used only when the operator lists it in
`AZURINE_KEY_VAULT_ALLOWED`; and what a key store or a credential library says when it refuses is logged for the
operator, never returned to the caller, who gets the status and a generic reason in Azure's error envelope."""

from __future__ import annotations

import logging
import os
import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from azurine.storage.database import make_engine
from azurine.storage.key_providers import (
    AZURE_KEY_VAULT,
    LOCAL_KEY_STORE_URI,
    VAULT,
    InvalidEncryption,
    KeyProviders,
    KeyRef,
    KeyUnavailable,
)
from azurine.storage.key_providers.allow_list import VaultAllowList
from azurine.storage.key_providers.azure_key_vault import AzureKeyVault, azure_identity_token
from azurine.storage.key_providers.local_store import LocalKeyStore
from azurine.storage.key_providers.service import ServiceKey
from azurine.storage.key_providers.vault_transit import VaultSettings, VaultTransit
from conftest import provision, start_server, stop
from test_customer_managed_keys import WireServer
from test_management_sdk import GROUP, SUBSCRIPTION, TlsServer

SECRET_DETAIL = "permission denied on secret/payroll for token s.internal-detail"
HOSTILE_NAMES = ("../../secret/payroll", "orders?list=true", "orders#x", "a/b", "orders%2F..", "", "k" * 128,
                 "ordérs", "orders ")
CONTOSO = "https://contoso.vault.azure.net/"
HEX_VERSION = "0123456789abcdef0123456789abcdef"
IDENTITY = "5b1c7a0e-7f43-4d6e-9a1b-2c3d4e5f6a7b"


def encryption(name: str, uri: str, version: str = "", identity: str = "") -> dict[str, Any]:
    properties = {"keyName": name, "keyVaultUri": uri}
    if version:
        properties["keyVersion"] = version
    if identity:
        properties["identityClientId"] = identity
    return {"keySource": "Microsoft.KeyVault", "keyVaultProperties": properties}


class FakeVault:
    """Vault's transit engine, enough of it: `orders` wraps (reversibly, not securely), `refused` is denied with
    text only the operator should see, and every request is recorded."""

    def __init__(self) -> None:
        self.server = WireServer(self.handle)
        self.url = self.server.url

    def handle(self, method: str, path: str, _: Any, headers: Any, body: Any) -> tuple[int, Any]:
        if headers.get("X-Vault-Token") != "s.server-token":
            return 403, {"errors": ["permission denied"]}
        if path.endswith("/refused"):
            return 403, {"errors": [SECRET_DETAIL]}
        if method == "GET" and path == "/v1/transit/keys/orders":
            return 200, {"data": {"latest_version": 1}}
        if path == "/v1/transit/encrypt/orders":
            return 200, {"data": {"ciphertext": "vault:v1:" + body["plaintext"]}}
        if path == "/v1/transit/decrypt/orders":
            return 200, {"data": {"plaintext": body["ciphertext"].split(":", 2)[2]}}
        return 404, {"errors": []}

    @property
    def seen(self) -> list[tuple[str, str]]:
        return self.server.seen


@pytest.fixture()
def vault() -> Iterator[FakeVault]:
    fake = FakeVault()
    yield fake
    fake.server.close()


def providers(tmp_path: Path, vault_url: str = "https://vault.internal:8200", allowed: str = "") -> KeyProviders:
    engine = make_engine(f"sqlite:///{tmp_path / 'azurine.db'}")
    service = ServiceKey(os.urandom(32))
    return KeyProviders(service, LocalKeyStore(engine, service), VaultTransit(VaultSettings(vault_url, "t")),
                        AzureKeyVault(token=lambda _: pytest.fail("no token may be asked for")),
                        azure_allowed=VaultAllowList.parse(allowed))


# -- names and versions ----------------------------------------------------------------------------------------

def test_key_names_outside_the_naming_rule_are_refused_for_every_store(tmp_path: Path) -> None:
    chosen = providers(tmp_path, allowed=CONTOSO)
    for uri in (LOCAL_KEY_STORE_URI, "https://vault.internal:8200/", CONTOSO):
        for name in HOSTILE_NAMES:
            with pytest.raises(InvalidEncryption, match="keyName"):
                chosen.ref_for(encryption(name, uri))
        assert chosen.ref_for(encryption("Orders-2024", uri)).name == "Orders-2024"
    # Vault's transit keys may also have underscores, which are safe in a URL path
    assert chosen.ref_for(encryption("orders_eu", "https://vault.internal:8200/")).source == VAULT
    with pytest.raises(InvalidEncryption, match="keyName"):
        chosen.ref_for(encryption("orders_eu", CONTOSO))


def test_key_versions_follow_each_stores_format(tmp_path: Path) -> None:
    chosen = providers(tmp_path, allowed=CONTOSO)
    vault_uri = "https://vault.internal:8200/"
    assert chosen.ref_for(encryption("k", vault_uri, "3")).version == "3"
    for bad in ("abc", "0", "-1", "1.5", "01", "3/../keys", HEX_VERSION):
        with pytest.raises(InvalidEncryption, match="keyVersion"):
            chosen.ref_for(encryption("k", vault_uri, bad))
    for uri in (CONTOSO, LOCAL_KEY_STORE_URI):
        assert chosen.ref_for(encryption("k", uri, HEX_VERSION)).version == HEX_VERSION
        for bad in ("abc", "3", HEX_VERSION + "0", HEX_VERSION[:-1] + "/", "../" + HEX_VERSION[3:]):
            with pytest.raises(InvalidEncryption, match="keyVersion"):
                chosen.ref_for(encryption("k", uri, bad))


def test_vault_transit_sends_nothing_for_a_hostile_key_reference(vault: FakeVault) -> None:
    """A reference stored before names were checked must not reach Vault either."""
    transit = VaultTransit(VaultSettings(vault.url, "s.server-token"))
    for name in ("../../secret/payroll", "orders?list=true", "orders/../../sys/seal"):
        ref = KeyRef(VAULT, name, vault_uri=vault.url + "/")
        with pytest.raises(KeyUnavailable):
            transit.wrap(ref, b"d" * 32)
        with pytest.raises(KeyUnavailable):
            transit.unwrap(ref.at("1"), b"vault:v1:ZA==")
        with pytest.raises(KeyUnavailable):
            transit.latest_version(ref)
    with pytest.raises(KeyUnavailable, match="version"):  # not a ValueError, which would be a 500
        transit.wrap(KeyRef(VAULT, "orders", "abc", vault.url + "/"), b"d" * 32)
    assert vault.seen == []
    assert transit.wrap(KeyRef(VAULT, "orders", vault_uri=vault.url + "/"), b"d" * 32).version == "1"


def test_azure_key_vault_sends_nothing_for_a_hostile_key_reference() -> None:
    seen: list[str] = []
    server = WireServer(lambda method, path, *_: (seen.append(path), (404, {}))[1])
    try:
        azure = AzureKeyVault(token=lambda _: "aad-token")
        for name, version in (("../../secrets/payroll", HEX_VERSION), ("cmk?x=1", HEX_VERSION),
                              ("cmk", "../../secrets/payroll"), ("cmk", "abc")):
            ref = KeyRef(AZURE_KEY_VAULT, name, version, server.url + "/")
            with pytest.raises(KeyUnavailable):
                azure.unwrap(ref, b"x")
            with pytest.raises(KeyUnavailable):
                azure.wrap(ref, b"x")
        with pytest.raises(KeyUnavailable):
            azure.latest_version(KeyRef(AZURE_KEY_VAULT, "a/b", vault_uri=server.url + "/"))
    finally:
        server.close()
    assert seen == []


# -- what a refusal tells the caller ---------------------------------------------------------------------------

def test_vaults_refusal_text_is_logged_not_returned(vault: FakeVault, caplog: pytest.LogCaptureFixture) -> None:
    transit = VaultTransit(VaultSettings(vault.url, "s.server-token"))
    with caplog.at_level(logging.WARNING), pytest.raises(KeyUnavailable) as caught:
        transit.wrap(KeyRef(VAULT, "refused", vault_uri=vault.url + "/"), b"d" * 32)
    assert "403" in str(caught.value) and "refused" in str(caught.value)
    assert "secret/payroll" not in str(caught.value) and "internal-detail" not in str(caught.value)
    assert SECRET_DETAIL in caplog.text
    vault.server.close()
    with caplog.at_level(logging.WARNING), pytest.raises(KeyUnavailable) as unreachable:
        transit.latest_version(KeyRef(VAULT, "orders", vault_uri=vault.url + "/"))
    assert "cannot be reached" in str(unreachable.value) and "Errno" not in str(unreachable.value)


def test_azure_key_vaults_refusal_text_is_logged_not_returned(caplog: pytest.LogCaptureFixture) -> None:
    def handle(*_: Any) -> tuple[int, Any]:
        return 403, {"error": {"code": "Forbidden", "message": f"Caller is not authorized: {SECRET_DETAIL}"}}

    server = WireServer(handle)
    try:
        azure = AzureKeyVault(token=lambda _: "aad-token")
        with caplog.at_level(logging.WARNING), pytest.raises(KeyUnavailable) as caught:
            azure.unwrap(KeyRef(AZURE_KEY_VAULT, "cmk", HEX_VERSION, server.url + "/"), b"x")
    finally:
        server.close()
    assert "403" in str(caught.value) and "internal-detail" not in str(caught.value)
    assert SECRET_DETAIL in caplog.text


def test_credential_errors_are_logged_not_returned(monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    chain = ("DefaultAzureCredential failed to retrieve a token from the included credentials.\nAttempted "
             "credentials:\n\tEnvironmentCredential: EnvironmentCredential authentication unavailable.\n\t"
             "AzureCliCredential: Azure CLI not found on path /opt/host/bin")

    class Failing:
        def __init__(self, **_: Any) -> None:
            pass

        def get_token(self, *_: Any) -> Any:
            raise RuntimeError(chain)

    monkeypatch.setitem(sys.modules, "azure.identity", types.SimpleNamespace(DefaultAzureCredential=Failing))
    with caplog.at_level(logging.WARNING), pytest.raises(KeyUnavailable) as caught:
        azure_identity_token(KeyRef(AZURE_KEY_VAULT, "cmk", vault_uri=CONTOSO))
    assert "Credential" not in str(caught.value) and "/opt/host" not in str(caught.value)
    assert "AzureCliCredential" in caplog.text


# -- which Azure key vaults may be used ------------------------------------------------------------------------

def test_azure_key_vaults_are_used_only_when_the_operator_lists_them(tmp_path: Path) -> None:
    closed = providers(tmp_path)  # the default: none
    with pytest.raises(InvalidEncryption, match="AZURINE_KEY_VAULT_ALLOWED"):
        closed.ref_for(encryption("cmk", CONTOSO))
    stored = KeyRef(AZURE_KEY_VAULT, "cmk", HEX_VERSION, CONTOSO)  # set while the operator still allowed it
    with pytest.raises(KeyUnavailable, match="not one this server may use"):
        closed.provider(stored)

    listed = providers(tmp_path, allowed=f"https://CONTOSO.vault.azure.net, "
                                         f"https://hsm.managedhsm.azure.net/#{IDENTITY}")
    assert listed.ref_for(encryption("cmk", "https://contoso.vault.azure.net")).source == AZURE_KEY_VAULT
    assert listed.provider(stored) is listed.azure
    for uri in ("https://fabrikam.vault.azure.net/", "https://contoso.vault.azure.net:444/"):
        with pytest.raises(InvalidEncryption, match="not one this server may use"):
            listed.ref_for(encryption("cmk", uri))
    # a managed identity of the host only where the operator paired it with the vault
    with pytest.raises(InvalidEncryption, match="identityClientId"):
        listed.ref_for(encryption("cmk", CONTOSO, identity=IDENTITY))
    with pytest.raises(InvalidEncryption, match="identityClientId"):
        listed.ref_for(encryption("cmk", "https://hsm.managedhsm.azure.net/"))
    paired = listed.ref_for(encryption("cmk", "https://hsm.managedhsm.azure.net/", identity=IDENTITY.upper()))
    assert paired.identity_client_id == IDENTITY.upper()
    with pytest.raises(KeyUnavailable):
        listed.provider(KeyRef(AZURE_KEY_VAULT, "cmk", HEX_VERSION, CONTOSO, IDENTITY))


def test_the_allow_list_setting_is_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURINE_KEY_VAULT_ALLOWED", raising=False)
    assert not VaultAllowList.from_environment().permits(CONTOSO, "")
    monkeypatch.setenv("AZURINE_KEY_VAULT_ALLOWED", f" {CONTOSO} ,https://b.vault.azure.cn#{IDENTITY} ")
    allowed = VaultAllowList.from_environment()
    assert allowed.permits(CONTOSO, "") and allowed.permits("https://b.vault.azure.cn/", IDENTITY)
    assert not allowed.permits("https://b.vault.azure.cn/", "")
    for bad in ("contoso.vault.azure.net", "http://contoso.vault.azure.net", "https://vault.example/",
                "https://contoso.vault.azure.net/keys/cmk"):
        monkeypatch.setenv("AZURINE_KEY_VAULT_ALLOWED", bad)
        with pytest.raises(ValueError, match="AZURINE_KEY_VAULT_ALLOWED"):
            VaultAllowList.from_environment()


# -- the ARM request -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def arm_vault() -> Iterator[FakeVault]:
    fake = FakeVault()
    yield fake
    fake.server.close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory, arm_vault: FakeVault) -> Iterator[TlsServer]:
    started = start_server(tmp_path_factory.mktemp("cmk-security") / "data", tls=True,
                           env={"AZURINE_VAULT_ADDR": arm_vault.url, "AZURINE_VAULT_TOKEN": "s.server-token",
                                "AZURINE_KEY_VAULT_ALLOWED": ""})
    assert started.cert is not None
    provision(started.data_dir, SUBSCRIPTION, GROUP)
    try:
        yield TlsServer(started.url, started.cert, started.data_dir, started.process)
    finally:
        stop(started.process)


def refused_account(tls: TlsServer, setting: dict[str, Any]) -> HttpResponseError:
    body = {"kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus", "properties": {"encryption": setting}}
    with pytest.raises(HttpResponseError) as caught:
        tls.mgmt().accounts.begin_create(GROUP, f"cmk-{uuid.uuid4().hex[:8]}", body).result()  # type: ignore
    assert caught.value.status_code == 400, caught.value.message
    return caught.value


def test_arm_refuses_hostile_key_names_before_reaching_the_key_store(tls: TlsServer, arm_vault: FakeVault) -> None:
    before = len(arm_vault.seen)
    for name in ("../../secret/payroll", "orders?list=true", "orders/../../../sys/seal"):
        error = refused_account(tls, encryption(name, arm_vault.url))
        assert error.error.code == "InvalidResourceProperties" and "keyName" in error.message
    error = refused_account(tls, encryption("orders", arm_vault.url, version="abc"))  # was a 500
    assert error.error.code == "InvalidResourceProperties" and "keyVersion" in error.message
    assert arm_vault.seen[before:] == []
    # a good name still works, by the same route
    name = f"cmk-{uuid.uuid4().hex[:8]}"
    made = tls.mgmt().accounts.begin_create(GROUP, name, {  # type: ignore[arg-type]
        "kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus",
        "properties": {"encryption": encryption("orders", arm_vault.url)}}).result()
    assert made.properties.encryption.key_vault_properties.key_name == "orders"
    assert ("POST", "/v1/transit/encrypt/orders") in arm_vault.seen
    tls.mgmt().accounts.begin_delete(GROUP, name).result()


def test_arm_returns_no_key_store_text(tls: TlsServer, arm_vault: FakeVault) -> None:
    error = refused_account(tls, encryption("refused", arm_vault.url))
    assert error.error.code == "KeyVaultKeyNotAccessible" and "403" in error.message
    assert "secret/payroll" not in error.message and "internal-detail" not in error.message
    log = tls.data_dir.parent / f"{tls.data_dir.name}-server.log"
    assert SECRET_DETAIL in log.read_text(errors="replace")


def test_arm_uses_no_azure_key_vault_the_operator_did_not_list(tls: TlsServer) -> None:
    error = refused_account(tls, encryption("cmk", CONTOSO, HEX_VERSION))
    assert error.error.code == "InvalidResourceProperties" and "AZURINE_KEY_VAULT_ALLOWED" in error.message
    assert "Credential" not in error.message
