"""Two server processes on one PostgreSQL database agree on every change within a second."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from azurine.identity.tokens import issue_token
from azurine.storage.cache import StateCache
from azurine.storage.database import make_engine
from azurine.storage.state import StateStore
from conftest import API_VERSION, Server, provision, start_server, stop

SUB = "22222222-0000-0000-0000-000000000000"
ACCOUNT = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/twin"
ARM = "?api-version=2025-09-01"
# how long a replica may answer from what it read before: the lookup cache's lifetime, and a margin
SETTLE = StateCache().ttl + 0.2


@pytest.fixture()
def replicas(database_url: str, tmp_path) -> Iterator[tuple[Server, Server]]:
    first = start_server(tmp_path / "a", env={"AZURINE_DATABASE_URL": database_url})
    second = start_server(tmp_path / "b", env={"AZURINE_DATABASE_URL": database_url})
    provision(first.data_dir, SUB, "rg", database_url=database_url)
    try:
        yield first, second
    finally:
        stop(first.process)
        stop(second.process)


def chat(server: Server, key: str) -> httpx.Response:
    return httpx.post(f"{server.url}/accounts/twin/openai/deployments/smol/chat/completions?api-version={API_VERSION}",
                      headers={"api-key": key}, json={"messages": [{"role": "user", "content": "hi"}],
                                                      "max_tokens": 1}, timeout=120)


def test_replicas_agree_on_accounts_deployments_and_keys(replicas: tuple[Server, Server], database_url: str) -> None:
    a, b = replicas
    token, _ = issue_token(StateStore(make_engine(database_url)))
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(headers=auth, timeout=60) as http:
        created = http.put(f"{a.url}{ACCOUNT}{ARM}", json={"kind": "OpenAI", "sku": {"name": "S0"},
                                                           "location": "eastus"})
        assert created.status_code == 201
        assert http.get(f"{b.url}{ACCOUNT}{ARM}").json()["name"] == "twin"
        deployment = {"sku": {"name": "Standard", "capacity": 3}, "properties": {"model": {
            "format": "HuggingFace", "name": "SmolLM2-135M-Instruct", "version": "1"}}}
        assert http.put(f"{a.url}{ACCOUNT}/deployments/smol{ARM}", json=deployment).status_code == 201
        keys = http.post(f"{b.url}{ACCOUNT}/listKeys{ARM}").json()

        # a deployment created through one replica answers through the other at once
        assert chat(b, keys["key1"]).status_code == 200
        # a changed deployment reads the same everywhere
        resized = {**deployment, "sku": {"name": "Standard", "capacity": 5}}
        assert http.put(f"{b.url}{ACCOUNT}/deployments/smol{ARM}", json=resized).status_code == 200
        assert http.get(f"{a.url}{ACCOUNT}/deployments/smol{ARM}").json()["sku"]["capacity"] == 5

        # a regenerated key is refused by the replica that changed it at once, by the other within a second
        fresh = http.post(f"{a.url}{ACCOUNT}/regenerateKey{ARM}", json={"keyName": "Key1"}).json()
        assert chat(a, keys["key1"]).status_code == 401
        time.sleep(SETTLE)
        assert chat(b, keys["key1"]).status_code == 401
        assert chat(b, fresh["key1"]).status_code == 200
        assert chat(b, keys["key2"]).status_code == 200

        # a deployment deleted through one replica is gone from the other within a second
        assert http.delete(f"{b.url}{ACCOUNT}/deployments/smol{ARM}").status_code == 200
        time.sleep(SETTLE)
        gone = chat(a, fresh["key1"])
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "DeploymentNotFound"

        # and an account deleted through one is gone from both
        assert http.delete(f"{a.url}{ACCOUNT}{ARM}").status_code == 200
        assert http.get(f"{b.url}{ACCOUNT}{ARM}").status_code == 404
