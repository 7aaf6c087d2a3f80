"""Request bodies are checked against the types and limits of Azure's spec, and a spec'd field Azurine does not
implement is refused by name instead of being ignored."""

from __future__ import annotations

import json

import openai
import pytest

from conftest import API_VERSION, Server

SMALL = "chat-small"
HELLO = [{"role": "user", "content": "Say hi."}]
CHAT = f"/openai/deployments/{SMALL}/chat/completions?api-version={API_VERSION}"
COMPLETIONS = f"/openai/deployments/{SMALL}/completions?api-version={API_VERSION}"
EMBEDDINGS = f"/openai/deployments/embeddings/embeddings?api-version={API_VERSION}"
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def post(server: Server, path: str, body: dict) -> tuple[int, dict]:
    with server.http() as http:
        response = http.post(path, json=body, headers={"api-key": server.key})
    return response.status_code, response.json()


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (CHAT, {"messages": HELLO, "seed": 2**63}, "seed"),
        (CHAT, {"messages": HELLO, "seed": -(2**63) - 1}, "seed"),
        (CHAT, {"messages": HELLO, "seed": True}, "seed"),
        (CHAT, {"messages": HELLO, "n": 1.0}, "n"),
        (CHAT, {"messages": HELLO, "temperature": "1"}, "temperature"),
        (CHAT, {"messages": HELLO, "stream": "true"}, "stream"),
        (CHAT, {"messages": HELLO, "logit_bias": {"12": 0.5}}, "logit_bias.12"),
        (CHAT, {"messages": HELLO, "stop": []}, "stop"),
        (CHAT, {"messages": HELLO, "user": None}, "user"),
        (CHAT, {"messages": HELLO, "tools": None}, "tools"),
        (CHAT, {"messages": [{"role": "user", "content": []}]}, "messages[0].content"),
        (CHAT, {"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
        (CHAT, {"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {
            "url": "https://example.com/a.png"}}]}]}, "messages[0].content[0].type"),
        (CHAT, {"messages": [{"role": "assistant", "tool_calls": [
            {"id": "call_1", "function": {"name": "f", "arguments": "{}"}}]}]}, "messages[0].tool_calls[0].type"),
        (CHAT, {"messages": [{"role": "function", "content": "12"}]}, "messages[0].name"),
        (CHAT, {"messages": HELLO, "functions": "get_weather"}, "functions"),
        (CHAT, {"messages": HELLO, "functions": []}, "functions"),
        (CHAT, {"messages": HELLO, "functions": [{"description": "no name"}]}, "functions[0].name"),
        (CHAT, {"messages": HELLO, "function_call": 5}, "function_call"),
        (CHAT, {"messages": HELLO, "function_call": "required"}, "function_call"),
        (CHAT, {"messages": HELLO, "functions": [WEATHER], "function_call": {"name": "other"}}, "function_call"),
        (CHAT, {"messages": HELLO, "functions": [WEATHER], "tools": [{"type": "function", "function": WEATHER}]},
         "functions"),
        (CHAT, {"messages": HELLO, "functions": [WEATHER], "tool_choice": "none"}, "functions"),
        (CHAT, {"messages": HELLO, "function_call": "none", "tools": [{"type": "function", "function": WEATHER}]},
         "function_call"),
        (COMPLETIONS, {"prompt": [False]}, "prompt[0]"),
        (COMPLETIONS, {"prompt": [[1, True]]}, "prompt[0][1]"),
        (COMPLETIONS, {"prompt": [-1]}, "prompt[0]"),
        (COMPLETIONS, {"prompt": "hi", "echo": 1}, "echo"),
        (COMPLETIONS, {"prompt": "hi", "max_tokens": True}, "max_tokens"),
        (EMBEDDINGS, {"input": [True]}, "input[0]"),
        (EMBEDDINGS, {"input": ["hi", ""]}, "input"),
        (EMBEDDINGS, {"input": "hi", "dimensions": "8"}, "dimensions"),
    ],
)
def test_wrong_types_and_ranges_are_refused_with_their_param(server: Server, path: str, body: dict,
                                                            param: str) -> None:
    status, answer = post(server, path, body)
    assert status == 400, answer
    assert answer["error"]["param"] == param
    assert answer["error"]["type"] == "invalid_request_error"
    assert answer["error"]["code"] in ("invalid_value", "missing_required_parameter")


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (CHAT, {"messages": HELLO, "data_sources": [{"type": "azure_search", "parameters": {
            "endpoint": "https://search.example.net", "index_name": "docs",
            "authentication": {"type": "api_key", "key": "k"}}}]}, "data_sources"),
        (EMBEDDINGS, {"input": "hi", "input_type": "query"}, "input_type"),
    ],
)
def test_spec_fields_azurine_does_not_implement_are_refused_by_name(server: Server, path: str, body: dict,
                                                                   param: str) -> None:
    status, answer = post(server, path, body)
    assert status == 400
    error = answer["error"]
    assert error["code"] == "unsupported_parameter" and error["param"] == param
    assert f"'{param}' is not supported" in error["message"]


def test_an_empty_data_sources_list_asks_for_nothing(server: Server) -> None:
    status, answer = post(server, CHAT, {"messages": HELLO, "data_sources": [], "max_tokens": 2})
    assert status == 200, answer


def test_null_is_accepted_where_the_spec_allows_it(server: Server) -> None:
    body = {"messages": HELLO, "max_tokens": 2, "temperature": None, "presence_penalty": None, "stop": None,
            "parallel_tool_calls": None, "seed": None, "logit_bias": None, "stream": None}
    status, answer = post(server, CHAT, body)
    assert status == 200, answer


def test_a_null_prompt_starts_a_new_document(server: Server) -> None:
    status, answer = post(server, COMPLETIONS, {"prompt": None, "max_tokens": 3, "temperature": 0})
    assert status == 200, answer
    assert answer["choices"][0]["finish_reason"] in ("stop", "length")


def test_a_null_max_tokens_is_the_completion_default_of_16(server: Server) -> None:
    status, answer = post(server, COMPLETIONS, {"prompt": "Count: one, two,", "max_tokens": None, "temperature": 0})
    assert status == 200, answer
    assert answer["usage"]["completion_tokens"] <= 16


def test_functions_answer_with_a_function_call(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "What's the weather in Paris?"}],
        functions=[WEATHER], function_call={"name": "get_weather"}, max_tokens=40, temperature=0,
    )
    message = result.choices[0].message
    assert message.tool_calls is None and message.content is None
    assert message.function_call is not None and message.function_call.name == "get_weather"
    assert "city" in json.loads(message.function_call.arguments)
    assert result.choices[0].finish_reason in ("stop", "function_call")


def test_functions_stream_a_function_call(azure: openai.AzureOpenAI) -> None:
    stream = azure.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "What's the weather in Rome?"}],
        functions=[WEATHER], function_call={"name": "get_weather"}, max_tokens=40, temperature=0, stream=True,
    )
    calls = [c.choices[0].delta.function_call for c in stream if c.choices and c.choices[0].delta.function_call]
    assert [c.name for c in calls] == ["get_weather"]
    assert "city" in json.loads(calls[0].arguments or "{}")


def test_function_call_none_answers_in_text(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Say hi."}],
        functions=[WEATHER], function_call="none", max_tokens=10, temperature=0,
    )
    assert result.choices[0].message.function_call is None and result.choices[0].message.content


def test_function_results_are_read_in_the_next_turn(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model="chat",
        messages=[
            {"role": "user", "content": "What's the weather in Oslo?"},
            {"role": "assistant", "content": None,
             "function_call": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
            {"role": "function", "name": "get_weather", "content": '{"temperature_celsius": -7, "sky": "snow"}'},
        ],
        functions=[WEATHER], max_tokens=40, temperature=0,
    )
    content = (result.choices[0].message.content or "").lower()
    assert "-7" in content or "snow" in content


def test_an_assistant_refusal_in_the_history_is_accepted(server: Server) -> None:
    messages = [{"role": "user", "content": "Tell me a secret."},
                {"role": "assistant", "content": None, "refusal": "I can't share that."},
                {"role": "user", "content": [{"type": "text", "text": "Fine. Say hi."}]}]
    status, answer = post(server, CHAT, {"messages": messages, "max_tokens": 2})
    assert status == 200, answer


def test_parallel_tool_calls_false_gives_at_most_one_call(azure: openai.AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Weather in Berlin and in Madrid? Call the tool twice."}],
        tools=[{"type": "function", "function": WEATHER}], tool_choice="required", parallel_tool_calls=False,
        max_tokens=80, temperature=0,
    )
    assert len(result.choices[0].message.tool_calls or []) == 1
