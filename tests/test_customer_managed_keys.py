"""Encryption at rest with per-account data keys: customer-managed keys set, rotated, revoked and restored
through the management SDK and the `azurine keys` command against a running server, a scan of everything the
server wrote for customer content in the clear, the sealer itself, and the wire formats of the external key
providers (HashiCorp Vault transit, Azure Key Vault) against small local servers that speak them: no real
Vault or Key Vault is reached by these tests."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import openai
import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.cognitiveservices.models import Account, Encryption, KeyVaultProperties
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select

from azurine.storage.content import PLAIN, ContentSealer, UnknownSealFormat, seal_text, unseal_text
from azurine.storage.data_keys import DataKey, DataKeys
from azurine.storage.database import make_engine, migrate
from azurine.storage.envelope import ENVELOPE, CorruptContent, EnvelopeSealer
from azurine.storage.key_providers import (
    AZURE_KEY_VAULT,
    LOCAL,
    LOCAL_KEY_STORE_URI,
    SERVICE,
    VAULT,
    InvalidEncryption,
    KeyProviders,
    KeyRef,
    KeyUnavailable,
)
from azurine.storage.key_providers.allow_list import VaultAllowList
from azurine.storage.key_providers.azure_key_vault import AzureKeyVault
from azurine.storage.key_providers.local_store import LocalKeyStore
from azurine.storage.key_providers.service import ServiceKey, load_service_key
from azurine.storage.key_providers.vault_transit import VaultSettings, VaultTransit
from azurine.storage.state import StateStore
from azurine.storage.tables import DataKeyRow
from conftest import ROOT, provision, start_server, stop
from loopback_http import LoopbackHttp, QuietHandler
from test_management_sdk import GROUP, SUBSCRIPTION, TlsServer, openai_account, smol

CACHE_S = 1.0
SETTLE = CACHE_S + 0.3
HATEFUL = "People of that religion are vermin and must be driven out of our country by force."


# -- a running server -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    # no AZURINE_SERVICE_KEY: the server makes service.key in its data directory, which the CLI then reads
    started = start_server(tmp_path_factory.mktemp("cmk") / "data", tls=True,
                           env={"AZURINE_KEY_CACHE_SECONDS": str(CACHE_S), "AZURINE_SERVICE_KEY": ""})
    assert started.cert is not None
    provision(started.data_dir, SUBSCRIPTION, GROUP)
    try:
        yield TlsServer(started.url, started.cert, started.data_dir, started.process)
    finally:
        stop(started.process)


def store_cli(tls: TlsServer, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "azurine", "key-store", *args, "--data-dir", str(tls.data_dir)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "AZURINE_SERVICE_KEY": "", "COLUMNS": "200"})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def data_key_row(tls: TlsServer, account_id: str) -> DataKeyRow:
    engine = make_engine(f"sqlite:///{tls.data_dir / 'azurine.db'}")
    try:
        with engine.connect() as connection:
            row = connection.execute(select(DataKeyRow).where(DataKeyRow.account_id == account_id)).one()
        return row  # type: ignore[return-value]
    finally:
        engine.dispose()


def account_id(tls: TlsServer, name: str) -> str:
    engine = make_engine(f"sqlite:///{tls.data_dir / 'azurine.db'}")
    try:
        record = StateStore(engine).account_named(name)
        assert record is not None
        return record.id
    finally:
        engine.dispose()


def local_key(name: str, version: str = "") -> Encryption:
    return Encryption(key_source="Microsoft.KeyVault", key_vault_properties=KeyVaultProperties(
        key_name=name, key_version=version or None, key_vault_uri=LOCAL_KEY_STORE_URI))


def refused(call: Any) -> openai.PermissionDeniedError:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        call()
    assert caught.value.code == "KeyVaultKeyNotAccessible", caught.value.body
    return caught.value


def test_rotate_revoke_and_restore_a_customer_managed_key(tls: TlsServer) -> None:
    mgmt = tls.mgmt()
    key = f"cmk-{uuid.uuid4().hex[:6]}"
    store_cli(tls, "create", key)
    account = Account(kind="OpenAI", sku=openai_account().sku, location="eastus",
                      properties=openai_account().properties)
    account.properties.encryption = local_key(key)
    made = mgmt.accounts.begin_create(GROUP, "cmk-ai", account).result()
    assert made.properties.encryption.key_source == "Microsoft.KeyVault"
    assert made.properties.encryption.key_vault_properties.key_name == key
    mgmt.deployments.begin_create_or_update(GROUP, "cmk-ai", "chat", smol()).result()
    client = tls.openai(f"{tls.url}/accounts/cmk-ai", mgmt.accounts.list_keys(GROUP, "cmk-ai").key1)
    content = b'{"note": "a customer-managed secret"}\n'
    uploaded = client.files.create(file=("notes.jsonl", content), purpose="assistants")

    def chat() -> object:
        return client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=1)

    assert chat().choices  # type: ignore[attr-defined]
    first = data_key_row(tls, account_id(tls, "cmk-ai"))
    assert (first.source, first.key_name, first.follows_latest) == (LOCAL, key, True)

    # rotation wraps the data key again under the new version; the old one can then go
    rotated = store_cli(tls, "rotate", key)
    assert "1 account data key now wrapped" in rotated
    second = data_key_row(tls, account_id(tls, "cmk-ai"))
    assert second.key_version != first.key_version and second.wrapped != first.wrapped
    assert second.key_id == first.key_id  # the same data key: no content was encrypted again
    store_cli(tls, "disable", key, "--version", first.key_version)
    time.sleep(SETTLE)
    assert client.files.content(uploaded.id).read() == content

    # revoked: content does not open and every request is refused, with the reason
    store_cli(tls, "disable", key, "--version", second.key_version)
    time.sleep(SETTLE)
    denied = refused(lambda: client.files.content(uploaded.id).read())
    assert key in denied.message and "disabled" in denied.message
    refused(chat)
    refused(lambda: client.files.create(file=("more.jsonl", b"{}\n"), purpose="assistants"))
    # nor can the management plane take the data key out from under a revoked key
    with pytest.raises(HttpResponseError) as moving:
        mgmt.accounts.begin_update(GROUP, "cmk-ai", Account(properties=type(account.properties)(
            encryption=Encryption(key_source="Microsoft.CognitiveServices")))).result()
    assert moving.value.status_code == 400 and moving.value.error.code == "KeyVaultKeyNotAccessible"

    # restored: everything works again
    store_cli(tls, "enable", key, "--version", second.key_version)
    time.sleep(SETTLE)
    assert client.files.content(uploaded.id).read() == content
    assert chat().choices  # type: ignore[attr-defined]

    # back to Microsoft-managed keys: the customer's key no longer matters
    back = mgmt.accounts.begin_update(GROUP, "cmk-ai", Account(properties=type(account.properties)(
        encryption=Encryption(key_source="Microsoft.CognitiveServices")))).result()
    assert back.properties.encryption.key_source == "Microsoft.CognitiveServices"
    assert data_key_row(tls, account_id(tls, "cmk-ai")).source == SERVICE
    store_cli(tls, "disable", key)
    time.sleep(SETTLE)
    assert client.files.content(uploaded.id).read() == content
    assert chat().choices  # type: ignore[attr-defined]
    listed = store_cli(tls, "list")
    assert key in listed and "no" in listed
    store_cli(tls, "enable", key)
    mgmt.accounts.begin_delete(GROUP, "cmk-ai").result()


def test_a_key_setting_is_checked_when_it_is_set(tls: TlsServer) -> None:
    mgmt = tls.mgmt()
    key = f"pinned-{uuid.uuid4().hex[:6]}"
    version = store_cli(tls, "create", key).split(key, 1)[1].split()[1]  # the table's version column
    assert len(version) == 32

    def create(encryption: Encryption | dict[str, Any]) -> HttpResponseError:
        body = {"kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus",
                "properties": {"encryption": encryption if isinstance(encryption, dict)
                               else encryption.serialize()}}
        with pytest.raises(HttpResponseError) as caught:
            mgmt.accounts.begin_create(GROUP, "bad-cmk-ai", body).result()  # type: ignore[arg-type]
        assert caught.value.status_code == 400
        return caught.value

    assert create({"keySource": "Microsoft.Nonsense"}).error.code == "InvalidResourceProperties"
    assert create(local_key("no-such-key")).error.code == "KeyVaultKeyNotAccessible"
    unknown_vault = Encryption(key_source="Microsoft.KeyVault", key_vault_properties=KeyVaultProperties(
        key_name=key, key_vault_uri="https://vault.example/"))
    assert "keys.azurine.local" in create(unknown_vault).message
    store_cli(tls, "disable", key)
    assert "disabled" in create(local_key(key)).message
    store_cli(tls, "enable", key)

    # a pinned version stays put when the key rotates
    made = mgmt.accounts.begin_create(GROUP, "pinned-ai", Account(
        kind="OpenAI", sku=openai_account().sku, location="eastus",
        properties=type(openai_account().properties)(encryption=local_key(key, version)))).result()
    assert made.properties.encryption.key_vault_properties.key_version == version
    assert "0 account data keys" in store_cli(tls, "rotate", key)
    assert data_key_row(tls, account_id(tls, "pinned-ai")).key_version == version
    mgmt.accounts.begin_delete(GROUP, "pinned-ai").result()


def readable_bytes(root: Path) -> Iterator[tuple[Path, bytes]]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path, path.read_bytes()


def test_no_customer_content_is_stored_in_the_clear(tls: TlsServer) -> None:
    mgmt = tls.mgmt()
    canary = f"canary{uuid.uuid4().hex}"
    mgmt.accounts.begin_create(GROUP, "scan-ai", Account(
        kind="OpenAI", sku=openai_account().sku, location="eastus", properties=openai_account().properties,
        tags={"azurine-record-filtered-content": "true"})).result()
    mgmt.deployments.begin_create_or_update(GROUP, "scan-ai", "chat", smol(capacity=100)).result()
    engine = make_engine(f"sqlite:///{tls.data_dir / 'azurine.db'}")
    scan_id = account_id(tls, "scan-ai")
    StateStore(engine).put_deployment(scan_id, "batch", model_format="HuggingFace",
                                      model_name="SmolLM2-135M-Instruct", model_version="1", sku_name="GlobalBatch",
                                      sku_capacity=1000, rai_policy_name="Microsoft.DefaultV2",
                                      version_upgrade_option="NoAutoUpgrade", properties={}, tags={},
                                      principal="test")
    client = tls.openai(f"{tls.url}/accounts/scan-ai", mgmt.accounts.list_keys(GROUP, "scan-ai").key1)

    uploaded = client.files.create(file=("notes.txt", f"file {canary} file".encode()), purpose="assistants")
    lines = [{"custom_id": f"line-{i}", "method": "POST", "url": "/chat/completions",
              "body": {"model": "batch", "max_tokens": 4, "temperature": 0,
                       "messages": [{"role": "user", "content": f"Write one short sentence about the sea. {canary}"}]}}
             for i in range(2)]
    batch_input = client.files.create(file=("batch.jsonl", "\n".join(json.dumps(x) for x in lines).encode()),
                                      purpose="batch")
    batch = client.batches.create(input_file_id=batch_input.id, endpoint="/chat/completions",
                                  completion_window="24h")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="chat", max_tokens=4,
                                       messages=[{"role": "user", "content": f"{HATEFUL} {canary}"}])
    deadline = time.monotonic() + 120
    while (batch := client.batches.retrieve(batch.id)).status not in ("completed", "failed"):
        assert time.monotonic() < deadline, batch
        time.sleep(0.5)
    assert batch.status == "completed" and batch.output_file_id, (
        client.files.content(batch.error_file_id).read() if batch.error_file_id else batch)

    # everything reads back through the service
    assert canary.encode() in client.files.content(uploaded.id).read()
    assert canary.encode() in client.files.content(batch_input.id).read()
    assert client.files.content(batch.output_file_id).read()
    record = StateStore(engine).filter_events(scan_id, limit=1)[0]
    assert record.content is not None and canary not in record.content
    engine.dispose()

    # and nothing the server wrote holds it in the clear: database, its journal, keys, anything else
    needles = [canary.encode(), canary.encode("utf-16-le"), base64.b64encode(canary.encode())[:40]]
    scanned, metadata_seen = 0, False
    for path, data in readable_bytes(tls.data_dir):
        scanned += len(data)
        metadata_seen |= batch_input.id.encode() in data  # what is not content is stored plainly, and found
        for needle in needles:
            assert needle not in data, f"{path} holds customer content in the clear"
    assert scanned > 0 and metadata_seen and (tls.data_dir / "azurine.db").exists()
    log = tls.data_dir.parent / f"{tls.data_dir.name}-server.log"
    assert canary not in log.read_text(errors="replace")
    mgmt.accounts.begin_delete(GROUP, "scan-ai").result()


# -- the sealer -----------------------------------------------------------------------------------------------

@pytest.fixture()
def store(tmp_path: Path) -> Iterator[tuple[StateStore, DataKeys]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'azurine.db'}")
    migrate(engine)
    service = ServiceKey(os.urandom(32))
    keys = DataKeys(engine, KeyProviders(service, LocalKeyStore(engine, service)), ttl=0)
    yield StateStore(engine), keys
    engine.dispose()


def new_account(state: StateStore, name: str, properties: dict[str, Any] | None = None) -> str:
    record, _ = state.put_account("sub", "group", name, kind="OpenAI", location="eastus", sku_name="S0",
                                  custom_subdomain=None, properties=properties or {}, tags={}, identity=None,
                                  principal="test")
    return record.id


def test_sealed_content_round_trips_and_is_not_in_the_clear(store: tuple[StateStore, DataKeys]) -> None:
    state, keys = store
    sealer = EnvelopeSealer(keys)
    first = new_account(state, "one")
    secret = b"the quarterly numbers " * 50
    blob = sealer.seal(first, secret)
    assert blob[:1] == ENVELOPE and b"quarterly" not in blob
    assert sealer.unseal(first, blob) == secret
    assert sealer.seal(first, secret) != blob  # a fresh nonce every time
    assert sealer.unseal(first, sealer.seal(first, b"")) == b""
    assert sealer.unseal(first, PLAIN + b"written before") == b"written before"
    with pytest.raises(UnknownSealFormat):
        sealer.unseal(first, b"\x07whatever")


def test_altered_or_misplaced_content_does_not_open(store: tuple[StateStore, DataKeys]) -> None:
    state, keys = store
    sealer = EnvelopeSealer(keys)
    first, second = new_account(state, "one"), new_account(state, "two")
    blob = sealer.seal(first, b"for account one only")
    for position in (5, 20, len(blob) - 1):
        altered = bytearray(blob)
        altered[position] ^= 0x01
        with pytest.raises(CorruptContent):
            sealer.unseal(first, bytes(altered))
    with pytest.raises(CorruptContent):
        sealer.unseal(first, blob[:20])
    with pytest.raises(CorruptContent):  # another account's data key
        sealer.unseal(second, blob)

    class SameKeyForAll:  # even under one data key, the account id is authenticated with the content
        def __init__(self) -> None:
            self.key = DataKey(b"k" * 16, os.urandom(32))

        def get(self, account_id: str) -> DataKey:
            return self.key

    shared = EnvelopeSealer(SameKeyForAll())  # type: ignore[arg-type]
    with pytest.raises(CorruptContent):
        shared.unseal("two", shared.seal("one", b"for account one only"))


def test_a_local_key_revokes_and_restores_and_rotation_rewraps(store: tuple[StateStore, DataKeys]) -> None:
    state, keys = store
    local = keys.providers.local
    v1 = local.create("k1")
    account = new_account(state, "cmk", {"encryption": {"keySource": "Microsoft.KeyVault", "keyVaultProperties": {
        "keyName": "k1", "keyVaultUri": LOCAL_KEY_STORE_URI}}})
    sealer = EnvelopeSealer(keys)
    blob = sealer.seal(account, b"secret")  # made on first use, under the account's key
    v2 = local.rotate("k1")
    assert keys.rewrap_following(LOCAL, "k1") == (1, [])
    local.set_enabled("k1", False, v1.version)
    assert sealer.unseal(account, blob) == b"secret"
    local.set_enabled("k1", False, v2.version)
    with pytest.raises(KeyUnavailable, match="disabled"):
        sealer.unseal(account, blob)
    with pytest.raises(KeyUnavailable):
        keys.configure(account, KeyRef(SERVICE))  # the current key must agree to a move
    local.set_enabled("k1", True)
    assert keys.configure(account, KeyRef(SERVICE)) is True
    local.set_enabled("k1", False)
    assert sealer.unseal(account, blob) == b"secret"


def test_cached_keys_outlive_a_revocation_only_for_the_cache_time(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'azurine.db'}")
    migrate(engine)
    service = ServiceKey(os.urandom(32))
    now = [0.0]
    keys = DataKeys(engine, KeyProviders(service, LocalKeyStore(engine, service)), ttl=60, clock=lambda: now[0])
    keys.providers.local.create("k")
    account = new_account(StateStore(engine), "a", {"encryption": {"keySource": "Microsoft.KeyVault",
                                                                   "keyVaultProperties": {
                                                                       "keyName": "k",
                                                                       "keyVaultUri": LOCAL_KEY_STORE_URI}}})
    keys.get(account)
    keys.providers.local.set_enabled("k", False)
    assert isinstance(keys.peek(account), DataKey)
    now[0] = 61
    with pytest.raises(KeyUnavailable):
        keys.get(account)
    keys.providers.local.set_enabled("k", True)
    assert isinstance(keys.peek(account), KeyUnavailable)  # failures are remembered as long
    now[0] = 122
    assert keys.get(account).key
    engine.dispose()


def test_a_key_read_that_a_revocation_overtook_is_not_kept(tmp_path: Path, monkeypatch) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'azurine.db'}")
    migrate(engine)
    service = ServiceKey(os.urandom(32))
    keys = DataKeys(engine, KeyProviders(service, LocalKeyStore(engine, service)), ttl=60)
    keys.providers.local.create("k")
    account = new_account(StateStore(engine), "a", {"encryption": {"keySource": "Microsoft.KeyVault",
                                                                   "keyVaultProperties": {
                                                                       "keyName": "k",
                                                                       "keyVaultUri": LOCAL_KEY_STORE_URI}}})
    load = keys._load

    def overtaken(account_id: str) -> DataKey:
        found = load(account_id)  # unwrapped while the key was enabled; revoked before this read returns
        keys.providers.local.set_enabled("k", False)
        keys.forget(account_id)
        return found

    monkeypatch.setattr(keys, "_load", overtaken)
    assert keys.get(account).key  # the read in flight answers, as it would have a moment earlier
    monkeypatch.setattr(keys, "_load", load)
    assert keys.peek(account) is None
    with pytest.raises(KeyUnavailable):
        keys.get(account)
    engine.dispose()


def test_filtered_content_is_sealed_and_old_plain_records_still_read() -> None:
    class Reversing(ContentSealer):
        def seal(self, account_id: str, data: bytes) -> bytes:
            return b"\x09" + data[::-1]

        def unseal(self, account_id: str, blob: bytes) -> bytes:
            return blob[1:][::-1]

    stored = seal_text(Reversing(), "a", "hateful words")
    assert stored.startswith("sealed:") and "hateful" not in stored
    assert unseal_text(Reversing(), "a", stored) == "hateful words"
    assert unseal_text(Reversing(), "a", "kept before sealing") == "kept before sealing"


def test_the_service_key_is_made_once_privately_or_taken_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURINE_SERVICE_KEY", raising=False)
    made = load_service_key(tmp_path)
    assert len(made) == 32 and load_service_key(tmp_path) == made
    assert (tmp_path / "service.key").stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("AZURINE_SERVICE_KEY", base64.b64encode(b"x" * 32).decode())
    assert load_service_key(tmp_path) == b"x" * 32
    monkeypatch.setenv("AZURINE_SERVICE_KEY", "c2hvcnQ=")
    with pytest.raises(ValueError):
        load_service_key(tmp_path)
    other = ServiceKey(os.urandom(32))
    wrapped = ServiceKey(made).wrap(KeyRef(SERVICE), b"d" * 32)
    with pytest.raises(KeyUnavailable, match="AZURINE_SERVICE_KEY"):
        other.unwrap(KeyRef(SERVICE, version=wrapped.version), wrapped.blob)


def test_key_settings_pick_their_provider(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'azurine.db'}")
    service = ServiceKey(os.urandom(32))
    vault = VaultTransit(VaultSettings("https://vault.internal:8200", "t"))
    providers = KeyProviders(service, LocalKeyStore(engine, service), vault, azure_allowed=VaultAllowList.parse(
        "https://contoso.vault.azure.net, https://hsm.managedhsm.azure.net"))

    def ref(uri: str, source: str = "Microsoft.KeyVault", version: str = "") -> KeyRef:
        return providers.ref_for({"keySource": source, "keyVaultProperties": {
            "keyName": "k", "keyVersion": version, "keyVaultUri": uri}})

    assert providers.ref_for(None).source == SERVICE
    assert providers.ref_for({"keySource": "Microsoft.CognitiveServices"}).source == SERVICE
    assert ref("https://keys.azurine.local").source == LOCAL
    found = ref("https://contoso.vault.azure.net/", version="0123456789abcdef0123456789abcdef")
    assert (found.source, found.vault_uri, found.version) == (AZURE_KEY_VAULT, "https://contoso.vault.azure.net/",
                                                               "0123456789abcdef0123456789abcdef")
    assert ref("https://hsm.managedhsm.azure.net/").source == AZURE_KEY_VAULT
    assert ref("https://vault.internal:8200/").source == VAULT
    for bad in ("https://vault.example/", "ftp://keys.azurine.local/", "https://contoso.vault.azure.net.evil/"):
        with pytest.raises(InvalidEncryption):
            ref(bad)
    with pytest.raises(InvalidEncryption):
        ref(LOCAL_KEY_STORE_URI, source="Microsoft.Other")
    with pytest.raises(InvalidEncryption):
        providers.ref_for({"keySource": "Microsoft.KeyVault"})
    engine.dispose()


# -- wire formats of the external providers (local stand-ins, not the real services) ----------------------

class WireServer:
    """A tiny HTTP server in a thread; `handle(method, path, query, headers, body)` gives (status, json)."""

    def __init__(self, handle: Any) -> None:
        outer = self

        class Handler(QuietHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                parts = urlsplit(self.path)
                status, answer = handle(self.command, parts.path, parse_qs(parts.query), self.headers, body)
                outer.seen.append((self.command, parts.path))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self.seen: list[tuple[str, str]] = []
        self.http = LoopbackHttp(Handler)
        self.url = f"http://127.0.0.1:{self.http.port}"

    def close(self) -> None:
        self.http.close()


def test_vault_transit_wire_format() -> None:
    versions = {1: os.urandom(32), 2: os.urandom(32)}
    state = {"min_decryption_version": 1}

    def handle(method: str, path: str, _: Any, headers: Any, body: Any) -> tuple[int, Any]:
        if headers.get("X-Vault-Token") != "s.token":
            return 403, {"errors": ["permission denied"]}
        if method == "GET" and path == "/v1/transit/keys/orders":
            return 200, {"data": {"latest_version": 2, "min_decryption_version": state["min_decryption_version"]}}
        if path == "/v1/transit/encrypt/orders":
            version = int(body.get("key_version") or 2)
            nonce = os.urandom(12)
            sealed = nonce + AESGCM(versions[version]).encrypt(nonce, base64.b64decode(body["plaintext"]), None)
            return 200, {"data": {"ciphertext": f"vault:v{version}:{base64.b64encode(sealed).decode()}",
                                  "key_version": version}}
        if path == "/v1/transit/decrypt/orders":
            _, tag, text = body["ciphertext"].split(":", 2)
            version = int(tag[1:])
            if version < state["min_decryption_version"]:
                return 400, {"errors": ["ciphertext or signature version is disallowed by policy (too old)"]}
            raw = base64.b64decode(text)
            plain = AESGCM(versions[version]).decrypt(raw[:12], raw[12:], None)
            return 200, {"data": {"plaintext": base64.b64encode(plain).decode()}}
        return 404, {"errors": []}

    server = WireServer(handle)
    try:
        vault = VaultTransit(VaultSettings(server.url, "s.token"))
        ref = KeyRef(VAULT, "orders", vault_uri=server.url + "/")
        assert vault.latest_version(ref) == "2"
        pinned = vault.wrap(ref.at("1"), b"d" * 32)
        latest = vault.wrap(ref, b"e" * 32)
        assert (pinned.version, latest.version) == ("1", "2") and pinned.blob.startswith(b"vault:v1:")
        assert vault.unwrap(ref.at("1"), pinned.blob) == b"d" * 32
        assert vault.unwrap(ref.at("2"), latest.blob) == b"e" * 32
        state["min_decryption_version"] = 2  # how Vault retires old versions
        with pytest.raises(KeyUnavailable, match="400"):  # Vault's own reason is only logged
            vault.unwrap(ref.at("1"), pinned.blob)
        with pytest.raises(KeyUnavailable, match="403"):
            VaultTransit(VaultSettings(server.url, "wrong")).unwrap(ref.at("2"), latest.blob)
    finally:
        server.close()
    with pytest.raises(KeyUnavailable, match="cannot be reached"):
        vault.latest_version(ref)


def test_azure_key_vault_wire_format() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    state = {"enabled": True}

    def b64url(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    def unb64url(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    def handle(method: str, path: str, query: Any, headers: Any, body: Any) -> tuple[int, Any]:
        if headers.get("Authorization") != "Bearer aad-token" or query.get("api-version") != ["7.4"]:
            return 401, {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer"}}
        kid = "https://contoso.vault.azure.net/keys/cmk/0123456789abcdef0123456789abcdef"
        if method == "GET" and path == "/keys/cmk":
            return 200, {"key": {"kid": kid, "kty": "RSA"}, "attributes": {"enabled": state["enabled"]}}
        if not state["enabled"]:
            return 403, {"error": {"code": "Forbidden", "message": "Operation is not allowed on a disabled key."}}
        if path == "/keys/cmk/0123456789abcdef0123456789abcdef/wrapkey" and body["alg"] == "RSA-OAEP-256":
            return 200, {"kid": kid, "value": b64url(private.public_key().encrypt(unb64url(body["value"]), oaep))}
        if path == "/keys/cmk/0123456789abcdef0123456789abcdef/unwrapkey" and body["alg"] == "RSA-OAEP-256":
            return 200, {"kid": kid, "value": b64url(private.decrypt(unb64url(body["value"]), oaep))}
        return 404, {"error": {"code": "KeyNotFound", "message": "A key with (name/id) was not found"}}

    server = WireServer(handle)
    try:
        vault = AzureKeyVault(token=lambda _: "aad-token")
        ref = KeyRef(AZURE_KEY_VAULT, "cmk", vault_uri=server.url + "/")
        wrapped = vault.wrap(ref, b"d" * 32)
        assert wrapped.version == "0123456789abcdef0123456789abcdef" and len(wrapped.blob) == 256
        assert vault.unwrap(ref.at(wrapped.version), wrapped.blob) == b"d" * 32
        with pytest.raises(KeyUnavailable, match="404"):  # the vault's own reason is only logged
            vault.unwrap(KeyRef(AZURE_KEY_VAULT, "gone", "f" * 32, server.url + "/"), b"x")
        state["enabled"] = False
        with pytest.raises(KeyUnavailable, match="403"):
            vault.unwrap(ref.at(wrapped.version), wrapped.blob)
        with pytest.raises(KeyUnavailable, match="disabled"):
            vault.latest_version(ref)
        with pytest.raises(KeyUnavailable, match="401"):
            AzureKeyVault(token=lambda _: "stale").latest_version(ref)
    finally:
        server.close()
    assert ("GET", "/keys/cmk") in server.seen



def test_a_batch_waits_for_its_key_and_loses_no_line(store: tuple[StateStore, DataKeys]) -> None:
    import asyncio

    from azurine.jobs.batch_runner import LineOutcome
    from azurine.jobs.batch_worker import BatchWorker
    from azurine.storage.batches import BatchStore, LineResult, NewLine
    from azurine.storage.files import FileStore

    state, keys = store
    keys.providers.local.create("k")
    account = new_account(state, "cmk", {"encryption": {"keySource": "Microsoft.KeyVault", "keyVaultProperties": {
        "keyName": "k", "keyVaultUri": LOCAL_KEY_STORE_URI}}})
    other = new_account(state, "plain")
    sealer = EnvelopeSealer(keys)
    batches, files = BatchStore(state.engine, sealer), FileStore(state.engine, sealer)
    lines = [NewLine(i, f"c{i}", {"messages": [{"role": "user", "content": f"line {i}"}]}, 1) for i in range(3)]
    held = batches.create(account, "d", "/chat/completions", "file-in", "24h", None, lines, 3600)
    free = batches.create(other, "d", "/chat/completions", "file-in", "24h", None, lines, 3600)

    class Echo:
        async def run(self, name: str, batch: object, line: Any) -> LineOutcome:
            return LineOutcome(LineResult(line.line, line.custom_id, True, {"custom_id": line.custom_id}), 1, 1)

    worker = BatchWorker(batches, files, Echo(), lambda _: "name", "w:1")  # type: ignore[arg-type]

    async def settle() -> None:
        for _ in range(20):
            await worker.tick()
            await asyncio.sleep(0.01)

    keys.providers.local.set_enabled("k", False)
    asyncio.run(settle())
    assert batches.get(other, free.id).status == "completed"  # one account's key holds up no other account
    waiting = batches.get(account, held.id)
    assert waiting.status == "in_progress" and batches.pending(held.id) == 3
    keys.providers.local.set_enabled("k", True)
    asyncio.run(settle())
    done = batches.get(account, held.id)
    assert done.status == "completed" and done.completed == 3 and done.output_file_id
    assert files.content(account, done.output_file_id).count(b"custom_id") == 3
