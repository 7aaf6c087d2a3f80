"""Account names and custom subdomains are one case-insensitive namespace, as DNS labels are: no account may take a
name or subdomain another account holds in any case, so the account a path or Host header reaches never depends on
row order. Names under an account (RAI policies, blocklists, their items) are unique as they are looked up: in any
case."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from azurine.api.app import build_services, create_app
from azurine.config import Settings
from azurine.identity.tokens import issue_token
from azurine.storage.database import make_engine, migrate
from azurine.storage.state import Conflict, StateStore
from conftest import provision
from migrating import migrate_to

ARM = "?api-version=2025-09-01"
SUBSCRIPTION = "33333333-4444-5555-6666-777777777777"
PROVIDER = "providers/Microsoft.CognitiveServices"


@dataclass
class Plane:
    client: TestClient
    store: StateStore
    token: str

    def path(self, name: str, group: str = "rg-names") -> str:
        return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/{PROVIDER}/accounts/{name}"

    def put(self, name: str, subdomain: str | None = None, group: str = "rg-names") -> Any:
        properties = {"customSubDomainName": subdomain} if subdomain is not None else {}
        return self.client.put(self.path(name, group) + ARM, headers=self.auth, json={
            "kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus", "properties": properties})

    def patch(self, name: str, properties: dict[str, Any], group: str = "rg-names") -> Any:
        return self.client.patch(self.path(name, group) + ARM, headers=self.auth, json={"properties": properties})

    def key(self, name: str, group: str = "rg-names") -> str:
        response = self.client.post(self.path(name, group) + "/listKeys" + ARM, headers=self.auth)
        assert response.status_code == 200, response.text
        return response.json()["key1"]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture()
def plane(tmp_path: Path) -> Iterator[Plane]:
    services, _ = build_services(Settings.load(tmp_path / "data"))
    provision(tmp_path / "data", SUBSCRIPTION, "rg-names", "rg-elsewhere")
    # not entered: these routes need no lifespan (which loads the content filters' models)
    yield Plane(TestClient(create_app(services)), services.store, issue_token(services.store)[0])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def in_use(response: Any) -> None:
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "CustomDomainInUse"


def test_a_subdomain_differing_only_in_case_from_a_taken_one_is_refused(plane: Plane) -> None:
    assert plane.put("first-acct", subdomain="SQx").status_code == 201
    refused = plane.put("second-acct", subdomain="sqx")
    in_use(refused)
    assert refused.json()["error"]["message"].startswith(
        "Please pick a different name. The subdomain name 'sqx' is not available as it's already used by a resource.")
    assert plane.client.get(plane.path("second-acct") + ARM, headers=plane.auth).status_code == 404


def test_a_subdomain_equal_to_another_accounts_name_is_refused(plane: Plane) -> None:
    assert plane.put("gamma-acct").status_code == 201
    in_use(plane.put("other-acct", subdomain="GAMMA-ACCT"))
    in_use(plane.put("other-acct", subdomain="default"))  # the first start's account


def test_a_name_equal_to_another_accounts_subdomain_is_refused_even_in_the_same_group(plane: Plane) -> None:
    assert plane.put("holder-acct", subdomain="Delta-Sub").status_code == 201
    refused = plane.put("delta-sub")
    in_use(refused)
    assert "account name 'delta-sub' is already in use" in refused.json()["error"]["message"]
    in_use(plane.put("DELTA-SUB", group="rg-elsewhere"))


def test_an_update_cannot_take_a_taken_subdomain(plane: Plane) -> None:
    assert plane.put("owner-acct", subdomain="taken-label").status_code == 201
    assert plane.put("late-acct").status_code == 201
    in_use(plane.patch("late-acct", {"customSubDomainName": "Taken-Label"}))
    assert "customSubDomainName" not in plane.client.get(plane.path("late-acct") + ARM,
                                                         headers=plane.auth).json()["properties"]


def test_an_account_may_take_its_own_name_as_subdomain_in_any_case(plane: Plane) -> None:
    assert plane.put("omega-acct", subdomain="Omega-Acct").status_code == 201
    assert plane.put("omega-acct", subdomain="Omega-Acct").status_code == 200


def test_a_deleted_accounts_names_are_free_again(plane: Plane) -> None:
    assert plane.put("gone-acct", subdomain="gone-sub").status_code == 201
    assert plane.client.delete(plane.path("gone-acct") + ARM, headers=plane.auth).status_code == 200
    assert plane.put("next-acct", subdomain="GONE-ACCT").status_code == 201
    assert plane.put("gone-sub").status_code == 201


def test_path_and_host_reach_the_holder_of_a_subdomain_in_any_case(plane: Plane) -> None:
    assert plane.put("path-acct", subdomain="MixedCase").status_code == 201
    key = plane.key("path-acct")
    listing = "/openai/deployments?api-version=2023-05-15"
    assert plane.client.get(f"/accounts/mixedcase{listing}", headers={"api-key": key}).status_code == 200
    assert plane.client.get(listing, headers={"api-key": key, "host": "MIXEDCASE.openai.azure.com"}).status_code == 200


def test_the_store_refuses_a_colliding_write_that_skipped_the_checks(plane: Plane) -> None:
    """Two writers racing past the route's checks: the unique index on the lowercased labels decides."""
    plane.put("race-acct", subdomain="Race-Label")
    with pytest.raises(Conflict):
        plane.store.put_account(SUBSCRIPTION, "rg-other", "other-race", kind="OpenAI", location="eastus",
                                sku_name="S0", custom_subdomain="race-label", properties={}, tags={}, identity=None,
                                principal="x")
    with pytest.raises(Conflict):
        plane.store.put_account(SUBSCRIPTION, "rg-other", "RACE-LABEL", kind="OpenAI", location="eastus",
                                sku_name="S0", custom_subdomain=None, properties={}, tags={}, identity=None,
                                principal="x")


# existing data -----------------------------------------------------------------------------------------------------


def _at_0009(url: str) -> sa.Engine:
    engine = make_engine(url)
    migrate_to(engine, "0009")
    return engine


def _account(connection: sa.Connection, name: str, subdomain: str | None, created: str) -> str:
    account_id = str(uuid.uuid4())
    connection.execute(sa.text(
        "INSERT INTO accounts (id, name, subscription_id, resource_group, kind, location, sku_name, custom_subdomain,"
        " key1, key2, properties, tags, etag, created_by, updated_by, created_at, updated_at) VALUES (:id, :name,"
        " 'sub', 'rg', 'OpenAI', 'eastus', 'S0', :sub, 'k1', 'k2', '{}', '{}', '', '', '', :at, :at)"),
        {"id": account_id, "name": name, "sub": subdomain, "at": created})
    return account_id


def test_the_migration_keeps_the_first_claim_of_each_label_and_clears_later_subdomains(tmp_path: Path) -> None:
    engine = _at_0009(f"sqlite:///{tmp_path / 'azurine.db'}")
    with engine.begin() as connection:
        squatted = _account(connection, "squatted", "SQx", "2026-01-01 00:00:00")
        squatter = _account(connection, "squatter", "sqx", "2026-01-02 00:00:00")
        named = _account(connection, "alpha", None, "2026-01-03 00:00:00")
        aliasing = _account(connection, "aliasing", "ALPHA", "2026-01-04 00:00:00")
        early_sub = _account(connection, "early", "beta", "2026-01-05 00:00:00")
        late_name = _account(connection, "Beta", None, "2026-01-06 00:00:00")
    migrate(engine)
    store = StateStore(engine)
    assert store.account_named("SQX").id == squatted  # type: ignore[union-attr]
    assert store.account_named("squatter").custom_subdomain is None  # type: ignore[union-attr]
    assert store.account_named("alpha").id == named  # type: ignore[union-attr]
    assert store.account_named("aliasing").custom_subdomain is None  # type: ignore[union-attr]
    assert store.account_named("BETA").id == early_sub  # type: ignore[union-attr]
    assert {squatter, aliasing, late_name} <= {a.id for a in store.accounts("sub")}  # no account is dropped


def test_the_migration_keeps_the_first_of_rai_names_differing_only_in_case(tmp_path: Path) -> None:
    engine = _at_0009(f"sqlite:///{tmp_path / 'azurine.db'}")
    with engine.begin() as connection:
        owner = _account(connection, "rai-owner", None, "2026-01-01 00:00:00")
        for number, name in enumerate(("Strict", "strict", "STRICT")):
            connection.execute(sa.text(
                "INSERT INTO account_children (id, account_id, kind, parent, name, properties, tags, etag, created_by,"
                " updated_by, created_at, updated_at) VALUES (:id, :owner, 'raiPolicies', '', :name, :props, '{}',"
                " '', '', '', :at, :at)"),
                {"id": str(uuid.uuid4()), "owner": owner, "name": name, "props": f'{{"n": {number}}}',
                 "at": f"2026-01-0{number + 1} 00:00:00"})
    migrate(engine)
    store = StateStore(engine)
    kept = store.children(owner, "raiPolicies")
    assert [(c.name, c.properties) for c in kept] == [("Strict", {"n": 0})]


def test_rai_names_are_unique_in_any_case_in_the_store(plane: Plane) -> None:
    """A second writer that looked before the first wrote finds nothing and inserts: the index refuses it."""
    account = plane.store.first_account()
    assert account is not None
    plane.store.put_child(account.id, "raiBlocklists", "Words", properties={}, tags={}, principal="x")
    with pytest.raises(sa.exc.IntegrityError), plane.store.engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO account_children (id, account_id, kind, parent, name, properties, tags, etag, created_by,"
            " updated_by, created_at, updated_at) VALUES (:id, :owner, 'raiBlocklists', '', 'WORDS', '{}', '{}',"
            " '', '', '', '2026-01-01', '2026-01-01')"), {"id": str(uuid.uuid4()), "owner": account.id})
