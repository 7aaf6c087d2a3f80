"""Model and deployment listings, and how requests find their account."""

from __future__ import annotations

import openai

from azurine.storage.database import make_engine
from azurine.storage.state import StateStore
from conftest import API_VERSION, Server


def test_azure_model_objects(server: Server) -> None:
    with server.http() as http:
        response = http.get(f"/openai/models?api-version={API_VERSION}", headers={"api-key": server.key})
    assert response.status_code == 200
    models = {m["id"]: m for m in response.json()["data"]}
    qwen = models["qwen2.5-coder-0.5b-instruct"]
    assert qwen["object"] == "model" and qwen["status"] == "succeeded"
    assert qwen["capabilities"]["chat_completion"] is True and qwen["capabilities"]["embeddings"] is False
    assert models["all-minilm-l6-v2"]["capabilities"]["embeddings"] is True
    assert qwen["lifecycle_status"] == "generally-available"
    assert "inference" in qwen["deprecation"]


def test_the_sdk_lists_and_retrieves_models(azure: openai.AzureOpenAI) -> None:
    ids = [m.id for m in azure.models.list()]
    assert "smollm2-135m-instruct" in ids
    assert azure.models.retrieve("smollm2-135m-instruct").id == "smollm2-135m-instruct"


def test_deployments_listing(server: Server) -> None:
    with server.http() as http:
        listing = http.get("/openai/deployments?api-version=2023-05-15", headers={"api-key": server.key}).json()
        one = http.get("/openai/deployments/chat?api-version=2023-05-15", headers={"api-key": server.key})
    # other modules add deployments to the session's server: the listing is every deployment the account holds
    store = StateStore(make_engine(f"sqlite:///{server.data_dir / 'azurine.db'}"))
    account = store.first_account()
    assert account is not None
    held = {d.name for d in store.deployments(account.id)}
    assert {d["id"] for d in listing["data"]} == held >= {"chat", "chat-small", "embeddings"}
    assert one.json()["model"] == "Qwen2.5-Coder-0.5B-Instruct"


def test_account_by_path_prefix(server: Server) -> None:
    client = openai.AzureOpenAI(azure_endpoint=f"{server.url}/accounts/default", api_key=server.key,
                                api_version=API_VERSION, max_retries=0)
    result = client.embeddings.create(model="embeddings", input="hi")
    assert len(result.data[0].embedding) == 384


def test_unknown_account_prefix_is_not_found(server: Server) -> None:
    with server.http() as http:
        response = http.post(f"/accounts/nobody/openai/deployments/embeddings/embeddings?api-version={API_VERSION}",
                             headers={"api-key": server.key}, json={"input": "hi"})
    assert response.status_code == 404


def test_account_by_host_name(server: Server) -> None:
    with server.http() as http:
        response = http.post(f"/openai/deployments/embeddings/embeddings?api-version={API_VERSION}",
                             headers={"api-key": server.key, "host": "default.openai.localhost"},
                             json={"input": "hi"})
    assert response.status_code == 200


def test_each_account_answers_with_its_own_keys_and_deployments(server: Server) -> None:
    from azurine.storage.database import make_engine
    from azurine.storage.state import StateStore

    store = StateStore(make_engine(f"sqlite:///{server.data_dir / 'azurine.db'}"))
    if store.account_named("contoso") is None:
        other = store.create_account("contoso", location="local", subscription_id="sub", resource_group="rg")
        store.create_deployment(other.id, "vectors", model_name="all-MiniLM-L6-v2", model_version="1",
                                model_format="SentenceTransformers", sku_name="Standard", sku_capacity=10)
    contoso = store.account_named("contoso")
    assert contoso is not None
    path = f"/openai/deployments/vectors/embeddings?api-version={API_VERSION}"
    with server.http() as http:
        by_host = http.post(path, headers={"api-key": contoso.key2, "host": "contoso.openai.localhost"},
                            json={"input": "hi"})
        by_prefix = http.post(f"/accounts/contoso{path}", headers={"api-key": contoso.key1}, json={"input": "hi"})
        wrong_key = http.post(path, headers={"api-key": server.key, "host": "contoso.openai.localhost"},
                              json={"input": "hi"})
        other_account = http.post(path, headers={"api-key": server.key}, json={"input": "hi"})
    assert by_host.status_code == by_prefix.status_code == 200
    assert wrong_key.status_code == 401
    assert other_account.status_code == 404
    assert other_account.json()["error"]["code"] == "DeploymentNotFound"
