"""The `/openai/v1` surface with OpenAI's own client: body `model` is the deployment name."""

from __future__ import annotations

import openai
import pytest

from conftest import Server


def test_v1_chat_with_bearer_key(server: Server) -> None:
    result = server.v1().chat.completions.create(
        model="chat-small", messages=[{"role": "user", "content": "hi"}], max_tokens=3, temperature=0)
    assert result.choices[0].message.content is not None


def test_v1_accepts_the_api_key_header(server: Server) -> None:
    with server.http() as http:
        response = http.post("/openai/v1/chat/completions", headers={"api-key": server.key},
                             json={"model": "chat-small", "messages": [{"role": "user", "content": "hi"}],
                                   "max_tokens": 1})
    assert response.status_code == 200


@pytest.mark.parametrize("version", ["v1", "preview"])
def test_v1_api_versions(server: Server, version: str) -> None:
    with server.http() as http:
        response = http.post(f"/openai/v1/embeddings?api-version={version}", headers={"api-key": server.key},
                             json={"model": "embeddings", "input": "hi"})
    assert response.status_code == 200


def test_v1_refuses_dated_versions(server: Server) -> None:
    with server.http() as http:
        response = http.post("/openai/v1/embeddings?api-version=2024-10-21", headers={"api-key": server.key},
                             json={"model": "embeddings", "input": "hi"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"


def test_v1_completions_and_embeddings(server: Server) -> None:
    client = server.v1()
    assert client.completions.create(model="chat-small", prompt="Hi", max_tokens=2).choices
    assert len(client.embeddings.create(model="embeddings", input=["a", "b"]).data) == 2


def test_v1_streaming(server: Server) -> None:
    stream = server.v1().chat.completions.create(
        model="chat-small", messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True)
    assert any(c.choices and c.choices[0].finish_reason for c in stream)


def test_v1_models_list(server: Server) -> None:
    models = server.v1().models.list()
    ids = {m.id for m in models}
    assert {"qwen2.5-coder-0.5b-instruct", "smollm2-135m-instruct", "all-minilm-l6-v2"} <= ids


def test_v1_needs_the_model_field(server: Server) -> None:
    with server.http() as http:
        response = http.post("/openai/v1/chat/completions", headers={"api-key": server.key},
                             json={"messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"


def test_v1_bad_bearer_key(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/openai/v1/", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_v1_unknown_deployment(server: Server) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        server.v1().chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "DeploymentNotFound"
