"""Azure's error bodies and headers, letter for letter, and never a 500 for bad input."""

from __future__ import annotations

import openai
import pytest

from conftest import API_VERSION, Server

INVALID_KEY = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an "
    "active subscription and use a correct regional API endpoint for your resource."
)
CHAT = f"/openai/deployments/chat-small/chat/completions?api-version={API_VERSION}"
HELLO = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def test_missing_api_version_is_resource_not_found(server: Server) -> None:
    with server.http() as http:
        response = http.post("/openai/deployments/chat-small/chat/completions", json=HELLO,
                             headers={"api-key": server.key})
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "404", "message": "Resource not found"}}


def test_unknown_api_version_is_refused(server: Server) -> None:
    with server.http() as http:
        response = http.post("/openai/deployments/chat-small/chat/completions?api-version=2099-01-01", json=HELLO,
                             headers={"api-key": server.key})
    assert response.status_code == 400
    assert response.json() == {"error": {"code": "BadRequest", "message": "API version not supported"}}


@pytest.mark.parametrize("version", ["2022-12-01", "2023-05-15", "2024-06-01", "2024-10-21", "2025-04-01-preview"])
def test_ga_and_preview_versions_are_accepted(server: Server, version: str) -> None:
    client = openai.AzureOpenAI(azure_endpoint=server.url, api_key=server.key, api_version=version, max_retries=0)
    result = client.chat.completions.create(model="chat-small", messages=[{"role": "user", "content": "hi"}],
                                            max_tokens=1)
    assert result.choices


def test_bad_key_is_401_with_azures_message(server: Server) -> None:
    with server.http() as http:
        response = http.post(CHAT, json=HELLO, headers={"api-key": "wrong"})
        missing = http.post(CHAT, json=HELLO)
    assert response.status_code == missing.status_code == 401
    assert response.json() == missing.json() == {"error": {"code": "401", "message": INVALID_KEY}}


def test_the_sdk_sees_authentication_errors(server: Server) -> None:
    client = openai.AzureOpenAI(azure_endpoint=server.url, api_key="nope", api_version=API_VERSION, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="chat-small", messages=[{"role": "user", "content": "hi"}])


def test_unknown_deployment(azure: openai.AzureOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        azure.chat.completions.create(model="no-such-deployment", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body == {
        "code": "DeploymentNotFound",
        "message": "The API deployment for this resource does not exist. If you created the deployment within the "
        "last 5 minutes, please wait a moment and try again.",
    }


def test_chat_on_an_embeddings_deployment_is_not_supported(azure: openai.AzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        azure.chat.completions.create(model="embeddings", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "OperationNotSupported"
    assert caught.value.body["message"].startswith(
        "The chatCompletion operation does not work with the specified model, embeddings. Please choose different "
        "model and try again.")


def test_embeddings_on_a_chat_deployment_is_not_supported(azure: openai.AzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        azure.embeddings.create(model="chat", input="hi")
    assert caught.value.code == "OperationNotSupported"
    assert "The embeddings operation does not work" in caught.value.body["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": 5}, "temperature"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 0}, "n"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 30, "logprobs": True}, "top_logprobs"),
        ({}, "messages"),
    ],
)
def test_invalid_bodies_name_the_parameter(server: Server, body: dict, param: str) -> None:
    with server.http() as http:
        response = http.post(CHAT, json=body, headers={"api-key": server.key})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert isinstance(error["code"], str) and error["message"]


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b"", b"null", b'"text"', b"\xff\xfe"])
def test_malformed_bodies_are_400_not_500(server: Server, raw: bytes) -> None:
    with server.http() as http:
        response = http.post(CHAT, content=raw, headers={"api-key": server.key, "content-type": "application/json"})
    assert response.status_code == 400
    assert isinstance(response.json()["error"]["code"], str)


def test_context_length_exceeded(azure: openai.AzureOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        azure.chat.completions.create(
            model="chat-small", messages=[{"role": "user", "content": "word " * 9000}], max_tokens=5,
        )
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.body["param"] == "messages"
    assert "maximum context length is 8192 tokens" in caught.value.body["message"]


def test_invalid_json_schema_is_a_clear_400(server: Server) -> None:
    body = {**HELLO, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}}}}
    with server.http() as http:
        response = http.post(CHAT, json=body, headers={"api-key": server.key})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "response_format"


def test_unknown_path_is_resource_not_found(server: Server) -> None:
    with server.http() as http:
        response = http.get("/openai/nothing-here?api-version=2024-10-21", headers={"api-key": server.key})
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "404", "message": "Resource not found"}}


def test_azure_headers_on_success_and_error(server: Server) -> None:
    with server.http() as http:
        ok = http.post(CHAT, json=HELLO, headers={"api-key": server.key, "x-ms-client-request-id": "abc-123"})
        bad = http.post(CHAT, json=HELLO, headers={"api-key": "wrong"})
    for response in (ok, bad):
        assert len(response.headers["apim-request-id"]) == 36
        assert response.headers["x-request-id"] == response.headers["apim-request-id"]
        assert response.headers["x-ms-region"]
    assert ok.headers["x-ms-client-request-id"] == "abc-123"
