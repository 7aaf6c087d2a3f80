"""A token proves who its principal is only within the directory of the issuer that signed it: the built-in
administrator and every role assignment belong to one directory (the built-in tenant, an Entra tenant or another
trusted issuer), so an object id asserted by any other issuer is someone else. The administrator's object id is
random per install, and a token whose header names an algorithm its key cannot verify is an invalid token."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI

from azurine.api.app import build_services, create_app
from azurine.api.context import Services
from azurine.config import Settings, default_models_dir
from azurine.identity.issuers import OidcIssuers, verify_external
from azurine.identity.tokens import COGNITIVE_AUDIENCES, MANAGEMENT_AUDIENCES, TENANT_ID, InvalidToken, issue_token
from azurine.storage.database import make_engine, migrate
from azurine.storage.state import AccountRecord, StateStore
from conftest import API_VERSION
from migrating import migrate_to
from oidc_provider import Provider

AUTHZ = "?api-version=2022-04-01"
ARM = "?api-version=2025-09-01"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"
MANAGEMENT = MANAGEMENT_AUDIENCES[0]


@dataclass
class Install:
    """A server's application in this process, on a database of its own."""

    app: FastAPI
    services: Services
    account: AccountRecord
    data_dir: Path

    @property
    def account_id(self) -> str:
        return (f"/subscriptions/{self.account.subscription_id}/resourceGroups/{self.account.resource_group}"
                f"/providers/Microsoft.CognitiveServices/accounts/{self.account.name}")

    def call(self, method: str, path: str, *, token: str | None = None, client: str = "203.0.113.7",
             **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=(client, 40000), raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://azurine.test") as http:
                return await http.request(method, path, headers=headers, **kwargs)

        return asyncio.run(send())

    def admin_token(self, audience: str = MANAGEMENT) -> str:
        return issue_token(self.services.store, audience)[0]

    def own_token(self, object_id: str, audience: str = MANAGEMENT) -> str:
        return issue_token(self.services.store, audience, object_id, "someone")[0]

    def assign(self, principal: str, role: str, **extra: str) -> httpx.Response:
        subscription = self.account.subscription_id
        return self.call("PUT", f"{self.account_id}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
                         f"{AUTHZ}", token=self.admin_token(), json={"properties": {
                             "roleDefinitionId": f"/subscriptions/{subscription}/providers/Microsoft.Authorization/"
                                                 f"roleDefinitions/{role}", "principalId": principal, **extra}})

    def list_keys(self, token: str) -> httpx.Response:
        return self.call("POST", f"{self.account_id}/listKeys{ARM}", token=token)

    def chat(self, token: str) -> httpx.Response:
        return self.call("POST", f"/openai/deployments/chat-small/chat/completions?api-version={API_VERSION}",
                         token=token, json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})


def open_install(data_dir: Path, monkeypatch: pytest.MonkeyPatch, trusted: list[str] | None = None) -> Install:
    monkeypatch.setenv("AZURINE_TRUSTED_ISSUERS", ",".join(trusted or []))
    settings = Settings(data_dir=data_dir, models_dir=default_models_dir(),
                        database_url=f"sqlite:///{data_dir / 'azurine.db'}")
    services, _ = build_services(settings)
    account = services.store.first_account()
    assert account is not None
    return Install(create_app(services), services, account, data_dir)


@pytest.fixture()
def install(tmp_path: Path, provider: Provider, monkeypatch: pytest.MonkeyPatch) -> Install:
    return open_install(tmp_path / "data", monkeypatch, [provider.issuer])


def administrator_of(install: Install) -> str:
    return str(jwt.decode(install.admin_token(), options={"verify_signature": False})["oid"])


def test_a_trusted_issuer_cannot_act_as_the_built_in_administrator(install: Install, provider: Provider) -> None:
    assert install.list_keys(install.admin_token()).status_code == 200
    forged = provider.token("k1", aud=MANAGEMENT, oid=administrator_of(install), tid=TENANT_ID)
    refused = install.list_keys(forged)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "AuthorizationFailed"


def test_the_administrator_id_is_random_per_install_and_kept_across_restarts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = open_install(tmp_path / "first", monkeypatch)
    second = open_install(tmp_path / "second", monkeypatch)
    assert administrator_of(first) != administrator_of(second)
    assert uuid.UUID(administrator_of(first)).version == 4
    with make_engine(f"sqlite:///{tmp_path / 'first' / 'azurine.db'}").connect() as connection:
        stored = connection.execute(sa.text("SELECT value FROM installation WHERE name = 'admin_object_id'")).scalar()
    assert stored == administrator_of(first)  # kept in the database, not made again on the next start
    restarted = open_install(tmp_path / "first", monkeypatch)
    assert administrator_of(restarted) == administrator_of(first)
    assert restarted.list_keys(first.admin_token()).status_code == 200


def test_a_role_given_to_a_built_in_principal_is_not_given_to_an_outside_one_of_the_same_id(
        install: Install, provider: Provider) -> None:
    principal = str(uuid.uuid4())
    assert install.assign(principal, OWNER).status_code == 201
    assert install.list_keys(install.own_token(principal)).status_code == 200
    outside = install.list_keys(provider.token("k1", aud=MANAGEMENT, oid=principal, tid=TENANT_ID))
    assert outside.status_code == 403 and outside.json()["error"]["code"] == "AuthorizationFailed"
    # the data plane decides by the same binding
    assert install.assign(principal, OPENAI_USER).status_code == 201
    denied = install.chat(provider.token("k1", oid=principal, tid=TENANT_ID))
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "PermissionDenied"


def test_an_assignment_for_a_principal_of_a_trusted_issuer_names_that_issuer(install: Install,
                                                                           provider: Provider) -> None:
    principal = str(uuid.uuid4())
    made = install.assign(principal, OWNER, principalTenantId=provider.issuer)
    assert made.status_code == 201, made.text
    assert made.json()["properties"]["principalTenantId"] == provider.issuer
    assert install.list_keys(provider.token("k1", aud=MANAGEMENT, oid=principal)).status_code == 200
    # the same object id in the built-in directory is another principal
    refused = install.list_keys(install.own_token(principal))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "AuthorizationFailed"


def test_an_assignment_cannot_name_an_issuer_that_is_not_trusted(install: Install) -> None:
    refused = install.assign(str(uuid.uuid4()), OWNER, principalTenantId="https://issuer.example/tenant")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "InvalidPrincipalTenantId"


def test_entra_tenants_bind_both_issuer_forms_to_one_directory() -> None:
    tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    issuers = OidcIssuers([f"https://login.microsoftonline.com/{tenant}/v2.0"])
    assert issuers.directory(f"https://sts.windows.net/{tenant}/") == issuers.directory(
        f"https://login.microsoftonline.com/{tenant}/v2.0") == issuers.directory(tenant.upper())
    assert issuers.directory(TENANT_ID) == TENANT_ID
    assert issuers.directory("72f988bf-0000-41af-91ab-2d7cd011db47") is None


def test_an_upgraded_install_gets_a_random_administrator_and_keeps_its_assignments(
        tmp_path: Path, provider: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'azurine.db'}")
    migrate_to(engine, "0009")
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO principals (object_id, kind, display_name, app_id, enabled, "
                                   "created_at) VALUES ('11111111-1111-4111-8111-111111111111', 'User', 'u', NULL, "
                                   "1, CURRENT_TIMESTAMP)"))
        for name, principal in (("a", "11111111-1111-4111-8111-111111111111"),
                                ("b", "22222222-2222-4222-8222-222222222222")):
            connection.execute(sa.text(
                "INSERT INTO role_assignments (id, scope, role_definition_id, principal_id, principal_type, "
                "created_by, created_at) VALUES (:id, '/subscriptions/s', :role, :principal, 'User', 'x', "
                "CURRENT_TIMESTAMP)"), {"id": name, "role": OWNER, "principal": principal})
    monkeypatch.setenv("AZURINE_TRUSTED_ISSUERS", provider.issuer)  # one issuer: its principals are the others
    migrate(engine)
    store = StateStore(engine)
    administrator = store.admin_object_id()
    assert administrator != "00000000-0000-0000-0000-0000000000ad" and uuid.UUID(administrator).version == 4
    with engine.connect() as connection:
        bound = dict(connection.execute(sa.text("SELECT id, principal_tenant FROM role_assignments")).all())
    assert bound == {"a": TENANT_ID, "b": provider.issuer}


def test_a_key_of_another_type_than_the_tokens_algorithm_is_an_invalid_token(install: Install,
                                                                             provider: Provider) -> None:
    now = int(time.time())
    forged = jwt.encode({"iss": provider.issuer, "aud": MANAGEMENT, "exp": now + 600, "oid": "x"},
                        ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": "k1"})
    with pytest.raises(InvalidToken):
        verify_external(OidcIssuers([provider.issuer]), forged, (MANAGEMENT,))
    refused = install.list_keys(forged)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "InvalidAuthenticationToken"
    data_plane = jwt.encode({"iss": provider.issuer, "aud": COGNITIVE_AUDIENCES[0], "exp": now + 600, "oid": "x"},
                            ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": "k1"})
    assert install.chat(data_plane).status_code == 401
